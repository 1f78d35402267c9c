"""``current_job()``: the job whose attempt the running code is part of, in a context variable."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._job import Job

__all__ = ["CURRENT_JOB", "current_job"]

CURRENT_JOB: Final[ContextVar[Job]] = ContextVar("chronowheel.current_job")
"""Set by the worker around each attempt; a sync task's thread runs in a copy of the worker's context."""


def current_job() -> Job:
    """The :class:`Job` running in the current task (or a sync task's thread); ``LookupError`` outside a job.

    Tasks use it for idempotency keys (``job.id``), their attempt number, or
    a log line's context, without the engine passing the job as an argument.
    """
    try:
        return CURRENT_JOB.get()
    except LookupError:
        raise LookupError("current_job: no chronowheel job is running in this context") from None
