"""Jobs and the tasks they run."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from ._limits import EARLIEST, LATEST

if TYPE_CHECKING:
    from ._recurrence import Cron, Every
    from ._retry import Retry
    from ._series import Series

__all__ = ["JOB_STATES", "Job", "JobState", "TaskSpec", "id_pool", "new_job_id"]

JobState = Literal["pending", "running", "succeeded", "failed", "dead", "cancelled", "parked", "paused"]
JOB_STATES: Final = ("pending", "running", "succeeded", "failed", "dead", "cancelled", "parked", "paused")

_ID_BATCH: Final = 4096
id_pool: Final[list[str]] = []
"""Ids not yet handed out: ``schedule_nowait`` pops one itself (a frame less) and calls
:func:`new_job_id` only when it is empty."""


def new_job_id() -> str:
    """128 random bits as 32 hex digits, like ``uuid4().hex``, read from ``os.urandom`` 4,096 ids at a time.

    One read per id (what uuid4 does) releases the GIL: with the journal's
    writer thread waiting for it, every schedule became a thread switch.
    """
    if not id_pool:
        digits = os.urandom(16 * _ID_BATCH).hex()
        # A list, not a generator: no frame resumed per id.
        id_pool.extend([digits[start : start + 32] for start in range(0, len(digits), 32)])
    return id_pool.pop()


os.register_at_fork(after_in_child=id_pool.clear)  # a forked child must not hand out its parent's ids


class TaskSpec:
    """A registered task: the function and how its jobs run.

    ``counts`` holds the numbers of positional arguments a call without
    keywords may pass (a set lookup, where a ``range`` test measured 350
    instructions more per schedule); it is empty when only
    :meth:`check_call` can tell. ``signature`` is None for a callable Python
    cannot inspect.
    """

    __slots__ = ("counts", "func", "is_async", "name", "pool", "priority", "retry", "signature", "timeout")

    def __init__(
        self,
        name: str,
        func: Callable[..., Any],
        pool: str,
        priority: int,
        retry: Retry | None,
        timeout: float | None,
    ) -> None:
        self.name = name
        self.func = func
        self.pool = pool
        self.priority = priority
        self.retry = retry
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(func)
        try:
            self.signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins: nothing to check against
            self.signature = None
        self.counts = _counts(self.signature)

    def check_call(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any] | None) -> None:
        """Refuse (``TypeError``) args and kwargs the signature does not bind: at schedule time, not at fire time."""
        if self.signature is None:
            return
        try:
            self.signature.bind(*args, **(kwargs or {}))
        except TypeError as exc:
            takes = self.signature.replace(return_annotation=inspect.Signature.empty)
            raise TypeError(f"args/kwargs: task {self.name!r} takes {takes}, not these: {exc}") from None

    def __repr__(self) -> str:
        return f"<TaskSpec {self.name!r} pool={self.pool!r}>"


_VARIADIC_COUNTS: Final = 64  # how many counts past its fixed parameters a ``*args`` signature lists


def _counts(signature: inspect.Signature | None) -> frozenset[int]:
    """The positional-argument counts a signature surely takes without keywords (none with a required keyword-only).

    A ``*args`` signature takes any count from its required parameters up; the
    first ``_VARIADIC_COUNTS`` of those are listed, and a longer call is
    checked by :meth:`TaskSpec.check_call`, which is always right.
    """
    if signature is None:
        return frozenset()  # check_call() lets everything through
    low = high = 0
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            high += 1
            low += parameter.default is parameter.empty
        elif parameter.kind is parameter.VAR_POSITIONAL:
            high = -1
        elif parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            return frozenset()
    if high < 0:
        return frozenset(range(low, low + _VARIADIC_COUNTS))
    return frozenset(range(low, high + 1))


class Job:
    """One scheduled run of a registered task.

    ``deadline`` is when it is due, as an aware UTC datetime. ``state`` moves
    ``pending -> running -> succeeded``, or ``running -> failed`` (waiting in
    the wheel for its retry) ``-> running ...``, until ``dead`` when the
    attempts run out; ``cancelled`` ends it early; ``paused`` keeps it out
    of its wheel until resumed. ``error`` and ``traceback`` hold the last
    failure (after a restart ``error`` is a :class:`~chronowheel.RecordedError`
    with the original's type name and message).
    """

    __slots__ = (
        "__weakref__",  # a finished job's Job, rebuilt for jobs(), is held weakly (Results.shown)
        "_after",
        "_due_tick",
        "_due_wall",
        "_engine",
        "_fence",
        "_parent",
        "_series",
        "_timer",
        "args",
        "attempt",
        "error",
        "id",
        "key",
        "kwargs",
        "priority",
        "state",
        "task",
        "traceback",
    )

    _fence: int  # set by a cluster store's claim, unset otherwise (see ``fence``)

    def __init__(
        self,
        id: str,
        key: str | None,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int,
        due_wall: float,
        due_tick: int,
    ) -> None:
        self.id = id
        self.key = key
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.priority = priority
        self.attempt = 0
        self.state: JobState = "pending"
        self.error: BaseException | None = None
        self.traceback: str | None = None
        self._due_wall = due_wall
        self._due_tick = due_tick
        self._timer: Any = None
        self._engine: object = None  # the engine that holds it: cancel() and reschedule() check it
        self._series: Series | None = None  # set on a recurring job
        self._parent: Job | None = None  # set on each run of a recurring job
        self._after: list[str] | None = None  # the ids of the parents it still waits for (schedule(after=...))

    @property
    def fence(self) -> int | None:
        """In cluster mode, the fencing token this job was last claimed under (rising with each new owner).

        A task can store it beside an external side effect and refuse a
        write carrying a lower one (docs/cluster.md). None outside cluster mode.
        """
        return getattr(self, "_fence", None)  # left unset until a claim: nothing on the single-process path

    @property
    def deadline(self) -> datetime:
        """When it is due, as an aware UTC datetime.

        Clamped to what a datetime can show: only a wall clock set near the
        year 10000 files a job past it (see ``_limits.MAX_DELAY``).
        """
        return datetime.fromtimestamp(min(max(self._due_wall, EARLIEST), LATEST), UTC)

    @property
    def recurrence(self) -> Every | Cron | None:
        """How the job repeats (its ``every`` or ``cron``); None for a one-shot job, or one run of a series."""
        return None if self._series is None else self._series.recurrence

    def __eq__(self, other: object) -> bool:
        """The same job, by id: what ``jobs()`` shows of a finished job, or a cluster's copy, equals the job held."""
        if isinstance(other, Job):
            return self.id == other.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        key = f" key={self.key!r}" if self.key is not None else ""
        return f"<Job {self.id}{key} task={self.task!r} state={self.state} deadline={self.deadline.isoformat()}>"
