"""The cluster store's failure paths against a real PostgreSQL: dropped connections, lost notifications, lost leases.

Each fault is made for real on the test's server: a backend killed with
``pg_terminate_backend`` in the middle of a flush's transaction (held there by
a lock the test takes), the listener's backend killed, a shard's token moved
on by hand (another owner took it). The engines run on the virtual clock; the
lease rounds run on real time, so the tests use a 4 s lease (a round every
0.8 to 1 s) and wait for conditions, never for a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from chronowheel import Cluster, Engine
from chronowheel._cluster.ownership import shard_of
from chronowheel._cluster.store import ClusterStore
from chronowheel.testing import VirtualClock
from test_cluster import settle, store_of

LEASE = 4.0
SHARDS = 16


@pytest.fixture
async def admin(pg_dsn: str) -> Any:
    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


def engine_of(pg_dsn: str, clock: VirtualClock, **options: Any) -> Engine:
    return Engine(clock=clock, cluster=Cluster(pg_dsn, shards=SHARDS, lease=LEASE, **options))


async def until(condition: Callable[[], Awaitable[Any] | Any], seconds: float = 15.0) -> Any:
    """Poll ``condition`` (real time: leases and round trips are real) until it is truthy; return its value."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def round_begun(admin: asyncpg.Connection, store: ClusterStore) -> None:
    """Wait for a lease round's heartbeat: its listener check is done, the next one is at least 0.8 s away."""
    query = "SELECT seen FROM cw_engine WHERE id = $1"
    before = await admin.fetchval(query, store.me)

    async def moved() -> bool:
        return bool(await admin.fetchval(query, store.me) != before)

    await until(moved)


async def kill_listener(admin: asyncpg.Connection, store: ClusterStore) -> asyncpg.Connection:
    """Kill the owner's listening backend right after a round's check; returns the dead connection."""
    await round_begun(admin, store)
    listener = store._listener
    assert listener is not None
    await admin.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
    await until(listener.is_closed)
    return listener


def key_in(shard: int, prefix: str) -> str:
    return next(f"{prefix}{n}" for n in range(10_000) if shard_of(f"{prefix}{n}", SHARDS) == shard)


@pytest.mark.parametrize("carrying", ["schedule", "claim", "cancel", "ack"])
async def test_a_flush_whose_connection_drops_mid_transaction(
    pg_dsn: str, admin: asyncpg.Connection, carrying: str
) -> None:
    """The flush's backend is killed while its transaction waits on a lock: nothing it carried is half-written.

    ``schedule``: the caller gets the error and the job is neither stored nor run.
    ``claim``: the due job is not started; it waits in the database, the rescan files it again, it runs once.
    ``cancel`` (a sync ``cancel()``) and ``ack``: already reported done, so they go out again with the next
    flush: the cancelled job never runs, the acknowledged one is not run again.
    Either way the engine goes on: a job scheduled afterwards is stored and runs.
    """
    clock = VirtualClock()
    engine = engine_of(pg_dsn, clock)
    ran: list[str] = []
    finish = asyncio.Event()

    @engine.task(name="note")
    async def note(name: str) -> None:
        ran.append(name)
        if name == "acked":
            await finish.wait()

    async with engine:
        store = store_of(engine)
        job = None
        if carrying in ("claim", "cancel", "ack"):
            job = await engine.schedule("note", args=(carrying + "ed",), delay=1.0)
        if carrying == "ack":
            await settle(clock, engine, seconds=1.0)  # claimed and running
        blocker = await asyncpg.connect(pg_dsn)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE cw_job IN EXCLUSIVE MODE")  # reads go on, writes wait
        if carrying == "schedule":
            pending = asyncio.ensure_future(engine.schedule("note", args=("lost",), delay=1.0))
        elif carrying == "claim":
            await clock.advance(1.0)  # the job is due: its claim waits on the lock
        elif carrying == "cancel":
            assert job is not None
            assert engine.cancel(job) is True
        else:
            finish.set()  # the run ends: its ack waits on the lock
        query = "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) LIMIT 1"
        victim = await until(lambda: admin.fetchval(query, blocker.get_server_pid()))
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim)
        await transaction.rollback()
        await blocker.close()
        if carrying == "schedule":
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
                await pending
            assert await admin.fetchval("SELECT count(*) FROM cw_job") == 0
        elif carrying == "claim":
            await settle(clock, engine)
            assert ran == []  # not started: its claim never committed
            assert await admin.fetchval("SELECT count(*) FROM cw_job WHERE state = 0") == 1
            await until(lambda: ran == ["claimed"])  # the next round rescans (the failed flush asked for it), once
        else:
            await until(lambda: admin.fetchval("SELECT count(*) = 0 FROM cw_job"))  # written by the retry
            await round_begun(admin, store)  # a round, with the rescan the failed flush asked for
            await settle(clock, engine, seconds=1.0)
        await engine.schedule("note", args=("after",), delay=1.0)
        await settle(clock, engine, seconds=2.0)
        assert store.stats()["refused_claims"] == 0
        assert store.stats()["stale_writes"] == 0
    expected = {"schedule": [], "claim": ["claimed"], "cancel": [], "ack": ["acked"]}[carrying]
    assert sorted(ran) == sorted([*expected, "after"])


async def test_a_killed_listener_is_replaced_and_the_rescan_files_the_job_it_missed(
    pg_dsn: str, admin: asyncpg.Connection
) -> None:
    """A job another engine scheduled while the owner's listener was dead: its NOTIFY is lost, the rescan finds it."""
    clock = VirtualClock()
    worker, client = engine_of(pg_dsn, clock), engine_of(pg_dsn, clock, role="client")
    ran: list[str] = []
    for engine in (worker, client):
        engine.task(name="note")(ran.append)
    async with worker, client:
        store = store_of(worker)
        dead = await kill_listener(admin, store)
        await client.schedule("note", args=("gap",), delay=5.0, key="gap")
        await settle(clock, worker, client)
        assert store._listener is dead  # not replaced yet: the notification went out to nobody
        assert len(worker) == 0
        await until(lambda: len(worker) == 1)  # the next round: a new listener, and a rescan
        assert store._listener is not dead
        await settle(clock, worker, client, seconds=5.0)
        assert ran == ["gap"]
        await client.schedule("note", args=("heard",), delay=1.0, key="heard")  # the new listener hears it
        await until(lambda: len(worker) == 1)
        await settle(clock, worker, client, seconds=1.0)
    assert ran == ["gap", "heard"]


@pytest.mark.parametrize("change", ["cancel", "reschedule"])
async def test_a_change_whose_notify_the_owner_misses(pg_dsn: str, admin: asyncpg.Connection, change: str) -> None:
    """A client cancels or moves a job while the owner's listener is dead; the owner still has its old copy.

    At the old time the owner's claim finds no row (cancelled: the job never
    runs) or a row not due yet (moved: it runs at its new time, once).
    """
    clock = VirtualClock()
    worker, client = engine_of(pg_dsn, clock), engine_of(pg_dsn, clock, role="client")
    ran: list[tuple[str, float]] = []
    for engine in (worker, client):
        engine.task(name="note")(lambda name: ran.append((name, clock.time())))
    async with worker, client:
        assert client.cluster is not None
        await client.schedule("note", args=("k",), delay=5.0, key="k")
        await until(lambda: len(worker) == 1)
        store = store_of(worker)
        dead = await kill_listener(admin, store)
        if change == "cancel":
            assert await client.cluster.cancel("k") is True
        else:
            assert await client.cluster.reschedule("k", delay=20.0) is True
        assert store._listener is dead  # missed: the old copy is still in the wheel
        assert len(worker) == 1
        await settle(clock, worker, client, seconds=6.0)  # the old copy is due: its claim finds nothing to run
        assert ran == []
        assert len(worker) == (0 if change == "cancel" else 1)  # a moved row is read back with its new due
        await settle(clock, worker, client, seconds=13.0)
        assert ran == []
        await settle(clock, worker, client, seconds=1.0)  # the moved job's time: claimed while the clock waits
        await settle(clock, worker, client, seconds=1.0)
        stats = store.stats()
    assert ran == ([] if change == "cancel" else [("k", 20.0)])
    assert stats["refused_claims"] == 0  # not a fence refusal: the row said no
    assert await admin.fetchval("SELECT count(*) FROM cw_job") == 0


async def test_a_lease_lost_while_a_job_runs(pg_dsn: str, admin: asyncpg.Connection) -> None:
    """Another owner takes the shard of a running job: the job's ack is refused, its shard's waiting job not fired.

    When that owner dies, this engine takes the shard back: the orphan sweep
    puts the unfinished row back to waiting and it runs again (a job in flight
    at a lost lease is the one case of a re-run: at-least-once), then once only.
    """
    clock = VirtualClock()
    engine = engine_of(pg_dsn, clock)
    ran: list[str] = []
    release = asyncio.Event()

    @engine.task(name="note")
    async def note(name: str) -> None:
        ran.append(name)
        if name == "slow" and ran.count("slow") == 1:
            await release.wait()

    shard = shard_of("slow", SHARDS)
    waiting = key_in(shard, "w")
    async with engine:
        try:
            assert engine.cluster is not None
            store = store_of(engine)
            slow = await engine.schedule("note", args=("slow",), delay=1.0, key="slow")
            await engine.schedule("note", args=("waiting",), delay=3.0, key=waiting)
            await settle(clock, engine, seconds=1.0)
            assert ran == ["slow"]
            assert (await engine.cluster.get("slow")) is None  # a running job's key is free again, as in one engine
            row = await admin.fetchrow("SELECT state, fence FROM cw_job WHERE id = $1", slow.id)
            token = await admin.fetchval("SELECT token FROM cw_shard WHERE shard = $1", shard)
            assert (row["state"], row["fence"]) == (1, token)  # claimed under the shard's token
            await admin.execute(
                "UPDATE cw_shard SET owner = 'thief', token = token + 1, expires_at = now() + interval '1 hour'"
                " WHERE shard = $1",
                shard,
            )
            await until(lambda: store.stats()["owned_shards"] == SHARDS - 1)  # the renew found it lost
            assert len(engine) == 0  # the waiting job of that shard left the wheel at once
            release.set()
            await settle(clock, engine, seconds=3.0)
            assert ran == ["slow"]  # the waiting job is due, but not this engine's to fire
            assert store.stats()["stale_writes"] == 1  # the finished run's ack matched nothing
            assert await admin.fetchval("SELECT state FROM cw_job WHERE id = $1", slow.id) == 1
            await admin.execute("UPDATE cw_shard SET expires_at = now() WHERE shard = $1", shard)  # the thief dies
            await until(lambda: store.stats()["owned_shards"] == SHARDS)
            await settle(clock, engine)
            await settle(clock, engine, seconds=1.0)
            stats = store.stats()
        finally:
            release.set()  # a failed step must not leave stop() waiting for the blocked run

    assert sorted(ran) == ["slow", "slow", "waiting"]
    assert (stats["takeovers"], stats["refused_claims"]) == (1, 0)
    assert await admin.fetchval("SELECT count(*) FROM cw_job") == 0
