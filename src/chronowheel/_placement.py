"""Filing a job: its deadline, its pool's wheel, its key, and what the store is told."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ._limits import MAX_AHEAD
from ._refill import refill as _refill_py
from ._registry import Registry
from ._selection import refill as _refill_native
from ._store import Gone, Store
from ._ticks import Ticks
from ._timers import Timers

if TYPE_CHECKING:
    from ._job import Job
    from ._outcome import Outcome

__all__ = ["Placement"]

_ceil: Final = math.ceil
_refill: Final = _refill_py if _refill_native is None else _refill_native


class Placement:
    """Puts jobs in their pool's wheel and hands the engine parts' job changes to the store (``None``: in memory).

    ``own`` changes are the engine's bookkeeping (an ack, a run, a retry, a
    dead letter): unlike a user's call, which gets the store's error, they
    carry on in memory when the store has failed. The store reported its
    failure when it happened, and a restart recovers from what it kept. This
    is the one place that rule lives.
    """

    def __init__(self, ticks: Ticks, timers: Timers, registry: Registry, store: Store | None) -> None:
        self._time = ticks.time
        self._wall = ticks.wall
        self._epoch = ticks.epoch
        self._rate = ticks.rate
        self._timers = timers
        self._registry = registry
        self.store = store

    def set_due(self, job: Job, seconds: float, deadline: float | None = None) -> None:
        """Due in ``seconds``; ``job.deadline`` is ``deadline`` when it is an exact instant (a recurring run's).

        Now plus ``seconds`` would be off by the time between two clock reads
        and by rounding: a cron job due at 09:00:00 would show 09:00:00.000010.
        Checked arguments keep ``seconds`` within ``MAX_AHEAD``.
        """
        if not 0 <= seconds <= MAX_AHEAD:  # only a journal from a laxer version gets here
            raise ValueError(f"job {job.id}: a deadline {seconds!r}s away is beyond what the engine can file")
        job._due_tick = _ceil((self._time() - self._epoch + seconds) * self._rate)  # Ticks.after, inlined
        job._due_wall = self._wall() + seconds if deadline is None else deadline

    def place(self, job: Job) -> None:
        """Put the job in its pool's wheel at its due tick, and index it by id and key."""
        tick = job._due_tick
        registry = self._registry
        job._timer = registry.pools[registry.tasks[job.task].pool].wheel.add(tick, job, -job.priority)  # pool_of
        registry.jobs[job.id] = job
        if job.key is not None:
            self._registry.keyed.setdefault(job.key, job)
        if tick < self._timers.sleep_tick:
            self._timers.wake()

    def keep(self, job: Job) -> None:
        """Index a job outside the wheels: paused, a series whose run goes on, or a series' run, queued."""
        self._registry.jobs[job.id] = job
        if job.key is not None:
            self._registry.keyed.setdefault(job.key, job)

    def file(self, job: Job, seconds: float, deadline: float | None = None, *, own: bool = False) -> None:
        """Record a job and put it in the wheel ``seconds`` from now: a retry, a redrive, a next run."""
        self.set_due(job, seconds, deadline)
        self.record(job, own=own)
        self.place(job)

    def drop(self, job: Job) -> None:
        """Take a waiting job out of the wheel without telling the store: another engine fires it (cluster mode)."""
        if self._registry.pool_of(job).wheel.cancel(job._timer):
            self.let_go(job)

    def let_go(self, job: Job) -> None:
        """A job out of the wheel that will not run here (a shared store's claim refused it): out of the indexes.

        Its key is free and no query finds it; the store still has it, for the engine that fires it.
        """
        registry = self._registry
        registry.release(job)
        registry.forget(job)

    def take_out(self, job: Job, kept: Outcome | None = None, *, own: bool = False) -> bool:
        """Cancel a waiting job: out of its wheel, its key released, the store told; False if it had fired."""
        if job.state == "running" or job._timer is None:
            pass  # a series waiting for its run to finish (marking it cancelled stops it), or not in a wheel
        elif not self._registry.pool_of(job).wheel.cancel(job._timer):
            return False
        job.state = "cancelled"
        self._registry.release(job)
        self.gone(job, "cancel", own=own, kept=kept)
        return True

    def move(self, job: Job, seconds: float) -> bool:
        """Move a waiting job's deadline to ``seconds`` from now; False if it had fired.

        A job out of the wheels (paused, or waiting for its parents) keeps the
        new deadline for when it is filed.
        """
        tick = _ceil((self._time() - self._epoch + seconds) * self._rate)
        if job._timer is not None and not self._registry.pool_of(job).wheel.reschedule(job._timer, tick):
            return False
        job._due_tick = tick
        job._due_wall = self._wall() + seconds
        if job._series is not None:
            job._series.nominal = job._due_wall
        if self.store is not None:
            self.store.moved(job)
        if tick < self._timers.sleep_tick:
            self._timers.wake()
        return True

    def record(self, job: Job, *, own: bool = False) -> None:
        """Hand the store a job's whole state (nothing in memory)."""
        store = self.store
        if store is None:
            return
        try:
            store.recorded(job)
        except OSError:
            if not own:
                raise

    def gone(self, job: Job, why: Gone, *, own: bool = False, kept: Outcome | None = None) -> None:
        """The job ran to success or was cancelled: out of the indexes, the store told (and what to keep of it)."""
        registry = self._registry
        registry.jobs.pop(job.id, None)  # Registry.forget, inlined: every success comes here
        if job.key is not None and registry.started.get(job.key) is job:
            del registry.started[job.key]
        store = self.store
        if store is None:
            return
        try:
            store.gone(job, why, kept)
        except OSError:
            if not own:
                raise

    def restore(
        self, jobs: list[Job], owner: object, dead: dict[str, Job], refile: Callable[[Job, float], None]
    ) -> None:
        """Put a store's restored jobs back: in the wheel, in the ``dead`` letters, or refiled (a series).

        A million jobs come back at a start: the waiting ones are filed a run
        at a time by :func:`._refill.refill` (in C where the native wheel is
        built: no Python call per job), the clocks read once, a sleeping
        driver woken once; each job it leaves is taken here, in order, and the
        run goes on after it.
        """
        now = self._wall()
        since_epoch = self._time() - self._epoch  # one reading for all: the deadlines are all from ``now``
        registry = self._registry
        keyed = registry.keyed
        indexed = registry.jobs
        wheels = {name: registry.pools[spec.pool].wheel for name, spec in registry.tasks.items()}
        index, count = 0, len(jobs)
        while (index := _refill(jobs, index, owner, now, since_epoch, self._rate, wheels, indexed, keyed)) < count:
            job = jobs[index]
            index += 1
            job._engine = owner
            state = job.state
            if state == "dead":
                dead[job.id] = job
            elif state == "paused" or job._after is not None:  # paused, or waiting for its parents
                self.keep(job)
            elif state == "running":  # a fixed-delay series waiting for its run to end
                series = job._series
                assert series is not None
                if not series.active:  # the run ended, its next time did not make it to the log
                    refile(job, series.recurrence.next_after(now, series.anchor))
                else:  # its run goes on: the key stays taken, as before the restart
                    self.keep(job)
            else:  # a waiting job the native loop leaves (a rate-limited pool's wheel, an int too big to read)
                _refill_py([job], 0, owner, now, since_epoch, self._rate, wheels, indexed, keyed)
        if jobs and self._timers.sleep_tick != -1:  # a sleeping driver works out its sleep again
            self._timers.wake()
