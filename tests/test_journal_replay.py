"""Recovery's one-pass replay into jobs (``_journal/replay.py``) against the records' replay it stands for.

``JobReplay`` builds each job as its record is read; ``replay_records``
keeps the records and ``job_from_record`` builds the jobs afterwards, as
recovery did before. Over random runs of records (plain, keyed, retried,
recurring and run jobs, moves, cancels, acks, done records, jobs of a task
not registered), both must leave the same live set, in the same order.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel import Every
from chronowheel._errors import JournalCorrupt
from chronowheel._job import Job
from chronowheel._journal import recovery
from chronowheel._journal.format import SNAPSHOT, Encoder
from chronowheel._journal.records import job_from_record, job_record, replay_records
from chronowheel._journal.replay import JobReplay
from chronowheel._journal.writer import Journal
from chronowheel._series import Series

TASKS = ("send", "bill")  # registered; "gone" is not
IDS = [f"j{n}" for n in range(5)]
WALL = 1_767_225_600.0


def job_of(job_id: str, task: str, shape: str, due: float) -> dict[str, Any]:
    """A ``job`` record of one of the shapes recovery meets."""
    job = Job(job_id, None, task, (1, "a", [2]), {"k": None}, 3, due, 0)
    if shape == "keyed":
        job.key = f"key-{job_id}"
    elif shape == "retried":
        job.state, job.attempt, job.traceback = "failed", 2, "Traceback ...\nValueError: no"
    elif shape == "recurring":
        job._series = Series(Every(60.0), WALL, due, "fire_once", 0.0, "skip")
    elif shape == "run":
        job._parent = Job("j0", None, task, (), {}, 0, due, 0)
    return job_record(job)


record = st.one_of(
    st.builds(
        job_of,
        st.sampled_from(IDS),
        st.sampled_from((*TASKS, "gone")),
        st.sampled_from(("plain", "keyed", "retried", "recurring", "run")),
        st.floats(WALL, WALL + 1e6),
    ),
    st.builds(
        lambda job_id, due: {"t": "move", "id": job_id, "due": due}, st.sampled_from(IDS), st.floats(WALL, WALL + 1e6)
    ),
    st.builds(lambda kind, job_id: {"t": kind, "id": job_id}, st.sampled_from(("cancel", "ack")), st.sampled_from(IDS)),
    st.builds(
        lambda job_id: {"t": "done", "id": job_id, "task": "send", "due": WALL, "state": "succeeded", "exp": WALL + 9},
        st.sampled_from(IDS),
    ),
)


def as_entry(entry: Job | dict[str, Any]) -> dict[str, Any]:
    """What a live-set entry holds, comparable: a job's record (and its task), or the record kept."""
    return job_record(entry) if isinstance(entry, Job) else entry


@pytest.mark.heavy
@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(record, max_size=8), max_size=5))
def test_job_replay_leaves_the_live_set_the_records_replay_leaves(runs: list[list[dict[str, Any]]]) -> None:
    records: dict[str, dict[str, Any]] = {}
    jobs = JobReplay(TASKS)
    for run in runs:
        replay_records(records, copy.deepcopy(run))
        jobs(copy.deepcopy(run))
    expected = {
        job_id: job_from_record(entry) if entry["t"] == "job" and entry["task"] in TASKS else entry
        for job_id, entry in records.items()
    }
    assert list(jobs.live) == list(expected)  # the same jobs, in the same (journal) order
    assert {job_id: as_entry(entry) for job_id, entry in jobs.live.items()} == {
        job_id: as_entry(entry) for job_id, entry in expected.items()
    }
    linked = {job_id: parent for job_id, (job, parent) in jobs.parents.items() if jobs.live.get(job_id) is job}
    assert linked == {  # the runs to link to their series: those whose last record names a parent
        job_id: entry["parent"]
        for job_id, entry in records.items()
        if entry["t"] == "job" and "parent" in entry and entry["task"] in TASKS
    }


def write_snapshot(path: Path, payloads: list[bytes]) -> None:
    encoder = Encoder(SNAPSHOT, bytes(16), 1, 1)
    path.write_bytes(encoder.header + encoder.frames(payloads))


END = b'{"t":"end","count":1}'
JOB = b'{"t":"job","id":"a","task":"send","args":[],"kwargs":{},"due":1767225600.0,"prio":0,"att":0,"state":"pending"}'


@pytest.mark.parametrize(
    ("payloads", "read_size", "offset_of"),
    [
        pytest.param([JOB, END, JOB], 1 << 20, 2, id="after-the-end-in-its-run"),
        pytest.param([JOB, END, END], 1 << 20, 2, id="a-second-end"),
        pytest.param([JOB, END, JOB], 160, 2, id="after-the-end-in-the-next-run"),
    ],
)
def test_a_record_after_the_snapshots_end_record_is_refused_at_its_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payloads: list[bytes], read_size: int, offset_of: int
) -> None:
    monkeypatch.setattr(recovery, "_READ_SIZE", read_size)
    path = tmp_path / "timers.log"
    write_snapshot(Path(str(path) + ".snapshot"), payloads)
    found = recovery.plan(str(path))
    offsets = [44 + sum(16 + len(payload) for payload in payloads[:index]) for index in range(len(payloads))]
    assert isinstance(found.problem, JournalCorrupt)
    assert "a record after the snapshot's end record" in str(found.problem)
    assert found.problem.offset == offsets[offset_of]
    assert list(found.live) == ["a"]


def test_recovery_that_finishes_a_compaction_writes_the_records_and_hands_out_the_jobs(tmp_path: Path) -> None:
    """A compaction cut short: the rare path that reads the journal twice (records for the snapshot, jobs for us)."""
    path = tmp_path / "timers.log"
    write_snapshot(Path(str(path) + ".snapshot"), [JOB, END])
    log = Encoder(b"CWJL", bytes(16), 1, 1)
    moved = b'{"t":"move","id":"a","due":1767229200.0}'
    Path(str(path) + ".old").write_bytes(log.header + log.frames([moved]))
    jobs = JobReplay(TASKS)
    journal = Journal(str(path), "always", 0.1)
    assert journal.recover(truncate_corrupt=False, replay=jobs) == {}
    journal._release_lock()
    job = jobs.live["a"]
    assert isinstance(job, Job)
    assert job._due_wall == 1767229200.0
    assert recovery.plan(str(path)).live["a"]["due"] == 1767229200.0  # the snapshot written holds the move
    assert not Path(str(path) + ".old").exists()
