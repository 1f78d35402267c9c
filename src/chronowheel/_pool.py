"""Worker pools: N long-lived workers pulling due jobs from a bounded ready queue."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._selection import TimerWheel

if TYPE_CHECKING:
    from ._clock import Clock
    from ._job import Job

__all__ = ["Pool"]

_Ready = tuple[int, int, int, "Job"]
_UNBOUNDED_BATCH = 1024  # due jobs moved per driver step into a pool without max_queued


class Pool:
    """A concurrency limit with a ready queue ordered by (priority, due tick, arrival).

    Higher priority first; equal priorities run in due order. The pool's jobs
    wait in its own wheel; the driver moves due ones to the ready queue only
    while it holds fewer than ``max_queued``, so overload leaves them in the
    wheel, not in an ever longer list.
    """

    def __init__(self, name: str, concurrency: int, max_queued: int | None, on_room: Callable[[], None]) -> None:
        self.name = name
        self.wheel = TimerWheel()  # this pool's jobs, until due and there is room for them
        self._on_room = on_room
        self._full = False
        self.concurrency = concurrency
        self.max_queued = max_queued
        self.threads = anyio.CapacityLimiter(concurrency)
        # Unbounded here: room() enforces max_queued, so a catch-up burst of a
        # recurring job (at most max_catch_up runs) can never raise QueueFull.
        self._queue: asyncio.PriorityQueue[_Ready] = asyncio.PriorityQueue()
        self._arrival = itertools.count()
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> int:
        return len(self._busy)

    def __repr__(self) -> str:
        return f"<Pool {self.name!r} concurrency={self.concurrency} queued={self.queued} running={self.running}>"

    def room(self) -> int:
        """How many more jobs the ready queue takes now (a batch's worth when unbounded)."""
        if self.max_queued is None:
            return _UNBOUNDED_BATCH
        room = max(0, self.max_queued - self._queue.qsize())
        self._full = room == 0
        return room

    def put_nowait(self, job: Job) -> None:
        self._queue.put_nowait((-job.priority, job._due_tick, next(self._arrival), job))

    def start(self, run: Callable[[Job], Awaitable[None]]) -> None:
        self._workers = [
            asyncio.create_task(self._work(run), name=f"chronowheel pool {self.name!r} worker {i}")
            for i in range(self.concurrency)
        ]

    async def _work(self, run: Callable[[Job], Awaitable[None]]) -> None:
        me = asyncio.current_task()
        assert me is not None
        queue = self._queue
        while not self._closing:
            *_, job = await queue.get()
            if self._full:
                self._full = False
                self._on_room()  # the driver left due jobs in our wheel for want of room
            self._busy.add(me)
            try:
                await run(job)
            finally:
                self._busy.discard(me)

    async def stop(self, grace: float, clock: Clock) -> list[Job]:
        """Stop taking jobs; give running ones ``grace`` seconds, then cancel them.

        Returns the jobs that were queued and never started.
        """
        self._closing = True
        for worker in self._workers:
            if worker not in self._busy:
                worker.cancel()
        if self._busy and grace > 0:
            loop = asyncio.get_running_loop()
            expired: asyncio.Future[None] = loop.create_future()

            def expire() -> None:
                if not expired.done():
                    expired.set_result(None)

            timer = clock.call_at(clock.time() + grace, expire)
            finished = asyncio.gather(*self._busy, return_exceptions=True)
            either: list[asyncio.Future[Any]] = [finished, expired]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            timer.cancel()
            expired.cancel()
        for worker in self._busy:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        left: list[Job] = []
        while not self._queue.empty():
            *_, job = self._queue.get_nowait()
            left.append(job)
        return left
