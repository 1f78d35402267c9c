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
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from chronowheel import Cluster, Engine
from chronowheel._cluster import sql
from chronowheel._cluster.claims import DUE_TOLERANCE
from chronowheel._cluster.ownership import rendezvous, shard_of
from chronowheel._cluster.schema import upgrade
from chronowheel._cluster.store import ClusterStore
from chronowheel.testing import VirtualClock
from helpers import until
from pgserver import PgServer
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
    listener = store.listener.connection
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
        assert store.listener.connection is dead  # not replaced yet: the notification went out to nobody
        assert len(worker) == 0
        await until(lambda: len(worker) == 1)  # the next round: a new listener, and a rescan
        assert store.listener.connection is not dead
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
        assert store.listener.connection is dead  # missed: the old copy is still in the wheel
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

            async def both_ran() -> bool:  # once the round that took the shard back has filed its jobs
                await settle(clock, engine, seconds=1.0)
                return len(ran) == 3

            await until(both_ran)
            await settle(clock, engine, seconds=1.0)
            stats = store.stats()
        finally:
            release.set()  # a failed step must not leave stop() waiting for the blocked run

    assert sorted(ran) == ["slow", "slow", "waiting"]
    assert (stats["takeovers"], stats["refused_claims"]) == (1, 0)
    assert await admin.fetchval("SELECT count(*) FROM cw_job") == 0


# -- the lease side's row locks: never waited for, so never part of a deadlock ----------------------------

ORPHANS = 40


async def orphans_of_a_stale_owner(admin: asyncpg.Connection) -> list[str]:
    """Shards 0 and 1 held by ``stale`` under token 1, expired; rows claimed under it (alternating shards)."""
    await upgrade(admin, SHARDS)
    await admin.execute(
        "UPDATE cw_shard SET owner = 'stale', token = 1, expires_at = now() - interval '1 second' WHERE shard IN (0, 1)"
    )
    ids = [f"o{n:03}" for n in range(ORPHANS)]
    await admin.execute(
        "INSERT INTO cw_job (id, shard, due, state, fence, claims, record)"
        " SELECT id, shard, 0, 1, 1, 1, '\\x7b7d'::bytea FROM unnest($1::text[], $2::int[]) u(id, shard)",
        ids,
        [orphan_shard(job_id) for job_id in ids],
    )
    return ids


def orphan_shard(job_id: str) -> int:
    return int(job_id[1:]) % 2


async def stale_write(conn: asyncpg.Connection, kind: str, ids: list[str]) -> int:
    """What the stale owner's flush or hand-over writes to its claimed rows; returns the rows it matched."""
    shards = [orphan_shard(job_id) for job_id in ids]
    fences = [1] * len(ids)
    if kind == "ack":
        return len(await conn.fetch(sql.ACK, "stale", ids, fences, shards))
    if kind == "settle":  # a fixed-delay series between runs: it stays claimed (state 1)
        args = (ids, fences, [1] * len(ids), [0.0] * len(ids), [b"{}"] * len(ids), shards)
        return len(await conn.fetch(sql.SETTLE, "stale", *args))
    status = await conn.execute(sql.UNCLAIM, [0, 1], [1, 1])  # a hand-over by an owner that missed its expiry
    return int(status.split()[-1])


@pytest.mark.parametrize("kind", ["ack", "settle", "unclaim"])
async def test_the_orphan_sweep_skips_rows_a_stale_owner_holds_and_sweeps_them_later(
    pg_dsn: str, admin: asyncpg.Connection, kind: str
) -> None:
    """A stale owner's transaction holds some of its old rows (an ack, an outcome, a hand-over in flight).

    The new owner's acquisition and sweep must not wait for those locks: a
    waiting sweep holding the rows it already took is half of a deadlock (the
    stale transaction's next statement wants them). It sweeps what it can,
    names the shards it left, and a second sweep after the commit finishes.
    """
    ids = await orphans_of_a_stale_owner(admin)
    stale = await asyncpg.connect(pg_dsn)
    try:
        transaction = stale.transaction()
        await transaction.start()
        first = ids[: ORPHANS // 2] if kind != "unclaim" else ids  # rows of both shards
        assert await stale_write(stale, kind, first) == len(first)
        won = await admin.fetch(sql.ACQUIRE, "new", [0, 1], 10.0, False)
        assert sorted((row["shard"], row["token"]) for row in won) == [(0, 2), (1, 2)]
        left = await asyncio.wait_for(admin.fetchval(sql.SWEEP_ORPHANS, [0, 1], [2, 2]), 5.0)
        assert sorted(left) == [0, 1]  # rows of both shards were locked: to be swept again
        swept = await admin.fetchval("SELECT count(*) FROM cw_job WHERE state = 0")
        assert swept == (0 if kind == "unclaim" else ORPHANS // 2)
        if kind != "unclaim":  # its next statement: the other rows, swept meanwhile, match nothing (no wait)
            assert await asyncio.wait_for(stale_write(stale, kind, ids[ORPHANS // 2 :]), 5.0) == 0
        await transaction.commit()
    finally:
        await stale.close()
    assert await admin.fetchval(sql.SWEEP_ORPHANS, [0, 1], [2, 2]) == []
    states = await admin.fetchval("SELECT array_agg(DISTINCT state) FROM cw_job")
    assert states == [0], states  # acked rows are gone; every other one waits again
    assert await admin.fetchval("SELECT count(*) FROM cw_job") == (ORPHANS // 2 if kind == "ack" else ORPHANS)


async def test_concurrent_lease_rounds_of_two_engines_log_no_deadlock(
    pg_server: PgServer, pg_dsn: str, admin: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Many times over: two engines' lease rounds race for expired shards full of orphans, while the stale
    owner's ack of them is in flight. No round fails, and the server logs no deadlock."""
    before = pg_server.deadlocks()
    clock = VirtualClock()
    first, second = engine_of(pg_dsn, clock), engine_of(pg_dsn, clock)
    async with first, second:
        stores = [store_of(first), store_of(second)]
        for store in stores:
            assert store.leases.task is not None
            store.leases.task.cancel()  # the test runs the rounds: a background one could take a shard mid-setup
        for attempt in range(15):
            for store in stores:
                if store.ownership.held:
                    store.holdings.lose(set(store.ownership.held))
            await admin.execute("DELETE FROM cw_job")
            await admin.execute("UPDATE cw_shard SET owner = 'stale', token = token + 1, expires_at = now()")
            tokens = dict(await admin.fetch("SELECT shard, token FROM cw_shard"))
            ids = [f"a{attempt}-{n}" for n in range(4 * SHARDS)]
            shards = [n % SHARDS for n in range(len(ids))]
            await admin.execute(
                "INSERT INTO cw_job (id, shard, due, state, fence, claims, record)"
                " SELECT i, s, 1e12, 1, t, 1, '\\x7b7d'::bytea"  # due long after the horizon: never loaded
                " FROM unnest($1::text[], $2::int[], $3::bigint[]) u(i, s, t)",
                ids,
                shards,
                [tokens[shard] for shard in shards],
            )
            stale = await asyncpg.connect(pg_dsn)
            try:
                async with stale.transaction():
                    acks = stale.fetch(sql.ACK, "stale", ids[::-1], [tokens[s] for s in shards[::-1]], shards[::-1])
                    await asyncio.gather(acks, *(store.leases.tend_once() for store in stores))
            finally:
                await stale.close()
            for store in stores:
                await store.leases.tend_once()  # the sweep of what the ack held, if it was skipped
            assert sum(len(store.ownership.held) for store in stores) == SHARDS
            assert await admin.fetchval("SELECT count(*) FROM cw_job WHERE state = 1") == 0
    assert "deadlock" not in caplog.text
    assert pg_server.deadlocks() == before


@pytest.mark.parametrize("higher", ["default", "second"])
async def test_the_claims_of_every_pool_lock_their_shards_in_shard_order(
    pg_server: PgServer, pg_dsn: str, admin: asyncpg.Connection, higher: str
) -> None:
    """Two pools fire in one turn, one job each, in shards 2 and 9; another transaction holds shard 2 locked.

    The flush's claim waits for shard 2 holding no lock on shard 9: what locks
    shard rows in shard order (a lease round's renew) cannot wait on it in a
    cycle. A claim per pool, one after the other, took shard 9 and then waited
    for shard 2, whichever pool's job it was: a renew waiting for 9 while it
    held 2 was a deadlock, and the lease round that lost it, a lease lost.
    """
    clock = VirtualClock()
    engine = engine_of(pg_dsn, clock)
    engine.add_pool("second", concurrency=1)
    ran: list[str] = []
    engine.task(name="first")(ran.append)
    engine.task(name="other", pool="second")(ran.append)
    low, high = 2, 9
    before = pg_server.deadlocks()
    async with engine:
        first_shard, second_shard = (high, low) if higher == "default" else (low, high)
        await engine.schedule("first", args=("first",), delay=1.0, key=key_in(first_shard, "f"))
        await engine.schedule("other", args=("other",), delay=1.0, key=key_in(second_shard, "o"))
        blocker = await asyncpg.connect(pg_dsn)
        try:
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("SELECT FROM cw_shard WHERE shard = $1 FOR UPDATE", low)
            await clock.advance(1.0)  # both due: one flush claims them both, and waits for the lock
            query = (
                "SELECT count(*) > 0 FROM pg_stat_activity"
                " WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%claimed AS%'"
            )
            await until(lambda: admin.fetchval(query, blocker.get_server_pid()))
            await blocker.execute("SELECT FROM cw_shard WHERE shard = $1 FOR UPDATE NOWAIT", high)
            await transaction.commit()
        finally:
            await blocker.close()
        await until(lambda: len(ran) == 2)
        stats = store_of(engine).stats()
    assert sorted(ran) == ["first", "other"]
    assert stats["refused_claims"] == 0
    assert stats["guarded"] == 0
    assert pg_server.deadlocks() == before


@contextlib.asynccontextmanager
async def flushes_held(
    pg_dsn: str, admin: asyncpg.Connection, engine: Engine
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The engine's flushes held up: one (of a ``note`` job keyed ``held``) waits for the key, which another
    transaction has taken. Yields what lets it go."""
    blocker = await asyncpg.connect(pg_dsn)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("INSERT INTO cw_job (id, shard, key, due, record) VALUES ('held', 0, 'held', 0, '')")
        engine.schedule_nowait("note", args=("held",), delay=600.0, key="held")  # its flush waits for the blocker
        query = "SELECT count(*) > 0 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"
        await until(lambda: admin.fetchval(query, blocker.get_server_pid()))
        yield transaction.rollback
    finally:
        await blocker.close()


async def test_a_claim_under_a_token_replaced_before_its_flush_is_refused_alone(
    pg_dsn: str, admin: asyncpg.Connection
) -> None:
    """Two firings of one shard wait behind a blocked flush; between them the lease lapses and is taken back under
    a new token (which loads the shard's jobs again). One flush carries both claims: the older token's is refused,
    the new one's run, and the shard stays held.

    A claim per firing lost the shard at the older token's refusal, held as it
    was under the new one: the new token's job, claimed, was stranded by the
    guard, and the shard's jobs left the wheel until the lease expired again.
    """
    clock = VirtualClock()
    engine = engine_of(pg_dsn, clock)
    ran: list[str] = []
    engine.task(name="note")(ran.append)
    shard = 5
    async with engine:
        store = store_of(engine)
        assert store.leases.task is not None
        store.leases.task.cancel()  # the test runs the rounds
        for name, delay in (("older", 1.0), ("newer", 2.0)):
            await engine.schedule("note", args=(name,), delay=delay, key=key_in(shard, name))
        token = store.ownership.held[shard].token
        async with flushes_held(pg_dsn, admin, engine) as release:
            await clock.advance(1.0)  # "older" is due: its claim waits, under the first token
            await admin.execute("UPDATE cw_shard SET expires_at = now() WHERE shard = $1", shard)
            host = store.holdings.host
            assert host is not None
            host.load(await store.leases.tend_once())  # the renew finds the lease lapsed; the acquisition retakes it
            assert store.ownership.held[shard].token == token + 1
            await clock.advance(1.0)  # "newer" is due: its claim waits too, under the new token
            await release()
            await settle(clock, engine)
        assert sorted(ran) == ["newer", "older"]  # "older" by the copy the re-acquisition loaded, under the new token
        assert store.ownership.held[shard].token == token + 1  # still held
        assert store.stats()["refused_claims"] == 1  # the first copy of "older", under the old token
        assert store.stats()["guarded"] == 0
        host.load(await store.leases.tend_once())
        await settle(clock, engine, seconds=1.0)
        assert await admin.fetchval("SELECT count(*) FROM cw_job WHERE key <> 'held'") == 0
    assert sorted(ran) == ["newer", "older"]


async def test_a_shard_is_handed_over_only_once_its_ack_is_written(pg_dsn: str, admin: asyncpg.Connection) -> None:
    """A job's run ends while the flush ahead of its ack waits on a lock; meanwhile another engine joins and wins
    the job's shard. The owner hands over its other shards, and that one only once the ack has committed.

    Handed over with the others, the hand-over gave the finished job's row back
    as never run: the newcomer ran it again, and the late ack matched nothing.
    """
    clock = VirtualClock()
    owner, newcomer = engine_of(pg_dsn, clock), engine_of(pg_dsn, clock)
    ran: list[str] = []
    finish = asyncio.Event()
    for engine in (owner, newcomer):

        @engine.task(name="note")
        async def note(name: str) -> None:
            await finish.wait()
            ran.append(name)

    mine, theirs = store_of(owner), store_of(newcomer)
    shard = next(s for s in range(SHARDS) if rendezvous(s, (mine.me, theirs.me)) == theirs.me)
    owned_by = "SELECT owner FROM cw_shard WHERE shard = $1"
    async with owner:
        job = await owner.schedule("note", args=("once",), delay=1.0, key=key_in(shard, "x"))
        await settle(clock, owner, seconds=1.0)
        assert job.id in mine.holdings.fences  # claimed, and running
        async with flushes_held(pg_dsn, admin, owner) as release:
            finish.set()
            await until(lambda: job.id not in mine.holdings.fences)  # its run is over: its ack waits its turn
            async with newcomer:
                taken = "SELECT count(*) > 0 FROM cw_shard WHERE owner = $1"
                await until(lambda: admin.fetchval(taken, theirs.me))  # the owner's hand-over has committed
                assert await admin.fetchval(owned_by, shard) == mine.me
                await release()

                async def handed_over() -> bool:
                    return bool(await admin.fetchval(owned_by, shard) == theirs.me)

                await until(handed_over)  # once the ack has committed
                await settle(clock, owner, newcomer, seconds=1.0)
                stats = [mine.stats(), theirs.stats()]
    assert ran == ["once"]
    assert [s["stale_writes"] for s in stats] == [0, 0]
    assert [s["reruns"] for s in stats] == [0, 0]


# -- the server's identity --------------------------------------------------------------------------------


@pytest.mark.parametrize("found_by", ["lease round", "reconnect"])
async def test_a_changed_server_makes_the_engine_drop_and_reacquire_every_shard(
    pg_dsn: str, admin: asyncpg.Connection, found_by: str
) -> None:
    """The database now says it is another incarnation (a restore, a failover that went back in time).

    The engine drops every lease it held, takes its shards again under new
    tokens at once (it need not wait for its old leases to expire), and a job
    waiting in the store still runs once. ``lease round``: only the row
    changes, the next round's check finds it. ``reconnect``: the engine's
    backends are killed too, and a new pool connection finds it first.
    """
    clock = VirtualClock()
    engine = engine_of(pg_dsn, clock)
    ran: list[str] = []
    engine.task(name="note")(ran.append)
    async with engine:
        store = store_of(engine)
        await engine.schedule("note", args=("waiting",), delay=30.0)
        before = dict(await admin.fetch("SELECT shard, token FROM cw_shard"))
        await admin.execute("UPDATE cw_meta SET incarnation = 'restored from a backup'")
        if found_by == "reconnect":
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        await until(lambda: store.stats()["server_changes"] == 1)
        await until(lambda: store.stats()["owned_shards"] == SHARDS)
        after = dict(await admin.fetch("SELECT shard, token FROM cw_shard"))
        assert all(after[shard] > before[shard] for shard in before), (before, after)
        assert await admin.fetchval("SELECT count(DISTINCT owner) FROM cw_shard") == 1
        await until(lambda: len(engine) == 1)  # the reload after the re-acquisition
        await settle(clock, engine, seconds=30.0)
        await settle(clock, engine, seconds=1.0)
        stats = store.stats()
    assert ran == ["waiting"]
    assert stats["server_changes"] == 1
    assert stats["takeovers"] == 0  # its own shards, taken back


# -- the local guard, on a stepped monotonic clock --------------------------------------------------------


class Stepped:
    """The store's monotonic clock, stepped forward by the test (a paused or stalled owner's view of time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.mark.parametrize("paused", ["before the claim", "during the claim"])
async def test_a_job_stopped_by_the_guard_runs_once_when_the_shard_is_kept(
    pg_dsn: str, admin: asyncpg.Connection, paused: str
) -> None:
    """The owner's monotonic clock jumps past its local guard (a stall), but its leases had not expired: the next
    renew keeps every shard.

    ``before the claim``: the due job is not claimed, only taken out of the wheel.
    ``during the claim``: the claim commits after the jump, and the job is not started: it stays claimed.
    Either way it does not start while the guard is past, and the next lease round files it again (un-claiming
    it, fenced by its token): it runs once, and is not counted as a re-run.
    """
    clock = VirtualClock()
    engine = engine_of(pg_dsn, clock)
    ran: list[str] = []
    engine.task(name="note")(ran.append)
    async with engine:
        store = store_of(engine)
        assert store.leases.task is not None
        store.leases.task.cancel()  # the test runs the lease rounds
        stepped = Stepped()
        store.holdings.monotonic = stepped
        job = await engine.schedule("note", args=("due",), delay=1.0)
        if paused == "before the claim":
            stepped.offset = LEASE
            await settle(clock, engine, seconds=1.0)
        else:
            blocker = await asyncpg.connect(pg_dsn)
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE cw_job IN EXCLUSIVE MODE")  # the claim waits
            await clock.advance(1.0)
            query = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"
            await until(lambda: admin.fetchval(query, blocker.get_server_pid()))
            stepped.offset = LEASE
            await transaction.rollback()
            await blocker.close()
            await settle(clock, engine)
        assert ran == []
        assert store.stats()["guarded"] == 1
        assert len(engine) == 0
        state = await admin.fetchval("SELECT state FROM cw_job WHERE id = $1", job.id)
        assert state == (0 if paused == "before the claim" else 1)
        assert store.holdings.host is not None
        store.holdings.host.load(await store.leases.tend_once())  # renewed: every shard kept
        assert store.stats()["owned_shards"] == SHARDS
        assert len(engine) == 1
        await settle(clock, engine, seconds=DUE_TOLERANCE)
        await settle(clock, engine)
        stats = store.stats()
    assert ran == ["due"]
    assert stats["reruns"] == 0
    assert await admin.fetchval("SELECT count(*) FROM cw_job") == 0
