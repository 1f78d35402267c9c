"""The engine: the one place that knows about time and the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import os
import random
import threading
import traceback
from collections import deque
from collections.abc import Callable, Collection
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, TypeVar, overload

from ._clock import Cancellable, Clock, SystemClock
from ._errors import DuplicateKey, EngineClosed, NotStarted, UnknownTask
from ._job import CHECKED_HANDLE_METHODS, Job, TaskSpec, TimerHandle, new_job_id
from ._limits import MAX_AHEAD, MAX_DELAY, check_choice, check_int, check_name, check_priority, check_seconds
from ._pool import Pool
from ._recurrence import (
    DEFAULT_MISFIRE,
    DEFAULT_MISFIRE_GRACE,
    DEFAULT_OVERLAP,
    Cron,
    Every,
    check_misfire,
    check_overlap,
    jittered,
    plan_misfire,
)
from ._retry import Retry
from ._selection import TimerWheel
from ._series import Series
from ._store import Gone, Store, keep

__all__ = ["Engine"]

logger = logging.getLogger("chronowheel")
_ceil = math.ceil

F = TypeVar("F", bound=Callable[..., Any])
IfExists = Literal["error", "keep", "replace"]

_IF_EXISTS: Final = ("error", "keep", "replace")
_BATCH: Final = 1024  # due items handed out per driver step before yielding to the loop
_LATENESS_SAMPLES: Final = 4096
_IDLE: Final = 1 << 62  # sleep target while nothing is scheduled: any timer wakes the driver
_CANCEL_WAIT: Final = 1.0  # seconds stop() waits for cancelled jobs to end before it gives up on them


_CLOCK_METHODS: Final = ("time", "wall", "call_at")


def _in_thread(
    call: Callable[[], object], loop: asyncio.AbstractEventLoop, done: asyncio.Future[tuple[bool, Any]]
) -> None:
    """A sync job's thread: run it and hand the loop its outcome, a value or whatever it raised."""
    try:
        outcome = (True, call())
    except BaseException as exc:  # the job's to report, whatever it is: this thread only carries it
        outcome = (False, exc)
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this job any more
        loop.call_soon_threadsafe(done.set_result, outcome)


def _consume(task: asyncio.Task[None]) -> None:
    """Mark a replaced driver's exception as seen: it went on to the loop's caller already."""
    if not task.cancelled():
        task.exception()


def _ids(jobs: list[Job]) -> str:
    return ", ".join(job.id for job in jobs[:10]) + (" ..." if len(jobs) > 10 else "")


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
    ) -> None:
        tick = check_seconds("tick", tick, low=1e-6, high=60)
        path = None if journal is None else self._journal_path(journal)
        if clock is not None and (
            isinstance(clock, type) or not all(callable(getattr(clock, name, None)) for name in _CLOCK_METHODS)
        ):
            raise TypeError(f"clock must have time(), wall() and call_at() methods, got {type(clock).__name__}")
        check_choice("fsync", fsync, ("always", "interval", "never"))
        fsync_interval = check_seconds("fsync_interval", fsync_interval, positive=True)
        check_choice("on_corrupt", on_corrupt, ("error", "truncate"))
        check_choice("unknown_tasks", unknown_tasks, ("error", "park"))
        self._store: Store | None = None  # None: in memory, nothing durable
        if path is not None:
            from .journal.store import JournalStore  # POSIX only (flock, directory fsync): imported when asked for

            self._store = JournalStore(path, fsync, fsync_interval, on_corrupt=on_corrupt, unknown_tasks=unknown_tasks)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._time = self._clock.time
        self._rate = 1.0 / tick
        self._epoch = self._clock.time()
        self._wheel = TimerWheel()
        self._handle_type: type[TimerHandle] = type("TimerHandle", (TimerHandle,), {"__slots__": (), "_engine": self})
        self._tasks: dict[str, TaskSpec] = {}
        self._task_names: dict[Callable[..., Any], str] = {}
        self._pools: dict[str, Pool] = {}
        self._keyed: dict[str, Job] = {}
        self._state: Literal["new", "running", "stopped"] = "new"
        self._closed = False
        self._driver: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._sleep_tick = -1  # tick the driver sleeps until; -1 while it is awake or not started
        self._counts = dict.fromkeys(("fired", "succeeded", "failed", "retried", "cancelled", "skipped"), 0)
        self._dead: dict[str, Job] = {}
        self._interrupted: list[Job] = []
        self._rng = random.Random()
        self._lateness: deque[float] = deque(maxlen=_LATENESS_SAMPLES)
        # Not thread-safe: calls come from the loop's thread. The hot calls check that only while
        # _guard is up (stopped, or sync jobs running in threads), so they cost nothing more otherwise.
        self._loop_thread: int | None = None
        self._threads = 0  # sync jobs' threads running
        self._guard = False
        self.add_pool("default", concurrency=10)

    @staticmethod
    def _journal_path(journal: object) -> str:
        """The journal's path, checked here: start() would create ``<path>.lock`` before failing on it."""
        if not isinstance(journal, str | os.PathLike):
            raise TypeError(f"journal must be a file path or None, got {type(journal).__name__}")
        path = os.fspath(journal)
        if not isinstance(path, str):
            raise TypeError(f"journal must be a str path, got a {type(path).__name__} path")
        if not path or path.endswith(os.sep) or os.path.isdir(path):
            raise ValueError(f"journal must be the path of a file (it need not exist yet), got {path!r}")
        return path

    # -- time ------------------------------------------------------------------

    def time(self) -> float:
        """The engine clock, in seconds; ``call_at`` takes times on it."""
        return self._time()

    def _current_tick(self) -> int:
        return int((self._time() - self._epoch) * self._rate)

    def _time_of(self, tick: int) -> float:
        """The earliest clock time that reads as ``tick``, float rounding included."""
        when = self._epoch + tick / self._rate
        while int((when - self._epoch) * self._rate) < tick:
            when = math.nextafter(when, math.inf)
        return when

    # -- volatile timers ---------------------------------------------------------

    def _tick_after(self, delay: float) -> int:
        """The deadline tick ``delay`` seconds from now, checking ``delay`` on the way.

        The checks cost nothing when they pass: a bool is refused by two
        identity tests, anything that is not a number fails the comparison
        or the arithmetic (a ``Decimal`` only the latter, a NaN ``Decimal``
        the former with an ArithmeticError), all inside one ``try``.
        """
        try:
            if not 0 <= delay <= MAX_DELAY:
                raise ValueError(f"delay must be a number of seconds from 0 to {MAX_DELAY:g}, got {delay!r}")
            if delay is True or delay is False:
                raise TypeError
            return _ceil((self._time() - self._epoch + delay) * self._rate)
        except (TypeError, ArithmeticError):
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}") from None

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` after ``delay`` seconds; never journaled."""
        # _tick_after and _add_timer, inlined: this is the call a million timers make.
        try:
            if not 0 <= delay <= MAX_DELAY:
                raise ValueError(f"delay must be a number of seconds from 0 to {MAX_DELAY:g}, got {delay!r}")
            if delay is True or delay is False:
                raise TypeError
            tick = _ceil((self._time() - self._epoch + delay) * self._rate)
        except (TypeError, ArithmeticError):
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}") from None
        if self._guard:  # stopped, or sync jobs run in threads: one check for both rare cases
            self._check_caller("call_later")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        # The payload is the callback itself when there are no args: nothing allocated.
        handle = self._handle_type(self._wheel.add(tick, (callback, args) if args else callback))
        if tick < self._sleep_tick:
            self._wake()
        return handle

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` when :meth:`time` reaches ``when``; never journaled.

        A ``when`` in the past is due at once; one more than ``MAX_DELAY``
        seconds ahead is refused, as that delay is by ``call_later``.
        """
        try:
            if not -math.inf < when <= self._time() + MAX_DELAY:
                raise ValueError(
                    f"when must be a finite time on the engine clock at most {MAX_DELAY:g}s ahead, got {when!r}"
                )
            if when is True or when is False:
                raise TypeError
            # Far in the past is due at once, as at the engine's first tick: no tick count overflows.
            tick = _ceil((when - self._epoch) * self._rate) if when > self._epoch else 0
        except (TypeError, ArithmeticError):
            raise TypeError(f"when must be a number, got {type(when).__name__}") from None
        return self._add_timer(tick, callback, args)

    def _add_timer(self, tick: int, callback: Callable[..., object], args: tuple[Any, ...]) -> TimerHandle:
        if self._guard:
            self._check_caller("call_at")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        # The payload is the callback itself when there are no args: nothing allocated.
        return self._file_timer(tick, (callback, args) if args else callback)

    def _file_timer(self, tick: int, payload: Any) -> TimerHandle:
        """Put a volatile timer in the wheel; the engine's own (job timeouts) come here directly."""
        handle = self._handle_type(self._wheel.add(tick, payload))
        if tick < self._sleep_tick:
            self._wake()
        return handle

    def _check_caller(self, call: str) -> None:
        """Refuse a timer from another thread than the loop's, or once the engine is stopped."""
        self._check_thread(call)
        if self._closed:
            raise EngineClosed("the engine is stopped; it takes no more timers")

    def _check_thread(self, call: str) -> None:
        """Refuse a call from another thread (a sync job's): the engine is not thread-safe."""
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            raise RuntimeError(
                f"{call}: called from thread {threading.current_thread().name!r}, but the engine is not "
                "thread-safe and runs on its event loop's thread; from another thread, pass the call to "
                "loop.call_soon_threadsafe(...)"
            )

    # -- tasks and pools -----------------------------------------------------------

    def add_pool(self, name: str, *, concurrency: int, max_queued: int | None = None) -> None:
        """Add a pool of ``concurrency`` workers; ``max_queued`` bounds its ready queue."""
        check_name("name", name)
        if name in self._pools:
            raise ValueError(f"name: a pool {name!r} already exists")
        check_int("concurrency", concurrency)
        check_int("max_queued", max_queued, optional=True)
        if self._state != "new":
            raise RuntimeError("add_pool: pools are added before the engine starts")
        self._pools[name] = Pool(name, concurrency, max_queued, on_room=self._wake)

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
        check_name("name", name, optional=True)
        if pool not in self._pools:
            raise ValueError(f"pool: no pool named {pool!r}; add it with add_pool() first")
        check_priority("priority", priority)
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a Retry or None, got {type(retry).__name__}")
        if timeout is not None:
            timeout = check_seconds("timeout", timeout, positive=True)

        def register(func: F) -> F:
            if not callable(func):
                raise TypeError(f"task: expected a function, got {type(func).__name__}")
            task_name = name or f"{func.__module__}:{func.__qualname__}"
            if task_name in self._tasks and self._tasks[task_name].func is not func:
                raise ValueError(f"name: a different function is already registered as {task_name!r}")
            self._tasks[task_name] = TaskSpec(task_name, func, pool, priority, retry, timeout)
            self._task_names[func] = task_name
            return func

        return register

    def _spec(self, task: str | Callable[..., Any]) -> TaskSpec:
        if isinstance(task, str):
            spec = self._tasks.get(task)
            if spec is None:
                raise UnknownTask(f"task: no task registered as {task!r}")
            return spec
        if not callable(task):
            raise TypeError(f"task must be a registered function or its name, got {type(task).__name__}")
        try:
            return self._tasks[self._task_names[task]]
        except (KeyError, TypeError):
            raise UnknownTask(
                f"task: {getattr(task, '__qualname__', task)!r} is not registered; decorate it with @engine.task"
            ) from None

    # -- jobs --------------------------------------------------------------------

    async def schedule(
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
        """Schedule a job of a registered task; see :meth:`schedule_nowait`.

        With a journal, returns once the job is durable under the fsync policy.
        """
        job = self.schedule_nowait(
            task,
            args=args,
            kwargs=kwargs,
            delay=delay,
            at=at,
            every=every,
            cron=cron,
            key=key,
            priority=priority,
            if_exists=if_exists,
            overlap=overlap,
            misfire=misfire,
            misfire_grace=misfire_grace,
        )
        if self._store is not None:
            await self._store.commit()
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
        self._check_thread("schedule_nowait")
        if self._closed:
            raise EngineClosed("the engine is stopped; it takes no more jobs")
        if self._store is not None and self._state == "new":
            raise NotStarted("schedule: start the engine first; a journaled engine recovers its jobs in start()")
        spec = self._spec(task)
        if not isinstance(args, tuple | list):
            raise TypeError(f"args must be a tuple or list, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict or None, got {type(kwargs).__name__}")
        for name in kwargs or ():
            if not isinstance(name, str):
                raise TypeError(f"kwargs keys must be str (they are keyword argument names), got {name!r}")
        check_name("key", key, optional=True)
        check_choice("if_exists", if_exists, _IF_EXISTS)
        priority = spec.priority if priority is None else check_priority("priority", priority)
        series = self._series_of(every, cron, delay, at, overlap, misfire, misfire_grace)
        seconds, deadline = (self._delay_of(delay, at), None) if series is None else self._due(series.nominal, series)

        if key is not None and key in self._keyed:
            if if_exists == "keep":
                return self._keyed[key]
            if if_exists == "error":
                raise DuplicateKey(f"key: a job with key {key!r} is already pending")

        job = Job(new_job_id(), key, spec.name, tuple(args), dict(kwargs or {}), priority, 0.0, 0)
        job._engine = self
        job._series = series
        self._set_due(job, seconds, deadline)
        store = self._store
        # Checked before anything changes: args the store cannot keep raise here.
        token = store.check(job) if store is not None else None
        if key is not None and key in self._keyed:
            self.cancel(key)
        if store is not None:
            store.recorded(job, token)
        self._place(job)
        return job

    def _series_of(
        self,
        every: Every | None,
        cron: Cron | None,
        delay: float | None,
        at: datetime | None,
        overlap: str,
        misfire: str,
        misfire_grace: float,
    ) -> Series | None:
        """The series for ``every=`` / ``cron=``, its first run set; None for a one-shot job."""
        if every is None and cron is None:
            return None
        if every is not None and cron is not None:
            raise ValueError("pass at most one of every= and cron=")
        if every is not None and not isinstance(every, Every):
            raise TypeError(f"every must be an Every, got {type(every).__name__}")
        if cron is not None and not isinstance(cron, Cron):
            raise TypeError(f"cron must be a Cron, got {type(cron).__name__}")
        recurrence: Every | Cron = every if every is not None else cron  # type: ignore[assignment]
        argument = "every" if every is not None else "cron"
        if isinstance(recurrence, Every) and recurrence.seconds * self._rate < 1:
            raise ValueError(
                f"every: a period of {recurrence.seconds!r}s is shorter than this engine's tick ({1 / self._rate:g}s)"
            )
        if recurrence.jitter > MAX_DELAY:  # Every checks its own; a Cron's is checked here
            raise ValueError(f"{argument}: jitter must be at most {MAX_DELAY:g}s, got {recurrence.jitter!r}")
        check_overlap(overlap)
        check_misfire(misfire)
        grace = check_seconds("misfire_grace", misfire_grace)
        now = self._clock.wall()
        if delay is None and at is None:
            first = recurrence.next_after(now, now)
        else:
            first = now + self._delay_of(delay, at)
        return Series(recurrence, first, first, misfire, grace, overlap)

    def _due(self, nominal: float, series: Series) -> tuple[float, float]:
        """Seconds from now to a run's deadline, and the deadline: its nominal time plus the jitter drawn."""
        deadline = jittered(nominal, series.recurrence.jitter, self._rng)
        return max(0.0, deadline - self._clock.wall()), deadline

    def _file_job(self, job: Job, seconds: float, deadline: float | None = None, *, own: bool = False) -> None:
        """Journal a job and put it in the wheel ``seconds`` from now: a retry, a redrive, a next run."""
        self._set_due(job, seconds, deadline)
        self._record(job, own=own)
        self._place(job)

    def _set_due(self, job: Job, seconds: float, deadline: float | None = None) -> None:
        """Due in ``seconds``; ``job.deadline`` is ``deadline`` when it is an exact instant (a recurring run's).

        Now plus ``seconds`` would be off by the time between two clock reads
        and by rounding: a cron job due at 09:00:00 would show 09:00:00.000010.
        Checked arguments keep ``seconds`` within ``MAX_AHEAD``.
        """
        if not 0 <= seconds <= MAX_AHEAD:  # only a journal from a laxer version gets here
            raise ValueError(f"job {job.id}: a deadline {seconds!r}s away is beyond what the engine can file")
        job._due_tick = _ceil((self._time() - self._epoch + seconds) * self._rate)
        job._due_wall = self._clock.wall() + seconds if deadline is None else deadline

    def _place(self, job: Job) -> None:
        tick = job._due_tick
        job._timer = self._wheel_of(job).add(tick, job, -job.priority)
        if job.key is not None:
            self._keyed.setdefault(job.key, job)
        if tick < self._sleep_tick:
            self._wake()

    # -- the store ------------------------------------------------------------------

    def _record(self, job: Job, *, own: bool = False) -> None:
        """Hand the store a job's whole state (nothing in memory); ``own`` bookkeeping: see :func:`keep`."""
        store = self._store
        if store is None:
            return
        if own:
            keep(store.recorded, job)
        else:
            store.recorded(job)

    def _gone(self, job: Job, why: Gone, *, own: bool = False) -> None:
        """Tell the store a job ran to success or was cancelled: it is no longer live."""
        store = self._store
        if store is None:
            return
        if own:
            keep(store.gone, job, why)
        else:
            store.gone(job, why)

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

    def _wheel_of(self, job: Job) -> TimerWheel:
        return self._pools[self._tasks[job.task].pool].wheel

    def _delay_of(self, delay: float | None, at: datetime | None) -> float:
        if (delay is None) == (at is None):
            raise ValueError("pass exactly one of delay= and at=")
        if delay is not None:
            return check_seconds("delay", delay)
        if not isinstance(at, datetime):
            raise TypeError(f"at must be an aware datetime, got {type(at).__name__}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"at must be an aware datetime (with tzinfo), got naive {at!r}")
        seconds = at.timestamp() - self._clock.wall()
        if seconds > MAX_DELAY:
            raise ValueError(f"at must be at most {MAX_DELAY:g}s from now, got {at.isoformat()}")
        return max(0.0, seconds)

    def _job_of(self, key_or_job: str | Job) -> Job | None:
        """The job if it waits in the wheel: pending, or failed and waiting for its retry.

        A Job of another engine is refused: its wheel handle would name one of
        this engine's own jobs. So is any change once :meth:`stop` has begun.
        """
        if self._closed:
            raise EngineClosed("the engine is stopped; its jobs can no longer be cancelled or moved")
        if isinstance(key_or_job, Job):
            if key_or_job._engine is not self:
                raise ValueError(f"key_or_job: job {key_or_job.id} is not a job of this engine")
            waiting = key_or_job.state in ("pending", "failed")
            between_runs = key_or_job._series is not None and key_or_job.state == "running"
            return key_or_job if waiting or between_runs else None
        if isinstance(key_or_job, str):
            return self._keyed.get(key_or_job)
        raise TypeError(f"key_or_job must be a key (str) or a Job, got {type(key_or_job).__name__}")

    def cancel(self, key_or_job: str | Job) -> bool:
        """Remove a pending job; True if it was pending.

        Once :meth:`stop` has begun this raises :class:`EngineClosed`, journal
        or not: a change the engine cannot carry out (or journal) is never
        reported as made.
        """
        self._check_thread("cancel")
        job = self._job_of(key_or_job)
        if job is None:
            return False
        if job.state == "running":
            pass  # a series waiting for its run to finish: marking it cancelled stops it
        elif not self._wheel_of(job).cancel(job._timer):
            return False
        job.state = "cancelled"
        self._counts["cancelled"] += 1
        if job.key is not None and self._keyed.get(job.key) is job:
            del self._keyed[job.key]
        self._gone(job, "cancel")
        return True

    def reschedule(self, key_or_job: str | Job, *, delay: float | None = None, at: datetime | None = None) -> bool:
        """Move a pending job's deadline; True if it was pending. Once :meth:`stop` has begun, :class:`EngineClosed`."""
        self._check_thread("reschedule")
        job = self._job_of(key_or_job)
        seconds = self._delay_of(delay, at)
        if job is None:
            return False
        tick = self._tick_after(seconds)
        if not self._wheel_of(job).reschedule(job._timer, tick):
            return False
        job._due_tick = tick
        job._due_wall = self._clock.wall() + seconds
        if job._series is not None:
            job._series.nominal = job._due_wall
        if self._store is not None:
            self._store.moved(job)
        if tick < self._sleep_tick:
            self._wake()
        return True

    def dead_letters(self) -> list[Job]:
        """Jobs that ran out of attempts, oldest first; :meth:`redrive` puts one back."""
        return list(self._dead.values())

    def redrive(self, job: Job, *, delay: float = 0.0) -> Job:
        """Give a dead job a fresh set of attempts, ``delay`` seconds from now."""
        self._check_thread("redrive")
        if not isinstance(job, Job):
            raise TypeError(f"job must be a Job, got {type(job).__name__}")
        if self._dead.get(job.id) is not job:
            raise ValueError(f"job: {job.id} is not in the dead letters (state {job.state!r})")
        if self._closed:
            raise EngineClosed("the engine is stopped; it takes no more jobs")
        seconds = check_seconds("delay", delay)
        if job.key is not None and job.key in self._keyed:
            raise DuplicateKey(f"job: another job with key {job.key!r} is pending")
        del self._dead[job.id]
        job._parent = None  # a redriven run of a series stands alone: the series moved on
        job.attempt = 0
        job.state = "pending"
        self._file_job(job, seconds)
        return job

    def get(self, key: str) -> Job | None:
        """The pending job with this key, if any."""
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__}")
        return self._keyed.get(key)

    def __len__(self) -> int:
        """Timers and jobs waiting for their deadline (or, when due, for room in their pool)."""
        return len(self._wheel) + sum(len(pool.wheel) for pool in self._pools.values())

    def stats(self) -> dict[str, Any]:
        """Counts and firing lateness (seconds from deadline to start) percentiles."""
        samples = sorted(self._lateness)

        def percentile(p: float) -> float:
            return samples[min(len(samples) - 1, int(p * len(samples)))] if samples else 0.0

        return {
            "pending": len(self),
            "queued": sum(pool.queued for pool in self._pools.values()),
            "running": sum(pool.running for pool in self._pools.values()),
            **self._counts,
            "dead": len(self._dead),
            "lateness": {"p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99)},
        }

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
            jobs = await self._store.restore(self._tasks.keys())
            try:
                self._place_restored(jobs)
            except BaseException:
                await self._store.close()
                raise
        self._state = "running"
        self._loop_thread = threading.get_ident()
        for pool in self._pools.values():
            pool.start(self._run_job)
        self._driver = asyncio.create_task(self._drive([]), name="chronowheel driver")

    def _place_restored(self, jobs: list[Job]) -> None:
        """Put the store's live jobs back: in the wheel, or in the dead letters."""
        now = self._clock.wall()
        for job in jobs:
            job._engine = self
            series = job._series
            if job.state == "dead":
                self._dead[job.id] = job
            elif job.state == "running":  # a fixed-delay series waiting for its run to end
                assert series is not None
                if not series.active:  # the run ended, its next time did not make it to the log
                    self._refile(job, series.recurrence.next_after(now, series.anchor))
                elif job.key is not None:  # its run goes on: the key stays taken, as before the restart
                    self._keyed.setdefault(job.key, job)
            else:
                deadline = job._due_wall  # overdue jobs are due now; recurring ones apply their misfire policy
                # A record's deadline is within TIME_MAX; one further out than the wheel reaches from now (only
                # a hand-made record, or a clock set back by ages) fires at the wheel's farthest, 1e12 s out.
                self._set_due(job, min(max(0.0, deadline - now), MAX_AHEAD))
                job._due_wall = deadline
                self._place(job)

    async def stop(self, grace: float = 10.0) -> None:
        """Take no more work; let running jobs finish for ``grace`` seconds, then cancel them.

        Timers keep firing during the grace period (job timeouts among them).
        A job that does not end within ``_CANCEL_WAIT`` seconds of its
        cancellation is given up on (logged; it runs on, unacknowledged), so
        ``stop()`` returns within ``grace`` plus that. A job that calls
        ``stop()`` itself is taken as finishing: not waited for, not cancelled,
        and acknowledged, or it would stop the engine again at every start.
        Jobs that were due but had not started, and jobs cancelled at the end
        of the grace period, are handed to :meth:`_unfinished`.
        """
        grace = check_seconds("grace", grace)
        if self._state == "stopped":
            return
        self._closed = True
        self._set_guard()
        self._state = "stopped"
        pools = list(self._pools.values())
        for pool in pools:  # all at once, so no pool starts jobs during another's grace period
            pool.close()
        caller = asyncio.current_task()
        running: dict[asyncio.Task[None], Job] = {}
        for pool in pools:
            for worker, job in pool._busy.items():
                if worker is caller:
                    self._gone(job, "ack", own=True)
                else:
                    running[worker] = job
        await self._wait(running, grace)
        for worker in running:
            worker.cancel()
        await self._wait(running, _CANCEL_WAIT)
        idle = [worker for pool in pools for worker in pool._workers if worker not in running and worker is not caller]
        await asyncio.gather(*idle, return_exceptions=True)
        unfinished = [job for pool in pools for job in pool.drain()]
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)
        unfinished += (job for job in self._interrupted if job.state == "pending")
        self._unfinished(unfinished, [job for worker, job in running.items() if not worker.done()])
        if self._store is not None:
            await self._store.close()

    async def _wait(self, workers: Collection[asyncio.Task[None]], seconds: float) -> None:
        """Wait until the workers are done, or for ``seconds`` on the engine clock."""
        busy = [worker for worker in workers if not worker.done()]
        if not busy or seconds == 0:
            return
        expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        alarm = self._clock.call_at(self._clock.time() + seconds, functools.partial(_settle, expired))
        finished = asyncio.gather(*busy, return_exceptions=True)
        try:
            await asyncio.wait((finished, expired), return_when=asyncio.FIRST_COMPLETED)
        finally:
            alarm.cancel()
            expired.cancel()

    def _unfinished(self, jobs: list[Job], abandoned: list[Job]) -> None:
        """Jobs that were due but did not complete by the end of ``stop()``, and those it gave up on.

        A journaled engine has not acknowledged them, so they run again after
        a restart. An in-memory engine can only say they are lost. A job given
        up on did not end when cancelled: it runs on, and nothing it does is
        recorded any more.
        """
        if jobs and self._store is not None:
            logger.info(
                "chronowheel: %d due jobs did not complete before stop; they run again at the next start", len(jobs)
            )
        elif jobs:
            logger.warning(
                "chronowheel: %d due jobs did not complete before stop and are lost (in-memory engine): %s",
                len(jobs),
                _ids(jobs),
            )
        if abandoned:
            logger.error(
                "chronowheel: stop gave up on %d jobs that did not end within %gs of their cancellation "
                "(they run on, unrecorded%s): %s",
                len(abandoned),
                _CANCEL_WAIT,
                "; they run again at the next start" if self._store is not None else "",
                _ids(abandoned),
            )

    # -- the driver ------------------------------------------------------------------

    def _wake(self) -> None:
        self._sleep_tick = -1
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _drive(self, left: list[Any]) -> None:
        """Sleep until the next expiry, fire what is due, repeat. Tickless when idle.

        Volatile timers have their own wheel and always fire. Each pool's jobs
        wait in the pool's wheel, taken out only as far as its ready queue has
        room: a full pool leaves its due jobs in its wheel (backpressure, seen
        as lateness) while timers and the other pools carry on, and the pool
        wakes the driver when a worker frees a place.

        A callback's SystemExit or KeyboardInterrupt goes on to the loop's
        caller, as from asyncio's own callbacks; a new driver takes over, and
        fires the rest of that batch (``left``) first, should the loop run on.
        """
        loop = asyncio.get_running_loop()
        timers = self._wheel
        pools = list(self._pools.values())
        claim = None if self._store is None else self._store.claim
        while True:
            now = self._current_tick()
            if left:
                due, left = left, []
            else:
                due = timers.advance(now, _BATCH)
            firing = iter(due)
            try:
                for payload in firing:
                    self._fire_timer(payload, loop)
            except BaseException:  # only SystemExit and KeyboardInterrupt get out of _fire_timer
                driver = asyncio.current_task()
                assert driver is not None
                driver.add_done_callback(_consume)
                self._driver = asyncio.create_task(self._drive(list(firing)), name="chronowheel driver")
                raise
            busy = len(due) == _BATCH
            for pool in pools:
                room = pool.room()
                if not room:
                    continue
                jobs: list[Job] = pool.wheel.advance(now, min(room, _BATCH))
                for job in jobs:
                    try:
                        if job._series is not None:
                            self._fire_series(job, pool)
                            continue
                        if job.key is not None and self._keyed.get(job.key) is job:
                            del self._keyed[job.key]
                        if claim is not None and not claim(job):
                            continue  # another engine's to run (a shared store): it is gone from here
                        pool.put_nowait(job)
                        self._counts["fired"] += 1
                    except Exception as exc:  # the engine's own failure, not the job's: the driver carries on
                        self._undeliverable(job, exc, loop)
                busy = busy or len(jobs) == room
            if busy or due:
                await asyncio.sleep(0)  # let the loop breathe between batches
                if busy:
                    continue
            nxt = self._next_expiry()
            self._wakeup = loop.create_future()
            alarm: Cancellable | None = None
            if nxt is None:
                self._sleep_tick = _IDLE
            else:
                self._sleep_tick = nxt
                alarm = self._clock.call_at(self._time_of(nxt), self._wake)
            try:
                await self._wakeup
            finally:
                self._sleep_tick = -1
                if alarm is not None:
                    alarm.cancel()

    def _next_expiry(self) -> int | None:
        """The earliest tick with work: volatile timers, and jobs of pools with room."""
        ticks = [self._wheel.next_expiry()]
        ticks += [pool.wheel.next_expiry() for pool in self._pools.values() if pool.room()]
        return min((tick for tick in ticks if tick is not None), default=None)

    def _fire_timer(self, payload: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Run a volatile timer's callback, as asyncio's ``Handle._run`` does.

        SystemExit and KeyboardInterrupt go on to the loop's caller; anything
        else it raises (CancelledError included) goes to the loop's exception
        handler, and the driver carries on.
        """
        self._counts["fired"] += 1
        try:
            if payload.__class__ is tuple:
                payload[0](*payload[1])
            else:
                payload()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            loop.call_exception_handler(
                {"message": f"chronowheel: timer callback {payload!r} raised", "exception": exc}
            )

    def _undeliverable(self, job: Job, error: Exception, loop: asyncio.AbstractEventLoop) -> None:
        """The engine failed to start a due job (a fault of its own): the job goes to the dead letters."""
        job.state = "dead"
        job.error = error
        job.traceback = "".join(traceback.format_exception(error))
        self._dead[job.id] = job
        self._record(job, own=True)
        loop.call_exception_handler(
            {"message": f"chronowheel: job {job.id} of task {job.task!r} could not be started", "exception": error}
        )

    async def _run_job(self, job: Job) -> None:
        """Run one attempt of a job; on failure, retry it through the wheel or bury it.

        Whatever the task raises is a failed attempt, any BaseException:
        CancelledError too, unless the worker itself is being cancelled
        (``stop()``), which leaves the job pending. KeyboardInterrupt and
        SystemExit are recorded, then go on to the loop's caller.
        """
        spec = self._tasks[job.task]
        job.state = "running"
        job.attempt += 1
        self._lateness.append(max(0.0, self._time() - self._epoch - job._due_tick / self._rate))
        try:
            await self._attempt(spec, job)
        except asyncio.CancelledError as exc:
            worker = asyncio.current_task()
            assert worker is not None
            if worker.cancelling():  # cut off by stop(): it did not complete
                job.state = "pending"
                self._interrupted.append(job)
                raise
            self._failed(spec, job, exc)  # raised by the task itself
        except (KeyboardInterrupt, SystemExit) as exc:
            self._failed(spec, job, exc)
            raise
        except BaseException as exc:
            self._failed(spec, job, exc)
        else:
            job.state = "succeeded"
            job.error = None
            job.traceback = None
            self._counts["succeeded"] += 1
            self._gone(job, "ack", own=True)
        finally:
            if job._parent is not None and job.state in ("succeeded", "dead"):
                self._run_finished(job._parent)

    async def _attempt(self, spec: TaskSpec, job: Job) -> None:
        """Call the task: async on the loop, sync in a thread; cancel it at its timeout."""
        if spec.timeout is None:
            await self._invoke(spec, job)
            return
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        # The engine's own timer, not call_later's: it must work through stop()'s grace period.
        alarm = self._file_timer(self._tick_after(spec.timeout), expire)
        try:
            await self._invoke(spec, job)
        except asyncio.CancelledError:
            if not expired:
                raise
            task.uncancel()
            raise TimeoutError(f"job {job.id} of task {job.task!r} ran longer than {spec.timeout}s") from None
        finally:
            alarm.cancel()

    async def _invoke(self, spec: TaskSpec, job: Job) -> None:
        if spec.is_async:
            await spec.func(*job.args, **job.kwargs)
            return
        # A sync job runs on a daemon thread of its own: one given up on (timed out, or cut off by
        # stop()) cannot keep the process from exiting, and its worker waits for it before taking
        # another job, so the pool never runs more than its concurrency.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        call = functools.partial(contextvars.copy_context().run, spec.func, *job.args, **job.kwargs)
        thread = threading.Thread(
            target=_in_thread, args=(call, loop, done), name=f"chronowheel job {job.id}", daemon=True
        )
        self._threads += 1
        self._set_guard()
        done.add_done_callback(self._thread_returned)
        try:
            thread.start()
        except BaseException:  # no thread to be had: the attempt fails, as the job cannot run
            self._thread_returned(done)
            raise
        try:
            ok, outcome = await asyncio.shield(done)
        except asyncio.CancelledError:
            self._pools[spec.pool].hold(done)
            raise
        if not ok:
            raise outcome

    def _thread_returned(self, done: asyncio.Future[tuple[bool, Any]]) -> None:
        self._threads -= 1
        self._set_guard()

    def _set_guard(self) -> None:
        """Raise the guard while stopped or while sync jobs run in threads, lower it otherwise.

        While it is up, the hot calls (``call_later``, ``call_at``, handle
        methods) check which thread calls them; the rest of the time they
        check nothing more than whether it is up (handles, not even that:
        their checked methods are put on the engine's handle class).
        """
        guard = self._closed or self._threads > 0
        if guard == self._guard:
            return
        self._guard = guard
        for name, method in CHECKED_HANDLE_METHODS.items():
            if guard:
                setattr(self._handle_type, name, method)
            else:
                delattr(self._handle_type, name)

    def _fire_series(self, job: Job, pool: Pool) -> None:
        """A recurring job came due: start its run(s) per the misfire policy, file the next."""
        series = job._series
        assert series is not None
        now = self._clock.wall()
        next_run = series.recurrence.next_after(series.nominal, series.anchor)
        if next_run > now and now - series.nominal <= series.grace + series.recurrence.jitter:
            # On time, the usual case (also for a run that reschedule moved off the grid).
            fire = [series.nominal]
        else:
            fire, next_run = plan_misfire(
                series.recurrence,
                series.nominal,
                now,
                anchor=series.anchor,
                misfire=series.misfire,
                misfire_grace=series.grace,
            )
        # Catch-up runs of one plan do not overlap each other; only a run
        # still going from before makes the overlap policy apply.
        overlapping = series.active > 0
        for nominal in fire:
            self._start_run(job, pool, nominal, overlapping)
        if series.after_finish and series.active:
            job.state = "running"  # the next run is timed from this one's end
            self._record(job, own=True)
        else:
            self._refile(job, next_run)

    def _start_run(self, job: Job, pool: Pool, nominal: float, overlapping: bool) -> None:
        series = job._series
        assert series is not None
        if overlapping and series.overlap != "allow":
            if series.overlap == "queue" and series.waiting is None:
                series.waiting = nominal
            else:
                self._counts["skipped"] += 1
            return
        run = Job(new_job_id(), None, job.task, job.args, job.kwargs, job.priority, nominal, self._current_tick())
        run._engine = self
        run._parent = job
        series.active += 1
        self._record(run, own=True)
        pool.put_nowait(run)
        self._counts["fired"] += 1

    def _run_finished(self, job: Job) -> None:
        """A run of a recurring job is over: start the queued one, or time the next from now."""
        series = job._series
        assert series is not None
        series.active -= 1
        if job.state == "cancelled" or self._closed:
            return
        pool = self._pools[self._tasks[job.task].pool]
        if series.waiting is not None:
            nominal, series.waiting = series.waiting, None
            self._start_run(job, pool, nominal, overlapping=False)
        elif series.after_finish and job.state == "running":
            now = self._clock.wall()
            self._refile(job, series.recurrence.next_after(now, series.anchor))

    def _refile(self, job: Job, nominal: float) -> None:
        series = job._series
        assert series is not None
        series.nominal = nominal
        job.state = "pending"
        self._file_job(job, *self._due(nominal, series), own=True)

    def _failed(self, spec: TaskSpec, job: Job, error: BaseException) -> None:
        job.error = error
        job.traceback = "".join(traceback.format_exception(error))
        self._counts["failed"] += 1
        retry = spec.retry
        if retry is not None and retry.should_retry(error, job.attempt) and not (self._closed and self._store is None):
            delay = retry.delay(job.attempt, self._rng)
            job.state = "failed"
            self._counts["retried"] += 1
            if self._closed:  # stopping: the journal keeps the retry for after the restart
                self._set_due(job, delay)
                self._record(job, own=True)
            else:
                self._file_job(job, delay, own=True)
            logger.warning(
                "chronowheel: job %s of task %r failed (attempt %d of %d); retrying in %.3fs",
                job.id,
                job.task,
                job.attempt,
                retry.attempts,
                delay,
                exc_info=error,
            )
            return
        job.state = "dead"
        self._dead[job.id] = job
        self._record(job, own=True)
        logger.error(
            "chronowheel: job %s of task %r failed (attempt %d); moved to the dead letters",
            job.id,
            job.task,
            job.attempt,
            exc_info=error,
        )

    def __repr__(self) -> str:
        return f"<Engine {self._state} pending={len(self)} tick={1 / self._rate:g}s>"
