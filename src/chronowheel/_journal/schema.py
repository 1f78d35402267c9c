"""The journal records' schema: what each record type holds, checked before recovery replays a record.

Each type has one schema (:func:`check_log_record`, :func:`check_snapshot_record`,
and their run-at-a-time forms, which the decoder calls): a malformed record is
damage at its offset, never a job rebuilt from wrong fields. The common
record, a one-shot job's, is passed by one expression in a loop
(:func:`sound_jobs_py`, or its native twin); anything else gets the full check, which words what
is wrong. Sans-IO: plain dicts in, None or a fault out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from .._recurrence import MISFIRE, OVERLAP, recurrence_from_spec
from . import native

__all__ = [
    "COLUMNS",
    "END",
    "JOBS",
    "KINDS",
    "PRIORITY_MAX",
    "STATES",
    "TIME_MAX",
    "check_log_record",
    "check_log_records",
    "check_snapshot_record",
    "check_snapshot_records",
    "shown",
    "sound_jobs_py",
]

KINDS: Final = ("job", "move", "cancel", "ack", "done")  # a log's record types
END: Final = "end"  # a snapshot's last record: {"t": "end", "count": n}
JOBS: Final = "jobs"  # a snapshot's chunk of usual jobs, as columns (format version 3)
# A job record's states; running: a series between runs; paused: out of the wheel until resumed.
STATES: Final = ("pending", "failed", "dead", "running", "paused")
PRIORITY_MAX: Final = 2**63 - 1  # priorities are int64 in the wheel, negated: -PRIORITY_MAX..PRIORITY_MAX
TIME_MAX: Final = 2e12  # POSIX seconds: beyond the farthest deadline (now + 1e12 s) of any wall clock before year 33000

_MISSING: Final = object()
_JOB_FIELDS: Final = frozenset(
    ("t", "id", "task", "args", "kwargs", "due", "prio", "att", "state", "key", "err", "etype", "emsg", "parent")
) | {"series", "after"}
_SERIES_FIELDS: Final = frozenset(("rec", "anchor", "nominal", "misfire", "grace", "overlap"))
_GONE_FIELDS: Final = frozenset(("t", "id"))
_MOVE_FIELDS: Final = frozenset(("t", "id", "due"))
_sound_specs: set[bytes] = set()  # recurrence specs already rebuilt once: a cron series has a record per run


def shown(value: Any) -> str:
    """``value`` as a fault names it: its repr, cut at 60 characters."""
    if value is _MISSING:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(kind: str, field: str, value: Any, must: str) -> str:
    return f"malformed {kind} record: {field} must be {must}, got {shown(value)}"


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


def sound_jobs_py(records: list[dict[str, Any]], start: int) -> int:
    """The index of the first record from ``start`` that is not a sound ``job`` record of the common shape.

    The common shape: a one-shot job with no series, parent or error. This is
    :func:`_check_job` for it, fast: the loop over a run of records in one
    call, each record in one expression (subscripts, not ``get`` calls: a C
    call each). Anything it does not accept goes to :func:`_check_job`, which
    decides, and words what is wrong. The twin of ``_cjournal.sound_jobs``
    (used when it is built), which may pass fewer records, never more.
    """
    for index in range(start, len(records)):
        record = records[index]
        try:
            kind, job_id, task, due, prio = record["t"], record["id"], record["task"], record["due"], record["prio"]
            att, args, kwargs, state = record["att"], record["args"], record["kwargs"], record["state"]
        except KeyError:
            return index
        size = len(record)  # the nine fields every job record has, and its key: no others
        key = None if size == 9 else record.get("key")
        if not (
            kind == "job"
            and size == (9 if key is None else 10)
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
        ):
            return index
    return len(records)


_sound_jobs: Callable[[list[dict[str, Any]], int], int] = (
    sound_jobs_py if native.sound_jobs is None else native.sound_jobs
)


def _first_fault(
    records: list[dict[str, Any]], check: Callable[[dict[str, Any]], str | None]
) -> tuple[int, str] | None:
    """(index, fault) of the first record ``check`` refuses; the usual job records are passed by :func:`_sound_jobs`."""
    index, count = 0, len(records)
    while (index := _sound_jobs(records, index)) < count:
        fault = check(records[index])
        if fault is not None:
            return index, fault
        index += 1
    return None


def check_log_records(records: list[dict[str, Any]]) -> tuple[int, str] | None:
    """:func:`check_log_record` over a run of records: (index, fault) of the first unsound one, or None."""
    return _first_fault(records, check_log_record)


def check_snapshot_records(records: list[dict[str, Any]]) -> tuple[int, str] | None:
    """:func:`check_snapshot_record` over a run of records: (index, fault) of the first unsound one, or None."""
    return _first_fault(records, check_snapshot_record)


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
            return f"malformed job record: series.rec {shown(spec)} is not a recurrence: {exc}"
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
        return _check_job(record)
    if kind == "done":
        return _check_done(record)
    if kind == "move":
        return _check_move(record)
    if kind in ("cancel", "ack"):
        return _check_gone(record)
    if kind == END:
        return "an end record belongs to a snapshot, not to a log"
    return f"unknown record type {shown(kind)}"


_JOBS_FIELDS: Final = frozenset(("t", "id", "task", "args", "kwargs", "due", "prio", "att", "key"))
COLUMNS: Final = (
    "id",
    "task",
    "args",
    "due",
    "prio",
    "att",
    "key",
    "kwargs",
)  # a chunk's; kwargs only if one is not {}


_COLUMN_MUST: Final = {
    "id": "non-empty strings",
    "task": "non-empty strings",
    "key": "non-empty strings or nulls",
    "args": "lists",
    "kwargs": "dicts",
    "due": f"numbers of POSIX seconds within ±{TIME_MAX:g}",
    "prio": f"ints within ±{PRIORITY_MAX}",
    "att": "ints >= 0",
}


def _column_sound(name: str, column: list[Any]) -> bool:
    """A chunk's column holds what it must: each test a few loops in C over the whole column."""
    kinds = set(map(type, column))
    if name in ("id", "task"):
        return kinds == {str} and "" not in column
    if name == "key":
        return kinds <= {str, type(None)} and "" not in column
    if name == "args":
        return kinds == {list}
    if name == "kwargs":
        return kinds == {dict}
    if name == "due":
        return kinds <= {float, int} and min(column) >= -TIME_MAX and max(column) <= TIME_MAX
    low = -PRIORITY_MAX if name == "prio" else 0
    return kinds == {int} and low <= min(column) and max(column) <= PRIORITY_MAX


def _column_fault(name: str, column: list[Any]) -> str | None:
    """What is wrong with a chunk's column (of the right length), naming the first job's value that is; or None."""
    if _column_sound(name, column):
        return None
    first = next(i for i, value in enumerate(column) if not _column_sound(name, [value]))
    return f"malformed jobs record: {name}[{first}] must be one of {_COLUMN_MUST[name]}, got {shown(column[first])}"


def _check_jobs(record: dict[str, Any]) -> str | None:
    """A chunk of pending one-shot jobs as columns, one value per job in each (``kwargs`` absent: all empty)."""
    problem = _check_fields(JOBS, record, _JOBS_FIELDS)
    if problem is not None:
        return problem
    ids = record.get("id")
    if ids.__class__ is not list or not ids:
        return _bad(JOBS, "id", record.get("id", _MISSING), "a non-empty list of job ids")
    for name in COLUMNS if "kwargs" in record else COLUMNS[:-1]:
        column = record.get(name, _MISSING)
        if column.__class__ is not list or len(column) != len(ids):
            return _bad(JOBS, name, column, f"a list of {len(ids)} values, one per job")
        problem = _column_fault(name, column)
        if problem is not None:
            return problem
    return None


def check_snapshot_record(record: dict[str, Any]) -> str | None:
    """None if ``record`` is a sound snapshot record (``job``, ``jobs``, ``done``, or ``end``); else what is wrong."""
    kind = record["t"]
    if kind == "job":
        return _check_job(record)
    if kind == JOBS:
        return _check_jobs(record)
    if kind == "done":
        return _check_done(record)
    if kind == END:
        problem = _check_fields(END, record, frozenset(("t", "count")))
        count: Any = record.get("count", _MISSING)
        if problem is None and (count.__class__ is not int or count < 0):
            problem = _bad(END, "count", count, "an int >= 0")
        return problem
    return f"unexpected {shown(kind)} record in a snapshot (it holds job, jobs and done records and an end record)"
