"""``python -m chronowheel inspect``: what a journal holds, read-only.

The reading is recovery's own (:func:`chronowheel._journal.recovery.plan`, which
changes nothing): this module only words it, without truncating, renaming
or locking anything.

Plain functions returning data and text, so the tests need no subprocess:
:func:`inspect_journal` builds a :class:`Report`, :func:`render_text` and
:func:`render_json` print it, :func:`command` is the whole subcommand.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from ._journal.format import LOG, SNAPSHOT, Record
from ._journal.records import expand_jobs
from ._journal.recovery import END, FileVerdict, RecoveryPlan, Role, plan
from ._journal.schema import JOBS

__all__ = [
    "JournalMissing",
    "FileReport",
    "Report",
    "command",
    "exit_status",
    "inspect_journal",
    "iso",
    "live_summary",
    "render_json",
    "render_text",
    "report_data",
]

_NEXT_DUE: Final = 10
_WAITING: Final = ("pending", "failed")  # the states of a job that waits in the wheel for its deadline
_KINDS: Final = {LOG: "log", SNAPSHOT: "snapshot"}
_SUFFIXES: Final = (".snapshot", ".old", ".lock", ".tmp")


class JournalMissing(Exception):
    """There is no journal at the path (exit status 2)."""


@dataclass
class FileReport:
    """One journal file as recovery would read it."""

    role: Role
    path: str
    size: int
    kind: str | None = None  # "log" or "snapshot" per its header; None if the header is unreadable
    generation: int | None = None
    version: int | None = None  # the format version of its header
    identity: str | None = None  # the journal identity in its header, as hex (None in version 1)
    seq: int | None = None  # its header's record number: a log's first, the first a snapshot does not cover
    records: int = 0  # well-formed records before the ending
    replayed: bool = False  # False: skipped (already in the snapshot) or unreadable
    note: str = ""  # why it is skipped, or what recovery does with it
    status: Literal["clean", "torn", "corrupt"] = "clean"
    offset: int = 0  # where the good bytes stop
    reason: str = ""
    dropped: int = 0  # bytes after ``offset``: what a torn tail loses at recovery
    problem: str | None = None  # recovery's JournalCorrupt message, if it would refuse this file
    problem_offset: int | None = None


@dataclass
class Report:
    path: str
    files: list[FileReport] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # *.tmp files: never read, deleted by recovery
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> its job record
    records: list[dict[str, Any]] | None = None  # every record, summarised; None unless asked for
    actions: list[str] = field(default_factory=list)  # what recovery would change on disk
    generation: int = 0  # the log generation an engine would append to after recovery
    in_use: bool | None = None  # an engine holds the lock (None: cannot tell)

    @property
    def problem(self) -> FileReport | None:
        """The first file recovery would refuse (it stops there), if any."""
        return next((file for file in self.files if file.problem is not None), None)


# -- reading ------------------------------------------------------------------------


def inspect_journal(path: str, *, records: bool = False) -> Report:
    """What recovery would find in the journal at ``path``; reads only.

    Raises :class:`JournalMissing` if none of the log, its snapshot and its
    ``.old`` log exists, and ``OSError`` if they cannot be read.
    """
    base = os.path.abspath(path)
    if os.path.isdir(base):
        raise JournalMissing(f"{path} is a directory; pass the journal's log file (Engine(journal=...))")
    paths: dict[Role, str] = {"snapshot": base + ".snapshot", "old": base + ".old", "log": base}
    if not any(os.path.exists(p) for p in paths.values()):
        hint = ""
        for suffix in _SUFFIXES:
            if base.endswith(suffix) and os.path.exists(base.removesuffix(suffix)):
                hint = f"; did you mean {path.removesuffix(suffix)}?"
        raise JournalMissing(f"no journal at {path} (none of {path}, {path}.snapshot, {path}.old exists){hint}")
    for suffix in (".snapshot", ".old"):
        if base.endswith(suffix) and os.path.isfile(base.removesuffix(suffix)):
            journal = path.removesuffix(suffix)
            raise JournalMissing(f"{path} is one of the files of the journal {journal}; inspect {journal}")

    report = Report(path, records=[] if records else None, in_use=_lock_held(base + ".lock"))
    counted: Counter[str] = Counter()

    def seen(role: Role, record: Record) -> None:
        counted[role] += 1
        _keep(report, role, record.offset, record.seq, record.payload)

    found = plan(base, on_record=seen)
    report.live, report.leftovers, report.generation = found.live, found.leftovers, found.generation
    for verdict in found.files:
        report.files.append(_file_report(verdict, counted[verdict.role], found))
    for leftover in found.leftovers:
        report.actions.append(f"delete {leftover} (a file that was being written)")
    dropped = {verdict.path: verdict.dropped for verdict in found.files}
    for truncated, offset in found.truncate:
        report.actions.append(
            f"truncate {truncated} to {offset} bytes (drop a torn tail of {dropped[truncated]} bytes)"
        )
    if found.compact:
        upgrade = found.identity is None and any(verdict.header is not None for verdict in found.files)
        report.actions.append(
            ("rewrite the journal in format version 2" if upgrade else "finish a compaction")
            + f": write a snapshot of generation {report.generation} holding the {len(report.live)} live jobs,"
            " start an empty log of that generation"
            + (f", delete {paths['old']}" if os.path.exists(paths["old"]) else "")
        )
    elif found.new_log:
        report.actions.append(
            f"start an empty log of generation {report.generation}"
            + (", a new journal" if found.identity is None else "")
            + (f", then delete {paths['old']} (its records are in the snapshot)" if found.remove_old else "")
        )
    elif found.remove_old:
        report.actions.append(f"delete {paths['old']} (its records are in the snapshot)")
    return report


def _file_report(verdict: FileVerdict, records: int, found: RecoveryPlan) -> FileReport:
    """A file as recovery read it, with what recovery does about it in words."""
    file = FileReport(verdict.role, verdict.path, verdict.size, records=records, replayed=verdict.replayed)
    header = verdict.header
    if header is not None:
        file.kind = _KINDS.get(header.kind)
        file.generation, file.version = header.generation, header.version
        if header.version >= 2:
            file.identity, file.seq = header.identity.hex(), header.seq
    problem = found.problem if verdict.path == found.problem_path else None
    if verdict.ending is not None:
        file.status, file.offset, file.reason = verdict.ending
        file.dropped = verdict.dropped
    elif problem is not None:  # recovery stopped at a record it refuses, before the end of the file
        file.status, file.offset, file.reason = "corrupt", problem.offset, "a record recovery refuses"
        file.dropped = file.size - problem.offset
    if problem is not None:
        file.problem, file.problem_offset = str(problem), problem.offset
        file.note = "recovery refuses it"
    elif verdict.role == "snapshot":
        file.note = "loaded"
    elif header is None:
        file.note = "no complete header: recovery ignores it" + (
            " and starts a new log" if verdict.role == "log" else ""
        )
    elif not verdict.replayed:
        floor = found.files[0].header.generation if found.files[0].header is not None else 0
        file.note = f"skipped: generation {header.generation} < snapshot generation {floor}, already in the snapshot"
    else:
        file.note = "replayed"
    return file


def _keep(report: Report, role: Role, offset: int, seq: int | None, record: dict[str, Any]) -> None:
    """List a record, summarised before ``apply`` can change it (a move edits the job record in place)."""
    if report.records is None:
        return
    if record["t"] == JOBS:  # a snapshot's chunk: a line for each job it holds
        for job in expand_jobs(record):
            _keep(report, role, offset, seq, job)
        return
    line: dict[str, Any] = {"file": role, "offset": offset, "seq": seq, "type": record["t"], "id": record.get("id")}
    for name, source in (("task", "task"), ("key", "key"), ("state", "state"), ("attempt", "att")):
        if source in record:
            line[name] = record[source]
    if "due" in record:
        line["due"] = iso(record["due"])
        line["due_unix"] = record["due"]
    if "series" in record:
        line["recurring"] = True
    if "parent" in record:
        line["parent"] = record["parent"]
    if record["t"] == END:
        line["count"] = record.get("count")
    report.records.append(line)


def _lock_held(lock_path: str) -> bool | None:
    """Whether an engine holds the journal's flock, from /proc/locks (Linux); None if unknown.

    Never takes the lock itself, even for a moment: an engine starting then would fail to.
    """
    try:
        stat = os.stat(lock_path)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    inode = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            return any(inode in line.split() for line in locks if "FLOCK" in line)
    except OSError:
        return None


# -- summaries ----------------------------------------------------------------------


def iso(when: Any) -> str:
    """A POSIX time as ISO-8601 UTC (``2026-01-01T00:00:10.000Z``); anything else as its repr."""
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        return repr(when)
    try:
        moment = datetime.fromtimestamp(when, UTC)
    except (OverflowError, OSError, ValueError):
        return repr(when)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def live_summary(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Counts of the live set and the next jobs due (those waiting in the wheel); kept outcomes counted apart."""
    live = {job_id: record for job_id, record in records.items() if record.get("t") != "done"}
    waiting = [
        record
        for record in live.values()
        if record.get("state") in _WAITING and isinstance(record.get("due"), int | float)
    ]
    waiting.sort(key=lambda record: (record["due"], str(record.get("id"))))
    return {
        "count": len(live),
        "outcomes": len(records) - len(live),  # done records: finished jobs whose outcome is kept (result_ttl)
        "recurring": sum("series" in record for record in live.values()),
        "by_task": dict(sorted(Counter(str(record.get("task")) for record in live.values()).items())),
        "by_state": dict(sorted(Counter(str(record.get("state")) for record in live.values()).items())),
        "next_due": [
            {
                "due": iso(record["due"]),
                "due_unix": record["due"],
                "id": record.get("id"),
                "key": record.get("key"),
                "task": record.get("task"),
                "state": record.get("state"),
                "recurring": "series" in record,
            }
            for record in waiting[:_NEXT_DUE]
        ],
    }


def exit_status(report: Report) -> int:
    """0 if recovery would succeed (clean, or torn tails it cuts), 1 if it would raise JournalCorrupt."""
    return 0 if report.problem is None else 1


# -- output -------------------------------------------------------------------------


def _word(value: Any) -> str:
    """A task, key or id for a line of text: as is if it reads unambiguously, else quoted."""
    if value is None:
        return "-"
    text = str(value)
    return text if isinstance(value, str) and text and text.isprintable() and " " not in text else repr(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _ending_text(file: FileReport) -> str:
    if file.status == "clean":
        return "clean"
    if file.status == "torn":
        if file.generation is None and file.kind is None:
            return f"torn at offset {file.offset}: {file.reason}; recovery ignores the whole file ({file.size} bytes)"
        return f"torn tail at offset {file.offset}: {file.reason}; recovery drops the last {file.dropped} bytes"
    return (
        f"CORRUPT at offset {file.offset}: {file.reason}; damage, not a torn write, so recovery refuses it"
        f" (Engine(on_corrupt='truncate') would drop the last {file.dropped} bytes)"
    )


def _identity_text(file: FileReport) -> str:
    if file.identity is None:
        return f"format version {file.version} (no journal identity, no record numbers)"
    numbers = (
        f"covers the records before number {file.seq}"
        if file.kind == "snapshot"
        else f"records numbered from {file.seq}"
    )
    return f"format version {file.version}, journal {file.identity}, {numbers}"


def render_text(report: Report) -> str:
    lines = [f"journal {report.path}"]
    in_use = {True: "yes: an engine holds the lock; the log's tail may be mid-write", False: "no", None: "unknown"}
    lines.append(f"  in use: {in_use[report.in_use]}")
    lines += ["", "files"]
    for file in report.files:
        kind = file.kind or "unreadable header"
        generation = "?" if file.generation is None else str(file.generation)
        lines.append(f"  {file.role:<8} {file.path}")
        lines.append(
            f"    {kind}, generation {generation}, {_count(file.size, 'byte')}, {_count(file.records, 'record')};"
            f" {file.note}"
        )
        if file.version is not None:
            lines.append(f"    {_identity_text(file)}")
        lines.append(f"    ending: {_ending_text(file)}")
        if file.problem is not None and file.status != "corrupt":
            lines.append(f"    problem: {file.problem}")
    for leftover in report.leftovers:
        lines.append(f"  leftover {leftover}")
        lines.append(f"    {os.path.getsize(leftover)} bytes; never read, recovery deletes it")

    summary = live_summary(report.live)
    lines.append("")
    caveat = " (recovery would refuse this journal: jobs as of the records before the damage)"
    kept = f"; {_count(summary['outcomes'], 'kept outcome')}" if summary["outcomes"] else ""
    lines.append(f"live set: {_count(summary['count'], 'job')}, {summary['recurring']} recurring{kept}")
    if report.problem is not None:
        lines[-1] += caveat
    if summary["count"]:
        lines.append("  by task:  " + ", ".join(f"{_word(task)} {n}" for task, n in summary["by_task"].items()))
        lines.append("  by state: " + ", ".join(f"{state} {n}" for state, n in summary["by_state"].items()))
    if summary["next_due"]:
        lines.append(f"  next due ({len(summary['next_due'])} of {summary['count']}):")
        for job in summary["next_due"]:
            recurring = "  (recurring)" if job["recurring"] else ""
            lines.append(
                f"    {job['due']}  {job['id']}  key={_word(job['key'])}  task={_word(job['task'])}"
                f"  {job['state']}{recurring}"
            )

    if report.records is not None:
        lines += ["", f"records ({len(report.records)})"]
        for record in report.records:
            number = "" if record["seq"] is None else f"#{record['seq']}"
            fields = [f"{record['file']:<8}", f"{record['offset']:>10}", f"{number:>6}", f"{record['type']:<6}"]
            fields.append(_word(record["id"]))
            for name in ("task", "key", "due", "state", "attempt", "parent", "count"):
                if name in record:
                    fields.append(f"{name}={record[name] if name == 'due' else _word(record[name])}")
            if record.get("recurring"):
                fields.append("recurring")
            lines.append("  " + "  ".join(fields))

    lines += ["", "recovery"]
    problem = report.problem
    if problem is None:
        lines.append("  would succeed (exit status 0)")
        for action in report.actions:
            lines.append(f"  would {action}")
        lines.append(f"  an engine would then append to log generation {report.generation}")
    else:
        lines.append("  would FAIL with JournalCorrupt (exit status 1):")
        lines.append(f"  {problem.problem}")
    return "\n".join(lines) + "\n"


def report_data(report: Report) -> dict[str, Any]:
    """The report as JSON values: what ``--json`` prints."""
    problem = report.problem
    data: dict[str, Any] = {
        "path": report.path,
        "ok": problem is None,
        "exit_status": exit_status(report),
        "error": None
        if problem is None
        else {"file": problem.path, "offset": problem.problem_offset, "message": problem.problem},
        "in_use": report.in_use,
        "files": [
            {
                "role": file.role,
                "path": file.path,
                "kind": file.kind,
                "generation": file.generation,
                "version": file.version,
                "identity": file.identity,
                "seq": file.seq,
                "size": file.size,
                "records": file.records,
                "replayed": file.replayed,
                "note": file.note,
                "ending": {
                    "status": file.status,
                    "offset": file.offset,
                    "reason": file.reason,
                    "dropped_bytes": file.dropped,
                },
                "problem": file.problem,
            }
            for file in report.files
        ],
        "leftovers": report.leftovers,
        "live": live_summary(report.live),
        "recovery": {"actions": report.actions, "generation": report.generation} if problem is None else None,
    }
    if report.records is not None:
        data["records"] = report.records
    return data


def render_json(report: Report) -> str:
    return json.dumps(report_data(report), indent=2) + "\n"


def command(path: str, *, records: bool = False, as_json: bool = False) -> tuple[int, str, str]:
    """The ``inspect`` subcommand: (exit status, standard output, standard error)."""
    try:
        report = inspect_journal(path, records=records)
    except JournalMissing as exc:
        return 2, "", f"chronowheel inspect: {exc}\n"
    except OSError as exc:
        return 2, "", f"chronowheel inspect: cannot read the journal at {path}: {exc}\n"
    text = render_json(report) if as_json else render_text(report)
    return exit_status(report), text, ""
