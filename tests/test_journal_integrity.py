"""Recovery replays exactly what was acknowledged, or refuses: identity, record numbers, schemas, version 1.

* every malformed record (well framed, CRC and number right) is ``JournalCorrupt`` at its offset, wherever it
  is in the log; ``on_corrupt="truncate"`` cuts it off; ``inspect`` says what ``start()`` does, word for word;
* records moved, repeated or lost, another journal's files, a stale snapshot, a missing generation: refused;
* a fuzz test (hypothesis) damages two real journals' files every way at once and checks the outcome is the
  acknowledged set or ``JournalCorrupt``, never another set, and that ``inspect`` agrees;
* a journal of format version 1, written by chronowheel at e312ff5, opens and is rewritten in version 2.

Set ``CHRONOWHEEL_FUZZ_EXAMPLES`` for a longer fuzz run (``make soak``).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import os
import random
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronowheel import Engine, JournalCorrupt
from chronowheel._inspect import command, inspect_journal
from chronowheel._journal.format import LOG, SNAPSHOT, Decoder
from chronowheel._journal.records import apply
from chronowheel._journal.schema import PRIORITY_MAX, TIME_MAX
from chronowheel._journal.writer import Journal
from helpers import journal_store
from journal_files import OTHER, append, build, build_v1, next_frames

HOUR = 3600.0
WALL = 1_767_225_600.0
DATA = Path(__file__).parent / "data" / "journal-v1"
EXAMPLES = int(os.environ.get("CHRONOWHEEL_FUZZ_EXAMPLES", "150"))


def job(job_id: str, due: Any = WALL + HOUR, **fields: Any) -> dict[str, Any]:
    """A ``job`` record as the engine writes one, with ``fields`` changed (None: left out)."""
    record: dict[str, Any] = {"t": "job", "id": job_id, "task": "t", "args": [], "kwargs": {}, "due": due}
    record |= {"prio": 0, "att": 0, "state": "pending"}
    record |= fields
    return {name: value for name, value in record.items() if value is not None}


def engine_on(path: Path, **options: Any) -> Engine:
    engine = Engine(journal=str(path), **options)
    engine.task(name="t")(lambda *args, **kwargs: None)
    return engine


def copy_journal(path: Path, into: Path) -> Path:
    into.mkdir()
    for source in path.parent.iterdir():
        if source.name.startswith(path.name) and source.is_file():
            shutil.copyfile(source, into / source.name)
    return into / path.name


def start_outcome(path: Path, **options: Any) -> tuple[str, int] | set[str]:
    """What ``start()`` does: the JournalCorrupt (message, offset) it raises, or the keys it recovers."""

    async def main() -> set[str]:
        engine = engine_on(path, **options)
        await engine.start()
        try:
            return {job.key for job in journal_store(engine).live.values() if job.key is not None}
        finally:
            await engine.stop(grace=0)

    try:
        return asyncio.run(main())
    except JournalCorrupt as exc:
        return str(exc), exc.offset


def clean_journal(path: Path) -> None:
    """One job, key "k", by a real engine."""

    async def main() -> None:
        async with engine_on(path) as engine:
            await engine.schedule("t", delay=HOUR, key="k")

    asyncio.run(main())


# -- malformed records (D12) -----------------------------------------------------------------------------------

SERIES = {"rec": {"every": 60}, "anchor": WALL, "nominal": WALL, "misfire": "skip", "grace": 1.0, "overlap": "skip"}

MALFORMED = {
    "job without task": job("x", task=None),
    "job task empty": job("x", task=""),
    "job id not a string": job("x", id=5),
    "job due null": {**job("x"), "due": None},
    "job due a string": job("x", due="soon"),
    "job due 1e300": job("x", due=1e300),
    "job due past the limit": job("x", due=TIME_MAX * 1.5),
    "job due true": job("x", due=True),
    "job without due": job("x", due=None),
    "args 5": job("x", args=5),
    "args a dict": job("x", args={}),
    "kwargs a list": job("x", kwargs=[]),
    "prio a string": job("x", prio="high"),
    "prio 2**64-1": job("x", prio=2**64 - 1),
    "prio past int64": job("x", prio=PRIORITY_MAX + 1),
    "prio a float": job("x", prio=1.0),
    "prio true": job("x", prio=True),
    "att a string": job("x", att="one"),
    "att negative": job("x", att=-1),
    "state exploded": job("x", state="exploded"),
    "state succeeded": job("x", state="succeeded"),
    "state running without a series": job("x", state="running"),
    "key 5": job("x", key=5),
    "key empty": job("x", key=""),
    "err a number": job("x", err=5),
    "parent a number": job("x", parent=5),
    "an unknown field": job("x", priority=1),
    "series not a dict": job("x", series=[]),
    "series spec not a recurrence": job("x", series=SERIES | {"rec": {"every": -1}}),
    "series cron not cron": job("x", series=SERIES | {"rec": {"cron": "every day"}}),
    "series tz unknown": job("x", series=SERIES | {"rec": {"cron": "0 9 * * *", "tz": "Mars/Olympus"}}),
    "series misfire unknown": job("x", series=SERIES | {"misfire": "later"}),
    "series grace negative": job("x", series=SERIES | {"grace": -1}),
    "series without nominal": job("x", series={k: v for k, v in SERIES.items() if k != "nominal"}),
    "series and parent": job("x", parent="p", series=SERIES),
    "unknown record type": {"t": "explode", "id": "x"},
    "cancel without id": {"t": "cancel"},
    "ack with id null": {"t": "ack", "id": None},
    "cancel with an extra field": {"t": "cancel", "id": "x", "why": "no"},
    "move without due": {"t": "move", "id": "x"},
    "move due soon": {"t": "move", "id": "x", "due": "soon"},
    "move due 1e300": {"t": "move", "id": "x", "due": 1e300},
    "an end record in a log": {"t": "end", "count": 0},
    "type not a string": {"t": 5, "id": "x"},
    "no type": {"id": "x"},
}


@pytest.mark.parametrize("last", [False, True], ids=["records-after-it", "last-record"])
@pytest.mark.parametrize("record", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_record_stops_start_at_its_offset_and_inspect_says_so(
    tmp_path: Path, record: dict[str, Any], last: bool
) -> None:
    """Also a list or a number as the whole payload; a whole record is never a torn tail, even last."""
    path = tmp_path / "j" / "timers.log"
    clean_journal(path)
    offset = path.stat().st_size
    follow = [] if last else [{"t": "ack", "id": "y"}]
    append(path, record, *follow)

    status, out, _ = command(str(path))
    outcome = start_outcome(path)  # inspect first: it changes nothing, start() must then say the same
    assert isinstance(outcome, tuple), outcome
    message, at = outcome
    assert at == offset
    assert "malformed" in message or "record" in message
    assert status == 1
    assert message in out  # the same message, word for word
    assert json.loads(command(str(path), as_json=True)[1])["error"] == {
        "file": str(path),
        "offset": offset,
        "message": message,
    }

    truncated = copy_journal(path, tmp_path / "truncate")
    assert start_outcome(truncated, on_corrupt="truncate") == {"k"}
    assert truncated.stat().st_size == offset


@pytest.mark.parametrize("payload", [b"[1, 2]", b"5", b'"job"', b"{not json"], ids=["list", "number", "str", "bad"])
def test_a_payload_that_is_not_a_record_is_corrupt_even_last(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "timers.log"
    clean_journal(path)
    offset = path.stat().st_size
    with open(path, "ab") as file:
        file.write(next_frames(path, [], raw=[payload]))
    assert start_outcome(path) == (
        f"journal: {path}: payload is not a record; this is damage, not a torn write"
        f" (Engine(on_corrupt='truncate') drops everything from here on) at byte offset {offset}",
        offset,
    )
    assert command(str(path))[0] == 1


# -- order, identity and generations (D14) -------------------------------------------------------------------


def frames_of(data: bytes) -> tuple[bytes, list[bytes]]:
    """A version-2 file's header and its frames."""
    decoder = Decoder()
    offsets = [record.offset for record in decoder.feed(data)]
    assert decoder.finish().status == "clean"
    header_size = offsets[0] if offsets else len(data)
    bounds = [*offsets, len(data)]
    return data[:header_size], [data[start:end] for start, end in itertools.pairwise(bounds)]


def test_records_of_one_job_out_of_order_are_refused(tmp_path: Path) -> None:
    """D14's snippet: the cancel moved before the job record it cancels."""

    async def main() -> None:
        async with engine_on(path) as engine:
            await engine.schedule("t", delay=HOUR, key="k")
            engine.cancel("k")

    path = tmp_path / "timers.log"
    asyncio.run(main())
    header, frames = frames_of(path.read_bytes())
    path.write_bytes(header + frames[1] + frames[0])
    outcome = start_outcome(path)
    assert outcome == (
        f"journal: {path}: record number 2 where 1 was expected: records out of order, repeated or missing; this is"
        " damage, not a torn write (Engine(on_corrupt='truncate') drops everything from here on) at byte offset 44",
        44,
    )
    assert command(str(path))[0] == 1
    assert start_outcome(path, on_corrupt="truncate") == set()  # the job never existed, as far as the log tells


def test_an_old_record_appended_again_is_refused(tmp_path: Path) -> None:
    """The job record of a job since cancelled, replayed at the end of the log."""

    async def main() -> None:
        async with engine_on(path) as engine:
            await engine.schedule("t", delay=HOUR, key="k")
            engine.cancel("k")
            await engine.schedule("t", delay=HOUR, key="other")

    path = tmp_path / "timers.log"
    asyncio.run(main())
    _, frames = frames_of(path.read_bytes())
    end = path.stat().st_size
    with open(path, "ab") as file:
        file.write(frames[0])
    outcome = start_outcome(path)
    assert isinstance(outcome, tuple)
    assert outcome[1] == end
    assert "record number 1 where 4 was expected" in outcome[0]
    assert command(str(path))[0] == 1


@dataclass
class Built:
    """A journal the writer made: the files at the end, the records acknowledged in order, the stale snapshot."""

    files: dict[str, bytes]  # suffix ("", ".old", ".snapshot") -> bytes
    history: list[dict[str, Any]]  # every record appended, in order
    stale_snapshot: bytes  # the snapshot before the last one
    old_records: int  # records in history before the log's first (those of the snapshot and the .old log)

    def state(self, count: int) -> dict[str, dict[str, Any]]:
        """The live set after the first ``count`` records."""
        return replay(self.history[:count])


def replay(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    live: dict[str, dict[str, Any]] = {}
    for record in records:
        apply(live, copy.deepcopy(record))
    return live


def history_records(seed: int, count: int) -> list[dict[str, Any]]:
    """Records of a few jobs that change, move and go: the order of each job's records matters."""
    rng = random.Random(seed)
    ids = [f"{seed}-{n}" for n in range(4)]
    records: list[dict[str, Any]] = []
    for _ in range(count):
        kind = rng.choice(["job", "job", "move", "cancel", "ack"])
        job_id = rng.choice(ids)
        if kind == "job":
            records.append(job(job_id, WALL + rng.randrange(1, 100) * HOUR, att=rng.randrange(3), key=job_id))
        elif kind == "move":
            records.append({"t": "move", "id": job_id, "due": WALL + rng.randrange(1, 100) * HOUR})
        else:
            records.append({"t": kind, "id": job_id})
    return records


def build_journal(directory: Path, seed: int) -> Built:
    """With the real writer: 6 records, a compaction, 6, a compaction, 6, a compaction cut short after its rotation, 6.

    Files at the end: snapshot 3, .old 3, log 4.
    """
    path = directory / "timers.log"
    history = history_records(seed, 24)
    stale = b""

    async def main() -> None:
        nonlocal stale
        journal = Journal(str(path), "never", 0.1)
        await asyncio.to_thread(journal.recover, truncate_corrupt=False)
        journal.open(asyncio.get_running_loop())
        done = 0
        for phase in range(4):
            for record in history[done : done + 6]:
                journal.append(orjson.dumps(record))
            done += 6
            await journal.sync()
            if phase == 3:
                break
            await journal.rotate()
            if phase == 2:
                continue  # the last compaction is cut short: .old stays, no snapshot of it
            live = replay(history[:done])
            if (directory / "timers.log.snapshot").exists():
                stale = (directory / "timers.log.snapshot").read_bytes()
            await journal.add_to_snapshot([orjson.dumps(record) for record in live.values()])
            await journal.finish_snapshot(len(live))
        await journal.close()

    asyncio.run(main())
    files = {suffix: (directory / f"timers.log{suffix}").read_bytes() for suffix in ("", ".old", ".snapshot")}
    return Built(files, history, stale, old_records=18)


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Built]:
    ours = build_journal(tmp_path_factory.mktemp("ours"), 1)
    theirs = build_journal(tmp_path_factory.mktemp("theirs"), 2)
    return ours, theirs


def write_files(directory: Path, files: dict[str, bytes | None]) -> Path:
    directory.mkdir()
    for suffix, data in files.items():
        if data is not None:
            (directory / f"timers.log{suffix}").write_bytes(data)
    return directory / "timers.log"


def outcome_of(path: Path, tmp_path: Path) -> tuple[str, int] | dict[str, dict[str, Any]]:
    """What recovery does (on a copy), checked against what inspect says it would."""
    report = inspect_journal(str(path))
    copied = copy_journal(path, tmp_path)
    journal = Journal(str(copied), "always", 0.1)
    refused: tuple[str, int] | None = None
    try:
        live = journal.recover(truncate_corrupt=False)
    except JournalCorrupt as exc:
        refused = str(exc).replace(str(copied.parent), str(path.parent)), exc.offset
    else:
        asyncio.run(journal.close())
    if refused is not None:
        assert report.problem is not None, refused
        assert (report.problem.problem, report.problem.problem_offset) == refused
        return refused
    assert report.problem is None, report.problem.problem
    assert report.live == live
    return live


def test_the_journals_the_writer_built_recover_to_what_was_appended(
    journals: tuple[Built, Built], tmp_path: Path
) -> None:
    for n, built in enumerate(journals):
        path = write_files(tmp_path / str(n), dict(built.files))
        assert outcome_of(path, tmp_path / f"{n}-copy") == built.state(len(built.history))
        kinds = [Decoder() for _ in range(3)]
        for decoder, data in zip(kinds, built.files.values(), strict=True):
            decoder.feed(data)
        assert [(d.header.kind, d.header.generation) for d in kinds if d.header is not None] == [
            (LOG, 4),
            (LOG, 3),
            (SNAPSHOT, 3),
        ]


FILE_CASES = {
    "another journal's log": ({"": "theirs"}, "a file of another journal"),
    "another journal's .old": ({".old": "theirs"}, "a file of another journal"),
    "another journal's snapshot": ({".snapshot": "theirs"}, "a file of another journal"),
    "the snapshot before the last": ({".snapshot": "stale"}, "does not follow the snapshot"),
    "no .old: a generation missing": ({".old": None}, "log generation 4 does not follow the snapshot"),
    "no snapshot": ({".snapshot": None}, "does not follow the start of the journal"),
    ".old and log swapped": ({"": "old", ".old": "log"}, "log generation 4 does not follow the snapshot"),
}


@pytest.mark.parametrize(("change", "why"), list(FILE_CASES.values()), ids=list(FILE_CASES))
def test_files_that_do_not_fit_the_journal_are_refused(
    journals: tuple[Built, Built], tmp_path: Path, change: dict[str, str | None], why: str
) -> None:
    ours, theirs = journals
    named = {"theirs": None, "stale": ours.stale_snapshot, "old": ours.files[".old"], "log": ours.files[""]}
    files: dict[str, bytes | None] = dict(ours.files)
    for suffix, source in change.items():
        files[suffix] = theirs.files[suffix] if source == "theirs" else None if source is None else named[source]
    path = write_files(tmp_path / "j", files)
    outcome = outcome_of(path, tmp_path / "copy")
    assert isinstance(outcome, tuple), f"recovered {sorted(outcome)}"
    assert why in outcome[0]
    assert outcome[1] == 0
    assert start_outcome(path, on_corrupt="truncate") == (outcome[0], 0)  # a whole file is never cut away


def test_a_gap_in_generations_is_refused(tmp_path: Path) -> None:
    """Snapshot 1, .old 2, log 3: the log of generation 1 is gone (and its records with it)."""
    end = {"t": "end", "count": 1}
    files = {
        ".snapshot": build([job("a"), end], SNAPSHOT, 1, 1).data,
        ".old": build([job("b")], LOG, 2, 5).data,
        "": build([job("c")], LOG, 3, 6).data,
    }
    path = write_files(tmp_path / "j", dict(files))
    outcome = outcome_of(path, tmp_path / "copy")
    assert outcome == (
        f"journal: {path}.old: log generation 2 does not follow the snapshot: it should be generation 1 beginning"
        " at record 1, and begins at record 5 (a log or the snapshot is missing, stale, or of another journal)"
        " at byte offset 0",
        0,
    )


def test_a_snapshot_without_its_log_is_refused(tmp_path: Path) -> None:
    """No crash leaves a snapshot alone: the log beside it is gone."""
    path = write_files(tmp_path / "j", {".snapshot": build([{"t": "end", "count": 0}], SNAPSHOT, 2, 9).data})
    outcome = outcome_of(path, tmp_path / "copy")
    assert isinstance(outcome, tuple)
    assert f"its log {path} is missing: the records after this snapshot are lost" in outcome[0]


def test_a_log_the_snapshot_holds_must_end_where_it_begins(tmp_path: Path) -> None:
    """A log below the snapshot's generation with records the snapshot does not cover: the snapshot is stale."""
    files = {
        ".snapshot": build([{"t": "end", "count": 0}], SNAPSHOT, 2, 3).data,
        ".old": build([job("a"), job("b"), job("c")], LOG, 1, 1).data,  # records 1-3: 3 is not in the snapshot
        "": build([], LOG, 2, 3).data,
    }
    path = write_files(tmp_path / "j", dict(files))
    outcome = outcome_of(path, tmp_path / "copy")
    assert isinstance(outcome, tuple)
    assert (
        "has records up to number 3, but the snapshot of generation 2, which holds it, covers only those"
        in (outcome[0])
    )


# The fuzz: one or two changes to our files, each drawn from every way a file set can go wrong.
ROLES = ["", ".old", ".snapshot"]
changes = st.one_of(
    st.tuples(st.just("swap"), st.sampled_from(ROLES), st.integers(0, 99), st.integers(0, 99)),
    st.tuples(st.just("duplicate"), st.sampled_from(ROLES), st.integers(0, 99), st.integers(0, 99)),
    st.tuples(st.just("drop"), st.sampled_from(ROLES), st.integers(0, 99), st.just(0)),
    st.tuples(st.just("splice"), st.sampled_from(ROLES), st.integers(0, 99), st.integers(0, 99)),
    st.tuples(st.just("foreign file"), st.sampled_from(ROLES), st.just(0), st.just(0)),
    st.tuples(st.just("stale snapshot"), st.sampled_from(["ours", "theirs"]), st.just(0), st.just(0)),
    st.tuples(st.just("drop file"), st.sampled_from(ROLES), st.just(0), st.just(0)),
    st.tuples(st.just("move file"), st.sampled_from(ROLES), st.sampled_from(ROLES), st.just(0)),
)


def mutate(files: dict[str, bytes | None], change: tuple[Any, ...], ours: Built, theirs: Built) -> None:
    kind, role, i, j = change
    data = files.get(role) if isinstance(role, str) and role in ROLES else None
    if kind in ("swap", "duplicate", "drop", "splice"):
        if data is None:
            return
        header, frames = frames_of_any(data)
        if not frames:
            return
        i %= len(frames)
        j %= len(frames) + 1
        if kind == "swap":
            frames[i], frames[j % len(frames)] = frames[j % len(frames)], frames[i]
        elif kind == "duplicate":
            frames.insert(j, frames[i])
        elif kind == "drop":
            del frames[i]
        else:  # theirs from frame j on, after ours up to frame i
            their_data = theirs.files[role]
            _, their_frames = frames_of_any(their_data)
            frames = frames[:i] + their_frames[j % (len(their_frames) + 1) :]
        files[role] = header + b"".join(frames)
    elif kind == "foreign file":
        files[role] = theirs.files[role]
    elif kind == "stale snapshot":
        files[".snapshot"] = (ours if role == "ours" else theirs).stale_snapshot
    elif kind == "drop file":
        files[role] = None
    elif role != i:  # move file: role's file in place of i's
        files[i] = data
        files[role] = None


def frames_of_any(data: bytes) -> tuple[bytes, list[bytes]]:
    """Header and frames of a file that may be damaged already: frames are cut by their length fields."""
    header_size = 44
    frames = []
    position = header_size
    while position + 16 <= len(data):
        (length,) = struct.unpack_from("<I", data, position + 4)
        frames.append(data[position : position + 16 + length])
        position += 16 + length
    if position < len(data):
        frames.append(data[position:])
    return data[:header_size], frames


def kept_log_records(original: bytes, mutated: bytes | None) -> int:
    """How many of the log's records are still, unchanged, at its front."""
    if mutated is None or mutated[:44] != original[:44]:
        return 0
    _, frames = frames_of(original)
    position = 44
    for count, frame in enumerate(frames):
        if mutated[position : position + len(frame)] != frame:
            return count
        position += len(frame)
    return len(frames)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.lists(changes, min_size=1, max_size=2))
def test_damaged_journals_recover_the_acknowledged_set_or_are_refused(
    journals: tuple[Built, Built], tmp_path_factory: pytest.TempPathFactory, changes: list[tuple[Any, ...]]
) -> None:
    """Never another live set: the acknowledged one, or JournalCorrupt; inspect says which, with the same words.

    Outcomes short of the whole set that cannot be told from a crash are allowed: the last log's tail gone at a
    record boundary (or cut to a frame that fails its CRC, a torn write), where the last log may be the .old
    one when the log is gone beside it (a compaction killed between renaming the log and making the next).
    """
    ours, theirs = journals
    files: dict[str, bytes | None] = dict(ours.files)
    for change in changes:
        mutate(files, change, ours, theirs)
    directory = tmp_path_factory.mktemp("fuzz")
    path = write_files(directory / "j", files)
    outcome = outcome_of(path, directory / "copy")
    if isinstance(outcome, tuple):
        return  # refused: recovery and inspect agreed on why, where
    allowed = [ours.state(len(ours.history))]
    last = files[""] if files[""] is not None else files[".old"]  # the file recovery ends with
    for original, before in ((ours.files[""], ours.old_records), (ours.files[".old"], ours.old_records - 6)):
        if last is not None and last[:44] == original[:44]:  # one of our logs, as far as it goes
            allowed.append(ours.state(before + kept_log_records(original, last)))
    assert outcome in allowed, (changes, sorted(outcome))


# -- format version 1 ------------------------------------------------------------------------------------------


def test_a_journal_of_version_1_written_by_e312ff5_opens_and_is_rewritten_in_version_2(tmp_path: Path) -> None:
    path = copy_journal(DATA / "timers.log", tmp_path / "j")
    expected = json.loads((DATA / "expected.json").read_text())
    status, out, _ = command(str(path))
    assert status == 0
    assert "format version 1 (no journal identity, no record numbers)" in out
    assert "would rewrite the journal in format version 2: write a snapshot of generation 2 holding the 5 live" in out

    async def main() -> None:
        engine = Engine(journal=str(path))
        for name in ("email", "flaky", "doomed", "report"):
            engine.task(name=name)(lambda *args, **kwargs: None)
        async with engine:
            assert {job.id for job in journal_store(engine).live.values()} == set(expected["live"].values())
            c = engine.get("c")
            assert c is not None
            assert (c.args, c.kwargs, c._due_wall) == ((ord("c"),), {"n2": [1, 2.5, None]}, WALL + 100)
            assert engine.get("flaky") is not None
            assert engine.get("flaky").state == "failed"  # type: ignore[union-attr]
            assert [job.id for job in engine.dead_letters()] == [expected["live"]["doomed"]]
            hourly = engine.get("hourly")
            assert hourly is not None
            assert hourly._series is not None
            await engine.schedule("email", args=(1,), delay=HOUR, key="new")
            await engine.stop(grace=0)

    asyncio.run(main())
    for suffix in ("", ".snapshot"):
        decoder = Decoder()
        decoder.feed((tmp_path / "j" / f"timers.log{suffix}").read_bytes())
        assert decoder.header is not None
        version = 3 if suffix else 2  # a snapshot's format version 3: version 2 with jobs chunks
        assert (decoder.header.version, decoder.header.generation) == (version, 2)
        assert decoder.finish().status == "clean"
    assert not (tmp_path / "j" / "timers.log.old").exists()
    assert "format version 2, journal " in command(str(path))[1]


def test_version_1_journals_keep_their_checks(tmp_path: Path) -> None:
    """Schemas apply to version-1 records; a gap in generations is refused; no numbers, so no order check."""
    malformed = build_v1([job("a"), job("x", due="soon"), job("b")])
    path = write_files(tmp_path / "malformed", {"": malformed.data})
    outcome = outcome_of(path, tmp_path / "malformed-copy")
    assert outcome == (
        f"journal: {path}: malformed job record: due must be a number of POSIX seconds within ±2e+12, got 'soon';"
        f" this is damage, not a torn write (Engine(on_corrupt='truncate') drops everything from here on)"
        f" at byte offset {malformed.offsets[1]}",
        malformed.offsets[1],
    )
    gap = {
        ".snapshot": build_v1([job("a"), {"t": "end", "count": 1}], SNAPSHOT, 1).data,
        ".old": build_v1([job("b")], LOG, 2).data,
        "": build_v1([job("c")], LOG, 3).data,
    }
    path = write_files(tmp_path / "gap", dict(gap))
    outcome = outcome_of(path, tmp_path / "gap-copy")
    assert isinstance(outcome, tuple)
    assert "log generation 2 does not follow the snapshot: it should be generation 1" in outcome[0]
    sound = {".snapshot": gap[".snapshot"], "": build_v1([job("c"), {"t": "cancel", "id": "a"}], LOG, 1).data}
    path = write_files(tmp_path / "sound", dict(sound))
    assert set(outcome_of(path, tmp_path / "sound-copy")) == {"c"}


def test_a_rewrite_of_a_version_1_journal_cut_short_is_finished(tmp_path: Path) -> None:
    """The rewrite sealed its version-2 snapshot, then died: the version-1 log it holds is skipped, then replaced."""
    v2_snapshot = build([job("a"), {"t": "end", "count": 1}], SNAPSHOT, 2, 1, OTHER).data
    files = {".snapshot": v2_snapshot, "": build_v1([job("a"), job("gone")], LOG, 1).data}
    path = write_files(tmp_path / "j", dict(files))
    assert outcome_of(path, tmp_path / "copy") == {"a": job("a")}
    assert start_outcome(path) == set()  # job "a" has no key
    decoder = Decoder()
    decoder.feed(path.read_bytes())
    assert decoder.header is not None
    assert (decoder.header.version, decoder.header.generation, decoder.header.identity) == (2, 2, OTHER)
    # A version-1 log at or above a version-2 snapshot's generation is no part of this journal.
    files[""] = build_v1([job("b")], LOG, 2).data
    path = write_files(tmp_path / "mixed", dict(files))
    outcome = outcome_of(path, tmp_path / "mixed-copy")
    assert isinstance(outcome, tuple)
    assert "a log of format version 1 in a journal of version 2" in outcome[0]


def test_a_deadline_beyond_the_wheels_reach_starts_rather_than_stops_the_start(tmp_path: Path) -> None:
    """A sound record further out than the wheel reaches from now (a clock set back by ages) is held, not refused."""
    path = tmp_path / "timers.log"
    clean_journal(path)
    append(path, job("far", due=TIME_MAX, key="far"))
    assert command(str(path))[0] == 0
    assert start_outcome(path) == {"k", "far"}


job_fields = st.fixed_dictionaries(
    {},
    optional={
        "t": st.just("job"),
        "id": st.sampled_from(["", "a", 5, None]),
        "task": st.sampled_from(["", "t", 5, None]),
        "args": st.sampled_from([[], [1], {}, 5, None]),
        "kwargs": st.sampled_from([{}, {"a": 1}, [], None]),
        "due": st.sampled_from([WALL, 0, -TIME_MAX, TIME_MAX, TIME_MAX * 2, 1e300, "soon", True, None]),
        "prio": st.sampled_from([0, -PRIORITY_MAX, PRIORITY_MAX, PRIORITY_MAX + 1, 1.0, True, "high", None]),
        "att": st.sampled_from([0, 3, -1, PRIORITY_MAX + 1, "one", False, None]),
        "state": st.sampled_from(["pending", "failed", "dead", "running", "succeeded", 5, None]),
        "key": st.sampled_from(["k", "", 5, None]),
        "err": st.sampled_from(["boom", 5, None]),
        "parent": st.sampled_from(["p", "", None]),
        "series": st.sampled_from([SERIES, {}, None]),
        "extra": st.just(1),
    },
)


def _fast_checks() -> list[Any]:
    """Recovery's common-case check in Python, and its native twin where it is built."""
    from chronowheel._journal.schema import sound_jobs_py

    try:
        from chronowheel._cjournal import sound_jobs
    except ImportError:
        return [sound_jobs_py]
    return [sound_jobs_py, sound_jobs]


@pytest.mark.parametrize("fast", _fast_checks(), ids=["python", "native"][: len(_fast_checks())])
@given(record=job_fields)
def test_the_fast_job_check_accepts_only_what_the_full_one_does(fast: Any, record: dict[str, Any]) -> None:
    """Recovery's common-case check (one expression, or C) never lets through a record the schema refuses."""
    from chronowheel._journal.schema import _check_job

    if fast([{"t": "job", **record}], 0) == 1:
        assert _check_job(record) is None, record
