"""The cluster store's sans-IO parts: a loop turn's batch, and what an engine holds (no database)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from chronowheel import Cluster
from chronowheel._cluster.batch import Batch
from chronowheel._cluster.holdings import Holdings, job_of
from chronowheel._cluster.host import Host
from chronowheel._cluster.ownership import shard_of
from chronowheel._job import Job
from chronowheel._journal.records import encode_job

SHARDS = 16


def job(job_id: str, key: str | None = None, due: float = 100.0) -> Job:
    return Job(job_id, key, "work", (1,), {}, 0, due, 0)


def holdings_with(dropped: list[str]) -> Holdings:
    holdings = Holdings("me", Cluster("postgresql://", shards=SHARDS))
    host = Host(
        wall=lambda: 0.0,
        load=lambda jobs: None,
        drop=lambda job: dropped.append(job.id),
        let_go=lambda job: None,
        after=lambda seconds, callback: lambda: None,
        cancelled=lambda job, reason: None,
        ttl=0.0,
    )
    holdings.host = host
    return holdings


# Each field a flush writes, and one change in it.
CHANGES: dict[str, Any] = {
    "new": {"a": (job("a"), b"{}", "error")},
    "runs": {"a": job("a")},
    "puts": {"a": job("a")},
    "settles": {("a", 1): job("a")},
    "acks": {("a", 1): 3},
    "kept": {("a", 1): (3, 10.0, b"{}")},
    "cancels": {"a"},
    "moves": {"a": 5.0},
    "pauses": {"a": job("a")},
    "resumes": {"a": job("a")},
    "claims": [([(job("a"), 3, 1)], lambda jobs: None)],
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_a_batch_with_any_change_is_flushed(field: str) -> None:
    batch = Batch()
    assert not batch
    setattr(batch, field, CHANGES[field])
    assert batch


def test_a_batch_of_waiters_alone_has_nothing_to_write() -> None:
    batch = Batch()
    batch.waiters.append((job("a"), None))  # type: ignore[arg-type]  # never awaited here
    assert not batch


TAKEN_BACK = sorted(set(CHANGES) - {"new", "claims"})


@pytest.mark.parametrize("field", TAKEN_BACK)
def test_a_failed_batch_is_taken_back_and_the_newer_change_wins(field: str) -> None:
    """What a failed flush reported done goes out with the next; a change made since overrides it."""
    failed, following = Batch(), Batch()
    old, new = CHANGES[field], {"b": 1.0} if isinstance(CHANGES[field], dict) else {"b"}
    setattr(failed, field, old)
    setattr(following, field, new)
    following.take_back(failed)
    merged = getattr(following, field)
    assert set(merged) == set(old) | set(new)
    if isinstance(merged, dict):
        overlap = {next(iter(old)): "newer"}
        again = Batch()
        setattr(again, field, overlap)
        again.take_back(failed)
        assert getattr(again, field) == overlap


def test_new_rows_and_claims_are_not_taken_back() -> None:
    """Their callers got the error, and claimed jobs wait in the database for the rescan."""
    failed, following = Batch(), Batch()
    failed.new, failed.claims = CHANGES["new"], CHANGES["claims"]
    following.take_back(failed)
    assert not following.new
    assert not following.claims
    assert not following


@pytest.mark.parametrize("already", [False, True], ids=["dropped-here", "renew-dropped"])
def test_lost_shards_take_their_jobs_out_of_the_wheel_and_no_others(already: bool) -> None:
    dropped: list[str] = []
    holdings = holdings_with(dropped)
    holdings.ownership.acquired([(0, 1), (1, 1), (2, 1)], sent=0.0)
    for n in range(9):
        holdings.resident[f"j{n}"] = (job(f"j{n}"), n % 3)
    if already:
        holdings.ownership.drop([0, 2])
    holdings.lose([0, 2], already=already)
    assert sorted(dropped) == ["j0", "j2", "j3", "j5", "j6", "j8"]
    assert sorted(holdings.resident) == ["j1", "j4", "j7"]
    assert set(holdings.ownership.held) == {1}


@pytest.mark.parametrize(
    ("running", "releasable"),
    [((), {0, 1, 2}), ((1,), {0, 2}), ((0, 1, 2), set())],
    ids=["none-running", "one-running", "all-running"],
)
def test_a_shard_is_handed_over_only_with_no_job_of_its_running_here(
    running: tuple[int, ...], releasable: set[int]
) -> None:
    holdings = holdings_with([])
    holdings.fences = {f"run{shard}": (7, shard) for shard in running}
    assert holdings.releasable({0, 1, 2}) == releasable


@pytest.mark.parametrize("key", [None, "daily"], ids=["by-id", "by-key"])
def test_a_run_stays_in_its_series_shard(key: str | None) -> None:
    holdings = holdings_with([])
    series = job("series-1", key)
    run = job("series-1:1000")
    run._parent = series
    expected = shard_of(key if key is not None else "series-1", SHARDS)
    assert holdings.shard(series) == holdings.shard(run) == expected


@pytest.mark.parametrize(("state", "expected"), [(0, "pending"), (1, "pending"), (3, "dead"), (4, "paused")])
def test_a_row_becomes_its_job_with_the_rows_due_and_state(state: int, expected: str) -> None:
    stored = job("a", "k", due=100.0)
    row = {"id": "a", "shard": 5, "due": 250.0, "state": state, "record": encode_job(stored, new=False)}
    loaded = job_of(row)
    assert (loaded.id, loaded.key, loaded.args, loaded._due_wall, loaded.state) == ("a", "k", (1,), 250.0, expected)


def test_new_residents_skips_jobs_in_the_wheel_and_a_run_whose_series_is_not_here_stands_alone() -> None:
    holdings = holdings_with([])
    held = job("held")
    holdings.resident["held"] = (held, 2)
    run = job("gone-series:1")
    run._parent = job("gone-series")
    rows: list[Mapping[str, Any]] = [
        {"id": job_id, "shard": 2, "due": 1.0, "state": 0, "record": encode_job(item, new=False)}
        for job_id, item in (("held", held), ("fresh", job("fresh")), ("gone-series:1", run))
    ]
    jobs = holdings.new_residents(rows)
    assert [item.id for item in jobs] == ["fresh", "gone-series:1"]
    assert jobs[1]._parent is None
    assert holdings.resident["held"][0] is held
    assert holdings.resident["fresh"][0] is jobs[0]
