"""The journal decoder's native twins (``native/_cjournal.pyx``) against the Python loops they stand for.

Each native loop must hand back what its Python twin does, byte for byte:

* ``walk`` and ``format.walk_frames`` give the same records, position, next
  number and fault over random record streams, torn tails, flipped bits,
  wrong seeds and numbers; whole files decode to the same records and the
  same verdict (clean, torn, corrupt: offset and reason) through either,
  version-1 files included;
* ``sound_jobs`` passes no record ``sound_jobs_py`` refuses, and the run's
  fault (index and text) is the same through either;
* ``PlainJobs`` and ``PlainJobsPy`` stop at the same record and leave the
  same live set, field by field.

Skipped where the native module is not built.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronowheel._job import Job
from chronowheel._journal import format as journal_format
from chronowheel._journal import replay as journal_replay
from chronowheel._journal import schema
from chronowheel._journal.format import LOG, SNAPSHOT, Decoder, Encoder, Record, walk_frames
from chronowheel._journal.replay import JobReplay, PlainJobsPy
from chronowheel._journal.schema import PRIORITY_MAX, TIME_MAX, check_log_records, sound_jobs_py
from journal_files import IDENTITY, build_v1

cjournal = pytest.importorskip("chronowheel._cjournal")

WALL = 1_767_225_600.0
IDS = [f"{n:032x}" for n in range(6)]

# -- records ----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),  # what orjson writes
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(WALL, WALL + 1e7),
    st.text(max_size=12),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    st.sampled_from(["job", "pending", "t", "id", "a\\b", 'q"uote', "\x00", "é"]),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def job_payload(job_id: str, due: float, args: list[Any], key: str | None = None, **fields: Any) -> dict[str, Any]:
    record = {
        "t": "job",
        "id": job_id,
        "task": "send",
        "args": args,
        "kwargs": {},
        "due": due,
        "prio": 0,
        "att": 0,
        "state": "pending",
    }
    if key is not None:
        record["key"] = key
    return record | fields


usual = st.builds(
    job_payload,
    st.sampled_from(IDS),
    st.floats(WALL, WALL + 1e7) | st.integers(0, 2**40),
    st.lists(st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5) | st.floats(-1e6, 1e6), max_size=3),
    st.none() | st.sampled_from(["k", "remind:42"]),
)


def as_read(run: list[dict[str, Any]], reader: str) -> list[dict[str, Any]]:
    """The records as built here (keys of Python's own: the checks look the fields up), or as recovery gets them
    from orjson (its cached key objects: the checks match them by identity)."""
    if reader == "as-built":
        return run
    return [orjson.loads(orjson.dumps(record)) for record in run]


readers = st.sampled_from(["as-built", "orjson"])


# -- the frame walk -----------------------------------------------------------------

gone = st.builds(
    lambda kind, job_id: {"t": kind, "id": job_id}, st.sampled_from(["cancel", "ack"]), st.sampled_from(IDS)
)
records = st.lists(
    usual | gone | values,
    max_size=8,
)


def encode(payloads: list[Any], kind: bytes = LOG, seq: int = 1) -> bytearray:
    encoder = Encoder(kind, IDENTITY, 1, seq)
    return bytearray(encoder.header + encoder.frames([orjson.dumps(payload) for payload in payloads]))


def mutate(data: bytearray, draw: st.DrawFn) -> bytearray:
    change = draw(st.sampled_from(["none", "cut", "flip", "zeros", "garbage"]))
    if change == "cut" and data:
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif change == "flip" and data:
        data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif change == "zeros":
        data += bytes(draw(st.integers(1, 40)))
    elif change == "garbage":
        data += draw(st.binary(min_size=1, max_size=40))
    return data


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytearray, int, int]:
    """(the bytes after a header, the seed, the first number): some framed under another seed or number."""
    seq = draw(st.sampled_from([0, 1, 7, 2**64 - 2, 2**64 - 1]))
    data = encode(draw(records)[: 2**64 - seq], seq=seq)  # numbers are u64: the last one is 2**64 - 1
    header = len(Encoder(LOG, IDENTITY, 1, seq).header)
    seed = int.from_bytes(data[header - 4 : header], "little")
    seed = draw(st.sampled_from([seed, seed, seed ^ 1]))  # a wrong seed: another file's records
    expected = draw(st.sampled_from([seq, seq, seq + 1, max(seq - 1, 0)]))
    return mutate(data[header:], draw), seed, expected


@given(stream=streams(), base=st.sampled_from([44, 1 << 20]))
def test_the_native_walk_is_the_python_walk(stream: tuple[bytearray, int, int], base: int) -> None:
    data, seed, seq = stream
    native = cjournal.walk(bytearray(data), seed, seq, base, Record)
    assert native == walk_frames(bytearray(data), seed, seq, base, Record)


@contextmanager
def twin(native: bool) -> Iterator[None]:
    """The decoder's loops, native or Python, for the time of the block."""
    with (
        mock.patch.object(journal_format, "_walk", cjournal.walk if native else walk_frames),
        mock.patch.object(schema, "_sound_jobs", cjournal.sound_jobs if native else sound_jobs_py),
    ):
        yield


def decode(data: bytes, pieces: list[int], native: bool) -> tuple[list[Record], Any, int]:
    with twin(native):
        decoder = Decoder(check_log_records)
        found: list[Record] = []
        start = 0
        for size in [*pieces, len(data)]:
            found += decoder.feed(data[start : start + size])
            start += size
        return found, decoder.finish(), decoder.next_seq


@st.composite
def files(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([1, 2, 2, 2]))
    payloads: list[Any] = draw(records)
    if version == 1:
        return bytes(mutate(bytearray(build_v1(payloads).data), draw))
    kind = draw(st.sampled_from([LOG, SNAPSHOT]))
    return bytes(mutate(encode(payloads, kind, seq=draw(st.sampled_from([1, 9]))), draw))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=files(), pieces=st.lists(st.integers(1, 300), max_size=4))
def test_whole_files_decode_to_the_same_records_and_verdict_either_way(data: bytes, pieces: list[int]) -> None:
    assert decode(data, pieces, native=True) == decode(data, pieces, native=False)


# -- the usual record's schema ------------------------------------------------------

fields = st.fixed_dictionaries(
    {
        "t": st.sampled_from(["job", "move", 5]),
        "id": st.sampled_from(["a", "", 5]),
        "task": st.sampled_from(["send", "", None]),
        "args": st.sampled_from([[], [1], (), None]),
        "kwargs": st.sampled_from([{}, {"a": 1}, []]),
        "due": st.sampled_from([WALL, 0, -TIME_MAX, TIME_MAX, TIME_MAX * 2, 2 * 10**12 + 1, math.nan, True, "x"]),
        "prio": st.sampled_from([0, -PRIORITY_MAX, PRIORITY_MAX, PRIORITY_MAX + 1, -PRIORITY_MAX - 1, 1.0, True]),
        "att": st.sampled_from([0, 3, -1, PRIORITY_MAX, PRIORITY_MAX + 1, False]),
        "state": st.sampled_from(["pending", "failed", "dead", "paused", "running", 5, ["pending"]]),
    },
    optional={"key": st.sampled_from(["k", "", 5, None]), "err": st.just("boom"), "extra": st.just(1)},
)


@given(run=st.lists(fields, max_size=6), start=st.integers(0, 3), decoded=st.booleans())
def test_the_native_check_passes_no_record_the_python_one_refuses(
    run: list[dict[str, Any]], start: int, decoded: bool
) -> None:
    if decoded:  # keys of orjson's own (matched by identity), not Python's (looked up)
        run = [orjson.loads(orjson.dumps(record, default=str)) for record in run]
    native, python = cjournal.sound_jobs(run, start), sound_jobs_py(run, start)
    assert native <= python
    with twin(native=True):
        verdict = check_log_records(run)
    with twin(native=False):
        assert verdict == check_log_records(run)


@given(run=st.lists(usual, max_size=6), reader=readers)
def test_the_native_check_passes_the_usual_records(run: list[dict[str, Any]], reader: str) -> None:
    """Not a check that passes nothing: the engine's own records, however decoded, pass in C."""
    decoded = as_read(run, reader)
    assert cjournal.sound_jobs(decoded, 0) == sound_jobs_py(decoded, 0) == len(run)


# -- the usual record's replay ------------------------------------------------------

replayed = st.lists(
    usual
    | st.builds(job_payload, st.sampled_from(IDS), st.just(WALL), st.just([]), st.none(), state=st.just("failed"))
    | st.builds(job_payload, st.sampled_from(IDS), st.just(WALL), st.just([1]), st.none(), task=st.just("gone"))
    | st.builds(job_payload, st.sampled_from(IDS), st.just(WALL), st.just([2]), st.none(), task=st.just("bill"))
    | st.builds(job_payload, st.sampled_from(IDS), st.just(WALL), st.just([1]), st.none(), att=st.just(2))
    | gone
    | st.builds(lambda job_id: {"t": "move", "id": job_id, "due": WALL + 5}, st.sampled_from(IDS)),
    max_size=10,
)


def fields_of(entry: Any) -> Any:
    """A live entry as comparable values: a job's every slot (Job compares by id alone), or the record."""
    if not isinstance(entry, Job):
        return entry
    return {name: getattr(entry, name, None) for name in Job.__slots__ if name != "__weakref__"}


@given(run=replayed, start=st.integers(0, 2), reader=readers)
def test_the_native_replay_is_the_python_replay(run: list[dict[str, Any]], start: int, reader: str) -> None:
    run = as_read(run, reader)
    tasks = {"send": "send", "bill": "bill"}
    native_live: dict[str, Any] = {}
    python_live: dict[str, Any] = {}
    assert cjournal.PlainJobs(Job).replay(run, start, native_live, tasks) == PlainJobsPy(Job).replay(
        run, start, python_live, tasks
    )
    assert list(native_live) == list(python_live)
    assert [fields_of(job) for job in native_live.values()] == [fields_of(job) for job in python_live.values()]


@given(run=replayed)
def test_a_whole_replay_is_the_same_with_either_twin(run: list[dict[str, Any]]) -> None:
    results = []
    for plain in (cjournal.PlainJobs, PlainJobsPy):
        with mock.patch.object(journal_replay, "_PlainJobs", plain):
            replay = JobReplay(["send", "bill"])
            replay([dict(record) for record in run])
        results.append(([(key, fields_of(entry)) for key, entry in replay.live.items()], replay.kept))
    assert results[0] == results[1]


def test_the_native_replay_builds_jobs_by_copying_a_template() -> None:
    """``Job`` fills slots only: the native replay copies a template rather than call it."""
    assert cjournal.PlainJobs(Job).cloning


class Derived(Job):
    """A job class that does more than fill its slots: the native replay calls it instead of copying."""

    __slots__ = ("extra",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.extra = [args[0]]  # a new list per job: no template holds it


def test_a_job_class_that_is_not_plain_slots_is_called() -> None:
    run = [job_payload(IDS[0], WALL, [1], att=3)]
    plain = cjournal.PlainJobs(Derived)
    live: dict[str, Any] = {}
    assert plain.replay(run, 0, live, {"send": "send"}) == 1
    assert not plain.cloning
    job = live[IDS[0]]
    assert type(job) is Derived
    assert (job.extra, job.attempt, job.args) == ([IDS[0]], 3, (1,))
