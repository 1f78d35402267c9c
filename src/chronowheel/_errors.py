"""The exceptions chronowheel raises, split by cause."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ChronowheelError",
    "DuplicateKey",
    "EngineClosed",
    "JobCancelled",
    "JobFailed",
    "JournalCorrupt",
    "JournalFailed",
    "JournalLocked",
    "LeaseLost",
    "NotStarted",
    "RecordedError",
    "UnknownTask",
]


class ChronowheelError(Exception):
    """Base of every error chronowheel raises on purpose."""


class DuplicateKey(ChronowheelError, KeyError):
    """A job with this key is already pending and ``if_exists="error"``."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class UnknownTask(ChronowheelError, LookupError):
    """No task is registered under this name."""


class EngineClosed(ChronowheelError, RuntimeError):
    """The engine has been stopped and takes no more work."""


class NotStarted(ChronowheelError, RuntimeError):
    """A journaled engine's job API was called before :meth:`Engine.start` recovered the journal."""


class JournalLocked(ChronowheelError, RuntimeError):
    """The journal is open in another engine or process (its ``.lock`` file is held)."""


class JournalFailed(ChronowheelError, OSError):
    """Writing or fsyncing the journal failed; every durable call raises this until a restart recovers.

    An ``OSError`` with the ``errno`` of the failure that caused it (None if
    that was not an OSError), which is also its ``__cause__``.
    """

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.errno = getattr(cause, "errno", None)


class LeaseLost(ChronowheelError, RuntimeError):
    """Cluster mode: this engine no longer holds the claim it would acknowledge a job under (another owner has it)."""


class JournalCorrupt(ChronowheelError):
    """A journal record failed its check; ``offset`` is where it starts."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte offset {offset}")
        self.offset = offset


def error_type(error: BaseException) -> str:
    """The name an error's type is recorded under: ``ValueError``, or ``module.Qualname`` outside builtins."""
    if isinstance(error, RecordedError):
        return error.type_name
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


class RecordedError(ChronowheelError):
    """A job's failure read back from a store after a restart: the exception itself was not kept.

    ``type_name`` is the original's type (``ValueError``, ``myapp.errors.Timeout``),
    ``message`` its ``str()``; the job's ``traceback`` holds its text.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message

    def __repr__(self) -> str:
        return f"RecordedError({self.type_name!r}, {self.message!r})"


class JobFailed(ChronowheelError):
    """The job ended dead (out of attempts): ``job``, and its last error's ``error_type`` and ``error_message``."""

    def __init__(self, job: Any) -> None:
        error = job.error
        self.job = job
        self.error_type = "" if error is None else error_type(error)
        self.error_message = "" if error is None else str(error)
        super().__init__(f"job {job.id} of task {job.task!r} ended dead: {self.error_type}: {self.error_message}")


class JobCancelled(ChronowheelError):
    """The job was cancelled before it succeeded; ``reason`` says by what (``cancel()``, a parent that ended)."""

    def __init__(self, job: Any, reason: str) -> None:
        self.job = job
        self.reason = reason
        super().__init__(f"job {job.id} of task {job.task!r} was cancelled: {reason}")
