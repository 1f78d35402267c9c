"""The exceptions chronowheel raises, split by cause."""

from __future__ import annotations

__all__ = [
    "ChronowheelError",
    "DuplicateKey",
    "EngineClosed",
    "JournalCorrupt",
    "JournalFailed",
    "JournalLocked",
    "LeaseLost",
    "NotStarted",
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
