"""What the journal says: jobs and outcomes to records and back, and how replaying records rebuilds the live set.

Every record is a dict with ``"t"`` (its type) and ``"id"`` (the job's id),
and every record sets state outright rather than changing it by a delta, so
replaying a record twice leaves the same state as once. That is what lets a
snapshot be written while jobs keep changing: a change made after the
snapshot began is in the new log too, and replaying it again is harmless.

* ``job`` -- a job's whole durable state (scheduled, retried, redriven, dead,
  a recurring job filed at its next run, a run of a recurring job).
* ``move`` -- a reschedule: the new deadline.
* ``cancel`` / ``ack`` -- the job is gone: cancelled (or a dead letter
  discarded), or ran to success.
* ``done`` -- the job is gone, and its outcome is kept until ``exp``: its
  return value (``value``; ``lost`` says why a value was not kept) or the
  reason it was cancelled (``why``). Written instead of ``ack``/``cancel``
  when ``result_ttl`` > 0; a snapshot holds the unexpired ones.
* ``jobs`` -- in a snapshot (format version 3): a chunk of pending one-shot
  jobs of the usual shape, as columns (``id``, ``task``, ``args``, ``due``,
  ``prio``, ``att``, ``key``, and ``kwargs`` unless all are empty): one
  record for a few thousand jobs, read without a dict per job; it stands
  for their ``job`` records (:func:`expand_jobs`).
* ``end`` -- a snapshot's last record: how many records come before it.

Each type has one schema (``schema``): the decoder applies it to every
record before recovery replays it. This module is the other half: a job to
its record and back. Writing goes through :func:`encode_job`, which refuses
what could not be read back as it was written.

Deadlines are POSIX seconds (UTC wall clock): the monotonic clock does not
survive a restart. Sans-IO: plain dicts in and out.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final

import orjson

from .._errors import RecordedError, error_type
from .._job import Job, JobState
from .._outcome import Outcome, Record
from .._recurrence import recurrence_from_spec
from .._series import Series
from .format import MAX_PAYLOAD
from .schema import JOBS, shown

__all__ = [
    "ERR_MAX",
    "JSON_ONLY",
    "NEW_RECORD_MAX",
    "apply",
    "encode_done",
    "encode_job",
    "encode_jobs",
    "expand_jobs",
    "job_from_record",
    "job_record",
    "outcome_from_record",
    "plain",
    "replay_records",
]

ERR_MAX: Final = 8192  # characters of a failure's traceback a record keeps: its end, where the error is
# What a job's later records can add to its first one: the error's traceback and message (at most 6
# bytes a character, escaped), the attempt count, a run's parent id.
# A new job's record leaves that much room under the limit.
_GROWTH: Final = 12 * ERR_MAX + 16 * 1024
NEW_RECORD_MAX: Final = MAX_PAYLOAD - _GROWTH
# Only what JSON holds round-trips: datetimes, dataclasses and subclasses of builtins are refused by orjson
# with these options; _exact refuses the rest (NaN, UUID, Enum members, Fragment) that orjson would change.
JSON_ONLY: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


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
        "state": state,  # pending, failed (a retry), dead, paused; running: a series waiting for its run
    }
    if job.key is not None:
        record["key"] = job.key
    if job.traceback is not None:
        error = job.traceback
        record["err"] = error if len(error) <= ERR_MAX else "...\n" + error[-ERR_MAX:]
    if job.error is not None:  # its type and message: what JobFailed names after a restart
        message = str(job.error)
        record["etype"] = error_type(job.error)
        record["emsg"] = message if len(message) <= ERR_MAX else message[:ERR_MAX] + "..."
    if job._parent is not None:
        record["parent"] = job._parent.id
    if job._after is not None:
        record["after"] = job._after  # the parents it still waits for
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


_ATOMS: Final = frozenset({str, int, bool, type(None)})


def _exact(value: Any) -> bool:
    """True if ``value`` comes back from JSON as itself: same types (but tuples, which come back as lists)."""
    kind = value.__class__
    if kind in _ATOMS:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list or kind is tuple:
        return all(map(_exact, value))
    if kind is dict:
        return all(map(_exact, value.values()))  # orjson has refused keys that are not exactly str
    return False


def _first_inexact(value: Any, where: str) -> tuple[str, Any]:
    """Where in ``value`` (known not :func:`_exact`) the first value JSON would change is, and that value."""
    kind = value.__class__
    items = enumerate(value) if kind is list or kind is tuple else value.items() if kind is dict else ()
    for name, item in items:
        if not _exact(item):
            return _first_inexact(item, f"{where}[{name!r}]")
    return where, value


def _inexact(job: Job) -> str:
    where, value = (
        _first_inexact(list(job.args), "args")
        if not all(map(_exact, job.args))
        else _first_inexact(job.kwargs, "kwargs")
    )
    try:
        back = repr(orjson.loads(orjson.dumps(value, option=JSON_ONLY)))
    except orjson.JSONDecodeError:
        back = "nothing readable"
    return (
        f"{where} is {shown(value)} ({type(value).__qualname__}), which would come back from the journal as"
        f" {back} after a restart; args and kwargs of a journaled job must be JSON values (str, int, finite"
        " float, bool, None, and lists, tuples and str-keyed dicts of them)"
    )


def encode_job(job: Job, *, new: bool) -> bytes:
    """The job's ``job`` record, encoded; raises rather than write what could not be read back.

    ``new``: the job is being scheduled, so nothing has changed yet and
    refusing is still possible: its args must come back as themselves, and
    its record must leave room for what its later records add (an error
    text, an attempt count), so that those never outgrow the decoder's limit.
    """
    if (
        job._series is None
        and job._parent is None
        and job._after is None
        and job.traceback is None
        and job.error is None
        and job.state != "running"
    ):  # job_record(), inlined for a plain job: every durable schedule(), every job of a snapshot
        record: dict[str, Any] = {
            "t": "job",
            "id": job.id,
            "task": job.task,
            "args": job.args,
            "kwargs": job.kwargs,
            "due": job._due_wall,
            "prio": job.priority,
            "att": job.attempt,
            "state": job.state,
        }
        if job.key is not None:
            record["key"] = job.key
    else:
        record = job_record(job)
    try:
        payload = orjson.dumps(record, option=JSON_ONLY)
    except TypeError as exc:  # orjson.JSONEncodeError
        raise TypeError(f"args and kwargs of a journaled job must be JSON values: {exc}") from None
    if new:  # inline, scalars first: most args are a few of them, and this is every durable schedule()
        for value in job.args:
            if value.__class__ not in _ATOMS and not _exact(value):
                raise TypeError(_inexact(job))
        if job.kwargs and not _exact(job.kwargs):
            raise TypeError(_inexact(job))
    limit = NEW_RECORD_MAX if new else MAX_PAYLOAD
    if len(payload) > limit:
        raise ValueError(
            f"args and kwargs of a journaled job must fit in one journal record: this job's record takes"
            f" {len(payload):,} bytes, over the limit of {limit:,}"
            + (f" (the decoder's {MAX_PAYLOAD:,}, less {_GROWTH:,} for what its later records add)" if new else "")
        )
    return payload


def _done_record(outcome: Outcome) -> dict[str, Any]:
    record: dict[str, Any] = {
        "t": "done",
        "id": outcome.id,
        "task": outcome.task,
        "due": outcome.due,
        "state": outcome.state,
        "exp": outcome.expires,
    }
    if outcome.key is not None:
        record["key"] = outcome.key
    if outcome.reason is not None:
        reason = outcome.reason
        record["why"] = reason if len(reason) <= ERR_MAX else reason[:ERR_MAX] + "..."
    return record


def encode_done(outcome: Outcome) -> bytes:
    """The ``done`` record of a finished job's outcome; a value JSON cannot hold is left out, and why is said.

    The job did succeed, so nothing is refused here: the value stays in
    memory, ``outcome.unkept`` and the record's ``lost`` say why it was not
    written, and after a restart its result is a ``KeyError`` naming that.
    """
    record = _done_record(outcome)
    if outcome.reason is not None:
        return orjson.dumps(record)
    value = outcome.value
    if _exact(value):
        try:
            payload = orjson.dumps({**record, "value": value}, option=JSON_ONLY)
        except TypeError:  # a key that is not a str: orjson refuses what _exact does not look at
            pass
        else:
            if len(payload) <= NEW_RECORD_MAX:
                return payload
            outcome.unkept = f"it takes {len(payload):,} bytes as JSON, over the journal's limit of {NEW_RECORD_MAX:,}"
    if outcome.unkept is None:
        where, inexact = _first_inexact([value], "value")
        where = where.replace("value[0]", "the value", 1)
        outcome.unkept = f"{where} is {shown(inexact)} ({type(inexact).__qualname__}), which JSON does not hold"
    record["lost"] = outcome.unkept
    return orjson.dumps(record)


def outcome_from_record(record: dict[str, Any]) -> Outcome:
    """A kept outcome rebuilt from its ``done`` record; no args, priority 0, attempt 0 (the record keeps none)."""
    reason = record.get("why") if record["state"] == "cancelled" else None
    kept: Record = (
        sys.intern(record["task"]), record.get("key"), (), None, 0, 0, record["due"], record.get("value"),
        record["exp"], reason, record.get("lost"), None,
    )  # fmt: skip
    return Outcome.of(record["id"], kept)  # its Job is rebuilt when shown


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
    state: JobState = sys.intern(record["state"])  # type: ignore[assignment]  # checked by the schema; cast() is a frame
    job.state = state
    job.traceback = record.get("err")
    if "etype" in record:
        job.error = RecordedError(record["etype"], record.get("emsg", ""))
    if "after" in record:
        job._after = list(record["after"])
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


def plain(job: Job) -> bool:
    """A pending one-shot job of the usual shape (no series, run, parents or error): what a ``jobs`` chunk holds."""
    return (
        job.state == "pending"
        and job._series is None
        and job._parent is None
        and job._after is None
        and job.traceback is None
        and job.error is None
    )


def encode_jobs(jobs: list[Job]) -> bytes:
    """A ``jobs`` chunk of :func:`plain` jobs, encoded: their ``job`` records as columns (see :func:`expand_jobs`).

    No check: the jobs were checked when scheduled (:func:`encode_job`), as a
    snapshot's records are. May be larger than one record may be: the caller
    looks (``MAX_PAYLOAD``).
    """
    record: dict[str, Any] = {
        "t": JOBS,
        "id": [job.id for job in jobs],
        "task": [job.task for job in jobs],
        "args": [job.args for job in jobs],
        "due": [job._due_wall for job in jobs],
        "prio": [job.priority for job in jobs],
        "att": [job.attempt for job in jobs],
        "key": [job.key for job in jobs],
    }
    kwargs = [job.kwargs for job in jobs]
    if any(kwargs):
        record["kwargs"] = kwargs
    try:
        return orjson.dumps(record, option=JSON_ONLY)
    except TypeError as exc:  # orjson.JSONEncodeError: args changed in place since they were checked
        raise TypeError(f"args and kwargs of a journaled job must be JSON values: {exc}") from None


def expand_jobs(record: dict[str, Any], start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
    """The ``job`` records a checked ``jobs`` chunk stands for, in order: those from ``start`` to ``stop``."""
    kwargs = record.get("kwargs")
    columns = [record[name][start:stop] for name in ("id", "task", "args", "due", "prio", "att", "key")]
    jobs = []
    for index, (job_id, task, args, due, prio, att, key) in enumerate(zip(*columns, strict=True), start):
        job = {
            "t": "job",
            "id": job_id,
            "task": task,
            "args": args,
            "kwargs": {} if kwargs is None else kwargs[index],
            "due": due,
            "prio": prio,
            "att": att,
            "state": "pending",
        }
        if key is not None:
            job["key"] = key
        jobs.append(job)
    return jobs


def apply(live: dict[str, dict[str, Any]], record: dict[str, Any]) -> None:
    """Replay one record, checked by :func:`check_log_record`, onto the live set (job id -> its ``job`` record)."""
    kind = record["t"]
    if kind in ("job", "done"):  # a done record stands for its job until it expires
        live[record["id"]] = record
    elif kind == "move":
        job = live.get(record["id"])
        if job is not None and job["t"] == "job":
            job["due"] = record["due"]
            if "series" in job:
                job["series"]["nominal"] = record["due"]
    elif kind == JOBS:
        for job in expand_jobs(record):
            live[job["id"]] = job
    else:  # cancel, ack
        live.pop(record["id"], None)


def replay_records(live: dict[str, dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """:func:`apply` over a run of records, the usual ``job`` record inline: the live set as records."""
    for record in records:
        if record["t"] == "job":
            live[record["id"]] = record
        else:
            apply(live, record)
