"""Worker pools: N long-lived workers pulling due jobs from a bounded ready queue."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any

from ._ranked import RankedWheel
from ._selection import TimerWheel
from ._wheel_api import Wheel

if TYPE_CHECKING:
    from ._job import Job
    from ._rate import Limiter

__all__ = ["Pool"]

_Ready = tuple[int, int, int, "Job"]
_UNBOUNDED_BATCH = 1024  # due jobs moved per driver step into a pool without max_queued


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a replaced worker's exception as seen: it went on to the loop's caller already."""
    if not task.cancelled():
        task.exception()


class Pool:
    """A concurrency limit with a ready queue ordered by (priority, due tick, arrival).

    Higher priority first; equal priorities run in due order. The pool's jobs
    wait in its own wheel; the driver moves due ones to the ready queue only
    while it holds fewer than ``max_queued``, so overload leaves them in the
    wheel, not in an ever longer list.

    With a ``limiter`` (a rate limit) a due job leaves the wheel only for an
    idle worker, and only as the limiter allows: the ready queue never holds
    a job waiting for the rate, so the time a job is handed out is the time
    it starts, and what the limiter counts is starts. Its wheel hands out
    the due jobs by priority (a :class:`~chronowheel._ranked.RankedWheel`),
    so the highest-priority waiting job is the next to start, as without a rate.

    The ready queue is a heap and a line of idle workers' futures, not an
    ``asyncio.PriorityQueue``: that one's ``get`` and ``put_nowait`` took
    eleven Python frames per job (about 7,000 instructions), this takes a
    ``heappush`` and a ``heappop``, and a future only for a worker that finds
    the heap empty.
    """

    def __init__(
        self,
        name: str,
        concurrency: int,
        max_queued: int | None,
        on_room: Callable[[], None],
        limiter: Limiter | None = None,
    ) -> None:
        self.name = name
        self.limiter = limiter
        # This pool's jobs, until due and there is room for them; with a rate, due ones leave by priority.
        self.wheel: Wheel = TimerWheel() if limiter is None else RankedWheel(TimerWheel())
        self._on_room = on_room
        self._full = False
        self.concurrency = concurrency
        self.max_queued = max_queued
        # Unbounded here: room() enforces max_queued, so a catch-up burst of a
        # recurring job (at most max_catch_up runs) can never be refused.
        self._ready: list[_Ready] = []  # a heap
        self._idle: deque[asyncio.Future[None]] = deque()  # workers waiting for the heap to fill, first first
        self._arrival = itertools.count()
        self._run: Callable[[Job], Awaitable[None]] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._busy: dict[asyncio.Task[None], Job] = {}  # workers running a job, and the job
        self._owed: dict[asyncio.Task[None], asyncio.Future[Any]] = {}  # workers whose sync job's thread runs on
        self._closing = False

    @property
    def queued(self) -> int:
        return len(self._ready)

    @property
    def running(self) -> int:
        return len(self._busy)

    def __repr__(self) -> str:
        return f"<Pool {self.name!r} concurrency={self.concurrency} queued={self.queued} running={self.running}>"

    def running_jobs(self) -> list[tuple[asyncio.Task[None], Job]]:
        """The workers running a job now, and their jobs."""
        return list(self._busy.items())

    @property
    def workers(self) -> tuple[asyncio.Task[None], ...]:
        return tuple(self._workers)

    def room(self) -> int:
        """How many more jobs the ready queue takes now (a batch's worth when unbounded; none once closing)."""
        if self._closing:
            return 0
        if self.limiter is not None:  # idle workers (abandoned threads hold theirs), less jobs handed out already
            room = max(0, self.concurrency - len(self._busy) - len(self._owed) - len(self._ready))
        elif self.max_queued is None:
            return _UNBOUNDED_BATCH
        else:
            room = max(0, self.max_queued - len(self._ready))
        self._full = room == 0
        return room

    def put_nowait(self, job: Job) -> None:
        heappush(self._ready, (-job.priority, job._due_tick, next(self._arrival), job))
        if self._idle:
            self._wake()

    def _wake(self) -> None:
        """Wake the first idle worker still waiting (a cancelled one is passed over)."""
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def start(self, run: Callable[[Job], Awaitable[None]]) -> None:
        self._run = run
        self._workers = [self._worker(i) for i in range(self.concurrency)]

    def _worker(self, number: int) -> asyncio.Task[None]:
        return asyncio.create_task(self._work(), name=f"chronowheel pool {self.name!r} worker {number}")

    async def _work(self) -> None:
        me = asyncio.current_task()
        run = self._run
        assert me is not None
        assert run is not None
        ready = self._ready
        idle = self._idle
        loop = asyncio.get_running_loop()
        while not self._closing:
            while not ready:
                waiter = loop.create_future()
                idle.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled() and ready:
                        self._wake()  # woken, then cancelled before it ran: the job is another worker's
                    elif waiter in idle:
                        idle.remove(waiter)
                    raise
            job = heappop(ready)[3]
            if self._full:
                self._full = False
                self._on_room()  # the driver left due jobs in our wheel for want of room
            self._busy[me] = job
            try:
                await run(job)
            except (KeyboardInterrupt, SystemExit):
                # run() recorded the job; the exception goes on to the loop's caller, as asyncio
                # lets it. Should the loop run on, a new worker keeps the pool at strength.
                self._replace(me)
                raise
            except Exception as exc:  # run() records whatever a job raises: this is the engine's own failure
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"chronowheel: pool {self.name!r} failed to record job {job.id}", "exception": exc}
                )
            finally:
                del self._busy[me]
            thread = self._owed.pop(me, None)
            if thread is not None and not self._closing:
                await asyncio.wait((thread,))  # the slot stays taken until the abandoned thread returns
            if self._full:  # a rate-limited pool's room is its idle workers: this one is idle again
                self._full = False
                self._on_room()

    def _replace(self, worker: asyncio.Task[None]) -> None:
        worker.add_done_callback(_retrieve)
        if not self._closing:
            index = self._workers.index(worker)
            self._workers[index] = self._worker(index)

    def hold(self, thread: asyncio.Future[Any]) -> None:
        """The current worker's sync job was given up on while its thread runs on: no next job until it returns."""
        worker = asyncio.current_task()
        assert worker is not None
        self._owed[worker] = thread

    def close(self) -> None:
        """Take no more jobs: idle workers end now, busy ones once their job is over."""
        self._closing = True
        for worker in self._workers:
            if worker not in self._busy:
                worker.cancel()

    def drain(self) -> list[Job]:
        """The jobs that were queued and never started."""
        ready = self._ready
        left: list[Job] = []
        while ready:
            left.append(heappop(ready)[3])
        return left
