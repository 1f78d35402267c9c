"""Jobs and the tasks they run."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from ._limits import EARLIEST, LATEST

if TYPE_CHECKING:
    from ._retry import Retry
    from ._series import Series

__all__ = ["Job", "JobState", "TaskSpec", "new_job_id"]

JobState = Literal["pending", "running", "succeeded", "failed", "dead", "cancelled", "parked"]

_ID_BATCH: Final = 4096
_ids: list[str] = []


def new_job_id() -> str:
    """128 random bits as 32 hex digits, like ``uuid4().hex``, read from ``os.urandom`` 4,096 ids at a time.

    One read per id (what uuid4 does) releases the GIL: with the journal's
    writer thread waiting for it, every schedule became a thread switch.
    """
    if not _ids:
        digits = os.urandom(16 * _ID_BATCH).hex()
        _ids.extend(digits[start : start + 32] for start in range(0, len(digits), 32))
    return _ids.pop()


os.register_at_fork(after_in_child=_ids.clear)  # a forked child must not hand out its parent's ids


class TaskSpec:
    """A registered task: the function and how its jobs run."""

    __slots__ = ("func", "is_async", "name", "pool", "priority", "retry", "timeout")

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

    def __repr__(self) -> str:
        return f"<TaskSpec {self.name!r} pool={self.pool!r}>"


class Job:
    """One scheduled run of a registered task.

    ``deadline`` is when it is due, as an aware UTC datetime. ``state`` moves
    ``pending -> running -> succeeded``, or ``running -> failed`` (waiting in
    the wheel for its retry) ``-> running ...``, until ``dead`` when the
    attempts run out; ``cancelled`` ends it early. ``error`` and
    ``traceback`` hold the last failure.
    """

    __slots__ = (
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

    def __repr__(self) -> str:
        key = f" key={self.key!r}" if self.key is not None else ""
        return f"<Job {self.id}{key} task={self.task!r} state={self.state} deadline={self.deadline.isoformat()}>"
