"""Cluster mode's operator surface against a real PostgreSQL: fencing of attempts, results, queries, control.

The engines run on the virtual clock; leases and round trips are real, so
the tests that move leases use a 4 s lease and wait for conditions (never for
a fixed time), and move the tokens in the database by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from chronowheel import Retry
from chronowheel._cluster.ownership import shard_of
from chronowheel.testing import VirtualClock
from test_cluster import settle, store_of
from test_cluster_failures import SHARDS, engine_of, until


@pytest.fixture
async def admin(pg_dsn: str) -> Any:
    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


# -- an attempt is fenced by the token it was claimed under ---------------------------------------------


@pytest.mark.parametrize("first", ["succeeds", "fails"])
async def test_a_run_from_before_a_lost_and_retaken_lease_is_fenced_off(
    pg_dsn: str, admin: asyncpg.Connection, first: str
) -> None:
    """The shard is lost mid-run and taken back: the job runs again under the new token; the first run's end is stale.

    The first run's outcome (an ack, or a retry) must not be written under the
    new token: it would delete (or put back to waiting) the row that the
    second run holds. Only the second run's ack counts.
    """
    clock = VirtualClock()
    engine = engine_of(pg_dsn, clock)
    gates = [asyncio.Event(), asyncio.Event()]
    runs: list[int] = []

    @engine.task(name="note", retry=Retry(attempts=3, backoff=5.0, jitter=False))
    async def note() -> None:
        run = len(runs)
        runs.append(run)
        if run < len(gates):
            await gates[run].wait()
        if run == 0 and first == "fails":
            raise RuntimeError("the first run fails")

    shard = shard_of("slow", SHARDS)
    async with engine:
        store = store_of(engine)
        try:
            slow = await engine.schedule("note", delay=1.0, key="slow")
            await settle(clock, engine, seconds=1.0)
            assert runs == [0]
            first_token = await admin.fetchval("SELECT fence FROM cw_job WHERE id = $1", slow.id)
            await admin.execute(
                "UPDATE cw_shard SET owner = 'thief', token = token + 1, expires_at = now() + interval '1 hour'"
                " WHERE shard = $1",
                shard,
            )
            await until(lambda: store.stats()["owned_shards"] == SHARDS - 1)
            await admin.execute("UPDATE cw_shard SET expires_at = now() WHERE shard = $1", shard)  # the thief dies
            await until(lambda: store.stats()["owned_shards"] == SHARDS)

            async def run_again() -> bool:  # the orphan sweep put the row back, the refill filed it, it fired
                await settle(clock, engine)
                return len(runs) == 2

            await until(run_again)
            assert runs == [0, 1]  # run again: it was in flight at the lost lease (at-least-once)
            row = await admin.fetchrow("SELECT state, fence FROM cw_job WHERE id = $1", slow.id)
            assert (row["state"], row["fence"]) == (1, first_token + 2)  # claimed under the retaken token

            gates[0].set()  # the first run ends: its outcome is stale
            await settle(clock, engine)
            assert store.stats()["stale_writes"] == 1
            row = await admin.fetchrow("SELECT state, fence FROM cw_job WHERE id = $1", slow.id)
            assert (row["state"], row["fence"]) == (1, first_token + 2)  # the second run's claim stands

            gates[1].set()
            await settle(clock, engine, seconds=10.0)
            stats = store.stats()
        finally:
            for gate in gates:
                gate.set()
    assert runs == [0, 1]
    assert stats["stale_writes"] == 1
    assert await admin.fetchval("SELECT count(*) FROM cw_job") == 0  # the second run's ack
