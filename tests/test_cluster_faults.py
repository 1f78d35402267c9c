"""The cluster under real faults: three worker processes, SIGKILL of one owner, SIGSTOP of another past its lease.

Checked from the audit the store's own statements write (``CHRONOWHEEL_CLUSTER_AUDIT=1``: every
acquisition, claim and ack, in the transaction that makes it) and from the ``runs`` the tasks record:
nothing lost, no claim under a stale token, re-runs only of jobs claimed before by a faulted owner, the
paused owner fenced off, takeover within the bound, one ack per series run, one row per unique key.
One cycle runs in ``make test``; ``CHRONOWHEEL_CLUSTER_CYCLES=N`` (``make soak``) runs N, with new fault times.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path

import asyncpg
import pytest

from chronowheel import Cluster, Engine, Every
from helpers import until
from pgserver import PgServer

LEASE = 2.0
ACQUIRE = LEASE / 4
EPSILON = 1.5  # seconds of slack for a loaded 2-core machine (CLUSTER.md's 0.5 s is for a quiet CI box)
JOBS = 400
CYCLES = int(os.environ.get("CHRONOWHEEL_CLUSTER_CYCLES", "1"))
CHILD = Path(__file__).with_name("cluster_child.py")
# Three engine processes and a server: it shares a worker with the journal's crash tests, not the machine's
# two cores with them (make test runs -n auto --dist loadgroup).
pytestmark = pytest.mark.xdist_group("crash")


async def spawn_worker(dsn: str, stats: Path, engine_id: str | None = None) -> tuple[asyncio.subprocess.Process, str]:
    """A worker process (``cluster_child.py``) with the audit trail on; returns it and the line it says once up."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        dsn,
        str(LEASE),
        str(stats),
        *([] if engine_id is None else [engine_id]),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "CHRONOWHEEL_CLUSTER_AUDIT": "1"},
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 30)
    return child, line.decode().strip()


async def _now(conn: asyncpg.Connection) -> object:
    return await conn.fetchval("SELECT clock_timestamp()")


async def _cycle(dsn: str, tmp: Path, rng: random.Random) -> None:
    conn = await asyncpg.connect(dsn)
    producer = Engine(cluster=Cluster(dsn, shards=32, lease=LEASE, role="client"))
    producer.task(name="work")(lambda n: None)
    producer.task(name="tick")(lambda: None)
    children: list[tuple[asyncio.subprocess.Process, str]] = []
    try:
        async with producer:  # creates the schema before the workers race for it
            await conn.execute("CREATE TABLE runs (n int NOT NULL, engine text NOT NULL)")
            children = [await spawn_worker(dsn, tmp / f"stats{n}.json") for n in range(3)]
            await asyncio.sleep(LEASE)  # the newcomers take their rendezvous shares
            series = await producer.schedule("tick", every=Every(0.5), key="tick")
            for n in range(JOBS):
                producer.schedule_nowait("work", args=(n,), delay=rng.uniform(0.5, 6.0))
            await producer.schedule("work", args=(JOBS,), delay=6.0)
            (killed, killed_id), (paused, paused_id), _ = children
            await asyncio.sleep(rng.uniform(1.0, 2.5))
            killed.send_signal(signal.SIGKILL)
            kill_at = await _now(conn)
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            paused.send_signal(signal.SIGSTOP)
            stop_at = await _now(conn)
            samples = []
            for _ in range(int(3 * LEASE / 0.25)):  # paused for three leases
                await producer.schedule("work", args=(-1,), delay=600, key="daily", if_exists="keep")
                samples.append(await conn.fetchval("SELECT count(*) FROM cw_job WHERE key = 'daily'"))
                await asyncio.sleep(0.25)
            paused.send_signal(signal.SIGCONT)
            cont_at = await _now(conn)
            work_left = "SELECT count(*) = 0 FROM cw_job WHERE NOT series AND key IS NULL"
            await until(lambda: conn.fetchval(work_left), seconds=30.0)  # every work job done (the daily one waits)
            assert producer.cluster is not None
            await producer.cluster.cancel("tick")
        for child, _ in children[1:]:
            child.send_signal(signal.SIGTERM)
        for child, _ in children:
            await asyncio.wait_for(child.wait(), 30)
        children = []
        await _check(conn, series.id, killed_id, paused_id, kill_at, stop_at, cont_at, samples, tmp)
    finally:
        for child, _ in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
        await conn.close()


async def _check(
    conn: asyncpg.Connection,
    series_id: str,
    killed_id: str,
    paused_id: str,
    kill_at: object,
    stop_at: object,
    cont_at: object,
    samples: list[int],
    tmp: Path,
) -> None:
    # 1. Nothing lost: every job ran, and none is left.
    ran = {row["n"] for row in await conn.fetch("SELECT DISTINCT n FROM runs")}
    assert ran == set(range(JOBS + 1))
    assert await conn.fetchval("SELECT count(*) FROM cw_job WHERE NOT series AND key IS NULL") == 0
    # 2. No claim committed under a token after a higher token's acquisition of its shard.
    stale = await conn.fetchval(
        "SELECT count(*) FROM cw_audit c JOIN cw_audit a ON a.shard = c.shard AND a.token > c.token"
        " WHERE c.kind = 'claim' AND a.kind = 'acquire' AND a.at < c.at"
    )
    assert stale == 0
    # 3. Re-runs only where explained: rising tokens, the earlier claims by a faulted owner, one ack per job.
    for row in await conn.fetch(
        "SELECT id, array_agg(token ORDER BY at) AS tokens, array_agg(owner ORDER BY at) AS owners"
        " FROM cw_audit WHERE kind = 'claim' AND id <> $1 GROUP BY id HAVING count(*) > 1",
        series_id,  # a series row is claimed once per period, under one token while its owner lasts
    ):
        assert list(row["tokens"]) == sorted(set(row["tokens"])), row
        assert set(row["owners"][:-1]) <= {killed_id, paused_id}, row
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM (SELECT id FROM cw_audit WHERE kind = 'ack' GROUP BY id HAVING count(*) > 1) x"
        )
        == 0
    )
    doubled = await conn.fetchval("SELECT count(*) FROM (SELECT n FROM runs GROUP BY n HAVING count(*) > 1) x")
    reclaimed = await conn.fetchval(
        "SELECT count(DISTINCT id) FROM cw_audit WHERE kind = 'claim' AND owner IN ($1, $2)", killed_id, paused_id
    )
    assert doubled <= reclaimed
    # 4. The paused owner: nothing claimed after SIGCONT under a token it held before the pause; fenced off.
    late = await conn.fetchval(
        "SELECT count(*) FROM cw_audit c WHERE c.kind = 'claim' AND c.owner = $1 AND c.at > $2 AND EXISTS"
        " (SELECT 1 FROM cw_audit a WHERE a.kind = 'acquire' AND a.owner = $1 AND a.shard = c.shard"
        "  AND a.token = c.token AND a.at < $3)",
        paused_id,
        cont_at,
        stop_at,
    )
    assert late == 0
    stats = json.loads((tmp / "stats1.json").read_text())
    assert stats["refused_claims"] + stats["guarded"] > 0, stats
    # 5. Takeover within lease + acquire interval + epsilon, for the killed and the paused owner's shards.
    for owner, at in ((killed_id, kill_at), (paused_id, stop_at)):
        late_takeovers = await conn.fetch(
            "SELECT h.shard, min(n.at) - $2 AS took FROM"
            " (SELECT DISTINCT ON (shard) shard, owner FROM cw_audit WHERE kind = 'acquire' AND at < $2"
            "  ORDER BY shard, at DESC) h"
            " LEFT JOIN cw_audit n ON n.kind = 'acquire' AND n.shard = h.shard AND n.at > $2 AND n.owner <> $1"
            " WHERE h.owner = $1 GROUP BY h.shard",
            owner,
            at,
        )
        assert late_takeovers, f"{owner} held no shard when the fault began"
        for row in late_takeovers:
            assert row["took"] is not None, row
            assert row["took"].total_seconds() <= LEASE + ACQUIRE + EPSILON, row
    # 6. The series: one ack per run (its id is the period's), and runs went on across the faults.
    runs = await conn.fetchval("SELECT count(*) FROM cw_audit WHERE kind = 'ack' AND id LIKE $1", series_id + ":%")
    assert runs >= 4
    # 7. The unique key: one row at every sample.
    assert samples
    assert set(samples) == {1}


@pytest.mark.timeout(60 + 40 * CYCLES)
def test_kill_and_pause_owners(pg_server: PgServer, tmp_path: Path) -> None:
    """Not ``async def``: the faults are in other processes, so one event loop (asyncio's) is enough."""
    rng = random.Random(os.environ.get("CHRONOWHEEL_CLUSTER_SEED"))
    for cycle in range(CYCLES):
        schema = f"fault{os.getpid()}_{cycle}"
        pg_server.psql(f"CREATE SCHEMA {schema}")  # a fresh cluster per cycle
        cycle_dir = tmp_path / str(cycle)
        cycle_dir.mkdir()
        deadlocks = pg_server.deadlocks()
        asyncio.run(_cycle(pg_server.dsn(schema), cycle_dir, rng))
        # 8. No statement of the store lost a deadlock: a lease round that does may lose its owner's leases.
        assert pg_server.deadlocks() == deadlocks
