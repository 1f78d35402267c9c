"""What the journal says: the record types, and how replaying them rebuilds the live set.

Every record is a dict with ``"t"`` (its type) and ``"id"`` (the job's id),
and every record sets state outright rather than changing it by a delta, so
replaying a record twice leaves the same state as once. That is what lets a
snapshot be written while jobs keep changing: a change made after the
snapshot began is in the new log too, and replaying it again is harmless.

* ``job`` -- a job's whole durable state (scheduled, retried, redriven, dead,
  a recurring job filed at its next run, a run of a recurring job).
* ``move`` -- a reschedule: the new deadline.
* ``cancel`` / ``ack`` -- the job is gone: cancelled, or ran to success.

Deadlines are POSIX seconds (UTC wall clock): the monotonic clock does not
survive a restart. Sans-IO: plain dicts in and out.
"""

from __future__ import annotations

import sys
from typing import Any, Final, cast

from ._job import Job, JobState
from ._recurrence import recurrence_from_spec
from ._series import Series

__all__ = ["KINDS", "apply", "job_from_record", "job_record"]

KINDS: Final = ("job", "move", "cancel", "ack")


def job_record(job: Job) -> dict[str, Any]:
    """The ``job`` record of a job as it stands: what recovery rebuilds it from.

    A job that is running counts as not run: if the process dies now, the
    run was never acknowledged and happens again (at-least-once).
    """
    state, attempt = job.state, job.attempt
    series = job._series
    if state == "running" and series is None:
        state, attempt = "pending", attempt - 1
    record: dict[str, Any] = {
        "t": "job",
        "id": job.id,
        "task": job.task,
        "args": job.args,
        "kwargs": job.kwargs,
        "due": job._due_wall,
        "prio": job.priority,
        "att": attempt,
        "state": state,  # pending, failed (waiting for a retry), dead; running: a series waiting for its run
    }
    if job.key is not None:
        record["key"] = job.key
    if job.traceback is not None:
        record["err"] = job.traceback
    if job._parent is not None:
        record["parent"] = job._parent.id
    if series is not None:
        record["series"] = {
            "rec": series.recurrence.to_spec(),
            "anchor": series.anchor,
            "nominal": series.nominal,
            "misfire": series.misfire,
            "grace": series.grace,
            "overlap": series.overlap,
        }
    return record


def job_from_record(record: dict[str, Any]) -> Job:
    """A job rebuilt from its ``job`` record (JSON turned its tuples into lists).

    Task names and states are interned: a million recovered jobs share a
    handful of strings instead of holding a copy each.
    """
    job = Job(
        record["id"],
        record.get("key"),
        sys.intern(record["task"]),
        tuple(record["args"]),
        record["kwargs"],
        record["prio"],
        record["due"],
        0,
    )
    job.attempt = record["att"]
    job.state = cast(JobState, sys.intern(record["state"]))
    job.traceback = record.get("err")
    spec = record.get("series")
    if spec is not None:
        job._series = Series(
            recurrence_from_spec(spec["rec"]),
            spec["anchor"],
            spec["nominal"],
            spec["misfire"],
            spec["grace"],
            spec["overlap"],
        )
    return job


def apply(live: dict[str, dict[str, Any]], record: dict[str, Any]) -> None:
    """Replay one record onto the live set (job id -> its ``job`` record)."""
    kind = record["t"]
    if kind == "job":
        live[record["id"]] = record
    elif kind == "move":
        job = live.get(record["id"])
        if job is not None:
            job["due"] = record["due"]
            if "series" in job:
                job["series"]["nominal"] = record["due"]
    elif kind in ("cancel", "ack"):
        live.pop(record["id"], None)
    else:
        raise ValueError(f"unknown record type {kind!r}")
