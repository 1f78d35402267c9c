"""What recovery finds in a journal's files, and what it must repair: read-only.

:func:`plan` reads the snapshot, then the previous log (``.old``), then the
log, as recovery must: a log of a generation below the snapshot's is already
in it and is only checked. It changes nothing. :meth:`Journal.recover`
carries the plan out (cuts torn tails, finishes a compaction that was cut
short); ``python -m chronowheel inspect`` prints it. One reading of the
files, so the tool can never disagree with the engine.

The files of a journal form one chain, and recovery refuses any file that
does not fit in it (see docs/durability.md, "Recovery"): every file carries
the journal's identity; the logs the snapshot holds (generations below its
own) lead up to it without a gap, generation by generation and record
number by record number, and the logs replayed after it go on from it the
same way. So another journal's file, a stale snapshot, a missing log or a
record moved, repeated or lost is ``JournalCorrupt``, never a wrong live set.
Journals of format version 1 (no identity, no record numbers) are read with
the generation checks only, and rewritten in version 2 by the recovery.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .._errors import JournalCorrupt
from .format import LOG, SNAPSHOT, VERSION, Check, Decoder, Ending, Header, Record
from .records import replay_records
from .schema import END, check_log_records, check_snapshot_records

__all__ = ["END", "FileVerdict", "JournalFile", "RecoveryPlan", "Role", "plan"]

Role = Literal["snapshot", "old", "log"]
_READ_SIZE: Final = 1 << 20
FIRST_SEQ: Final = 1  # the number of a new journal's first record


class JournalFile:
    """One journal file read front to back: iterate ``records()``, then look at ``ending``."""

    def __init__(self, path: str, check: Check | None = None) -> None:
        self.path = path
        self.header: Header | None = None
        self.ending: Ending | None = None
        self.next_seq = 0  # version 2: the number the record after the last good one would carry
        self._check = check

    def records(self) -> Iterator[Record]:
        for run in self.runs():
            yield from run

    def runs(self) -> Iterator[list[Record]]:
        """The records a megabyte at a time: recovery loops over each list, not one generator step per record."""
        decoder = Decoder(self._check)
        with open(self.path, "rb") as file:
            while chunk := file.read(_READ_SIZE):
                records = decoder.feed(chunk)
                self.header = decoder.header
                if records:
                    yield records
        self.header = decoder.header
        self.ending = decoder.finish()
        self.next_seq = decoder.next_seq


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
    next_seq: int = 0  # version 2: one past its last good record's number (a snapshot: the first it does not cover)

    @property
    def dropped(self) -> int:
        """Bytes after the good ones: what recovery cuts off (or refuses)."""
        return 0 if self.ending is None or self.ending.status == "clean" else self.size - self.ending.offset


@dataclass
class RecoveryPlan:
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> its last ``job`` record
    files: list[FileVerdict] = field(default_factory=list)
    problem: JournalCorrupt | None = None  # what recovery raises; reading stopped there
    problem_path: str | None = None  # the file it is about
    leftovers: list[str] = field(default_factory=list)  # *.tmp files: never read, to delete
    truncate: list[tuple[str, int]] = field(default_factory=list)  # (path, offset): tails to cut
    remove_old: bool = False  # the .old log's records are all in the snapshot, or in the new one
    compact: bool = False  # a compaction was cut short, or the journal is of version 1: write both anew
    new_log: bool = False  # no log to append to (and no compaction to finish): start an empty one
    identity: bytes | None = None  # the journal's; None: a new journal (or one of version 1) gets one
    generation: int = 0  # the log generation appended to afterwards
    first_seq: int = 0  # that log's first record number (its header's)
    next_seq: int = 0  # the number of the next record appended
    log_records: int = 0  # records in that log


OnRecord = Callable[[Role, Record], None]
Replay = Callable[[list[dict[str, Any]]], None]
"""Takes the replayed records a run at a time, in journal order: a snapshot's (less its end record), then the logs'."""


def plan(
    path: str, *, truncate_corrupt: bool = False, on_record: OnRecord | None = None, replay: Replay | None = None
) -> RecoveryPlan:
    """Read the journal at ``path`` as recovery would; ``on_record`` sees each record before it is applied.

    The records replayed go to ``replay``, or by default into the plan's
    ``live`` set of records (:func:`.records.replay_records`).
    """
    base = os.path.abspath(path)
    result = RecoveryPlan(leftovers=[p for p in (base + ".tmp", base + ".snapshot.tmp") if os.path.exists(p)])
    if replay is None:
        live = result.live

        def replay(records: list[dict[str, Any]]) -> None:
            replay_records(live, records)

    try:
        _read(base, result, truncate_corrupt, on_record, replay)
    except JournalCorrupt as problem:
        result.problem = problem
        if result.problem_path is None:
            result.problem_path = result.files[-1].path
    return result


def _refuse(result: RecoveryPlan, verdict: FileVerdict, message: str, offset: int = 0) -> JournalCorrupt:
    result.problem_path = verdict.path
    return JournalCorrupt(f"journal: {verdict.path}: {message}", offset)


def _read(base: str, result: RecoveryPlan, truncate_corrupt: bool, on_record: OnRecord | None, replay: Replay) -> None:
    snapshot_path = base + ".snapshot"
    snapshot = _load_snapshot(snapshot_path, result, on_record, replay) if os.path.exists(snapshot_path) else None
    chain = _Chain(result, snapshot)
    roles: tuple[tuple[Role, str], ...] = (("old", base + ".old"), ("log", base))
    logs = [
        _replay_log(role, log_path, result, chain, truncate_corrupt, on_record, replay)
        for role, log_path in roles
        if os.path.exists(log_path)
    ]
    chain.check_held()
    old = next((verdict for verdict in logs if verdict.role == "old"), None)
    log = next((verdict for verdict in logs if verdict.role == "log"), None)
    if chain.version == 1:  # rewrite it in version 2, under a new identity
        result.compact, result.generation, result.first_seq = True, chain.top + 1, FIRST_SEQ
        result.next_seq, result.remove_old = FIRST_SEQ, old is not None
        return
    result.identity = chain.identity
    if old is not None and old.replayed:  # a compaction was cut short: finish it
        result.compact, result.generation, result.first_seq = True, chain.top + 1, chain.seq
        result.next_seq, result.remove_old = chain.seq, True
    elif log is not None and log.replayed:
        assert log.header is not None
        result.generation, result.first_seq, result.next_seq = log.header.generation, log.header.seq, chain.seq
        result.log_records = log.records
        result.remove_old = old is not None
    elif snapshot is not None and old is None and (log is None or log.header is None):
        # Every crash leaves a log, or the .old log, beside the snapshot: without both, one is lost.
        missing = "is missing" if log is None else "has no complete header"
        raise _refuse(result, snapshot, f"its log {base} {missing}: the records after this snapshot are lost")
    else:  # no log after the snapshot (a compaction ended before its log was made), or a new journal
        result.new_log, result.generation = True, chain.generation
        result.first_seq = result.next_seq = chain.seq
        result.remove_old = old is not None


class _Chain:
    """What the next log must be to follow the files before it; the checks of one journal's chain of files.

    A snapshot of generation *s* holds every record numbered below its
    ``seq``: the logs of generations below *s*, which end there. The logs
    replayed after it are of generations *s*, *s* + 1, each beginning where
    the one before ended. With no snapshot the chain starts at generation 1,
    record 1: a new journal.
    """

    def __init__(self, result: RecoveryPlan, snapshot: FileVerdict | None) -> None:
        self.result = result
        header = snapshot.header if snapshot is not None else None
        self.snapshot = snapshot
        self.identity = header.identity if header is not None and header.version >= 2 else None
        self.identity_of = snapshot.path if snapshot is not None else ""  # the file that set it
        # The journal's version: the first file's (a version-3 snapshot's journal is of version 2, as its logs).
        self.version = None if header is None else min(header.version, VERSION)
        self.floor = header.generation if header is not None else 1  # logs below it are in the snapshot
        self.generation = self.floor  # what the next replayed log must be
        self.seq = header.seq if header is not None else FIRST_SEQ
        self.top = self.floor  # the highest generation seen
        self.held: list[FileVerdict] = []  # logs of a version-2 journal the snapshot holds, in file order
        self.replayed = False

    def admit(self, verdict: FileVerdict) -> bool:
        """Check a log's header against the files before it; True if its records are to be replayed."""
        header = verdict.header
        assert header is not None
        self.top = max(self.top, header.generation)
        if header.kind != LOG:
            raise _refuse(self.result, verdict, "is not a journal log")
        if self.version is None:
            self.version = header.version
        elif header.version != self.version and not (header.version == 1 and header.generation < self.floor):
            # A version-1 log below a version-2 snapshot: the rewrite that upgraded the journal ended early.
            raise _refuse(
                self.result,
                verdict,
                f"a log of format version {header.version} in a journal of version {self.version}",
            )
        if header.version == 2:
            if self.identity is None:
                self.identity, self.identity_of = header.identity, verdict.path
            elif header.identity != self.identity:
                raise _refuse(
                    self.result,
                    verdict,
                    f"a file of another journal: its journal identity is {header.identity.hex()}, and that of"
                    f" {self.identity_of} is {self.identity.hex()}",
                )
        if header.generation < self.floor:
            if self.replayed:
                raise _refuse(
                    self.result,
                    verdict,
                    f"generation {header.generation} follows generation {self.generation - 1}",
                )
            if header.version == 2:
                self.held.append(verdict)
            return False
        expected = (self.generation, self.seq) if header.version == 2 else (self.generation, header.seq)
        if (header.generation, header.seq) != expected:
            raise _refuse(self.result, verdict, self._gap(header))
        self.replayed = True
        return True

    def _gap(self, header: Header) -> str:
        after = "the snapshot" if not self.replayed else "the log before it"
        if self.snapshot is None and not self.replayed:
            after = "the start of the journal (there is no snapshot)"
        text = f"log generation {header.generation} does not follow {after}: it should be generation {self.generation}"
        if header.version == 2:
            text += f" beginning at record {self.seq}, and begins at record {header.seq}"
        return text + " (a log or the snapshot is missing, stale, or of another journal)"

    def replayed_to(self, verdict: FileVerdict) -> None:
        """A replayed log has been read: the next one goes on from its end."""
        self.generation += 1
        if verdict.header is not None and verdict.header.version == 2:
            self.seq = verdict.next_seq

    def check_held(self) -> None:
        """The logs the snapshot holds must end where it begins, or before: else it lacks their last records.

        A held log may end well before the snapshot, the logs between gone: a
        recovery that finished a compaction replaces the log before it
        removes the ``.old`` one.
        """
        if self.snapshot is None or self.snapshot.header is None:
            return
        covered = self.snapshot.header.seq
        for held in self.held:
            assert held.header is not None
            if held.next_seq > covered:
                raise _refuse(
                    self.result,
                    held,
                    f"log generation {held.header.generation} has records up to number {held.next_seq - 1}, but"
                    f" the snapshot of generation {self.floor}, which holds it, covers only those before"
                    f" {covered}: the snapshot is stale, or the log is of another time",
                )


def _load_snapshot(path: str, result: RecoveryPlan, on_record: OnRecord | None, replay: Replay) -> FileVerdict:
    """Load the snapshot into the live set. A snapshot is whole or it is corrupt."""
    verdict = FileVerdict("snapshot", path, os.path.getsize(path), replayed=True)
    result.files.append(verdict)
    snapshot = JournalFile(path, check_snapshot_records)
    end: dict[str, Any] | None = None
    for run in snapshot.runs():
        payloads = [record.payload for record in run]
        ends = [index for index, payload in enumerate(payloads) if payload["t"] == END]
        # The first record after the end record, if there is one: this run's first, or the one after its end.
        after = 0 if end is not None else ends[0] + 1 if ends and ends[0] < len(run) - 1 else None
        if after is not None:
            if on_record is not None:
                for record in run[: after + 1]:
                    on_record("snapshot", record)
            replay(payloads[: max(after - 1, 0)])
            verdict.records += max(after - 1, 0)
            raise _refuse(result, verdict, "a record after the snapshot's end record", run[after].offset)
        if on_record is not None:
            for record in run:
                on_record("snapshot", record)
        if ends:
            end = payloads.pop()
        replay(payloads)
        verdict.records += len(payloads)
    verdict.header, verdict.ending = snapshot.header, snapshot.ending
    assert snapshot.ending is not None
    if snapshot.ending.status != "clean" or snapshot.header is None or snapshot.header.kind != SNAPSHOT:
        raise _refuse(result, verdict, snapshot.ending.reason or "not a snapshot", snapshot.ending.offset)
    if end is None or end["count"] != verdict.records:
        raise JournalCorrupt(f"journal: snapshot {path} is incomplete", snapshot.ending.offset)
    verdict.next_seq = snapshot.header.seq
    return verdict


def _replay_log(
    role: Role,
    path: str,
    result: RecoveryPlan,
    chain: _Chain,
    truncate_corrupt: bool,
    on_record: OnRecord | None,
    replay: Replay,
) -> FileVerdict:
    """Replay one log onto the live set, or only check it if the snapshot holds it; judge its tail."""
    verdict = FileVerdict(role, path, os.path.getsize(path))
    result.files.append(verdict)
    log = JournalFile(path, check_log_records)

    def read_header() -> bool:
        """Check the header; True if its records are replayed, False if the snapshot holds them."""
        assert log.header is not None
        verdict.header = log.header
        verdict.replayed = chain.admit(verdict)
        return verdict.replayed

    replayed: bool | None = None
    for run in log.runs():
        seen = 0  # records on_record has seen: the header is read after the first, as it was written
        if replayed is None:
            if on_record is not None:
                on_record(role, run[0])
                seen = 1
            replayed = read_header()
        if on_record is not None:
            for record in run[seen:]:
                on_record(role, record)
        if replayed:
            replay([record.payload for record in run])
        verdict.records += len(run)
    if replayed is None and log.header is not None:  # a log with no records
        read_header()
    ending = verdict.ending = log.ending
    verdict.next_seq = log.next_seq
    assert ending is not None
    if ending.status == "corrupt" and verdict.header is None:  # never cut away: a whole file is not a tail
        raise JournalCorrupt(f"journal: {path}: {ending.reason}", ending.offset)
    if ending.status == "corrupt" and not truncate_corrupt:
        raise JournalCorrupt(
            f"journal: {path}: {ending.reason}; this is damage, not a torn write"
            " (Engine(on_corrupt='truncate') drops everything from here on)",
            ending.offset,
        )
    if ending.status != "clean" and verdict.header is not None:
        result.truncate.append((path, ending.offset))
    if verdict.replayed:
        chain.replayed_to(verdict)
    return verdict
