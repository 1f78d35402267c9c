"""Rebalancing and restarts: the store restarted under running engines, an engine back under its old id, a join
and a graceful leave. Nothing acknowledged is lost, and nothing runs twice unless it was in flight.

Checked from what the tasks record and from the audit the store's statements write
(``CHRONOWHEEL_CLUSTER_AUDIT=1``, as in tests/test_cluster_faults.py). The leases run on real time (a short
lease here); the engines in this process run on the virtual clock.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import chronowheel._cluster.writes as cluster_writes
from chronowheel import Cluster, Engine
from chronowheel.testing import VirtualClock
from helpers import until
from pgserver import PgServer, running_server
from test_cluster import settle, store_of
from test_cluster_faults import LEASE, spawn_worker

SHARDS = 16
# The store-restart test runs a server of its own and engine processes: with the crash tests, on one worker.
pytestmark = pytest.mark.xdist_group("crash")


@pytest.fixture
def audited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_writes, "AUDIT", True)


def engines(dsn: str, clock: VirtualClock, roles: list[str]) -> list[Engine]:
    return [
        Engine(clock=clock, cluster=Cluster(dsn, shards=SHARDS, lease=LEASE, role=role))  # type: ignore[arg-type]
        for role in roles
    ]


async def no_stale_claim(conn: asyncpg.Connection) -> None:
    """The audit's invariants: no claim committed under a token after a higher token's acquisition of its shard,
    no job acknowledged twice."""
    stale = await conn.fetchval(
        "SELECT count(*) FROM cw_audit c JOIN cw_audit a ON a.shard = c.shard AND a.token > c.token"
        " WHERE c.kind = 'claim' AND a.kind = 'acquire' AND a.at < c.at"
    )
    assert stale == 0
    twice = await conn.fetchval(
        "SELECT count(*) FROM (SELECT id FROM cw_audit WHERE kind = 'ack' GROUP BY id HAVING count(*) > 1) x"
    )
    assert twice == 0


async def split(workers: list[Engine], seconds: float = 15.0) -> None:
    """Until the workers hold every shard between them, each some; else fail with what each held and did."""

    def done() -> bool:
        counts: list[int] = [store_of(worker).stats()["owned_shards"] for worker in workers]
        return sum(counts) == SHARDS and min(counts) > 0

    try:
        await until(done, seconds)
    except AssertionError:
        stores = [store_of(worker) for worker in workers]
        seen = [(store.me, sorted(store.ownership.held), store.flusher.unwritten(), store.stats()) for store in stores]
        pool = stores[0].pool
        assert pool is not None
        shards = await pool.fetch("SELECT shard, owner, token, expires_at - now() AS left FROM cw_shard ORDER BY 1")
        engines = await pool.fetch("SELECT id, now() - seen AS ago FROM cw_engine")
        raise AssertionError(
            f"the shards did not split in {seconds} s: (engine, held, unwritten, stats) {seen};"
            f" shards {[tuple(row) for row in shards]}; engines {[tuple(row) for row in engines]}"
        ) from None


@pytest.mark.parametrize("jobs", [60])
async def test_a_store_restart_under_running_engines(audited: None, jobs: int) -> None:
    """``pg_ctl -m immediate stop``, then start, while two workers fire a client's jobs.

    Scheduling fails while the server is down (the caller gets the error: not
    acknowledged); afterwards the engines reconnect (pool and listener), see a
    new server (its start time changed), drop and take back their shards under
    new tokens, and every acknowledged job runs exactly once.
    """
    with running_server(durable=True) as server:  # commits are durable: an immediate stop loses none
        server.psql("CREATE SCHEMA r")
        dsn = server.dsn("r")
        clock = VirtualClock()
        first, second, client = engines(dsn, clock, ["worker", "worker", "client"])
        ran: list[int] = []
        for engine in (first, second, client):
            engine.task(name="note")(ran.append)
        acknowledged: set[int] = set()
        async with first, second, client:
            await split([first, second])
            for n in range(jobs):
                await client.schedule("note", args=(n,), delay=1 + n % 10)
                acknowledged.add(n)
            await settle(clock, first, second, client, seconds=5.0)
            listeners = [store_of(worker).listener.connection for worker in (first, second)]
            await asyncio.to_thread(server.pg_ctl, "-m", "immediate", "stop")
            with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
                await client.schedule("note", args=(-1,), delay=1.0)  # not acknowledged, so not owed
            await asyncio.sleep(LEASE / 2)  # lease rounds fail meanwhile (logged, retried)
            await asyncio.to_thread(server.pg_ctl, "start")
            stores = [store_of(first), store_of(second)]
            await until(lambda: all(store.stats()["server_changes"] == 1 for store in stores), 20.0)
            await split([first, second])
            # The listeners were replaced.
            await until(lambda: all(store.listener.connection not in (None, *listeners) for store in stores))
            for n in range(jobs, jobs + 20):  # heard by their owners through the new listeners
                await client.schedule("note", args=(n,), delay=1.0)
                acknowledged.add(n)
            for _ in range(12):
                await settle(clock, first, second, client, seconds=1.0)
            await until(lambda: set(ran) >= acknowledged)
            await settle(clock, first, second, client, seconds=1.0)
            stats = [store_of(worker).stats() for worker in (first, second)]
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM cw_job") == 0
            await no_stale_claim(conn)
        finally:
            await conn.close()
    assert sorted(ran) == sorted(acknowledged)  # each once: the tasks are instant, none was in flight
    assert [s["reruns"] for s in stats] == [0, 0]


async def test_a_join_and_a_graceful_leave_move_shards_without_reruns(
    audited: None, pg_server: PgServer, pg_dsn: str
) -> None:
    """A third worker joins (it takes its rendezvous share), then stops: its shards go back within one acquire
    attempt (it notifies), not a lease. Every job runs once; no claim is a re-run."""
    clock = VirtualClock()
    first, second, third, client = engines(pg_dsn, clock, ["worker", "worker", "worker", "client"])
    ran: dict[int, list[str]] = {}
    for name, engine in zip(("first", "second", "third", "client"), (first, second, third, client), strict=True):
        engine.task(name="note")(lambda n, name=name: ran.setdefault(n, []).append(name))
    async with first, second, client:
        await split([first, second])
        for n in range(300):
            await client.schedule("note", args=(n,), delay=1 + n % 30)
        await settle(clock, first, second, client, seconds=10.0)
        async with third:
            await split([first, second, third])
            await settle(clock, first, second, third, client, seconds=10.0)
            joined = store_of(third).stats()
            held = joined["owned_shards"]
        left_at = asyncio.get_running_loop().time()
        await split([first, second])
        took = asyncio.get_running_loop().time() - left_at
        await settle(clock, first, second, client, seconds=11.0)
        stats = [store_of(engine).stats() for engine in (first, second)]
    assert sorted(ran) == list(range(300))
    assert all(len(names) == 1 for names in ran.values()), {n: names for n, names in ran.items() if len(names) > 1}
    assert 0 < held < SHARDS
    assert any(names == ["third"] for names in ran.values())  # the newcomer fired some
    assert took < LEASE  # not waiting for the leaver's leases to expire (that alone takes a lease)
    assert [s["reruns"] for s in [*stats, joined]] == [0, 0, 0]
    assert [s["refused_claims"] for s in [*stats, joined]] == [0, 0, 0]
    conn = await asyncpg.connect(pg_dsn)
    try:
        await no_stale_claim(conn)
    finally:
        await conn.close()


@pytest.mark.parametrize("downtime", [0.0, LEASE])
def test_an_engine_back_under_its_old_id(pg_server: PgServer, tmp_path: Path, downtime: float) -> None:
    """A worker with a fixed id is killed (SIGKILL) mid-run and started again under the same id, at once or
    after its leases expired. The new process never claims under a token of the old one; only jobs the old one
    had claimed run again; every job runs."""
    schema = f"same{os.getpid()}_{int(downtime * 10)}"
    pg_server.psql(f"CREATE SCHEMA {schema}")
    deadlocks = pg_server.deadlocks()
    asyncio.run(_same_id(pg_server.dsn(schema), tmp_path, downtime))
    assert pg_server.deadlocks() == deadlocks


async def _same_id(dsn: str, tmp: Path, downtime: float) -> None:
    conn = await asyncpg.connect(dsn)
    producer = Engine(cluster=Cluster(dsn, shards=32, lease=LEASE, role="client"))
    producer.task(name="work")(lambda n: None)
    children: list[asyncio.subprocess.Process] = []
    try:
        async with producer:
            await conn.execute("CREATE TABLE runs (n int NOT NULL, engine text NOT NULL)")
            fixed, _ = await spawn_worker(dsn, tmp / "fixed.json", "worker-1")
            other, _ = await spawn_worker(dsn, tmp / "other.json")
            children = [fixed, other]
            await asyncio.sleep(LEASE)  # the rendezvous split
            for n in range(300):
                producer.schedule_nowait("work", args=(n,), delay=0.2 + n / 100)
            await producer.schedule("work", args=(300,), delay=3.2)
            ran = "SELECT count(*) > 0 FROM runs WHERE engine = 'worker-1'"
            await until(lambda: conn.fetchval(ran))  # it is running its jobs (due over 3 s): killed mid-run
            fixed.send_signal(signal.SIGKILL)
            await fixed.wait()
            await asyncio.sleep(downtime)
            restarted_at = await conn.fetchval("SELECT clock_timestamp()")
            again, _ = await spawn_worker(dsn, tmp / "again.json", "worker-1")
            children.append(again)

            async def settled() -> bool:  # every job done, and the new process holding shards again
                if await conn.fetchval("SELECT count(*) FROM cw_job"):
                    return False
                return bool(await conn.fetchval(_ACQUIRED_SINCE, restarted_at))

            # A loaded machine: the other worker may finish every job long before the new one starts.
            await until(settled, seconds=36.0)
        for child in children[1:]:
            child.send_signal(signal.SIGTERM)
            await asyncio.wait_for(child.wait(), 30)
        children = []
        await _check_same_id(conn, restarted_at)
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
        await conn.close()


_ACQUIRED_SINCE = "SELECT count(*) FROM cw_audit WHERE kind = 'acquire' AND owner = 'worker-1' AND at > $1"


async def _check_same_id(conn: asyncpg.Connection, restarted_at: Any) -> None:
    assert {row["n"] for row in await conn.fetch("SELECT DISTINCT n FROM runs")} == set(range(301))
    assert await conn.fetchval("SELECT count(*) FROM cw_job") == 0
    await no_stale_claim(conn)
    # The new process claims only under tokens it acquired itself.
    old_tokens = await conn.fetchval(
        "SELECT count(*) FROM cw_audit c WHERE c.kind = 'claim' AND c.owner = 'worker-1' AND c.at > $1"
        " AND NOT EXISTS (SELECT 1 FROM cw_audit a WHERE a.kind = 'acquire' AND a.owner = 'worker-1'"
        "  AND a.shard = c.shard AND a.token = c.token AND a.at > $1)",
        restarted_at,
    )
    assert old_tokens == 0
    assert await conn.fetchval(_ACQUIRED_SINCE, restarted_at)  # it took shards back
    # Re-runs: only jobs claimed by the killed process before the restart, and never acked by it.
    rerun = await conn.fetch(
        "SELECT id, array_agg(owner ORDER BY at) AS owners, array_agg(at ORDER BY at) AS ats FROM cw_audit"
        " WHERE kind = 'claim' GROUP BY id HAVING count(*) > 1"
    )
    for row in rerun:
        assert row["owners"][0] == "worker-1", row
        assert row["ats"][0] < restarted_at, row
    doubled = await conn.fetchval("SELECT count(*) FROM (SELECT n FROM runs GROUP BY n HAVING count(*) > 1) x")
    assert doubled <= len(rerun)
