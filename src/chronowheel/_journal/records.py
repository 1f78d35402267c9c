"""What the journal says: the record types, their schema, and how replaying them rebuilds the live set.

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
* ``end`` -- a snapshot's last record: how many jobs it holds.

Each type has one schema (:func:`check_log_record`,
:func:`check_snapshot_record`): the decoder applies it to every record before
recovery replays it, so a malformed record is damage at its offset, never a
job rebuilt from wrong fields. Writing goes through :func:`encode_job`, which
refuses what could not be read back as it was written.

Deadlines are POSIX seconds (UTC wall clock): the monotonic clock does not
survive a restart. Sans-IO: plain dicts in and out.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final

import orjson

from .._errors import JobCancelled, RecordedError, error_type
from .._job import Job, JobState
from .._outcome import Outcome
from .._recurrence import MISFIRE, OVERLAP, recurrence_from_spec
from .._series import Series
from .format import MAX_PAYLOAD

__all__ = [
    "END",
    "ERR_MAX",
    "JSON_ONLY",
    "KINDS",
    "NEW_RECORD_MAX",
    "PRIORITY_MAX",
    "TIME_MAX",
    "apply",
    "check_log_record",
    "check_snapshot_record",
    "encode_done",
    "encode_job",
    "job_from_record",
    "job_record",
    "outcome_from_record",
]

KINDS: Final = ("job", "move", "cancel", "ack", "done")  # a log's record types
END: Final = "end"  # a snapshot's last record: {"t": "end", "count": n}
# A job record's states; running: a series between runs; paused: out of the wheel until resumed.
STATES: Final = ("pending", "failed", "dead", "running", "paused")
PRIORITY_MAX: Final = 2**63 - 1  # priorities are int64 in the wheel, negated: -PRIORITY_MAX..PRIORITY_MAX
TIME_MAX: Final = 2e12  # POSIX seconds: beyond the farthest deadline (now + 1e12 s) of any wall clock before year 33000
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
        f"{where} is {_shown(value)} ({type(value).__qualname__}), which would come back from the journal as"
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
    try:
        payload = orjson.dumps(job_record(job), option=JSON_ONLY)
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
    job = outcome.job
    record: dict[str, Any] = {
        "t": "done",
        "id": job.id,
        "task": job.task,
        "due": job._due_wall,
        "state": job.state,
        "exp": outcome.expires,
    }
    if job.key is not None:
        record["key"] = job.key
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
        outcome.unkept = f"{where} is {_shown(inexact)} ({type(inexact).__qualname__}), which JSON does not hold"
    record["lost"] = outcome.unkept
    return orjson.dumps(record)


def outcome_from_record(record: dict[str, Any]) -> Outcome:
    """A kept outcome rebuilt from its ``done`` record; its job holds no args (the record keeps none)."""
    job = Job(record["id"], record.get("key"), sys.intern(record["task"]), (), {}, 0, record["due"], 0)
    state: JobState = sys.intern(record["state"])  # type: ignore[assignment]  # checked by the schema
    job.state = state
    if "why" in record:
        job.error = JobCancelled(job, record["why"])
    return Outcome(job, record.get("value"), record["exp"], reason=record.get("why"), unkept=record.get("lost"))


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
    else:  # cancel, ack
        live.pop(record["id"], None)


# -- the schema ----------------------------------------------------------------------

_MISSING: Final = object()
_JOB_FIELDS: Final = frozenset(
    ("t", "id", "task", "args", "kwargs", "due", "prio", "att", "state", "key", "err", "etype", "emsg", "parent")
) | {"series", "after"}
_SERIES_FIELDS: Final = frozenset(("rec", "anchor", "nominal", "misfire", "grace", "overlap"))
_GONE_FIELDS: Final = frozenset(("t", "id"))
_MOVE_FIELDS: Final = frozenset(("t", "id", "due"))
_sound_specs: set[bytes] = set()  # recurrence specs already rebuilt once: a cron series has a record per run


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(kind: str, field: str, value: Any, must: str) -> str:
    return f"malformed {kind} record: {field} must be {must}, got {_shown(value)}"


def _is_time(value: Any) -> bool:
    kind = value.__class__
    return (kind is float or kind is int) and -TIME_MAX <= value <= TIME_MAX


def _is_id(value: Any) -> bool:
    return value.__class__ is str and value != ""


_TIME: Final = f"a number of POSIX seconds within ±{TIME_MAX:g}"


def _check_fields(kind: str, record: dict[str, Any], fields: frozenset[str]) -> str | None:
    if record.keys() <= fields:
        return None
    return f"malformed {kind} record: unknown fields {sorted(record.keys() - fields)}"


_PLAIN_STATES: Final = frozenset(("pending", "failed", "dead", "paused"))


def _sound_job(record: dict[str, Any]) -> bool:
    """True for a sound job record of the common shape (no series, parent or error): :func:`_check_job`, fast.

    Recovery checks every record; this is the one-shot job's record, in one
    expression (subscripts, not ``get`` calls: a C call each). Anything it
    does not accept goes to :func:`_check_job`, which decides, and words what
    is wrong.
    """
    try:
        job_id, task, due, prio, att = record["id"], record["task"], record["due"], record["prio"], record["att"]
        args, kwargs, state = record["args"], record["kwargs"], record["state"]
    except KeyError:
        return False
    size = len(record)  # the nine fields every job record has, and its key: no others
    key = None if size == 9 else record.get("key")
    return (
        size == (9 if key is None else 10)
        and job_id.__class__ is str
        and job_id != ""
        and task.__class__ is str
        and task != ""
        and args.__class__ is list
        and kwargs.__class__ is dict
        and (due.__class__ is float or due.__class__ is int)
        and -TIME_MAX <= due <= TIME_MAX
        and prio.__class__ is int
        and -PRIORITY_MAX <= prio <= PRIORITY_MAX
        and att.__class__ is int
        and 0 <= att <= PRIORITY_MAX
        and state.__class__ is str  # before the set: an unhashable one would raise there
        and state in _PLAIN_STATES
        and (key is None or (key.__class__ is str and key != ""))
    )


def _check_job(record: dict[str, Any]) -> str | None:
    get = record.get
    problem = _check_fields("job", record, _JOB_FIELDS)
    if problem is not None:
        return problem
    for field in ("id", "task"):
        if not _is_id(get(field)):
            return _bad("job", field, get(field, _MISSING), "a non-empty string")
    if get("args").__class__ is not list:
        return _bad("job", "args", get("args", _MISSING), "a list")
    if get("kwargs").__class__ is not dict:
        return _bad("job", "kwargs", get("kwargs", _MISSING), "a dict")
    if not _is_time(get("due")):
        return _bad("job", "due", get("due", _MISSING), _TIME)
    prio = get("prio")
    if prio.__class__ is not int or not -PRIORITY_MAX <= prio <= PRIORITY_MAX:
        return _bad("job", "prio", get("prio", _MISSING), f"an int within ±{PRIORITY_MAX}")
    att = get("att")
    if att.__class__ is not int or not 0 <= att <= PRIORITY_MAX:
        return _bad("job", "att", get("att", _MISSING), "an int >= 0")
    state = get("state")
    if state not in STATES:
        return _bad("job", "state", get("state", _MISSING), f"one of {', '.join(STATES)}")
    key = get("key")
    if key is not None and not _is_id(key):
        return _bad("job", "key", key, "a non-empty string or null")
    for field in ("err", "etype", "emsg"):
        text = get(field)
        if text is not None and text.__class__ is not str:
            return _bad("job", field, text, "a string or null")
    after = get("after", _MISSING)
    if after is not _MISSING and not (
        after.__class__ is list and after and all(map(_is_id, after)) and state in ("pending", "paused")
    ):
        return _bad("job", "after", after, "a non-empty list of job ids, on a pending or paused job")
    parent, series = get("parent", _MISSING), get("series")
    if parent is not _MISSING and not _is_id(parent):
        return _bad("job", "parent", parent, "the id of a recurring job")
    if series is not None:
        if parent is not _MISSING:
            return "malformed job record: a run of a recurring job (with a parent) has no series of its own"
        return _check_series(series)
    if state == "running":
        return "malformed job record: only a recurring job (with a series) can be running between runs"
    return None


def _check_series(series: Any) -> str | None:
    if series.__class__ is not dict:
        return _bad("job", "series", series, "a dict")
    problem = _check_fields("job series", series, _SERIES_FIELDS)
    if problem is not None:
        return problem
    get: Any = series.get
    for field in ("anchor", "nominal"):
        if not _is_time(get(field)):
            return _bad("job", f"series.{field}", get(field, _MISSING), _TIME)
    grace = get("grace")
    if not (_is_time(grace) and grace >= 0):
        return _bad("job", "series.grace", get("grace", _MISSING), "a number of seconds >= 0")
    for field, choices in (("misfire", MISFIRE), ("overlap", OVERLAP)):
        if get(field) not in choices:
            return _bad("job", f"series.{field}", get(field, _MISSING), f"one of {', '.join(choices)}")
    spec = get("rec")
    if spec.__class__ is not dict:
        return _bad("job", "series.rec", get("rec", _MISSING), "a recurrence (a dict)")
    known = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
    if known not in _sound_specs:
        try:
            recurrence_from_spec(spec)
        except Exception as exc:  # whatever Every or Cron refuse: a recurrence that cannot be rebuilt
            return f"malformed job record: series.rec {_shown(spec)} is not a recurrence: {exc}"
        if len(_sound_specs) >= 4096:
            _sound_specs.clear()
        _sound_specs.add(known)
    return None


def _check_move(record: dict[str, Any]) -> str | None:
    problem = _check_fields("move", record, _MOVE_FIELDS)
    if problem is not None:
        return problem
    if not _is_id(record.get("id")):
        return _bad("move", "id", record.get("id", _MISSING), "a non-empty string")
    if not _is_time(record.get("due")):
        return _bad("move", "due", record.get("due", _MISSING), _TIME)
    return None


_DONE_FIELDS: Final = frozenset(("t", "id", "task", "due", "state", "exp", "key", "value", "why", "lost"))


def _check_done(record: dict[str, Any]) -> str | None:
    get = record.get
    problem = _check_fields("done", record, _DONE_FIELDS)
    if problem is not None:
        return problem
    for field in ("id", "task"):
        if not _is_id(get(field)):
            return _bad("done", field, get(field, _MISSING), "a non-empty string")
    for field in ("due", "exp"):
        if not _is_time(get(field)):
            return _bad("done", field, get(field, _MISSING), _TIME)
    state = get("state")
    if state not in ("succeeded", "cancelled"):
        return _bad("done", "state", get("state", _MISSING), "one of succeeded, cancelled")
    key = get("key")
    if key is not None and not _is_id(key):
        return _bad("done", "key", key, "a non-empty string or null")
    for field in ("why", "lost"):
        text = get(field)
        if text is not None and text.__class__ is not str:
            return _bad("done", field, text, "a string or null")
    if state == "cancelled" and "why" not in record:
        return "malformed done record: a cancelled job's outcome says why (why)"
    return None


def _check_gone(record: dict[str, Any]) -> str | None:
    kind = record["t"]
    problem = _check_fields(kind, record, _GONE_FIELDS)
    if problem is not None:
        return problem
    if not _is_id(record.get("id")):
        return _bad(kind, "id", record.get("id", _MISSING), "a non-empty string")
    return None


def check_log_record(record: dict[str, Any]) -> str | None:
    """None if ``record`` is a sound log record (``job``, ``move``, ``cancel``, ``ack``, ``done``); else the fault."""
    kind = record["t"]
    if kind == "job":
        return None if _sound_job(record) else _check_job(record)
    if kind == "done":
        return _check_done(record)
    if kind == "move":
        return _check_move(record)
    if kind in ("cancel", "ack"):
        return _check_gone(record)
    if kind == END:
        return "an end record belongs to a snapshot, not to a log"
    return f"unknown record type {_shown(kind)}"


def check_snapshot_record(record: dict[str, Any]) -> str | None:
    """None if ``record`` is a sound snapshot record (``job``, ``done``, or the ``end`` record); else what is wrong."""
    kind = record["t"]
    if kind == "job":
        return None if _sound_job(record) else _check_job(record)
    if kind == "done":
        return _check_done(record)
    if kind == END:
        problem = _check_fields(END, record, frozenset(("t", "count")))
        count: Any = record.get("count", _MISSING)
        if problem is None and (count.__class__ is not int or count < 0):
            problem = _bad(END, "count", count, "an int >= 0")
        return problem
    return f"unexpected {_shown(kind)} record in a snapshot (it holds job and done records and an end record)"
