"""The driver task: advance the wheels, fire timers in batches, hand due jobs to pools, sleep until the next expiry."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Final

from ._clock import Cancellable
from ._job import Job
from ._pool import Pool
from ._registry import Registry
from ._stats import Stats
from ._store import Store
from ._ticks import Ticks
from ._timers import Timers

__all__ = ["Driver"]

_BATCH: Final = 1024  # due items handed out per driver step before yielding to the loop


def _consume(task: asyncio.Task[None]) -> None:
    """Mark a replaced driver's exception as seen: it went on to the loop's caller already."""
    if not task.cancelled():
        task.exception()


class Driver:
    """One task that sleeps until the next expiry, fires what is due, and repeats. Tickless when idle.

    ``fire_series`` starts a recurring job's runs; ``undeliverable`` buries a
    job the engine failed to start; ``store.claim`` (a shared store's) is
    handed each batch of due jobs, and hands on to their pool those it won.
    """

    def __init__(
        self,
        ticks: Ticks,
        timers: Timers,
        registry: Registry,
        stats: Stats,
        store: Store | None,
        fire_series: Callable[[Job, Pool], None],
        undeliverable: Callable[[Job, Exception, asyncio.AbstractEventLoop], None],
    ) -> None:
        self._ticks = ticks
        self._timers = timers
        self._registry = registry
        self._counts = stats.counts
        self._store = store
        self._fire_series = fire_series
        self._undeliverable = undeliverable
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """A driver task; from now until it ends the collector skips the timers' payloads and the waiting jobs.

        Set here, not once the task runs: a burst of ``schedule_nowait`` right
        after ``start()`` files its jobs hidden too.
        """
        self.task = task = asyncio.create_task(self._drive(), name="chronowheel driver")
        self._timers.core.quiet = True
        for pool in self._registry.pools.values():
            pool.wheel.hide(Job)
        task.add_done_callback(self._ended)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _drive(self) -> None:
        """Sleep until the next expiry, fire what is due, repeat.

        Volatile timers have their own wheel and always fire, in batches of
        ``_BATCH`` that the timer core's fire loop calls, the driver yielding
        to the loop between batches. Each pool's jobs
        wait in the pool's wheel, taken out only as far as its ready queue has
        room: a full pool leaves its due jobs in its wheel (backpressure, seen
        as lateness) while timers and the other pools carry on, and the pool
        wakes the driver when a worker frees a place.

        A callback's SystemExit or KeyboardInterrupt goes on to the loop's
        caller, as from asyncio's own callbacks; a new driver takes over, and
        fires the rest of that batch first (it is still due), should the loop run on.

        While a driver task exists (see :meth:`start`), the core is ``quiet``: the collector does not walk
        the timers' payloads (see ``TimerCore.quiet`` in ``native/_cwheel.pyx``);
        and each pool's wheel hides its waiting jobs from the collector
        (``TimerWheel.hide``): a million pending jobs are walked by no collection.
        """
        loop = asyncio.get_running_loop()
        ticks = self._ticks
        clock = ticks.clock
        timers = self._timers
        pools = list(self._registry.pools.values())
        counts = self._counts
        claim = None if self._store is None else self._store.claim
        hand_out = self._hand_out
        fire = timers.core.fire
        driver = asyncio.current_task()
        assert driver is not None
        while True:
            now = ticks.current()
            try:
                timers_fired = fire(now, _BATCH, loop, counts)
            except BaseException:  # only SystemExit and KeyboardInterrupt get out of the fire loop
                driver.add_done_callback(_consume)
                self.start()
                raise
            busy = timers_fired == _BATCH
            for pool in pools:
                room = pool.room()
                if not room:
                    continue
                limiter = pool.limiter
                if limiter is not None:  # a rate-limited pool: as many as its window allows now
                    room = min(room, limiter.room(now))
                    if not room:
                        continue
                jobs: list[Job] = pool.wheel.advance(now, min(room, _BATCH))
                if claim is None:
                    hand_out(jobs, pool, loop, now)
                elif jobs:  # a shared store: it hands on the jobs its claim won, once the claim commits
                    claim(jobs, functools.partial(hand_out, pool=pool, loop=loop, now=now))
                busy = busy or len(jobs) == room
            jobs = []  # all handed on: while it sleeps, the driver holds none of them (a finished job is let go)
            if busy or timers_fired:
                await asyncio.sleep(0)  # let the loop breathe between batches
                if busy:
                    continue
            nxt = self._next_expiry()
            wakeup = timers.nap(loop, nxt)
            alarm: Cancellable | None = None
            if nxt is not None:
                alarm = clock.call_at(ticks.time_of(nxt), timers.wake)
            try:
                await wakeup
            finally:
                timers.awake()
                if alarm is not None:
                    alarm.cancel()

    def _ended(self, driver: asyncio.Task[None]) -> None:
        """A driver ended: the collector walks the timers again, unless a new driver took over."""
        if driver is self.task:
            self._timers.core.quiet = False
            for pool in self._registry.pools.values():
                pool.wheel.hide(None)

    def _hand_out(self, jobs: list[Job], pool: Pool, loop: asyncio.AbstractEventLoop, now: int) -> None:
        """Due jobs to their pool's workers; a series starts its runs; a rate-limited pool counts what went."""
        fired = self._registry.fired
        counts = self._counts
        queued = pool.queued
        for job in jobs:
            try:
                if job._series is not None:
                    self._fire_series(job, pool)
                    continue
                if job.key is not None:
                    fired(job)
                pool.put_nowait(job)
                counts["fired"] += 1
            except Exception as exc:  # the engine's own failure, not the job's: the driver carries on
                self._undeliverable(job, exc, loop)
        limiter = pool.limiter
        if limiter is not None:  # what went to the workers: a claim refused none, a catch-up plan several
            limiter.took(now, pool.queued - queued)

    def _next_expiry(self) -> int | None:
        """The earliest tick with work: volatile timers, and jobs of pools with room (and rate to spare)."""
        ticks = [self._timers.wheel.next_expiry()]
        for pool in self._registry.pools.values():
            if not pool.room():
                continue
            tick = pool.wheel.next_expiry()
            if tick is not None and pool.limiter is not None:
                tick = max(tick, pool.limiter.free_at())
            ticks.append(tick)
        return min((tick for tick in ticks if tick is not None), default=None)
