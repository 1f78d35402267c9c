"""How a finished job ended, kept for ``result_ttl`` seconds: its return value, or why it was cancelled."""

from __future__ import annotations

from typing import Any

from ._errors import JobCancelled
from ._job import Job, JobState

__all__ = ["Outcome"]


class Outcome:
    """A succeeded job's ``value``, or a cancelled job's ``reason``, until ``expires`` (POSIX seconds).

    Every success keeps one for ``result_ttl``, so it holds only what
    ``result()``, ``jobs()`` and a ``done`` record need of its job (``id``,
    ``task``, ``key``, ``args``, ``kwargs`` or None when empty, ``priority``,
    ``attempt``, ``due``: its deadline), not the ``Job``: a Job holds its
    attempt's state too (its timer handle, its series, its engine), and
    keeping it kept twice the bytes (docs/operations.md, "Memory").
    :meth:`rebuilt` makes a ``Job`` of it again for ``jobs()``.

    A cancellation keeps its ``Job`` (``cancelled``): the ``JobCancelled``
    that ``result()`` raises names that very object, as its waiters saw.

    ``unkept`` says why a store could not keep the value (it is not JSON, or
    too large): the value lives in this process only, and after a restart
    ``Engine.result`` raises a ``KeyError`` saying so.
    """

    __slots__ = (
        "args",
        "attempt",
        "cancelled",
        "due",
        "expires",
        "id",
        "key",
        "kwargs",
        "priority",
        "reason",
        "task",
        "unkept",
        "value",
    )

    def __init__(
        self, job: Job, value: Any, expires: float, *, reason: str | None = None, unkept: str | None = None
    ) -> None:
        # Results.succeeded sets these same slots inline, without this frame: test_job_fast holds the two alike.
        self.id = job.id
        self.task = job.task
        self.key = job.key
        self.args = job.args
        self.kwargs = job.kwargs or None
        self.priority = job.priority
        self.attempt = job.attempt
        self.due = job._due_wall
        self.value = value
        self.expires = expires
        self.reason = reason
        self.unkept = unkept
        self.cancelled: Job | None = None if reason is None else job

    @property
    def state(self) -> JobState:
        """How the job ended: ``"succeeded"``, or ``"cancelled"`` (it has a reason)."""
        return "succeeded" if self.reason is None else "cancelled"

    @property
    def job(self) -> Job:
        """The cancelled job itself; for a success, a ``Job`` rebuilt from the outcome (see :meth:`rebuilt`)."""
        return self.rebuilt() if self.cancelled is None else self.cancelled

    def rebuilt(self) -> Job:
        """A new ``Job`` as the finished one was: id, task, key, args, kwargs, priority, deadline, attempts, state.

        What it ran on (its timer, a series' run's series, a cluster claim's
        fence) is gone with the job. A cancelled one's ``error`` is its
        ``JobCancelled``; it belongs to no engine until one adopts it.
        """
        job = Job(self.id, self.key, self.task, self.args, self.kwargs or {}, self.priority, self.due, 0)
        job.attempt = self.attempt
        job.state = self.state
        if self.reason is not None:
            job.error = JobCancelled(job, self.reason)
        return job

    def __repr__(self) -> str:
        return f"<Outcome of {self.id} {self.state} expires={self.expires}>"
