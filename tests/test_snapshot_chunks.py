"""Snapshots of format version 3: the usual jobs in ``jobs`` chunks, read as columns without a dict per job.

* A journal of version 2 written by chronowheel at 52e9954 (tests/data/journal-v2)
  opens as before; its first compaction writes a version-3 snapshot of chunks,
  which opens to the same jobs, field by field.
* A chunk and the ``job`` records it stands for are one: encoded, checked and
  expanded back, they are the records ``encode_job`` writes.
* The chunk's schema refuses a malformed chunk naming the column and the job;
  a log holds no chunk; a version-3 header is a snapshot's only.
* Compaction keeps the journal's order: a chunk is cut where another job
  comes; a chunk larger than a record may be is written a record per job.
* ``PlainJobs.columns`` (native) and ``PlainJobsPy.columns`` build the same
  jobs and stop at the same job of an unknown task (native cases skipped where
  it is not built).
"""

from __future__ import annotations

import asyncio
import shutil
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from chronowheel import Engine, Job, Retry
from chronowheel._journal import store as journal_store_module
from chronowheel._journal.format import LOG, SNAPSHOT, Decoder
from chronowheel._journal.records import encode_job, encode_jobs, expand_jobs, plain
from chronowheel._journal.replay import JobReplay, PlainJobsPy
from chronowheel._journal.schema import check_log_record, check_snapshot_record
from chronowheel._journal.store import _encode_slice
from chronowheel.testing import VirtualClock
from helpers import journal_store
from journal_files import IDENTITY, build

try:
    from chronowheel._cjournal import PlainJobs
except ImportError:  # not built
    PlainJobs = None  # type: ignore[assignment, misc]

DATA = Path(__file__).parent / "data" / "journal-v2"
WALL = 1_767_225_615.0  # the data's clock when it stopped


def engine_on(path: Path) -> Engine:
    engine = Engine(journal=str(path), clock=VirtualClock(wall=WALL + 1))
    for name in ("email", "doomed", "report"):
        engine.task(name=name)(lambda *args, **kwargs: None)
    engine.task(name="flaky", retry=Retry(3, backoff=100, jitter=False))(lambda: None)
    return engine


def state_of(engine: Engine) -> dict[str, Any]:
    """Every job the engine holds, as what a restart must keep of it."""
    jobs = [*engine._registry.jobs.values(), *engine.dead_letters()]
    return {
        job.id: (job.key, job.task, job.args, job.kwargs, job._due_wall, job.priority, job.attempt, job.state,
                 job._series is not None)
        for job in jobs
    }  # fmt: skip


def snapshot_records(path: Path) -> tuple[int, list[dict[str, Any]]]:
    decoder = Decoder()
    records = decoder.feed(path.read_bytes())
    assert decoder.header is not None
    assert decoder.finish().status == "clean"
    return decoder.header.version, [record.payload for record in records]


async def test_a_journal_of_version_2_written_by_52e9954_opens_and_compacts_into_version_3(tmp_path: Path) -> None:
    expected = orjson.loads((DATA / "expected.json").read_bytes())["live"]
    for name in ("timers.log", "timers.log.snapshot"):
        shutil.copyfile(DATA / name, tmp_path / name)
    path = tmp_path / "timers.log"
    assert snapshot_records(tmp_path / "timers.log.snapshot")[0] == 2
    engine = engine_on(path)
    async with engine:
        before = state_of(engine)
        assert set(before) == set(expected.values())
        c = before[expected["c"]]
        assert c[:5] == ("c", "email", (ord("c"),), {"n2": [1, 2.5, None]}, WALL - 15 + 100)
        assert [before[expected[name]][7] for name in ("flaky", "doomed", "paused", "late")] == [
            "failed", "dead", "paused", "pending"
        ]  # fmt: skip
        assert before[expected["hourly"]][8]
        store = journal_store(engine)
        store.compact_factor, store.compact_min = 0.0, 1  # the next hand-over starts a compaction
        engine.schedule_nowait("email", args=(10,), delay=80, key="new")
        await asyncio.sleep(0)  # the turn's hand-over weighs the log
        assert store.compaction is not None
        await store.compaction
        store.compact_factor, store.compact_min = 4.0, 10_000
        before = state_of(engine)
        await engine.stop(grace=0)
    version, records = snapshot_records(tmp_path / "timers.log.snapshot")
    assert version == 3
    kinds = [record["t"] for record in records]
    assert "jobs" in kinds
    assert kinds[-1] == "end"
    assert records[-1]["count"] == len(records) - 1  # the records before the end one
    assert not (tmp_path / "timers.log.old").exists()
    engine = engine_on(path)
    async with engine:
        assert state_of(engine) == before
        await engine.stop(grace=0)


def jobs_of(count: int, **fields: Any) -> list[Job]:
    jobs = []
    for number in range(count):
        job = Job(f"id{number}", None, "email", (number, "x"), {}, 0, 1_767_225_600.5 + number, 0)
        for name, values in fields.items():
            setattr(job, name, values[number % len(values)])
        jobs.append(job)
    return jobs


CHUNKS: dict[str, list[Job]] = {
    "bare": jobs_of(3),
    "keys, kwargs and priorities": jobs_of(
        5, key=["a", None, "b"], kwargs=[{"n": [1, 2.5, None]}, {}], priority=[0, -(2**63 - 1), 2**63 - 1]
    ),
    "int deadlines and attempts": jobs_of(4, _due_wall=[1_767_225_600, 2e12, -2e12], attempt=[0, 7]),
    "tasks": jobs_of(4, task=["email", "report", "gone"]),
    "one": jobs_of(1, args=[()]),
}


def job_records(jobs: list[Job]) -> list[dict[str, Any]]:
    return [orjson.loads(encode_job(job, new=False)) for job in jobs]


@pytest.mark.parametrize("name", list(CHUNKS))
def test_a_chunk_is_the_job_records_it_stands_for(name: str) -> None:
    jobs = CHUNKS[name]
    assert all(map(plain, jobs))
    chunk = orjson.loads(encode_jobs(jobs))
    assert check_snapshot_record(chunk) is None
    assert ("kwargs" in chunk) == any(job.kwargs for job in jobs)  # left out when every one is empty
    assert expand_jobs(chunk) == job_records(jobs)
    assert expand_jobs(chunk, 1, 2) == job_records(jobs)[1:2]
    assert check_log_record(chunk) == "unknown record type 'jobs'"


def chunk(**changes: Any) -> dict[str, Any]:
    record = orjson.loads(encode_jobs(jobs_of(3, key=["k", None, "l"])))
    record |= changes
    return {name: value for name, value in record.items() if value is not None}


MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "no ids": (chunk(id=[]), "malformed jobs record: id must be a non-empty list of job ids, got []"),
    "a short column": (chunk(due=[1.0, 2.0]), "malformed jobs record: due must be a list of 3 values, one per job"),
    "a missing column": (chunk(att=None), "malformed jobs record: att must be a list of 3 values, one per job, got"),
    "an unknown field": (chunk(state=["pending"] * 3), "malformed jobs record: unknown fields ['state']"),
    "an empty id": (chunk(id=["a", "", "c"]), "malformed jobs record: id[1] must be one of non-empty strings, got ''"),
    "a key not a string": (chunk(key=[None, 5, None]), "key[1] must be one of non-empty strings or nulls, got 5"),
    "args not a list": (chunk(args=[[], {}, []]), "args[1] must be one of lists, got {}"),
    "kwargs not dicts": (chunk(kwargs=[{}, {}, []]), "kwargs[2] must be one of dicts, got []"),
    "a deadline too far": (chunk(due=[1.0, 3e12, 2.0]), "due[1] must be one of numbers of POSIX seconds within"),
    "a deadline not a number": (chunk(due=[1.0, 2.0, "soon"]), "due[2] must be one of numbers of POSIX seconds"),
    "a bool priority": (chunk(prio=[0, True, 0]), "prio[1] must be one of ints within ±9223372036854775807, got True"),
    "a negative attempt": (chunk(att=[0, 0, -1]), "att[2] must be one of ints >= 0, got -1"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_chunk_is_refused_naming_the_column_and_the_job(name: str) -> None:
    record, fault = MALFORMED[name]
    problem = check_snapshot_record(record)
    assert problem is not None
    assert fault in problem


def test_a_version_3_header_is_a_snapshots_only() -> None:
    log = bytearray(build([], LOG).data)
    snapshot = build([{"t": "end", "count": 0}], SNAPSHOT, 1, 1, IDENTITY).data
    assert snapshot[4] == 3
    log[4] = 3  # a log's header claiming version 3, its CRC made right
    log[40:44] = zlib.crc32(bytes(log[:40])).to_bytes(4, "little")
    decoder = Decoder()
    decoder.feed(bytes(log))
    ending = decoder.finish()
    assert (ending.status, ending.reason) == ("corrupt", "unsupported journal format version 3")


def test_compaction_keeps_the_order_and_cuts_a_chunk_at_another_job(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = jobs_of(7)
    jobs[2].state = "paused"
    jobs[5].traceback = "Traceback: a retry's"
    jobs[5].state = "failed"
    live = {job.id: job for job in jobs}
    payloads, end = _encode_slice(jobs, 0, live, float("inf"))
    assert end >= len(jobs)
    records = [orjson.loads(payload) for payload in payloads]
    assert [record["t"] for record in records] == ["jobs", "job", "jobs", "job", "jobs"]
    expanded = [job for record in records for job in (expand_jobs(record) if record["t"] == "jobs" else [record])]
    assert expanded == job_records(jobs)
    del live["id3"]  # gone since the compaction began: left out
    monkeypatch.setattr(journal_store_module, "MAX_PAYLOAD", 100)  # too small for a chunk: a record each
    payloads, _ = _encode_slice(jobs[3:5], 0, live, float("inf"))
    assert [orjson.loads(payload) for payload in payloads] == job_records(jobs[4:5])


TASKS = {"email": "email", "report": "report"}  # "gone" is not registered


def built(twin: Any, record: dict[str, Any], start: int) -> tuple[list[int], dict[str, Any]]:
    """``twin.columns`` over a chunk as ``JobReplay`` calls it: where it stopped, and each job's fields."""
    live: dict[str, Job] = {}
    stops, index, count = [], start, len(record["id"])
    while (index := twin.columns(record, index, live, TASKS)) < count:
        stops.append(index)
        index += 1
    return stops, {
        job_id: (job.key, job.task, job.args, job.kwargs, job._due_wall, job.priority, job.attempt, job.state)
        for job_id, job in live.items()
    }


@pytest.mark.skipif(PlainJobs is None, reason="native decoder not built")
@pytest.mark.parametrize("start", [0, 2])
@pytest.mark.parametrize("name", list(CHUNKS))
def test_the_column_twins_build_the_same_jobs(name: str, start: int) -> None:
    record = orjson.loads(encode_jobs(CHUNKS[name]))
    native = built(PlainJobs(Job), record, start)
    assert native == built(PlainJobsPy(Job), record, start)
    assert native[0] == [i for i, job in enumerate(CHUNKS[name]) if job.task == "gone" and i >= start]


def test_a_chunks_job_of_a_task_not_registered_is_parked_as_its_record() -> None:
    record = orjson.loads(encode_jobs(CHUNKS["tasks"]))
    replay = JobReplay(["email", "report"])
    replay([record])
    assert [type(entry).__name__ for entry in replay.live.values()] == ["Job", "Job", "dict", "Job"]
    assert replay.live["id2"] == expand_jobs(record, 2, 3)[0]
    assert replay.kept == 1
