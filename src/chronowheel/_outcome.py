"""How a finished job ended, kept for ``result_ttl`` seconds: its return value, or why it was cancelled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._job import Job

__all__ = ["Outcome"]


class Outcome:
    """A succeeded job's ``value``, or a cancelled job's ``reason``, until ``expires`` (POSIX seconds).

    ``unkept`` says why a store could not keep the value (it is not JSON, or
    too large): the value lives in this process only, and after a restart
    ``Engine.result`` raises a ``KeyError`` saying so.
    """

    __slots__ = ("expires", "job", "reason", "unkept", "value")

    def __init__(
        self, job: Job, value: Any, expires: float, *, reason: str | None = None, unkept: str | None = None
    ) -> None:
        self.job = job
        self.value = value
        self.expires = expires
        self.reason = reason
        self.unkept = unkept

    def __repr__(self) -> str:
        return f"<Outcome of {self.job.id} {self.job.state} expires={self.expires}>"
