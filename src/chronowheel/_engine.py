"""The engine: the one place that knows about time and the event loop."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import math
import os
import random
import traceback
from collections import deque
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

import anyio
import orjson

from ._clock import Cancellable, Clock, SystemClock
from ._durability import compact, restore
from ._errors import DuplicateKey, EngineClosed, UnknownTask
from ._job import Job, TaskSpec, TimerHandle, new_job_id
from ._journal_records import encode_job, job_from_record
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

if TYPE_CHECKING:
    from ._journal import Journal

__all__ = ["Engine"]

logger = logging.getLogger("chronowheel")
_ceil = math.ceil

F = TypeVar("F", bound=Callable[..., Any])
IfExists = Literal["error", "keep", "replace"]

_IF_EXISTS: Final = ("error", "keep", "replace")
_BATCH: Final = 1024  # due items handed out per driver step before yielding to the loop
_MAX_DELAY: Final = 1e12  # seconds; far beyond any wheel, small enough to stay an exact tick count
_LATENESS_SAMPLES: Final = 4096
_IDLE: Final = 1 << 62  # sleep target while nothing is scheduled: any timer wakes the driver


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 <= value <= _MAX_DELAY:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


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
        if isinstance(tick, bool) or not isinstance(tick, int | float) or not 1e-6 <= tick <= 60:
            raise ValueError(f"tick must be a number of seconds from 1e-6 to 60, got {tick!r}")
        if journal is not None and not isinstance(journal, str | os.PathLike):
            raise TypeError(f"journal must be a file path or None, got {type(journal).__name__}")
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"fsync must be 'always', 'interval' or 'never', got {fsync!r}")
        fsync_interval = _check_seconds("fsync_interval", fsync_interval)
        if fsync_interval == 0:
            raise ValueError("fsync_interval must be > 0 seconds, got 0")
        if on_corrupt not in ("error", "truncate"):
            raise ValueError(f"on_corrupt must be 'error' or 'truncate', got {on_corrupt!r}")
        if unknown_tasks not in ("error", "park"):
            raise ValueError(f"unknown_tasks must be 'error' or 'park', got {unknown_tasks!r}")
        self._journal: Journal | None = None
        if journal is not None:
            from ._journal import Journal  # POSIX only (flock, directory fsync): imported when asked for

            self._journal = Journal(os.fspath(journal), fsync, fsync_interval)
        self._on_corrupt = on_corrupt
        self._unknown_tasks = unknown_tasks
        self._durable: dict[str, Job] = {}  # journaled jobs not yet acknowledged or cancelled, by id
        self._parked: dict[str, dict[str, Any]] = {}  # journal records of tasks not registered
        self._compaction: asyncio.Task[None] | None = None
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
        self.add_pool("default", concurrency=10)

    # -- time ------------------------------------------------------------------

    def time(self) -> float:
        """The engine clock, in seconds; ``call_at`` takes times on it."""
        return self._time()

    def _deadline_tick(self, when: float) -> int:
        """The first tick at or after ``when``: a timer filed there is never early."""
        return max(0, math.ceil((when - self._epoch) * self._rate))

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
        """The deadline tick ``delay`` seconds from now, checking ``delay`` on the way."""
        try:
            if not 0 <= delay <= _MAX_DELAY:
                raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        except TypeError:
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}") from None
        return _ceil((self._time() - self._epoch + delay) * self._rate)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` after ``delay`` seconds; never journaled."""
        # _tick_after and _add_timer, inlined: this is the call a million timers make.
        try:
            if not 0 <= delay <= _MAX_DELAY:
                raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        except TypeError:
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}") from None
        if self._closed:
            raise EngineClosed("the engine is stopped; it takes no more timers")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        tick = _ceil((self._time() - self._epoch + delay) * self._rate)
        # The payload is the callback itself when there are no args: nothing allocated.
        handle = self._handle_type(self._wheel.add(tick, (callback, args) if args else callback))
        if tick < self._sleep_tick:
            self._wake()
        return handle

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` when :meth:`time` reaches ``when``; never journaled."""
        try:
            if not -_MAX_DELAY <= when <= _MAX_DELAY:
                raise ValueError(f"when must be a finite time on the engine clock, got {when!r}")
        except TypeError:
            raise TypeError(f"when must be a number, got {type(when).__name__}") from None
        return self._add_timer(self._deadline_tick(when), callback, args)

    def _add_timer(self, tick: int, callback: Callable[..., object], args: tuple[Any, ...]) -> TimerHandle:
        if self._closed:
            raise EngineClosed("the engine is stopped; it takes no more timers")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        # The payload is the callback itself when there are no args: nothing allocated.
        handle = self._handle_type(self._wheel.add(tick, (callback, args) if args else callback))
        if tick < self._sleep_tick:
            self._wake()
        return handle

    # -- tasks and pools -----------------------------------------------------------

    def add_pool(self, name: str, *, concurrency: int, max_queued: int | None = None) -> None:
        """Add a pool of ``concurrency`` workers; ``max_queued`` bounds its ready queue."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if name in self._pools:
            raise ValueError(f"name: a pool {name!r} already exists")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if max_queued is not None and (
            isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1
        ):
            raise ValueError(f"max_queued must be None or an int >= 1, got {max_queued!r}")
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
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string or None, got {name!r}")
        if pool not in self._pools:
            raise ValueError(f"pool: no pool named {pool!r}; add it with add_pool() first")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, got {type(priority).__name__}")
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a Retry or None, got {type(retry).__name__}")
        if timeout is not None:
            timeout = _check_seconds("timeout", timeout)
            if timeout == 0:
                raise ValueError("timeout must be > 0 seconds, got 0")

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
        if self._journal is not None:
            await self._journal.commit()
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
        if self._closed:
            raise EngineClosed("the engine is stopped; it takes no more jobs")
        if self._journal is not None and self._state == "new":
            raise RuntimeError("schedule: start the engine first; a journaled engine recovers its jobs in start()")
        spec = self._spec(task)
        if not isinstance(args, tuple | list):
            raise TypeError(f"args must be a tuple or list, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict or None, got {type(kwargs).__name__}")
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key must be a non-empty string or None, got {key!r}")
        if if_exists not in _IF_EXISTS:
            raise ValueError(f"if_exists must be one of {', '.join(map(repr, _IF_EXISTS))}; got {if_exists!r}")
        if priority is None:
            priority = spec.priority
        elif isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int or None, got {type(priority).__name__}")
        series = self._series_of(every, cron, delay, at, overlap, misfire, misfire_grace)
        seconds = self._delay_of(delay, at) if series is None else self._until(series.nominal, series)

        if key is not None and key in self._keyed:
            if if_exists == "keep":
                return self._keyed[key]
            if if_exists == "error":
                raise DuplicateKey(f"key: a job with key {key!r} is already pending")

        job = Job(new_job_id(), key, spec.name, tuple(args), dict(kwargs or {}), priority, 0.0, 0)
        job._series = series
        self._set_due(job, seconds)
        # Encoded before anything changes: args that JSON cannot hold raise here.
        payload = self._encode(job) if self._journal is not None else None
        if key is not None and key in self._keyed:
            self.cancel(key)
        self._journal_job(job, payload)
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
        check_overlap(overlap)
        check_misfire(misfire)
        grace = _check_seconds("misfire_grace", misfire_grace)
        now = self._clock.wall()
        if delay is None and at is None:
            first = recurrence.next_after(now, now)
        else:
            first = now + self._delay_of(delay, at)
        return Series(recurrence, first, first, misfire, grace, overlap)

    def _until(self, nominal: float, series: Series) -> float:
        """Seconds from now to a run's nominal time, plus the recurrence's jitter."""
        return max(0.0, jittered(nominal, series.recurrence.jitter, self._rng) - self._clock.wall())

    def _file_job(self, job: Job, seconds: float) -> None:
        """Journal a job and put it in the wheel ``seconds`` from now: a retry, a redrive, a next run."""
        self._set_due(job, seconds)
        self._journal_job(job)
        self._place(job)

    def _set_due(self, job: Job, seconds: float) -> None:
        job._due_tick = self._tick_after(seconds)
        job._due_wall = self._clock.wall() + seconds

    def _place(self, job: Job) -> None:
        tick = job._due_tick
        job._timer = self._wheel_of(job).add(tick, job, -job.priority)
        if job.key is not None:
            self._keyed.setdefault(job.key, job)
        if tick < self._sleep_tick:
            self._wake()

    # -- the journal ---------------------------------------------------------------

    def _encode(self, job: Job, *, new: bool = True) -> bytes:
        """The job's journal record; a ``new`` job's args must read back as themselves (see encode_job)."""
        return encode_job(job, new=new)

    def _journal_job(self, job: Job, payload: bytes | None = None) -> None:
        """Journal a job's whole state (nothing for an in-memory engine)."""
        if self._journal is None:
            return
        self._durable[job.id] = job
        self._journal_append(payload or self._encode(job, new=False))

    def _journal_gone(self, job: Job, kind: Literal["ack", "cancel"]) -> None:
        """Journal that a job ran to success or was cancelled: it is no longer live."""
        if self._durable.pop(job.id, None) is not None:
            self._journal_append(orjson.dumps({"t": kind, "id": job.id}))

    def _journal_append(self, payload: bytes) -> None:
        journal = self._journal
        assert journal is not None
        journal.append(payload)
        live = len(self._durable) + len(self._parked)
        if (
            self._compaction is None
            and self._state == "running"
            and journal.log_records > journal.compact_factor * max(live, journal.compact_min)
        ):
            self._compaction = asyncio.create_task(compact(self), name="chronowheel journal compaction")

    async def flush(self) -> None:
        """Make every journal record so far durable (written and fsynced), whatever the fsync policy."""
        if self._journal is not None and self._state == "running":
            await self._journal.sync()

    def parked(self) -> list[Job]:
        """Journaled jobs whose task is not registered (``unknown_tasks="park"``).

        They stay in the journal untouched and come back at the next start
        that has their task registered.
        """
        jobs = [job_from_record(record) for record in self._parked.values()]
        for job in jobs:
            job.state = "parked"
        return jobs

    def _wheel_of(self, job: Job) -> TimerWheel:
        return self._pools[self._tasks[job.task].pool].wheel

    def _delay_of(self, delay: float | None, at: datetime | None) -> float:
        if (delay is None) == (at is None):
            raise ValueError("pass exactly one of delay= and at=")
        if delay is not None:
            return _check_seconds("delay", delay)
        if not isinstance(at, datetime):
            raise TypeError(f"at must be an aware datetime, got {type(at).__name__}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"at must be an aware datetime (with tzinfo), got naive {at!r}")
        return max(0.0, at.timestamp() - self._clock.wall())

    def _job_of(self, key_or_job: str | Job, argument: str = "key_or_job") -> Job | None:
        """The job if it waits in the wheel: pending, or failed and waiting for its retry."""
        if isinstance(key_or_job, Job):
            waiting = key_or_job.state in ("pending", "failed")
            between_runs = key_or_job._series is not None and key_or_job.state == "running"
            return key_or_job if waiting or between_runs else None
        if isinstance(key_or_job, str):
            return self._keyed.get(key_or_job)
        raise TypeError(f"{argument} must be a key (str) or a Job, got {type(key_or_job).__name__}")

    def cancel(self, key_or_job: str | Job) -> bool:
        """Remove a pending job; True if it was pending."""
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
        self._journal_gone(job, "cancel")
        return True

    def reschedule(self, key_or_job: str | Job, *, delay: float | None = None, at: datetime | None = None) -> bool:
        """Move a pending job's deadline; True if it was pending."""
        seconds = self._delay_of(delay, at)
        job = self._job_of(key_or_job)
        if job is None:
            return False
        tick = self._tick_after(seconds)
        if not self._wheel_of(job).reschedule(job._timer, tick):
            return False
        job._due_tick = tick
        job._due_wall = self._clock.wall() + seconds
        if job._series is not None:
            job._series.nominal = job._due_wall
        if job.id in self._durable:
            self._journal_append(orjson.dumps({"t": "move", "id": job.id, "due": job._due_wall}))
        if tick < self._sleep_tick:
            self._wake()
        return True

    def dead_letters(self) -> list[Job]:
        """Jobs that ran out of attempts, oldest first; :meth:`redrive` puts one back."""
        return list(self._dead.values())

    def redrive(self, job: Job, *, delay: float = 0.0) -> Job:
        """Give a dead job a fresh set of attempts, ``delay`` seconds from now."""
        if not isinstance(job, Job):
            raise TypeError(f"job must be a Job, got {type(job).__name__}")
        if self._dead.get(job.id) is not job:
            raise ValueError(f"job: {job.id} is not in the dead letters (state {job.state!r})")
        if self._closed:
            raise EngineClosed("the engine is stopped; it takes no more jobs")
        seconds = _check_seconds("delay", delay)
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
        if self._journal is not None:
            # Recovery allocates a few containers per job and frees almost none: the collector would
            # traverse them again and again (a third of the time); it runs once at the end instead.
            collecting = gc.isenabled()
            gc.disable()
            try:
                live = await asyncio.to_thread(self._journal.recover, truncate_corrupt=self._on_corrupt == "truncate")
                try:
                    restore(self, live)
                except BaseException:
                    await self._journal.close()
                    raise
                del live
            finally:
                if collecting:
                    gc.enable()
                    gc.collect()
            self._journal.open(asyncio.get_running_loop())
        self._state = "running"
        for pool in self._pools.values():
            pool.start(self._run_job)
        self._driver = asyncio.create_task(self._drive(), name="chronowheel driver")

    async def stop(self, grace: float = 10.0) -> None:
        """Take no more work; let running jobs finish for ``grace`` seconds, then cancel them.

        Timers keep firing during the grace period (job timeouts among them).
        Jobs that were due but had not started, and jobs cancelled at the end
        of the grace period, are handed to :meth:`_unfinished`.
        """
        grace = _check_seconds("grace", grace)
        if self._state == "stopped":
            return
        self._closed = True
        self._state = "stopped"
        unfinished: list[Job] = []
        for pool in self._pools.values():
            unfinished += await pool.stop(grace, self._clock)
        for task in (self._driver, self._compaction):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        unfinished += (job for job in self._interrupted if job.state == "pending")
        self._unfinished(unfinished)
        if self._journal is not None:
            await self._journal.close()

    def _unfinished(self, jobs: list[Job]) -> None:
        """Jobs that were due but did not complete by the end of ``stop()``.

        A journaled engine has not acknowledged them, so they run again after
        a restart. An in-memory engine can only say they are lost.
        """
        if jobs and self._journal is not None:
            logger.info(
                "chronowheel: %d due jobs did not complete before stop; they run again at the next start", len(jobs)
            )
        elif jobs:
            logger.warning(
                "chronowheel: %d due jobs did not complete before stop and are lost (in-memory engine): %s",
                len(jobs),
                ", ".join(job.id for job in jobs[:10]) + (" ..." if len(jobs) > 10 else ""),
            )

    # -- the driver ------------------------------------------------------------------

    def _wake(self) -> None:
        self._sleep_tick = -1
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _drive(self) -> None:
        """Sleep until the next expiry, fire what is due, repeat. Tickless when idle.

        Volatile timers have their own wheel and always fire. Each pool's jobs
        wait in the pool's wheel, taken out only as far as its ready queue has
        room: a full pool leaves its due jobs in its wheel (backpressure, seen
        as lateness) while timers and the other pools carry on, and the pool
        wakes the driver when a worker frees a place.
        """
        loop = asyncio.get_running_loop()
        timers = self._wheel
        pools = list(self._pools.values())
        while True:
            now = self._current_tick()
            due = timers.advance(now, _BATCH)
            for payload in due:
                self._fire_timer(payload, loop)
            busy = len(due) == _BATCH
            for pool in pools:
                room = pool.room()
                if not room:
                    continue
                jobs: list[Job] = pool.wheel.advance(now, min(room, _BATCH))
                for job in jobs:
                    if job._series is not None:
                        self._fire_series(job, pool)
                        continue
                    if job.key is not None and self._keyed.get(job.key) is job:
                        del self._keyed[job.key]
                    pool.put_nowait(job)
                    self._counts["fired"] += 1
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
        """Run a volatile timer's callback; its errors go to the loop's exception handler."""
        self._counts["fired"] += 1
        try:
            if payload.__class__ is tuple:
                payload[0](*payload[1])
            else:
                payload()
        except Exception as exc:
            loop.call_exception_handler(
                {"message": f"chronowheel: timer callback {payload!r} raised", "exception": exc}
            )

    async def _run_job(self, job: Job) -> None:
        """Run one attempt of a job; on failure, retry it through the wheel or bury it."""
        spec = self._tasks[job.task]
        job.state = "running"
        job.attempt += 1
        self._lateness.append(max(0.0, self._time() - self._epoch - job._due_tick / self._rate))
        try:
            await self._attempt(spec, job)
        except asyncio.CancelledError:
            job.state = "pending"  # interrupted by stop(): it did not complete
            self._interrupted.append(job)
            raise
        except Exception as exc:
            self._failed(spec, job, exc)
        else:
            job.state = "succeeded"
            job.error = None
            job.traceback = None
            self._counts["succeeded"] += 1
            self._journal_gone(job, "ack")
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

        alarm = self.call_later(spec.timeout, expire)
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
        else:
            call = functools.partial(spec.func, *job.args, **job.kwargs)
            await anyio.to_thread.run_sync(call, limiter=self._pools[spec.pool].threads, abandon_on_cancel=True)

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
            self._journal_job(job)
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
        run._parent = job
        series.active += 1
        self._journal_job(run)
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
        self._file_job(job, self._until(nominal, series))

    def _failed(self, spec: TaskSpec, job: Job, error: Exception) -> None:
        job.error = error
        job.traceback = "".join(traceback.format_exception(error))
        self._counts["failed"] += 1
        retry = spec.retry
        if (
            retry is not None
            and retry.should_retry(error, job.attempt)
            and not (self._closed and self._journal is None)
        ):
            delay = retry.delay(job.attempt, self._rng)
            job.state = "failed"
            self._counts["retried"] += 1
            if self._closed:  # stopping: the journal keeps the retry for after the restart
                self._set_due(job, delay)
                self._journal_job(job)
            else:
                self._file_job(job, delay)
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
        self._journal_job(job)
        logger.error(
            "chronowheel: job %s of task %r failed (attempt %d); moved to the dead letters",
            job.id,
            job.task,
            job.attempt,
            exc_info=error,
        )

    def __repr__(self) -> str:
        return f"<Engine {self._state} pending={len(self)} tick={1 / self._rate:g}s>"
