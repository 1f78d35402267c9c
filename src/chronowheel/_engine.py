"""The composition root: ``Engine``, its public methods and lifecycle, and the wiring of its parts.

Each public method checks its arguments (``_limits``) and delegates: volatile
timers to :class:`~._timers.Timers`, names to :class:`~._registry.Registry`,
filing to :class:`~._placement.Placement`, attempts to
:class:`~._execution.Execution`, series to :class:`~._recurring.Recurring`,
the loop task to :class:`~._driver.Driver`, durability to a
:class:`~._store.Store` (the journal's, when given ``journal=``).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import math
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict, TypeVar, Unpack, overload

from ._catalog import Catalog
from ._clock import Clock, SystemClock
from ._cluster.config import Cluster
from ._control import Control
from ._dependencies import Dependencies, parent_ids
from ._driver import Driver
from ._errors import DuplicateKey, EngineClosed, JobCancelled, NotStarted
from ._execution import Execution
from ._hooks import Event, Hooks, Middleware
from ._job import Job, id_pool, new_job_id
from ._limits import (
    MAX_DELAY,
    check_arguments,
    check_choice,
    check_delay,
    check_methods,
    check_name,
    check_path,
    check_priority,
    check_seconds,
    check_when,
)
from ._loops import running_loop
from ._placement import Placement
from ._rate import Limiter, Rate
from ._recurrence import DEFAULT_MISFIRE, DEFAULT_MISFIRE_GRACE, DEFAULT_OVERLAP, Cron, Every
from ._recurring import Recurring
from ._registry import Registry
from ._results import Results
from ._retry import Retry
from ._selection import JobPath
from ._shutdown import drain, report_unfinished
from ._stats import Stats
from ._store import Store
from ._threads import FromThread, Loop
from ._ticks import Ticks
from ._timers import Timers
from ._volatile import Handle

if TYPE_CHECKING:
    from ._cluster.handle import ClusterHandle
    from ._cluster.store import ClusterStore

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
_ceil: Final = math.ceil
_get_ident: Final = threading.get_ident


class ScheduleOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`Engine.schedule_nowait` (and so of :meth:`Engine.schedule`)."""

    args: tuple[Any, ...] | list[Any]
    kwargs: dict[str, Any] | None
    delay: float | timedelta | None
    at: datetime | None
    every: Every | None
    cron: Cron | None
    key: str | None
    priority: int | None
    if_exists: IfExists
    overlap: str
    misfire: str
    misfire_grace: float
    after: Job | str | list[Job | str] | tuple[Job | str, ...] | None


class Engine:
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

    ``result_ttl`` is how long (seconds) a finished job's outcome is kept:
    a success's return value for :meth:`result`, a cancellation's reason,
    and the job itself for :meth:`jobs`. With a journal the value is
    journaled too when JSON holds it (see docs/durability.md); 0 keeps none.

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
        result_ttl: float = 3600.0,
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
        result_ttl = check_seconds("result_ttl", result_ttl)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._store: Store | None = None  # None: in memory, nothing durable
        self._journal_figures: Callable[[], dict[str, Any]] | None = None
        durable = None  # a journal's: what the native job path needs to write a new job's record
        if path is not None:
            from ._journal.store import JournalStore  # POSIX only (flock, directory fsync): imported when asked for

            store = JournalStore(
                path, fsync, fsync_interval, on_corrupt=on_corrupt, unknown_tasks=unknown_tasks, wall=self._clock.wall
            )
            self._store, self._journal_figures = store, store.journal.figures
            durable = store.new_records()
        self.cluster: ClusterHandle | None = None  # cluster mode: what only the database can answer
        cluster_store = None if cluster is None else _cluster_store(cluster)
        if cluster_store is not None:
            from ._cluster.handle import ClusterHandle

            self._store = cluster_store
            self.cluster = ClusterHandle(cluster_store)
        self._ticks = ticks = Ticks(self._clock, tick)
        self._timers = timers = Timers(ticks)
        # The hot calls are the timer core's own methods: no Python frame in between.
        self.call_later = timers.core.call_later  # type: ignore[method-assign]
        self.call_at = timers.core.call_at  # type: ignore[method-assign]
        self._registry = registry = Registry()
        self._stats = stats = Stats()
        self._hooks = hooks = Hooks()
        self._placement = placement = Placement(ticks, timers, registry, self._store)
        self._dependencies = dependencies = Dependencies(ticks, placement, self._cancel_for)
        self._results = results = Results(result_ttl, ticks, timers, placement, dependencies, owner=self)
        rng = random.Random()
        self._recurring = recurring = Recurring(ticks, timers, registry, placement, stats, rng, owner=self)
        self._execution = execution = Execution(
            ticks,
            timers,
            registry,
            placement,
            stats,
            rng,
            run_finished=recurring.run_finished,
            hooks=hooks,
            results=results,
        )
        self._driver = Driver(
            ticks, timers, registry, stats, self._store, recurring.fire, undeliverable=execution.undeliverable
        )
        self._control = Control(ticks, registry, placement, execution.dead)
        self._catalog = Catalog(registry, (execution.dead.values, self.parked), results.finished, results.shown)
        if cluster_store is not None:
            from ._cluster.host import Host

            load = functools.partial(placement.restore, owner=self, dead=execution.dead, refile=recurring.refile)
            after = lambda seconds, callback: timers.file_timer(ticks.after(seconds), callback).cancel  # noqa: E731
            cluster_store.attach(
                Host(ticks.wall, load, placement.drop, placement.let_go, after, self._report_cancel, result_ttl)
            )
            recurring.run_id = _run_id
        self._state: Literal["new", "running", "stopped"] = "new"
        self._loop: Loop | None = None  # while running: the loop and its thread, for from_thread
        self.from_thread: Final = FromThread(
            lambda: self._loop, self.schedule, self.cancel, self.reschedule, self.call_later
        )
        """The job API for other threads: ``schedule``, ``cancel``, ``reschedule``, ``call_later``, as futures."""
        self._cut_short: asyncio.Future[None] | None = None  # set by stop(grace=0) while stop() drains
        self.add_pool("default", concurrency=10)
        native = self._store is None or durable is not None  # in memory, or a journal (not a cluster)
        kind = type(self)
        if JobPath is not None and native and kind.schedule_nowait is Engine.schedule_nowait:
            # The usual call is C (JobPath), no Python frame; every other call comes back to the methods.
            checked, scheduled = Engine.schedule_nowait.__get__(self), Engine.schedule.__get__(self)
            job_path = JobPath(
                self, checked, timers.core, timers, Job, id_pool, ticks.wall, registry, scheduled, durable
            )
            self.schedule_nowait = job_path.schedule_nowait  # type: ignore[method-assign]
            if kind.schedule is Engine.schedule:
                self.schedule = job_path.schedule  # type: ignore[method-assign]

    def time(self) -> float:
        """The engine clock, in seconds; ``call_at`` takes times on it."""
        return self._ticks.time()

    # -- volatile timers: an engine's own call_later and call_at are its timer core's, bound in __init__ ---------

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Handle:
        """Call ``callback(*args)`` after ``delay`` seconds (0 or less: due now), as ``loop.call_later``; not journaled.

        Returns a :class:`TimerHandle`: ``cancel()``, ``reschedule(delay)``, ``when()``, ``cancelled()``.
        """
        return self._timers.core.call_later(delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Handle:
        """Call ``callback(*args)`` when :meth:`time` reaches ``when``; never journaled.

        A ``when`` in the past is due at once; one more than ``MAX_DELAY``
        seconds ahead is refused, as that delay is by ``call_later``.
        """
        return self._timers.core.call_at(when, callback, *args)

    # -- tasks and pools -----------------------------------------------------------

    def add_pool(self, name: str, *, concurrency: int, max_queued: int | None = None, rate: Rate | None = None) -> None:
        """Add a pool of ``concurrency`` workers; ``max_queued`` bounds its ready queue.

        With a ``rate`` (``Rate(limit, per=seconds)``) at most ``limit`` of its
        jobs start in any ``per`` seconds; due jobs wait in the pool's wheel
        (not in a worker, not against their timeout), seen as lateness in
        :meth:`stats`.
        """
        if rate is not None and not isinstance(rate, Rate):
            raise TypeError(f"rate must be a Rate or None, got {type(rate).__name__}")
        limiter = None if rate is None else Limiter(rate, self._ticks.rate)
        started = self._state != "new"
        self._registry.add_pool(name, concurrency, max_queued, self._timers.wake, started=started, limiter=limiter)

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
        aliases: tuple[str, ...] = (),
    ) -> Callable[[F], F]: ...

    def task(
        self,
        name: str | Callable[..., Any] | None = None,
        *,
        pool: str = "default",
        priority: int = 0,
        retry: Retry | None = None,
        timeout: float | None = None,
        aliases: tuple[str, ...] = (),
    ) -> Any:
        """Register a function as a task: ``@engine.task`` or ``@engine.task(pool=...)``.

        The function is returned unchanged. Its name defaults to
        ``module:qualname``, which is what durable jobs refer to it by. A job
        that raises is retried per ``retry`` (none by default) and then goes to
        :meth:`dead_letters`; one that runs longer than ``timeout`` seconds is
        cancelled and counts as a failed attempt. ``aliases`` are other names
        it answers to: a task's old names, so that stored jobs that carry one
        still run after the function moved or was renamed (restored jobs take
        its name).
        """
        if callable(name):
            return self.task()(name)
        make = self._registry.task_maker(name, pool, priority, retry, timeout)
        also = self._registry.check_aliases(aliases)

        def register(func: F) -> F:
            self._registry.register(func, make, also)
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
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        every: Every | None = None,
        cron: Cron | None = None,
        key: str | None = None,
        priority: int | None = None,
        if_exists: IfExists = "error",
        overlap: str = DEFAULT_OVERLAP,
        misfire: str = DEFAULT_MISFIRE,
        misfire_grace: float = DEFAULT_MISFIRE_GRACE,
        after: Job | str | list[Job | str] | tuple[Job | str, ...] | None = None,
    ) -> Job:
        """Schedule a job ``delay`` seconds (or a ``timedelta``) from now, or ``at`` an aware datetime.

        ``args`` and ``kwargs`` must bind to the task's signature: a
        ``TypeError`` here, not when the job fires.

        With ``every`` or ``cron`` the job recurs (``delay``/``at``, if given,
        set the first run); ``overlap`` says what a run due while the previous
        one is still going does (``"skip"``, ``"queue"`` one, ``"allow"``), and
        ``misfire`` what runs missed by more than ``misfire_grace`` seconds do
        (``"fire_once"``, ``"fire_all"``, ``"skip"``); see docs/recurring.md.

        With a ``key``, ``if_exists`` says what happens when a job with that
        key is already pending: ``"error"`` raises :class:`DuplicateKey`,
        ``"keep"`` returns the pending job, ``"replace"`` cancels it first.

        With ``after`` (a job, a job id, or a list of them: one-shot jobs of
        this engine, unfinished or succeeded; in cluster mode any engine's,
        checked in the database when the job is written, so the awaited
        ``schedule()`` raises what is wrong with them) the job is due only
        once every one of them succeeded, and its own ``delay``/``at``
        (default: none) has passed; one
        that ends dead or cancelled cancels it (:class:`JobCancelled`, with
        the reason, from :meth:`result` and as ``job.error``).

        With a journal the job is durable at the next group commit; ``args``
        and ``kwargs`` must be what JSON holds (tuples come back as lists).
        """
        # The usual call (a registered task, a number of seconds, no key, no recurrence) runs inline, the checks
        # of _limits, Registry.spec, new_job_id, Placement.set_due and Placement.place included: two Python frames
        # (this one, Job.__init__) where it took eleven. Anything else takes the checked calls.
        loop_thread = self._timers.loop_thread
        if loop_thread is not None and _get_ident() != loop_thread:
            self._timers.check_thread("schedule_nowait")  # raises: the engine is not thread-safe
        if self._timers.closed:
            raise EngineClosed("the engine is stopped; it takes no more jobs")
        store = self._store
        if store is not None and self._state == "new":
            self._not_started("schedule")
        registry = self._registry
        try:
            spec = registry.tasks[task] if task.__class__ is str else registry.by_function[task]  # type: ignore[index]
        except (KeyError, TypeError):
            spec = registry.spec(task)  # raises the error that names what was passed
        if (args.__class__ is not tuple and args.__class__ is not list) or kwargs is not None:  # a list needs none
            check_arguments(args, kwargs)
        if kwargs is not None or len(args) not in spec.counts:  # a plain signature: a set lookup, not bind()
            spec.check_call(args, kwargs)
        if key is not None:
            check_name("key", key, optional=True)
        if if_exists != "error":
            check_choice("if_exists", if_exists, _IF_EXISTS)
        priority = spec.priority if priority is None else check_priority("priority", priority)
        ticks = self._ticks
        if delay is None and at is None and after is not None:
            delay = 0.0  # after its parents, at once
        if every is None and cron is None:
            series = None
            deadline: float | None = None
            kind = delay.__class__
            if at is None and (kind is float or kind is int) and 0 <= delay <= MAX_DELAY:  # type: ignore[operator]
                seconds: float = delay  # type: ignore[assignment]  # check_when's verdict, inlined
            else:
                seconds = check_when(delay, at, ticks.wall)
        else:
            first_in = None if delay is None and at is None else check_when(delay, at, ticks.wall)
            series = self._recurring.series_of(every, cron, first_in, overlap, misfire, misfire_grace)
            seconds, deadline = self._recurring.due(series.nominal, series)

        parents = None if after is None else self._parents(after, series)

        keyed = registry.keyed
        if key is not None and key in keyed:
            if if_exists == "keep":
                return keyed[key]
            if if_exists == "error":
                raise DuplicateKey(f"key: a job with key {key!r} is already pending")

        job_id = id_pool.pop() if id_pool else new_job_id()
        own_kwargs = {} if kwargs is None else dict(kwargs)
        placement = self._placement
        if deadline is None:  # Placement.set_due, inlined (checked seconds are within its bound)
            due_tick = _ceil((ticks.time() - ticks.epoch + seconds) * ticks.rate)
            job = Job(job_id, key, spec.name, tuple(args), own_kwargs, priority, ticks.wall() + seconds, due_tick)
        else:
            job = Job(job_id, key, spec.name, tuple(args), own_kwargs, priority, 0.0, 0)
            placement.set_due(job, seconds, deadline)
        job._engine = self
        job._series = series
        if parents is not None:
            job._after = parents
        # Checked before anything changes: args the store cannot keep raise here.
        token = store.check(job, if_exists) if store is not None else None
        if key is not None and key in keyed:
            self._cancel_for(keyed[key], f"replaced by job {job_id} (if_exists='replace')", own=False)
        if store is not None:
            store.recorded(job, token)
        if parents is None:  # Placement.place, inlined: into the pool's wheel, indexed by id and key
            tick = job._due_tick
            job._timer = registry.pools[spec.pool].wheel.add(tick, job, -priority)
            registry.jobs[job_id] = job
            if key is not None:
                keyed.setdefault(key, job)
            if tick < self._timers.sleep_tick:
                self._timers.wake()
        elif self.cluster is None:
            self._dependencies.hold(job, parents)
        # In cluster mode a child is held in the database (its parents may end on any engine): no copy here.
        return job

    def _parents(self, after: object, series: object) -> list[str] | None:
        """``after=``'s parents still to succeed, checked; None if there are none."""
        if series is not None:
            raise ValueError("after: a recurring job (every=, cron=) cannot wait for other jobs")
        if self.cluster is not None:  # every parent, checked by the store in the database
            ids: list[str] = []
            for parent_id, parent in parent_ids(after, None):
                if parent is not None and (parent._series is not None or parent._parent is not None):
                    raise ValueError(f"after: job {parent_id} is recurring; a job can only follow one-shot jobs")
                if parent_id not in ids:
                    ids.append(parent_id)
            return ids
        return self._dependencies.parents(after, self, self._unfinished, self._ended_as) or None

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
        return job is not None and self._cancel_for(job, "cancel() was called", own=False)

    def _cancel_for(self, job: Job, reason: str, *, own: bool = True) -> bool:
        """Cancel a waiting job, keeping the ``reason`` (``job.error``, :meth:`result`); its children follow."""
        results = self._results
        outcome = results.cancelled(job, reason)
        if not self._placement.take_out(job, outcome if results.ttl else None, own=own):
            return False
        self._report_cancel(job, reason)
        results.ended(outcome)  # after: the children it cancels are reported after it
        return True

    def _report_cancel(self, job: Job, reason: str) -> None:
        """A job ended cancelled (here, or in the cluster's database by this engine): counted, and the hooks told."""
        job.error = JobCancelled(job, reason)
        stats = self._stats
        stats.counts["cancelled"] += 1
        stats.tasks[job.task].counts["cancelled"] += 1
        if self._hooks.callbacks["cancelled"]:
            self._hooks.emit("cancelled", job)

    def reschedule(
        self, key_or_job: str | Job, *, delay: float | timedelta | None = None, at: datetime | None = None
    ) -> bool:
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

    def redrive(self, job: Job, *, delay: float | timedelta = 0.0) -> Job:
        """Give a dead job a fresh set of attempts, ``delay`` seconds from now."""
        self._timers.check_thread("redrive")
        if not isinstance(job, Job):
            raise TypeError(f"job must be a Job, got {type(job).__name__}")
        dead = self._execution.dead
        if dead.get(job.id) is not job:
            raise ValueError(f"job: {job.id} is not in the dead letters (state {job.state!r})")
        if self._timers.closed:
            raise EngineClosed("the engine is stopped; it takes no more jobs")
        seconds = check_delay("delay", delay)
        if job.key is not None and job.key in self._registry.keyed:
            raise DuplicateKey(f"job: another job with key {job.key!r} is pending")
        del dead[job.id]
        job._parent = None  # a redriven run of a series stands alone: the series moved on
        job.attempt = 0
        job.state = "pending"
        self._placement.file(job, seconds)
        return job

    async def result(self, job_or_id: Job | str, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (the API's)
        """Wait for a job to end and return what its task returned.

        A job that ended dead raises :class:`JobFailed` (its last error's
        type and message), a cancelled one :class:`JobCancelled` (with the
        reason), one unknown or finished more than ``result_ttl`` seconds ago
        ``KeyError``; ``timeout`` seconds without an end, ``TimeoutError``.
        """
        if isinstance(job_or_id, Job):
            job_id = job_or_id.id
        elif isinstance(job_or_id, str):
            job_id = job_or_id
        else:
            raise TypeError(f"job_or_id must be a Job or a job id (str), got {type(job_or_id).__name__}")
        if timeout is not None:
            timeout = check_seconds("timeout", timeout)
        if self._store is not None and self._state == "new":
            self._not_started("result")
        results, dead = self._results, self._execution.dead
        outcome = results.kept(job_id)
        if outcome is None and job_id not in dead and self.cluster is not None:  # the database knows, and waits
            outcome, dead = await self.cluster.ended(job_id, timeout)
        elif outcome is None and job_id not in dead and self._unfinished(job_id) is not None:
            if self._state == "stopped":
                raise EngineClosed(f"job {job_id}: the engine is stopped; the job did not end in it")
            outcome = await results.wait(job_id, timeout)
        return results.settle(job_id, outcome, dead)

    def _unfinished(self, job_id: str) -> Job | None:
        """The job if it is filed, held, queued or running (a series' runs are indexed from their start)."""
        return self._registry.jobs.get(job_id)

    def _ended_as(self, job_id: str) -> str | None:
        """How a finished job ended (``"succeeded"``, ``"cancelled"``, ``"dead"``), if the engine still knows it."""
        if job_id in self._execution.dead:
            return "dead"
        outcome = self._results.kept(job_id)
        return None if outcome is None else outcome.state

    def get(self, key: str) -> Job | None:
        """The unfinished job with this key, if any: waiting, paused, or fired and not yet ended (queued, running)."""
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__}")
        if self._store is not None and self._state == "new":
            self._not_started("get")
        registry = self._registry
        return registry.keyed.get(key) or registry.started.get(key)

    def jobs(
        self,
        *,
        state: str | None = None,
        task: str | Callable[..., Any] | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
        after: Job | None = None,
    ) -> list[Job]:
        """One page of the engine's jobs, ordered by deadline (ties by id).

        It sees jobs pending, queued, running, failed (waiting for a retry),
        paused, dead, parked, and recently finished (kept for ``result_ttl``).
        ``state``, ``task`` (a name or the registered function) and
        ``key_prefix`` filter; ``limit`` (1 to 10,000) bounds the page;
        ``after`` is the previous page's last job: a cursor, so jobs added or
        removed between pages never repeat or skip one that stayed. In cluster
        mode it reads this engine's memory only: ``await engine.cluster.jobs()``
        pages the whole cluster's, from the database.
        """
        if self._store is not None and self._state == "new":
            self._not_started("jobs")
        name = None if task is None else self._registry.spec(task).name
        return self._catalog.page(state, name, key_prefix, limit, after)

    def pause(self, key_or_job: str | Job) -> bool:
        """Keep a waiting job (one-shot or recurring) from firing until :meth:`resume`; True if it was waiting.

        It keeps its key and deadline, and with a journal stays paused across
        a restart. A job that fired (queued or running) cannot be paused. A
        job waiting for its parents (``after=``) can: once they all succeeded
        it still waits, for :meth:`resume`. So can a fixed-delay series whose
        run goes on: the run finishes, and the series stays paused at its next
        run. In cluster mode it acts on this engine's copy (the row is paused
        with the next flush; a held child through the ``Job`` its
        ``schedule()`` returned); ``await engine.cluster.pause(key)`` pauses
        it wherever it is.
        """
        self._timers.check_thread("pause")
        job = self._job_of(key_or_job)
        return job is not None and self._control.pause(job)

    def resume(self, key_or_job: str | Job) -> bool:
        """File a paused job again; True if it was paused.

        A deadline that passed while paused is due now; a recurring job's
        misfire policy decides what its missed runs do (docs/recurring.md).
        """
        self._timers.check_thread("resume")
        job = self._job_of(key_or_job)
        return job is not None and self._control.resume(job)

    def discard(self, job: Job) -> bool:
        """Remove a dead letter for good (and from the journal); True if it was one."""
        self._timers.check_thread("discard")
        if not isinstance(job, Job):
            raise TypeError(f"job must be a Job, got {type(job).__name__}")
        if self._store is not None and self._state == "new":
            self._not_started("discard")
        return self._control.discard(job)

    def purge_dead(self, before: datetime | None = None) -> int:
        """Discard the dead letters whose last attempt was due before ``before`` (an aware datetime; None: all).

        Returns how many were removed.
        """
        self._timers.check_thread("purge_dead")
        if before is not None:
            if not isinstance(before, datetime):
                raise TypeError(f"before must be an aware datetime or None, got {type(before).__name__}")
            if before.tzinfo is None or before.utcoffset() is None:
                raise ValueError(f"before must be an aware datetime (with a tzinfo), got {before!r}")
        if self._store is not None and self._state == "new":
            self._not_started("purge_dead")
        return self._control.purge(None if before is None else before.timestamp())

    def __len__(self) -> int:
        """Timers and jobs waiting for their deadline (or, when due, for room in their pool)."""
        return len(self._timers.wheel) + sum(len(pool.wheel) for pool in self._registry.pools.values())

    def stats(self) -> dict[str, Any]:
        """Counts and firing lateness (seconds from deadline to start) percentiles, and the figures per pool and task.

        See docs/observability.md for every key; ``chronowheel.metrics``
        exports them to Prometheus.
        """
        registry = self._registry
        report = self._stats.report(
            registry.pools.values(),
            self._execution.dead.values(),
            {name: spec.pool for name, spec in registry.tasks.items()},
            len(self._timers.wheel),
            self._journal_figures,
        )
        if self.cluster is not None:
            report["cluster"] = self.cluster.stats()
        return report

    # -- hooks and middleware --------------------------------------------------------

    def on(self, event: Event, callback: Callable[[Job], object]) -> None:
        """Call ``callback(job)`` (sync, or async: run as a task) at each ``event`` of every job.

        Events: ``"started"`` (an attempt begins), ``"succeeded"``,
        ``"failed"`` (an attempt failed and a retry follows), ``"dead"`` (out
        of attempts), ``"cancelled"``. What a callback raises is logged and
        changes nothing else.
        """
        self._hooks.on(event, callback)

    def add_middleware(self, mw: Middleware) -> None:
        """Wrap every attempt (async and sync tasks alike) in ``async def mw(job, call_next)``.

        ``await call_next()`` runs the attempt and returns the task's return
        value; what ``mw`` raises is the attempt's failure. The first added
        is the outermost; all run inside the task's timeout.
        """
        self._hooks.add_middleware(mw)

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
        loop = running_loop("start")
        if self._store is None:
            self._run(loop)
            return
        # A recovery allocates a few containers per job and frees almost none: the collector would traverse them
        # again and again (a third of the time). It runs once, after the driver's start has hidden the waiting
        # jobs in their wheels (docs/architecture.md, "The collector and the wheel"): then it walks none of them.
        collecting = gc.isenabled()
        gc.disable()
        try:
            jobs = await self._store.restore(self._registry.tasks.keys())
            try:
                tasks = self._registry.tasks
                for job in jobs:
                    job.task = tasks[job.task].name  # a job stored under an alias takes the task's name
                self._placement.restore(jobs, self, self._execution.dead, self._recurring.refile)
                self._results.restore(self._store.outcomes())
                failed = {"succeeded": None, "dead": "dead", "cancelled": "cancelled", None: None}
                self._dependencies.restore(jobs, self._registry.jobs, lambda parent: failed[self._ended_as(parent)])
            except BaseException:
                await self._store.close()
                raise
            del jobs
            self._run(loop)
        finally:
            if collecting:
                gc.enable()
                gc.collect()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        """The rest of :meth:`start`, once the jobs are back: the driver and the pools' workers."""
        self._state = "running"
        self._timers.bind(loop)
        self._loop = (loop, threading.get_ident())
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
        ``stop(grace=0)`` while another ``stop()`` waits out its grace period
        ends that period now (``chronowheel worker``'s second signal); any
        other call once stopping has begun returns at once.
        """
        grace = check_seconds("grace", grace)
        if self._state == "stopped":
            if grace == 0 and self._cut_short is not None and not self._cut_short.done():
                self._cut_short.set_result(None)  # a stop(grace=0) during a stop's grace period ends it now
            return
        self._timers.close()
        self._state = "stopped"
        self._cut_short = asyncio.get_running_loop().create_future()
        pools = list(self._registry.pools.values())
        queued, abandoned = await drain(pools, grace, self._clock, self._placement, self._cut_short)
        await self._driver.stop()
        self._results.close(durable=self._store is not None)
        queued += (job for job in self._execution.interrupted if job.state == "pending")
        report_unfinished(queued, abandoned, durable=self._store is not None)
        if self._store is not None:
            await self._store.close()
        self._loop = None

    def __repr__(self) -> str:
        return f"<Engine {self._state} pending={len(self)} tick={1 / self._ticks.rate:g}s>"
