"""How a finished job ended, kept for ``result_ttl`` seconds: its return value, or why it was cancelled.

Every success keeps one, so what is kept is a plain tuple (a :data:`Record`)
of what ``result()``, ``jobs()`` and a ``done`` record need of the job, not
the ``Job``: a Job holds its attempt's state too (its timer handle, its
series, its engine), and keeping it kept 709 bytes per finished job where
the tuple keeps 472 (docs/operations.md, "Memory"). A tuple of untracked
values (plain arguments and return values) is untracked by the cyclic
collector at its first collection, where an object with slots is walked at
every one: a million kept outcomes cost a full collection nothing.
:class:`Outcome` is the view of one record that the engine's parts and the
stores read.
"""

from __future__ import annotations

from typing import Any, Final

from ._errors import JobCancelled
from ._job import Job, JobState

__all__ = ["EXPIRES", "KEY", "REASON", "TASK", "Outcome", "Record"]

# task, key, args, kwargs (None: empty), priority, attempts made, deadline (POSIX seconds), the value,
# when the record expires, a cancellation's reason, why a store could not keep the value, the cancelled Job.
Record = tuple[
    str, str | None, tuple[Any, ...], dict[str, Any] | None, int, int, float, Any, float, str | None, str | None,
    Job | None,
]  # fmt: skip
# Where each is in a record. Results reads TASK, KEY, EXPIRES and REASON itself (its queries, its expiry sweep).
TASK: Final = 0
KEY: Final = 1
_ARGS: Final = 2
_KWARGS: Final = 3
_PRIORITY: Final = 4
_ATTEMPT: Final = 5
_DUE: Final = 6
_VALUE: Final = 7
EXPIRES: Final = 8
REASON: Final = 9
_UNKEPT: Final = 10
_CANCELLED: Final = 11


class Outcome:
    """A succeeded job's ``value``, or a cancelled job's ``reason``, until ``expires`` (POSIX seconds).

    ``record`` holds it all (see :data:`Record`); :meth:`of` views a kept
    one. A cancellation keeps its ``Job`` (``cancelled``): the
    ``JobCancelled`` that ``result()`` raises names that very object, as
    its waiters saw. :meth:`rebuilt` makes a ``Job`` of a success again,
    for ``jobs()``.

    ``unkept`` says why a store could not keep the value (it is not JSON, or
    too large): the value lives in this process only, and after a restart
    ``Engine.result`` raises a ``KeyError`` saying so.
    """

    __slots__ = ("id", "record")

    def __init__(
        self, job: Job, value: Any, expires: float, *, reason: str | None = None, unkept: str | None = None
    ) -> None:
        # Results.succeeded builds this same record inline: test_job_fast holds the two alike.
        self.id = job.id
        self.record: Record = (
            job.task, job.key, job.args, job.kwargs or None, job.priority, job.attempt, job._due_wall, value, expires,
            reason, unkept, None if reason is None else job,
        )  # fmt: skip

    @classmethod
    def of(cls, job_id: str, record: Record) -> Outcome:
        """The outcome of job ``job_id`` that ``record`` keeps."""
        outcome = cls.__new__(cls)
        outcome.id = job_id
        outcome.record = record
        return outcome

    @property
    def task(self) -> str:
        return self.record[TASK]

    @property
    def key(self) -> str | None:
        return self.record[KEY]

    @property
    def args(self) -> tuple[Any, ...]:
        return self.record[_ARGS]

    @property
    def kwargs(self) -> dict[str, Any]:
        """The job's kwargs: the dict it was given, or a new empty one."""
        kwargs = self.record[_KWARGS]
        return {} if kwargs is None else kwargs

    @property
    def priority(self) -> int:
        return self.record[_PRIORITY]

    @property
    def attempt(self) -> int:
        """The attempts the job made (0 for one cancelled before it ran)."""
        return self.record[_ATTEMPT]

    @property
    def due(self) -> float:
        """The job's deadline, POSIX seconds."""
        return self.record[_DUE]

    @property
    def value(self) -> Any:
        return self.record[_VALUE]

    @property
    def expires(self) -> float:
        return self.record[EXPIRES]

    @property
    def reason(self) -> str | None:
        return self.record[REASON]

    @property
    def unkept(self) -> str | None:
        return self.record[_UNKEPT]

    @unkept.setter
    def unkept(self, why: str | None) -> None:
        self.record = (*self.record[:_UNKEPT], why, *self.record[_UNKEPT + 1 :])

    @property
    def cancelled(self) -> Job | None:
        """The cancelled job itself; None for a success, or a cancellation restored from a store."""
        return self.record[_CANCELLED]

    @property
    def state(self) -> JobState:
        """How the job ended: ``"succeeded"``, or ``"cancelled"`` (it has a reason)."""
        return "succeeded" if self.record[REASON] is None else "cancelled"

    @property
    def job(self) -> Job:
        """The cancelled job itself, or else a ``Job`` rebuilt from the outcome (see :meth:`rebuilt`)."""
        job = self.record[_CANCELLED]
        return self.rebuilt() if job is None else job

    def rebuilt(self) -> Job:
        """A new ``Job`` as the finished one was: id, task, key, args, kwargs, priority, deadline, attempts, state.

        What it ran on (its timer, a series' run's series, a cluster claim's
        fence) went with the job. A cancelled one's ``error`` is its
        ``JobCancelled``; it belongs to no engine until one adopts it.
        """
        job = Job(self.id, self.key, self.task, self.args, self.kwargs, self.priority, self.due, 0)
        job.attempt = self.attempt
        job.state = self.state
        reason = self.reason
        if reason is not None:
            job.error = JobCancelled(job, reason)
        return job

    def __repr__(self) -> str:
        return f"<Outcome of {self.id} {self.state} expires={self.expires}>"
