"""Cluster ownership, sans-IO: rendezvous assignment and the lease's local guard, on a virtual clock."""

from __future__ import annotations

import pytest

from chronowheel._cluster.ownership import GUARD_MARGIN, Ownership, rendezvous, shard_of
from chronowheel.testing import VirtualClock

ENGINES = [f"engine-{n}" for n in range(6)]


@pytest.mark.parametrize("shards", [1, 16, 256])
def test_shard_of_is_stable_and_in_range(shards: int) -> None:
    names = [f"job-{n}" for n in range(500)]
    first = [shard_of(name, shards) for name in names]
    assert first == [shard_of(name, shards) for name in names]
    assert all(0 <= shard < shards for shard in first)


def test_shard_of_is_not_pythons_hash() -> None:
    """Pinned values: another process, or another Python, puts a key in the same shard."""
    assert [shard_of(name, 256) for name in ("daily", "a", "reminder:42")] == [231, 47, 48]
    assert shard_of("daily", 1 << 16) % 256 == shard_of("daily", 256)  # the same 64-bit hash underneath


@pytest.mark.parametrize("count", [2, 3, 4, 6])
def test_rendezvous_spreads_shards_evenly(count: int) -> None:
    engines = ENGINES[:count]
    owners = [rendezvous(shard, engines) for shard in range(1024)]
    for engine in engines:
        assert abs(owners.count(engine) - 1024 / count) < 0.25 * 1024 / count


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_a_join_moves_shards_only_to_the_newcomer(count: int) -> None:
    before = {shard: rendezvous(shard, ENGINES[:count]) for shard in range(512)}
    after = {shard: rendezvous(shard, ENGINES[: count + 1]) for shard in range(512)}
    moved = [shard for shard in before if before[shard] != after[shard]]
    assert all(after[shard] == ENGINES[count] for shard in moved)
    assert abs(len(moved) - 512 / (count + 1)) < 0.3 * 512 / (count + 1)


@pytest.mark.parametrize("leaver", range(4))
def test_a_leave_moves_only_the_leavers_shards(leaver: int) -> None:
    engines = ENGINES[:4]
    rest = [engine for engine in engines if engine != engines[leaver]]
    for shard in range(512):
        before = rendezvous(shard, engines)
        if before != engines[leaver]:
            assert rendezvous(shard, rest) == before


def test_wanted_and_release_follow_the_live_set() -> None:
    mine = Ownership("engine-0", 64, lease=10.0)
    assert mine.wanted([]) == set(range(64))  # alone: every shard
    mine.acquired([(shard, 1) for shard in range(64)], sent=0.0)
    release = mine.to_release(ENGINES[:3])
    assert release == set(range(64)) - mine.wanted(ENGINES[:3])
    assert all(rendezvous(shard, ENGINES[:3]) != "engine-0" for shard in release)


@pytest.mark.parametrize("lease", [0.5, 2.0, 10.0])
async def test_the_guard_stops_claims_before_the_lease_can_have_expired(lease: float) -> None:
    """Held until the renew's *sending* time plus the lease minus the margin, on the local monotonic clock."""
    clock = VirtualClock()
    mine = Ownership("engine-0", 4, lease)
    sent = clock.time()
    await clock.advance(lease / 10)  # the round trip
    mine.acquired([(0, 7), (1, 3)], sent)
    guard = sent + lease * (1 - GUARD_MARGIN)
    assert mine.token(0, clock.time()) == 7
    assert mine.token(2, clock.time()) is None  # not held
    await clock.advance(guard - clock.time() - 1e-3)
    assert mine.token(1, clock.time()) == 3
    await clock.advance(2e-3)  # a paused owner wakes here: it starts nothing
    assert mine.token(0, clock.time()) is None
    assert mine.token(1, clock.time()) is None
    renew = clock.time()
    assert mine.renewed([0], renew) == {1}  # the database kept shard 0 only
    assert mine.token(0, clock.time()) == 7
    assert mine.token(1, clock.time()) is None
    assert mine.pairs() == ([0], [7])
