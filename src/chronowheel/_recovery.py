"""What recovery finds in a journal's files, and what it must repair: read-only.

:func:`plan` reads the snapshot, then the previous log (``.old``), then the
log, as recovery must: a log of a generation below the snapshot's is already
in it and is only checked. It changes nothing. :meth:`Journal.recover`
carries the plan out (cuts torn tails, finishes a compaction that was cut
short); ``python -m chronowheel inspect`` prints it. One reading of the
files, so the tool can never disagree with the engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ._errors import JournalCorrupt
from ._journal_format import LOG, SNAPSHOT, Decoder, Ending, Header, Record
from ._journal_records import apply

__all__ = ["END", "FileVerdict", "JournalFile", "RecoveryPlan", "Role", "plan"]

Role = Literal["snapshot", "old", "log"]
END: Final = "end"  # a snapshot's last record: {"t": "end", "count": n}
_READ_SIZE: Final = 1 << 20


class JournalFile:
    """One journal file read front to back: iterate ``records()``, then look at ``ending``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.header: Header | None = None
        self.ending: Ending | None = None

    def records(self) -> Iterator[Record]:
        decoder = Decoder()
        with open(self.path, "rb") as file:
            while chunk := file.read(_READ_SIZE):
                records = decoder.feed(chunk)
                self.header = decoder.header
                yield from records
        self.header = decoder.header
        self.ending = decoder.finish()


@dataclass
class FileVerdict:
    """One file as recovery reads it."""

    role: Role
    path: str
    size: int
    header: Header | None = None  # None: cut short or unreadable
    records: int = 0  # good records read
    ending: Ending | None = None  # None if reading stopped at a record recovery refuses
    replayed: bool = False  # False: already in the snapshot, or no header

    @property
    def dropped(self) -> int:
        """Bytes after the good ones: what recovery cuts off (or refuses)."""
        return 0 if self.ending is None or self.ending.status == "clean" else self.size - self.ending.offset


@dataclass
class RecoveryPlan:
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> its last ``job`` record
    files: list[FileVerdict] = field(default_factory=list)
    problem: JournalCorrupt | None = None  # what recovery raises; reading stopped there
    leftovers: list[str] = field(default_factory=list)  # *.tmp files: never read, to delete
    truncate: list[tuple[str, int]] = field(default_factory=list)  # (path, offset): tails to cut
    remove_old: bool = False  # the .old log's records are all in the snapshot
    compact: bool = False  # a compaction was cut short, or there is no usable log: write both anew
    generation: int = 0  # the log generation appended to afterwards
    log_records: int = 0  # records in that log


OnRecord = Callable[[Role, Record], None]


def plan(path: str, *, truncate_corrupt: bool = False, on_record: OnRecord | None = None) -> RecoveryPlan:
    """Read the journal at ``path`` as recovery would; ``on_record`` sees each record before it is applied."""
    base = os.path.abspath(path)
    result = RecoveryPlan(leftovers=[p for p in (base + ".tmp", base + ".snapshot.tmp") if os.path.exists(p)])
    floor = generation = 0
    current: FileVerdict | None = None
    try:
        if os.path.exists(base + ".snapshot"):
            floor = generation = _load_snapshot(base + ".snapshot", result, on_record)
        for role, log_path in (("old", base + ".old"), ("log", base)):
            if not os.path.exists(log_path):
                continue
            verdict = _replay_log(role, log_path, result, floor, truncate_corrupt, on_record)  # type: ignore[arg-type]
            if verdict.header is None:
                continue
            generation = max(generation, verdict.header.generation)
            if role == "log":
                current = verdict
            elif verdict.header.generation < floor:
                result.remove_old = True  # a compaction ended between sealing its snapshot and this unlink
    except JournalCorrupt as problem:
        result.problem = problem
        return result
    old_left = os.path.exists(base + ".old") and not result.remove_old
    if current is None or current.header is None or current.header.generation < floor or old_left:
        result.compact = True
        result.generation = generation + 1
    else:
        result.generation = current.header.generation
        result.log_records = current.records
    return result


def _load_snapshot(path: str, result: RecoveryPlan, on_record: OnRecord | None) -> int:
    """Load the snapshot into the live set; its generation. A snapshot is whole or it is corrupt."""
    verdict = FileVerdict("snapshot", path, os.path.getsize(path), replayed=True)
    result.files.append(verdict)
    snapshot = JournalFile(path)
    end: dict[str, Any] | None = None
    for record in snapshot.records():
        if on_record is not None:
            on_record("snapshot", record)
        payload = record.payload
        is_job = payload["t"] == "job" and isinstance(payload.get("id"), str)
        if end is not None or not (is_job or payload["t"] == END):
            raise JournalCorrupt(f"journal: snapshot {path}: unexpected record", record.offset)
        if is_job:
            result.live[payload["id"]] = payload
            verdict.records += 1
        else:
            end = payload
    verdict.header, verdict.ending = snapshot.header, snapshot.ending
    assert snapshot.ending is not None
    if snapshot.ending.status != "clean" or snapshot.header is None or snapshot.header.kind != SNAPSHOT:
        reason = snapshot.ending.reason or "not a snapshot"
        raise JournalCorrupt(f"journal: snapshot {path}: {reason}", snapshot.ending.offset)
    if end is None or end.get("count") != verdict.records:
        raise JournalCorrupt(f"journal: snapshot {path} is incomplete", snapshot.ending.offset)
    return snapshot.header.generation


def _replay_log(
    role: Role,
    path: str,
    result: RecoveryPlan,
    floor: int,
    truncate_corrupt: bool,
    on_record: OnRecord | None,
) -> FileVerdict:
    """Replay one log onto the live set, or only check it if the snapshot holds it; judge its tail."""
    verdict = FileVerdict(role, path, os.path.getsize(path))
    result.files.append(verdict)
    log = JournalFile(path)

    def read_header() -> dict[str, dict[str, Any]]:
        """Check the header; where its records go: the live set, or nowhere if the snapshot holds them."""
        assert log.header is not None
        verdict.header = log.header
        if log.header.kind != LOG:
            raise JournalCorrupt(f"journal: {path} is not a journal log", 0)
        verdict.replayed = log.header.generation >= floor
        return result.live if verdict.replayed else {}

    target: dict[str, dict[str, Any]] | None = None
    for record in log.records():
        if on_record is not None:
            on_record(role, record)
        if target is None:
            target = read_header()
        try:
            apply(target, record.payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalCorrupt(f"journal: {path}: unreadable record ({exc!r})", record.offset) from None
        verdict.records += 1
    if target is None and log.header is not None:  # a log with no records
        read_header()
    ending = verdict.ending = log.ending
    assert ending is not None
    if ending.status == "corrupt" and verdict.header is None:  # never cut away: a whole file is not a tail
        raise JournalCorrupt(f"journal: {path}: {ending.reason}", ending.offset)
    if ending.status == "corrupt" and not truncate_corrupt:
        raise JournalCorrupt(
            f"journal: {path}: {ending.reason}; records follow it, so this is damage, not a torn write"
            " (Engine(on_corrupt='truncate') drops everything from here on)",
            ending.offset,
        )
    if ending.status != "clean" and verdict.header is not None:
        result.truncate.append((path, ending.offset))
    return verdict
