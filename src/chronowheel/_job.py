"""Jobs, the tasks they run, and the volatile timer handle."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["Job", "JobState", "TaskSpec", "TimerHandle"]

JobState = Literal["pending", "running", "succeeded", "failed", "dead", "cancelled"]


class TaskSpec:
    """A registered task: the function and how its jobs run."""

    __slots__ = ("name", "func", "pool", "priority", "timeout", "is_async")

    def __init__(
        self, name: str, func: Callable[..., Any], pool: str, priority: int, timeout: float | None, is_async: bool
    ) -> None:
        self.name = name
        self.func = func
        self.pool = pool
        self.priority = priority
        self.timeout = timeout
        self.is_async = is_async

    def __repr__(self) -> str:
        return f"<TaskSpec {self.name!r} pool={self.pool!r}>"


class Job:
    """One scheduled run of a registered task.

    ``deadline`` is when it is due, as an aware UTC datetime; ``state`` moves
    ``pending -> running -> succeeded | failed``, or ends ``cancelled``.
    """

    __slots__ = (
        "id",
        "key",
        "task",
        "args",
        "kwargs",
        "priority",
        "attempt",
        "state",
        "error",
        "_due_wall",
        "_due_tick",
        "_timer",
    )

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
        self._due_wall = due_wall
        self._due_tick = due_tick
        self._timer: Any = None

    @property
    def deadline(self) -> datetime:
        return datetime.fromtimestamp(self._due_wall, UTC)

    def __repr__(self) -> str:
        key = f" key={self.key!r}" if self.key is not None else ""
        return f"<Job {self.id}{key} task={self.task!r} state={self.state} deadline={self.deadline.isoformat()}>"


class TimerHandle:
    """A volatile timer from ``call_later`` / ``call_at``; ``cancel()`` it like asyncio's."""

    __slots__ = ("_callback", "_args", "_engine", "_timer")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...], engine: Engine) -> None:
        self._callback: Callable[..., object] | None = callback
        self._args = args
        self._engine = engine
        self._timer: Any = None

    def cancel(self) -> bool:
        """Stop the timer; True if it was still pending."""
        if self._callback is None:
            return False
        self._callback = None
        self._args = ()
        return self._engine._cancel_timer(self._timer)

    def __repr__(self) -> str:
        state = "done" if self._callback is None else "pending"
        return f"<TimerHandle {state}>"
