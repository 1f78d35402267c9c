"""The journal's bytes: framing, the sans-IO decoder, and recovery from torn tails and damage.

What this file proves, on the decoder alone and then on real files through
``Journal.recover``:

* records come back the same, at the same offsets, however the bytes are split;
* a file cut at any byte gives every whole record before the cut, and a cut
  inside the last record (or the header) is *torn*: recovery drops it, cuts
  the file back to the last good record, and appending then goes on validly;
* any single flipped bit in a record with records after it is *corrupt* at
  that record's offset: it is never handed out, recovery refuses to start
  (``JournalCorrupt``) and leaves the file alone, and ``truncate_corrupt``
  keeps exactly the records before it;
* zeros after the last record are a torn tail; a damaged *last* record is
  taken for a torn write;
* a damaged file header is corrupt at offset 0; an unknown version says so;
* a snapshot is whole or corrupt, never torn.

The sample log is built (tests/journal_files.py, format version 2) from
records shaped like the engine's; one test has a real engine write, lose and
append to its journal. Record numbers, identities and schemas are
tests/test_journal_integrity.py's.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronowheel import Engine, JournalCorrupt
from chronowheel._journal.format import LOG, MAX_PAYLOAD, SNAPSHOT, Decoder, Ending, Header, Record
from chronowheel._journal.records import apply
from chronowheel._journal.schema import KINDS
from chronowheel._journal.writer import Journal, JournalFile
from chronowheel.testing import VirtualClock
from helpers import Runner
from journal_files import IDENTITY, Layout, build

HOUR = 3600.0
WALL = 1_767_225_600.0
HEADER_SIZE = 44  # magic, version, identity, generation, seq, crc32
FRAME_SIZE = 16  # u32 crc32 | u32 length | u64 seq
LENGTH = 4  # where a frame's length field starts


def job(job_id: str, due: float) -> dict[str, Any]:
    """A ``job`` record as the engine writes one."""
    return {
        "t": "job",
        "id": job_id,
        "task": "remind",
        "args": [job_id],
        "kwargs": {},
        "due": due,
        "prio": 0,
        "att": 0,
        "state": "pending",
    }


# Every record type; the middle one has records after it, the last one changes the live set.
SAMPLE = build(
    [
        job("a", WALL + HOUR),
        job("b", WALL + 2 * HOUR),
        {"t": "move", "id": "b", "due": WALL + 3 * HOUR},
        job("c", WALL + 4 * HOUR),
        {"t": "ack", "id": "c"},
        job("d", WALL + 5 * HOUR),
        {"t": "cancel", "id": "a"},
    ]
)
MIDDLE = 2
LAST = len(SAMPLE.payloads) - 1


def live_after(count: int, layout: Layout = SAMPLE) -> dict[str, dict[str, Any]]:
    """The live set once the first ``count`` records are replayed (on copies: ``move`` edits in place)."""
    live: dict[str, dict[str, Any]] = {}
    for payload in layout.payloads[:count]:
        apply(live, copy.deepcopy(payload))
    return live


def decode(pieces: Iterable[bytes]) -> tuple[list[Record], Ending]:
    decoder = Decoder()
    records = [record for piece in pieces for record in decoder.feed(piece)]
    return records, decoder.finish()


def flip(data: bytes, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


def with_length(data: bytes, offset: int, length: int) -> bytes:
    """``data`` with the length field of the frame at ``offset`` overwritten (its CRC left as it was)."""
    return data[: offset + LENGTH] + struct.pack("<I", length) + data[offset + LENGTH + 4 :]


def bits_of(start: int, end: int) -> range:
    return range(start * 8, end * 8)


def recover(path: Path, *, truncate_corrupt: bool = False) -> dict[str, dict[str, Any]]:
    """Run recovery alone (no writer thread), then let go of the lock and the file.

    A recovery that raises has let go of them itself: if it did not, the
    next one in a test's loop would find the lock taken.
    """
    journal = Journal(str(path), "always", 0.1)
    live = journal.recover(truncate_corrupt=truncate_corrupt)
    asyncio.run(journal.close())
    return live


async def recover_and_append(path: Path, payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Recover, then append one record through the writer thread and wait until it is durable."""
    journal = Journal(str(path), "always", 0.1)
    live = await asyncio.to_thread(journal.recover, truncate_corrupt=False)
    journal.open(asyncio.get_running_loop())
    try:
        journal.append(orjson.dumps(payload))
        await journal.commit()
    finally:
        await journal.close()
    return live


def read_log(path: Path) -> tuple[list[Record], Ending]:
    log = JournalFile(str(path))
    records = list(log.records())
    assert log.ending is not None
    return records, log.ending


# -- the decoder, sans IO ------------------------------------------------------------------


def test_decoder_reads_a_whole_file_fed_at_once_or_byte_by_byte() -> None:
    expected = [
        Record(offset, payload, seq)
        for seq, (offset, payload) in enumerate(zip(SAMPLE.offsets, SAMPLE.payloads, strict=True), start=1)
    ]
    for pieces in ([SAMPLE.data], [SAMPLE.data[i : i + 1] for i in range(len(SAMPLE.data))]):
        decoder = Decoder()
        records = [record for piece in pieces for record in decoder.feed(piece)]
        assert records == expected
        assert decoder.header == Header(LOG, 1, IDENTITY, 1)
        assert decoder.finish() == Ending("clean", len(SAMPLE.data), "")


payloads_strategy = st.lists(
    st.fixed_dictionaries(
        {"t": st.sampled_from(KINDS), "id": st.text(max_size=20)},
        optional={
            "due": st.floats(allow_nan=False, allow_infinity=False),
            "args": st.lists(st.integers(-(2**53), 2**53)),
        },
    ),
    max_size=12,
)


@given(
    payloads=payloads_strategy,
    generation=st.integers(0, 2**64 - 1),
    seq=st.integers(0, 2**64 - 13),
    data=st.data(),
)
def test_decoder_yields_the_same_records_however_the_bytes_are_split(
    payloads: list[dict[str, Any]], generation: int, seq: int, data: st.DataObject
) -> None:
    layout = build(payloads, generation=generation, seq=seq)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(layout.data)), max_size=30), label="cuts"))
    bounds = [0, *cuts, len(layout.data)]
    pieces = [layout.data[start:end] for start, end in itertools.pairwise(bounds)]
    decoder = Decoder()
    records = [record for piece in pieces for record in decoder.feed(piece)]
    assert records == [
        Record(offset, payload, number)
        for number, (offset, payload) in enumerate(zip(layout.offsets, payloads, strict=True), start=seq)
    ]
    assert decoder.header == Header(LOG, generation, IDENTITY, seq)
    assert decoder.next_seq == seq + len(payloads)
    assert decoder.finish() == Ending("clean", len(layout.data), "")


def test_decoder_cut_at_every_offset_yields_the_whole_records_before_it_and_a_torn_ending() -> None:
    for cut in range(len(SAMPLE.data)):
        records, ending = decode([SAMPLE.data[:cut]])
        whole = [i for i in range(len(SAMPLE.offsets)) if SAMPLE.end_of(i) <= cut]
        assert [record.offset for record in records] == [SAMPLE.offsets[i] for i in whole], cut
        if cut == 0:
            assert ending == Ending("clean", 0, "")  # an empty file: created, never written
        elif cut < HEADER_SIZE:
            assert (ending.status, ending.offset) == ("torn", 0), cut
            assert "file header cut short" in ending.reason
        elif cut in SAMPLE.offsets:  # the first is the header's end
            assert ending == Ending("clean", cut, ""), cut
        else:
            assert (ending.status, ending.offset) == ("torn", SAMPLE.offsets[len(whole)]), cut


# -- torn tails on real files ----------------------------------------------------------------


def test_recovery_of_a_log_cut_inside_its_last_record_drops_only_that_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "timers.log"
    good_end = SAMPLE.offsets[LAST]
    expected = live_after(LAST)
    assert set(expected) == {"a", "b", "d"}  # the cancel of "a" is the record that is lost
    appended = job("e", WALL + 6 * HOUR)
    for cut in range(good_end, len(SAMPLE.data)):
        path.write_bytes(SAMPLE.data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="chronowheel"):
            assert recover(path) == expected, cut
        assert path.read_bytes() == SAMPLE.data[:good_end], cut
        if cut > good_end:
            assert f"dropping its last {cut - good_end} bytes" in caplog.text, cut
        else:
            assert caplog.text == ""

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="chronowheel"):
            assert asyncio.run(recover_and_append(path, appended)) == expected, cut
        assert caplog.text == "", cut  # the second recovery found nothing to repair
        records, ending = read_log(path)
        assert [record.payload for record in records] == [*SAMPLE.payloads[:LAST], appended], cut
        assert records[-1].offset == good_end
        assert ending == Ending("clean", path.stat().st_size, "")


def test_recovery_of_a_log_cut_inside_its_header_starts_a_fresh_log(tmp_path: Path) -> None:
    for cut in range(1, HEADER_SIZE):
        (tmp_path / str(cut)).mkdir()
        path = tmp_path / str(cut) / "timers.log"
        path.write_bytes(SAMPLE.data[:cut])
        assert recover(path) == {}, cut
        records, ending = read_log(path)
        assert records == []
        assert ending == Ending("clean", HEADER_SIZE, "")
        assert recover(path) == {}


def test_an_engine_restarts_after_a_torn_last_record_and_keeps_appending(run: Runner, tmp_path: Path) -> None:
    path = str(tmp_path / "timers.log")

    def make_engine() -> Engine:
        engine = Engine(journal=path, clock=VirtualClock(wall=WALL))

        @engine.task(name="remind")
        async def remind(user: int) -> None:
            raise AssertionError("nothing is due in this test")

        return engine

    async def main() -> None:
        async with make_engine() as first:
            for n in range(3):
                await first.schedule("remind", args=(n,), delay=HOUR, key=f"remind:{n}")
            await first.stop(grace=0)
        records, ending = read_log(Path(path))
        last = records[-1]
        assert last.payload["key"] == "remind:2"
        os.truncate(path, last.offset + (ending.offset - last.offset) // 2)  # the crash, mid-write

        async with make_engine() as second:
            assert len(second) == 2
            assert second.get("remind:2") is None
            await second.schedule("remind", args=(3,), delay=HOUR, key="remind:3")
            await second.stop(grace=0)

        async with make_engine() as third:
            assert len(third) == 3
            assert all(third.get(f"remind:{n}") is not None for n in (0, 1, 3))
            await third.stop(grace=0)
        records, ending = read_log(Path(path))
        assert ending.status == "clean"
        assert [record.payload["key"] for record in records] == ["remind:0", "remind:1", "remind:3"]

    run(main)


# -- damage in the middle: corrupt, never replayed -----------------------------------------------


def test_decoder_never_yields_a_middle_record_with_any_bit_flipped() -> None:
    start, end = SAMPLE.offsets[MIDDLE], SAMPLE.end_of(MIDDLE)
    for bit in bits_of(start, end):
        damaged = flip(SAMPLE.data, bit)
        for pieces in ([damaged], [damaged[: start + 5], damaged[start + 5 :]]):
            records, ending = decode(pieces)
            assert [record.offset for record in records] == SAMPLE.offsets[:MIDDLE], bit
            assert (ending.status, ending.offset) == ("corrupt", start), bit


def test_recovery_refuses_a_log_with_any_bit_of_a_middle_record_flipped(tmp_path: Path) -> None:
    path = tmp_path / "timers.log"
    start, end = SAMPLE.offsets[MIDDLE], SAMPLE.end_of(MIDDLE)
    for bit in bits_of(start, end):
        damaged = flip(SAMPLE.data, bit)
        path.write_bytes(damaged)
        with pytest.raises(JournalCorrupt, match="damage, not a torn write") as caught:
            recover(path)
        assert caught.value.offset == start, bit
        assert path.read_bytes() == damaged, bit  # refusing to start repairs nothing


def test_recovery_told_to_truncate_keeps_the_records_before_a_damaged_middle_record(tmp_path: Path) -> None:
    """Every bit of the length and CRC fields, every 3rd of the payload: each repair fsyncs."""
    path = tmp_path / "timers.log"
    start, end = SAMPLE.offsets[MIDDLE], SAMPLE.end_of(MIDDLE)
    expected = live_after(MIDDLE)
    assert expected["b"]["due"] == WALL + 2 * HOUR  # the move of "b" is the damaged record
    for bit in [*bits_of(start, start + FRAME_SIZE), *bits_of(start + FRAME_SIZE, end)[::3]]:
        path.write_bytes(flip(SAMPLE.data, bit))
        assert recover(path, truncate_corrupt=True) == expected, bit
        assert path.read_bytes() == SAMPLE.data[:start], bit
        assert recover(path) == expected, bit


@pytest.mark.parametrize(
    "length",
    [
        pytest.param(0, id="zero"),
        pytest.param(MAX_PAYLOAD + 1, id="over-max"),
        pytest.param(0xFFFF_FFFF, id="huge"),
        pytest.param(len(SAMPLE.data), id="past-eof"),
        pytest.param(len(SAMPLE.data) - SAMPLE.offsets[MIDDLE] - FRAME_SIZE, id="exactly-to-eof"),
        pytest.param(SAMPLE.end_of(MIDDLE) - SAMPLE.offsets[MIDDLE] - FRAME_SIZE - 1, id="one-short"),
    ],
)
def test_a_bad_middle_length_with_records_after_it_is_corrupt_not_torn(tmp_path: Path, length: int) -> None:
    start = SAMPLE.offsets[MIDDLE]
    damaged = with_length(SAMPLE.data, start, length)
    for pieces in ([damaged], [damaged[i : i + 1] for i in range(len(damaged))]):
        records, ending = decode(pieces)
        assert [record.offset for record in records] == SAMPLE.offsets[:MIDDLE]
        assert (ending.status, ending.offset) == ("corrupt", start)

    path = tmp_path / "timers.log"
    path.write_bytes(damaged)
    with pytest.raises(JournalCorrupt) as caught:
        recover(path)
    assert caught.value.offset == start
    assert path.read_bytes() == damaged
    assert recover(path, truncate_corrupt=True) == live_after(MIDDLE)
    assert path.read_bytes() == SAMPLE.data[:start]


# -- the very end: zeros, and a damaged last record ---------------------------------------------


@pytest.mark.parametrize("zeros", [1, 7, 8, 4096])
def test_zeros_after_the_last_record_are_a_torn_tail(tmp_path: Path, zeros: int) -> None:
    """A crash can leave the file longer than what was written, the rest reading as zeros."""
    padded = SAMPLE.data + bytes(zeros)
    records, ending = decode([SAMPLE.data, bytes(zeros)])
    assert len(records) == len(SAMPLE.payloads)
    assert (ending.status, ending.offset) == ("torn", len(SAMPLE.data))

    path = tmp_path / "timers.log"
    path.write_bytes(padded)
    assert recover(path) == live_after(len(SAMPLE.payloads))
    assert path.read_bytes() == SAMPLE.data


def test_a_torn_last_record_followed_by_zeros_is_a_torn_tail(tmp_path: Path) -> None:
    """The file's size covered a whole batch, but only the batch's first bytes reached the disk.

    The last record is cut anywhere (or its bytes from the cut on read as
    zeros) and zeros follow: nothing but zeros comes after the bad record,
    which is the torn rule's first case.
    """
    path = tmp_path / "timers.log"
    start = SAMPLE.offsets[LAST]
    for cut in range(start + 1, len(SAMPLE.data)):
        padded = SAMPLE.data[:cut] + bytes(4096)
        records, ending = decode([padded])
        assert len(records) == LAST, cut
        assert (ending.status, ending.offset) == ("torn", start), (cut, ending)
        path.write_bytes(padded)
        assert recover(path) == live_after(LAST), cut
        assert path.read_bytes() == SAMPLE.data[:start], cut


def test_a_bit_flip_in_the_last_record_is_taken_for_a_torn_write(tmp_path: Path) -> None:
    """Deliberate rule: a complete last frame that fails its CRC is torn, not corrupt.

    Nothing follows it, so it cannot be told from a write the crash cut
    short whose last sectors hold stale bytes. Recovery drops it with a
    warning and starts, losing at most that one record (which under
    ``fsync="always"`` was not yet acknowledged), rather than refusing to
    start. Every bit of its CRC field
    and payload goes through the decoder, every CRC bit and every 3rd payload
    bit through recovery (each repair fsyncs); the length field is the next test's.
    """
    path = tmp_path / "timers.log"
    start = SAMPLE.offsets[LAST]
    for bit in [*bits_of(start, start + LENGTH), *bits_of(start + LENGTH + 4, len(SAMPLE.data))]:
        damaged = flip(SAMPLE.data, bit)
        records, ending = decode([damaged])
        assert [record.offset for record in records] == SAMPLE.offsets[:LAST], bit
        assert ending == Ending("torn", start, "CRC mismatch"), bit
        if bit >= (start + FRAME_SIZE) * 8 and bit % 3:
            continue
        path.write_bytes(damaged)
        assert recover(path) == live_after(LAST), bit
        assert path.read_bytes() == SAMPLE.data[:start], bit


def test_a_flipped_length_in_the_last_record_is_torn_only_if_it_reaches_the_end() -> None:
    """A longer length runs past the end of the file: torn, like an unfinished write.

    A shorter one leaves the payload's tail after the claimed frame: bytes
    that are neither zeros nor a record, so it is corrupt. So is a length no
    record can have. No single flip is ever handed out as a record.
    """
    start = SAMPLE.offsets[LAST]
    length = SAMPLE.end_of(LAST) - start - FRAME_SIZE
    for bit in bits_of(start + LENGTH, start + LENGTH + 4):
        damaged = flip(SAMPLE.data, bit)
        flipped = length ^ (1 << (bit - (start + LENGTH) * 8))
        records, ending = decode([damaged])
        assert [record.offset for record in records] == SAMPLE.offsets[:LAST], bit
        expected = "torn" if length < flipped <= MAX_PAYLOAD else "corrupt"
        assert (ending.status, ending.offset) == (expected, start), (bit, flipped)


# -- the file header --------------------------------------------------------------------------


def test_any_flipped_bit_in_the_file_header_is_corrupt_at_offset_zero(tmp_path: Path) -> None:
    """A flip in the version field names the version it makes; any other, the header."""
    path = tmp_path / "timers.log"
    header_only = SAMPLE.data[:HEADER_SIZE]
    for bit in bits_of(0, HEADER_SIZE):
        in_version = 4 <= bit // 8 < 8
        reason = f"unsupported journal format version {2 ^ (1 << (bit - 32))}" if in_version else "bad file header"
        for data in (SAMPLE.data, header_only):
            damaged = flip(data, bit)
            records, ending = decode([damaged])
            assert records == []
            assert ending == Ending("corrupt", 0, reason), bit
            path.write_bytes(damaged)
            with pytest.raises(JournalCorrupt, match=reason) as caught:
                recover(path)
            assert caught.value.offset == 0
            assert path.read_bytes() == damaged


@pytest.mark.parametrize(
    "foreign",
    [
        pytest.param(b"timers: not a journal at all\n", id="text"),
        pytest.param(SAMPLE.frame(0), id="one-record-no-header"),
        pytest.param(SAMPLE.data[HEADER_SIZE:], id="records-no-header"),
    ],
)
def test_a_file_without_a_journal_header_is_corrupt_at_offset_zero(tmp_path: Path, foreign: bytes) -> None:
    """Never torn, even when its first bytes read as a frame reaching the end: that would replace the file."""
    records, ending = decode([foreign])
    assert records == []
    assert ending == Ending("corrupt", 0, "bad file header")
    path = tmp_path / "timers.log"
    path.write_bytes(foreign)
    with pytest.raises(JournalCorrupt) as caught:
        recover(path)
    assert caught.value.offset == 0
    assert path.read_bytes() == foreign


def future_version_log() -> bytes:
    """The sample log as a later chronowheel (format version 3) might write it: a header of a size not known here."""
    return struct.pack("<4sI", LOG, 3) + SAMPLE.data[8:]


def test_an_unsupported_format_version_is_refused_by_name(tmp_path: Path) -> None:
    data = future_version_log()
    records, ending = decode([data])
    assert records == []
    assert ending == Ending("corrupt", 0, "unsupported journal format version 3")

    path = tmp_path / "timers.log"
    path.write_bytes(data)
    with pytest.raises(JournalCorrupt, match="unsupported journal format version 3") as caught:
        recover(path)
    assert caught.value.offset == 0
    assert path.read_bytes() == data


def test_an_unsupported_format_version_is_refused_even_when_told_to_truncate(tmp_path: Path) -> None:
    """``on_corrupt="truncate"`` is for damage; a newer version's log is not damaged, only unknown.

    Rolling back to an older release must not throw away a newer release's jobs.
    """
    data = future_version_log()
    path = tmp_path / "timers.log"
    path.write_bytes(data)
    with pytest.raises(JournalCorrupt, match="unsupported journal format version 3"):
        recover(path, truncate_corrupt=True)
    assert path.read_bytes() == data


# -- snapshots: whole or corrupt ---------------------------------------------------------------

SNAPSHOT_JOBS = [job("x", WALL + HOUR), job("y", WALL + 2 * HOUR), job("z", WALL + 3 * HOUR)]
# The snapshot of generation 2 holds the records before number 10; the log of generation 2 goes on from there.
SNAPSHOT_FILE = build([*SNAPSHOT_JOBS, {"t": "end", "count": len(SNAPSHOT_JOBS)}], SNAPSHOT, generation=2, seq=10)
SNAPSHOT_LOG = build([job("w", WALL + 4 * HOUR), {"t": "cancel", "id": "x"}], LOG, generation=2, seq=10)


def snapshot_journal(tmp_path: Path, snapshot: bytes) -> tuple[Path, Path]:
    """A journal of a snapshot and the log written after it; the log's path and the snapshot's."""
    path = tmp_path / "timers.log"
    snapshot_path = tmp_path / "timers.log.snapshot"
    path.write_bytes(SNAPSHOT_LOG.data)
    snapshot_path.write_bytes(snapshot)
    return path, snapshot_path


def refuses_snapshot(path: Path, snapshot_path: Path, damaged: bytes) -> int:
    """Recovery raises, with or without truncate_corrupt, and leaves both files as they were."""
    offsets: set[int] = set()
    for truncate_corrupt in (False, True):
        with pytest.raises(JournalCorrupt, match="snapshot") as caught:
            recover(path, truncate_corrupt=truncate_corrupt)
        offsets.add(caught.value.offset)
        assert snapshot_path.read_bytes() == damaged
        assert path.read_bytes() == SNAPSHOT_LOG.data
    [offset] = offsets
    return offset


def test_a_sound_snapshot_and_its_log_recover_together(tmp_path: Path) -> None:
    path, _ = snapshot_journal(tmp_path, SNAPSHOT_FILE.data)
    live = recover(path)
    assert sorted(live) == ["w", "y", "z"]
    assert live["y"] == SNAPSHOT_JOBS[1]


def test_a_snapshot_without_its_end_record_or_missing_a_record_is_corrupt(tmp_path: Path) -> None:
    end = SNAPSHOT_FILE.offsets[-1]
    without_end = SNAPSHOT_FILE.data[:end]
    assert decode([without_end])[1].status == "clean"  # whole records only: only the end record tells
    path, snapshot_path = snapshot_journal(tmp_path, without_end)
    assert refuses_snapshot(path, snapshot_path, without_end) == end

    second, third = SNAPSHOT_FILE.offsets[1:3]
    missing_one = SNAPSHOT_FILE.data[:second] + SNAPSHOT_FILE.data[third:]  # a whole frame lost
    snapshot_path.write_bytes(missing_one)
    with pytest.raises(JournalCorrupt, match="record number 2 where 1 was expected") as caught:
        recover(path)
    assert caught.value.offset == second


@pytest.mark.parametrize("zeros", [1, 4096])
def test_a_whole_snapshot_with_zeros_after_its_end_is_corrupt(tmp_path: Path, zeros: int) -> None:
    """Every record and the end record are sound, but a log's torn-tail rule does not apply to snapshots."""
    padded = SNAPSHOT_FILE.data + bytes(zeros)
    path, snapshot_path = snapshot_journal(tmp_path, padded)
    assert refuses_snapshot(path, snapshot_path, padded) == len(SNAPSHOT_FILE.data)


def test_a_snapshot_cut_anywhere_is_corrupt_never_torn(tmp_path: Path) -> None:
    """A snapshot is renamed into place only after its fsync: a short one is damage."""
    path, snapshot_path = snapshot_journal(tmp_path, b"")
    for cut in range(len(SNAPSHOT_FILE.data)):
        cut_short = SNAPSHOT_FILE.data[:cut]
        snapshot_path.write_bytes(cut_short)
        # the header's start, or the record the cut falls in (at a boundary: the missing end record)
        expected = 0 if cut < HEADER_SIZE else SNAPSHOT_FILE.offsets[SNAPSHOT_FILE.record_at(cut)]
        assert refuses_snapshot(path, snapshot_path, cut_short) == expected, cut


def test_a_snapshot_with_any_bit_flipped_is_corrupt_at_the_damaged_record(tmp_path: Path) -> None:
    """Every bit through the decoder; through recovery every framing bit and every 13th payload bit."""
    path, snapshot_path = snapshot_journal(tmp_path, b"")
    for bit in bits_of(0, len(SNAPSHOT_FILE.data)):
        damaged = flip(SNAPSHOT_FILE.data, bit)
        index = SNAPSHOT_FILE.record_at(bit // 8)
        expected = 0 if index < 0 else SNAPSHOT_FILE.offsets[index]
        records, ending = decode([damaged])
        assert all(record.offset < expected for record in records), bit
        assert ending.status != "clean", bit
        assert ending.offset == expected, bit
        in_framing = bit // 8 - expected < (HEADER_SIZE if index < 0 else FRAME_SIZE)
        if in_framing or bit % 13 == 0:
            snapshot_path.write_bytes(damaged)
            assert refuses_snapshot(path, snapshot_path, damaged) == expected, bit
