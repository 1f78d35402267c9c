"""The composition root: ``Engine``, its public methods and lifecycle, and the wiring of its parts.

Each public method checks its arguments (``_limits``) and delegates: volatile
timers to :class:`~._timers.Timers`, names to :class:`~._registry.Registry`,
filing to :class:`~._placement.Placement`, attempts to
:class:`~._execution.Execution`, series to :class:`~._recurring.Recurring`,
the loop task to :class:`~._driver.Driver`, durability to a
:class:`~._store.Store` (the journal's, when given ``journal=``).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict, TypeVar, Unpack, overload

from ._clock import Clock, SystemClock
from ._cluster.config import Cluster
from ._driver import Driver
from ._errors import DuplicateKey, EngineClosed, NotStarted
from ._execution import Execution
from ._job import Job, new_job_id
from ._limits import (
    check_arguments,
    check_choice,
    check_methods,
    check_name,
    check_path,
    check_priority,
    check_seconds,
    check_when,
)
from ._placement import Placement
from ._recurrence import DEFAULT_MISFIRE, DEFAULT_MISFIRE_GRACE, DEFAULT_OVERLAP, Cron, Every
from ._recurring import Recurring
from ._registry import Registry
from ._retry import Retry
from ._shutdown import drain, report_unfinished
from ._stats import Stats
from ._store import Store
from ._ticks import Ticks
from ._timers import TimerCalls, Timers

if TYPE_CHECKING:
    from ._cluster.store import ClusterHandle, ClusterStore

__all__ = ["Engine"]


def _cluster_store(cluster: Cluster) -> ClusterStore:
    """Cluster mode's store; asyncpg is imported here, so the package imports without it."""
    try:
        from ._cluster.store import ClusterStore
    except ModuleNotFoundError as exc:
        if exc.name != "asyncpg":
            raise
        raise ImportError(
            "cluster=: cluster mode needs asyncpg; install it with: pip install 'chronowheel[postgres]'"
        ) from exc
    return ClusterStore(cluster)


def _run_id(series: Job, nominal: float) -> str:
    """A cluster's run id: its series and nominal time, so one period is one row, whichever engine starts it."""
    return f"{series.id}:{round(nominal * 1e6)}"


F = TypeVar("F", bound=Callable[..., Any])
IfExists = Literal["error", "keep", "replace"]

_IF_EXISTS: Final = ("error", "keep", "replace")


class ScheduleOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`Engine.schedule_nowait` (and so of :meth:`Engine.schedule`)."""

    args: tuple[Any, ...] | list[Any]
    kwargs: dict[str, Any] | None
    delay: float | None
    at: datetime | None
    every: Every | None
    cron: Cron | None
    key: str | None
    priority: int | None
    if_exists: IfExists
    overlap: str
    misfire: str
    misfire_grace: float


class Engine(TimerCalls):
    """Millions of timers in one event loop task.

    ``tick`` is the wheel's resolution in seconds: timers fire on the first
    tick at or after their deadline, never early. ``clock`` defaults to the
    system clocks; tests pass :class:`chronowheel.testing.VirtualClock`.

    With ``journal`` (a file path) every job is journaled and recovered by
    :meth:`start` (see docs/durability.md): ``fsync`` is when an awaited
    :meth:`schedule` returns (``"always"``: after fsync; ``"interval"``: after
    the write, fsynced every ``fsync_interval`` seconds; ``"never"``: after the
    write). ``on_corrupt="truncate"`` recovers from a damaged log by dropping
    everything from the damage on, instead of raising :class:`JournalCorrupt`;
    ``unknown_tasks="park"`` sets aside journaled jobs whose task is no longer
    registered (see :meth:`parked`) instead of raising :class:`UnknownTask`.

    With ``cluster`` (a :class:`Cluster`) the jobs live in a PostgreSQL
    database shared by many engines, each firing the jobs of the shards it
    owns (see docs/cluster.md); ``engine.cluster`` then reads and changes
    jobs cluster-wide. ``journal`` and ``cluster`` exclude each other.
    """

    def __init__(
        self,
        *,
        tick: float = 0.001,
        journal: str | None = None,
        fsync: Literal["always", "interval", "never"] = "always",
        clock: Clock | None = None,
        fsync_interval: float = 0.1,
        on_corrupt: Literal["error", "truncate"] = "error",
        unknown_tasks: Literal["error", "park"] = "error",
        cluster: Cluster | None = None,
    ) -> None:
        tick = check_seconds("tick", tick, low=1e-6, high=60)
        if cluster is not None and not isinstance(cluster, Cluster):
            raise TypeError(f"cluster must be a chronowheel.Cluster or None, got {type(cluster).__name__}")
        if cluster is not None and journal is not None:
            raise ValueError("pass journal= or cluster=, not both: in cluster mode the database keeps every job")
        # The path is checked here: start() would create ``<path>.lock`` before failing on it.
        path = None if journal is None else check_path("journal", journal)
        if clock is not None:
            check_methods("clock", clock, ("time", "wall", "call_at"))
        check_choice("fsync", fsync, ("always", "interval", "never"))
        fsync_interval = check_seconds("fsync_interval", fsync_interval, positive=True)
        check_choice("on_corrupt", on_corrupt, ("error", "truncate"))
        check_choice("unknown_tasks", unknown_tasks, ("error", "park"))
        self._store: Store | None = None  # None: in memory, nothing durable
        if path is not None:
            from ._journal.store import JournalStore  # POSIX only (flock, directory fsync): imported when asked for

            self._store = JournalStore(path, fsync, fsync_interval, on_corrupt=on_corrupt, unknown_tasks=unknown_tasks)
        self.cluster: ClusterHandle | None = None  # cluster mode: what only the database can answer
        cluster_store = None if cluster is None else _cluster_store(cluster)
        if cluster_store is not None:
            self._store = cluster_store
            self.cluster = cluster_store.handle
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._ticks = ticks = Ticks(self._clock, tick)
        self._timers = timers = Timers(ticks)
        super().__init__(timers)  # call_later, call_at
        self._registry = registry = Registry()
        self._stats = stats = Stats()
        self._placement = placement = Placement(ticks, timers, registry, self._store)
        rng = random.Random()
        self._recurring = recurring = Recurring(ticks, timers, registry, placement, stats, rng, owner=self)
        self._execution = execution = Execution(
            ticks, timers, registry, placement, stats, rng, run_finished=recurring.run_finished
        )
        self._driver = Driver(
            ticks, timers, registry, stats, self._store, recurring.fire, undeliverable=execution.undeliverable
        )
        if cluster_store is not None:
            from ._cluster.store import Host

            load = functools.partial(placement.restore, owner=self, dead=execution.dead, refile=recurring.refile)
            cluster_store.attach(Host(ticks.wall, load, placement.drop))
            recurring.run_id = _run_id
        self._state: Literal["new", "running", "stopped"] = "new"
        self.add_pool("default", concurrency=10)

    def time(self) -> float:
        """The engine clock, in seconds; ``call_at`` takes times on it."""
        return self._ticks.time()

    # -- tasks and pools -----------------------------------------------------------

    def add_pool(self, name: str, *, concurrency: int, max_queued: int | None = None) -> None:
        """Add a pool of ``concurrency`` workers; ``max_queued`` bounds its ready queue."""
        self._registry.add_pool(name, concurrency, max_queued, self._timers.wake, started=self._state != "new")

    @overload
    def task(self, name: F, /) -> F: ...

    @overload
    def task(
        self,
        name: str | None = None,
        *,
        pool: str = "default",
        priority: int = 0,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]: ...

    def task(
        self,
        name: str | Callable[..., Any] | None = None,
        *,
        pool: str = "default",
        priority: int = 0,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Register a function as a task: ``@engine.task`` or ``@engine.task(pool=...)``.

        The function is returned unchanged. Its name defaults to
        ``module:qualname``, which is what durable jobs refer to it by. A job
        that raises is retried per ``retry`` (none by default) and then goes to
        :meth:`dead_letters`; one that runs longer than ``timeout`` seconds is
        cancelled and counts as a failed attempt.
        """
        if callable(name):
            return self.task()(name)
        make = self._registry.task_maker(name, pool, priority, retry, timeout)

        def register(func: F) -> F:
            self._registry.register(func, make)
            return func

        return register

    # -- jobs --------------------------------------------------------------------

    async def schedule(self, task: str | Callable[..., Any], **options: Unpack[ScheduleOptions]) -> Job:
        """Schedule a job of a registered task; takes what :meth:`schedule_nowait` takes.

        With a journal, returns once the job is durable under the fsync policy.
        """
        job = self.schedule_nowait(task, **options)
        if self._store is not None:
            return await self._store.commit(job)
        return job

    def schedule_nowait(
        self,
        task: str | Callable[..., Any],
        *,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        delay: float | None = None,
        at: datetime | None = None,
        every: Every | None = None,
        cron: Cron | None = None,
        key: str | None = None,
        priority: int | None = None,
        if_exists: IfExists = "error",
        overlap: str = DEFAULT_OVERLAP,
        misfire: str = DEFAULT_MISFIRE,
        misfire_grace: float = DEFAULT_MISFIRE_GRACE,
    ) -> Job:
        """Schedule a job ``delay`` seconds from now, or ``at`` an aware datetime.

        With ``every`` or ``cron`` the job recurs (``delay``/``at``, if given,
        set the first run); ``overlap`` says what a run due while the previous
        one is still going does (``"skip"``, ``"queue"`` one, ``"allow"``), and
        ``misfire`` what runs missed by more than ``misfire_grace`` seconds do
        (``"fire_once"``, ``"fire_all"``, ``"skip"``); see docs/recurring.md.

        With a ``key``, ``if_exists`` says what happens when a job with that
        key is already pending: ``"error"`` raises :class:`DuplicateKey`,
        ``"keep"`` returns the pending job, ``"replace"`` cancels it first.

        With a journal the job is durable at the next group commit; ``args``
        and ``kwargs`` must be what JSON holds (tuples come back as lists).
        """
        self._timers.check_thread("schedule_nowait")
        if self._timers.closed:
            raise EngineClosed("the engine is stopped; it takes no more jobs")
        if self._store is not None and self._state == "new":
            self._not_started("schedule")
        spec = self._registry.spec(task)
        if args.__class__ is not tuple or kwargs is not None:  # the defaults need no check: the usual call
            check_arguments(args, kwargs)
        if key is not None:
            check_name("key", key, optional=True)
        if if_exists != "error":
            check_choice("if_exists", if_exists, _IF_EXISTS)
        priority = spec.priority if priority is None else check_priority("priority", priority)
        recurring = self._recurring
        if every is None and cron is None:
            series = None
            seconds, deadline = check_when(delay, at, self._ticks.wall), None
        else:
            first_in = None if delay is None and at is None else check_when(delay, at, self._ticks.wall)
            series = recurring.series_of(every, cron, first_in, overlap, misfire, misfire_grace)
            seconds, deadline = recurring.due(series.nominal, series)

        keyed = self._registry.keyed
        if key is not None and key in keyed:
            if if_exists == "keep":
                return keyed[key]
            if if_exists == "error":
                raise DuplicateKey(f"key: a job with key {key!r} is already pending")

        job = Job(new_job_id(), key, spec.name, tuple(args), dict(kwargs or {}), priority, 0.0, 0)
        job._engine = self
        job._series = series
        placement = self._placement
        placement.set_due(job, seconds, deadline)
        store = self._store
        # Checked before anything changes: args the store cannot keep raise here.
        token = store.check(job, if_exists) if store is not None else None
        if key is not None and key in keyed:
            self.cancel(key)
        if store is not None:
            store.recorded(job, token)
        placement.place(job)
        return job

    def _job_of(self, key_or_job: str | Job) -> Job | None:
        """The job if it waits in a wheel; refused once :meth:`stop` has begun, and for another engine's job."""
        if self._timers.closed:
            raise EngineClosed("the engine is stopped; its jobs can no longer be cancelled or moved")
        if self._store is not None and self._state == "new":
            self._not_started("cancel and reschedule")
        return self._registry.waiting(key_or_job, self)

    @staticmethod
    def _not_started(call: str) -> None:
        """A journaled engine's jobs are unknown until start() recovers them: none can be found or changed."""
        raise NotStarted(f"{call}: start the engine first; a journaled engine recovers its jobs in start()")

    def cancel(self, key_or_job: str | Job) -> bool:
        """Remove a pending job; True if it was pending.

        Once :meth:`stop` has begun this raises :class:`EngineClosed`, journal
        or not: a change the engine cannot carry out (or journal) is never
        reported as made.
        """
        self._timers.check_thread("cancel")
        job = self._job_of(key_or_job)
        if job is None or not self._placement.take_out(job):
            return False
        self._stats.counts["cancelled"] += 1
        return True

    def reschedule(self, key_or_job: str | Job, *, delay: float | None = None, at: datetime | None = None) -> bool:
        """Move a pending job's deadline; True if it was pending. Once :meth:`stop` has begun, :class:`EngineClosed`."""
        self._timers.check_thread("reschedule")
        job = self._job_of(key_or_job)
        seconds = check_when(delay, at, self._ticks.wall)
        return job is not None and self._placement.move(job, seconds)

    async def flush(self) -> None:
        """Make every journal record so far durable (written and fsynced), whatever the fsync policy."""
        if self._store is not None and self._state == "running":
            await self._store.flush()

    def parked(self) -> list[Job]:
        """Journaled jobs whose task is not registered (``unknown_tasks="park"``).

        They stay in the journal untouched and come back at the next start
        that has their task registered.
        """
        jobs = [] if self._store is None else self._store.parked()
        for job in jobs:
            job._engine = self  # a copy of this engine's record: cancel() says False, not "another engine's"
        return jobs

    def dead_letters(self) -> list[Job]:
        """Jobs that ran out of attempts, oldest first; :meth:`redrive` puts one back."""
        return list(self._execution.dead.values())

    def redrive(self, job: Job, *, delay: float = 0.0) -> Job:
        """Give a dead job a fresh set of attempts, ``delay`` seconds from now."""
        self._timers.check_thread("redrive")
        if not isinstance(job, Job):
            raise TypeError(f"job must be a Job, got {type(job).__name__}")
        dead = self._execution.dead
        if dead.get(job.id) is not job:
            raise ValueError(f"job: {job.id} is not in the dead letters (state {job.state!r})")
        if self._timers.closed:
            raise EngineClosed("the engine is stopped; it takes no more jobs")
        seconds = check_seconds("delay", delay)
        if job.key is not None and job.key in self._registry.keyed:
            raise DuplicateKey(f"job: another job with key {job.key!r} is pending")
        del dead[job.id]
        job._parent = None  # a redriven run of a series stands alone: the series moved on
        job.attempt = 0
        job.state = "pending"
        self._placement.file(job, seconds)
        return job

    def get(self, key: str) -> Job | None:
        """The pending job with this key, if any."""
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__}")
        if self._store is not None and self._state == "new":
            self._not_started("get")
        return self._registry.keyed.get(key)

    def __len__(self) -> int:
        """Timers and jobs waiting for their deadline (or, when due, for room in their pool)."""
        return len(self._timers.wheel) + sum(len(pool.wheel) for pool in self._registry.pools.values())

    def stats(self) -> dict[str, Any]:
        """Counts and firing lateness (seconds from deadline to start) percentiles."""
        pools = self._registry.pools.values()
        report = self._stats.report(
            pending=len(self),
            queued=sum(pool.queued for pool in pools),
            running=sum(pool.running for pool in pools),
            dead=len(self._execution.dead),
        )
        if self.cluster is not None:
            report["cluster"] = self.cluster.stats()
        return report

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Recover the journal's jobs, if there is a journal; start the driver and the pools' workers."""
        if self._state != "new":
            raise RuntimeError(f"start: the engine is {self._state}; an engine starts once")
        if self._store is not None:
            jobs = await self._store.restore(self._registry.tasks.keys())
            try:
                self._placement.restore(jobs, self, self._execution.dead, self._recurring.refile)
            except BaseException:
                await self._store.close()
                raise
        self._state = "running"
        self._timers.bind()
        for pool in self._registry.pools.values():
            pool.start(self._execution.run)
        self._driver.start()

    async def stop(self, grace: float = 10.0) -> None:
        """Take no more work; let running jobs finish for ``grace`` seconds, then cancel them.

        Timers keep firing during the grace period (job timeouts among them).
        A job that does not end within ``CANCEL_WAIT`` seconds (1) of its
        cancellation is given up on (logged; it runs on, unacknowledged), so
        ``stop()`` returns within ``grace`` plus that. A job that calls
        ``stop()`` itself is taken as finishing: not waited for, not cancelled,
        and acknowledged, or it would stop the engine again at every start.
        Jobs that were due but had not started, and jobs cancelled at the end
        of the grace period, are logged (see ``_shutdown.report_unfinished``).
        """
        grace = check_seconds("grace", grace)
        if self._state == "stopped":
            return
        self._timers.close()
        self._state = "stopped"
        queued, abandoned = await drain(list(self._registry.pools.values()), grace, self._clock, self._placement)
        await self._driver.stop()
        queued += (job for job in self._execution.interrupted if job.state == "pending")
        report_unfinished(queued, abandoned, durable=self._store is not None)
        if self._store is not None:
            await self._store.close()

    def __repr__(self) -> str:
        return f"<Engine {self._state} pending={len(self)} tick={1 / self._ticks.rate:g}s>"
