"""Cluster mode's operator surface against a real PostgreSQL: fencing of attempts, results, queries, control.

The engines run on the virtual clock; leases and round trips are real, so
the tests that move leases use a 4 s lease and wait for conditions (never for
a fixed time), and move the tokens in the database by hand.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from chronowheel import Cluster, Engine, Every, Job, JobCancelled, JobFailed, Retry
from chronowheel._cluster import results, schema
from chronowheel._cluster.ownership import shard_of
from chronowheel.testing import VirtualClock
from helpers import until
from test_cluster import settle, store_of
from test_cluster_failures import LEASE, SHARDS, engine_of


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


# -- results through the store ------------------------------------------------------------------------------


def cluster_engine(pg_dsn: str, clock: VirtualClock, role: str = "worker", **options: Any) -> Engine:
    return Engine(clock=clock, cluster=Cluster(pg_dsn, shards=SHARDS, lease=LEASE, role=role), **options)  # type: ignore[arg-type]


def failing(name: str) -> None:
    raise ValueError(f"{name} failed")


ENDS: dict[str, tuple[Callable[..., Any], Any]] = {
    # how the job ends -> its task, and what result() gives (a value, or the error it raises and a match)
    "value": (lambda name: {"name": name, "list": [1, 2.5, None]}, {"name": "k", "list": [1, 2.5, None]}),
    "none": (lambda name: None, None),
    "dead": (failing, (JobFailed, "ValueError: k failed")),
    "cancelled": (print, (JobCancelled, r"cancel\(\) was called")),
    "cancelled-cluster-wide": (print, (JobCancelled, r"engine\.cluster\.cancel\(\) was called")),
    "unkept": (lambda name: {1, 2}, (KeyError, "not kept")),  # a set: JSON does not hold it
}


@pytest.mark.parametrize("path", ["notified", "polled"])
@pytest.mark.parametrize("end", list(ENDS))
async def test_result_waits_for_the_end_through_the_store_on_another_engine(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, end: str, path: str
) -> None:
    """A client waits for a job a worker runs: the value, JobFailed or JobCancelled, as in one engine.

    ``notified``: the poll is made too slow to matter, so the flush's
    ``d<shard>`` notification wakes the waiter. ``polled``: the client hears
    nothing, and the poll finds the end.
    """
    monkeypatch.setattr(results, "POLL", 60.0 if path == "notified" else 0.05)
    clock = VirtualClock()
    worker, client = cluster_engine(pg_dsn, clock), cluster_engine(pg_dsn, clock, role="client")
    task, expected = ENDS[end]
    for engine in (worker, client):
        engine.task(name="job")(task)
    async with worker, client:
        if path == "polled":
            monkeypatch.setattr(store_of(client).finished, "heard", lambda shard: None)
        job = await client.schedule("job", args=("k",), delay=5.0, key="k")
        await until(lambda: worker.get("k") is not None)  # the owner heard of it (NOTIFY comes after the commit)
        waiting = asyncio.create_task(client.result(job, timeout=60.0))
        await settle(clock, worker, client)
        assert not waiting.done()
        if end == "cancelled":
            assert worker.cancel("k")
        elif end == "cancelled-cluster-wide":
            assert worker.cluster is not None
            assert await worker.cluster.cancel("k")
        await settle(clock, worker, client, seconds=5.0)
        done, _ = await asyncio.wait({waiting}, timeout=10.0)  # real time: the notification or the poll
        assert done, "result() was not woken"
        if isinstance(expected, tuple):
            error, match = expected
            with pytest.raises(error, match=match):
                waiting.result()
            with pytest.raises(error, match=match):  # asked again, after the end: the same answer at once
                await client.result(job.id)
        else:
            assert waiting.result() == expected
            assert await client.result(job.id) == expected
        if end == "unkept":
            assert await worker.result(job) == {1, 2}  # the engine that ran it still has it in memory


@pytest.mark.parametrize("case", ["unknown", "expired", "timeout", "restarted"])
async def test_result_through_the_store_key_errors_timeouts_and_restarts(
    pg_dsn: str, admin: asyncpg.Connection, case: str
) -> None:
    """KeyError for an unknown or expired job (expired outcomes purged by the lease rounds), TimeoutError on the
    engine's clock, and an outcome that outlives the engine that ran it."""
    clock = VirtualClock()
    worker = cluster_engine(pg_dsn, clock, result_ttl=30.0)

    async def double(n: int) -> int:  # async: a sync task's ack follows its thread, after settle() may have looked
        return n * 2

    worker.task(name="job")(double)
    async with worker:
        job = await worker.schedule("job", args=(21,), delay=100.0 if case == "timeout" else 1.0)
        if case == "unknown":
            with pytest.raises(KeyError, match="no such job"):
                await worker.result("0" * 32)
            return
        if case == "timeout":
            waiting = asyncio.create_task(worker.result(job, timeout=5.0))
            await settle(clock, worker, seconds=5.0)
            with pytest.raises(TimeoutError, match="did not end within 5s"):
                await waiting
            return
        await settle(clock, worker, seconds=1.0)
        assert await admin.fetchval("SELECT count(*) FROM cw_result") == 1
        if case == "expired":
            await settle(clock, worker, seconds=31.0)
            with pytest.raises(KeyError, match="result_ttl"):
                await worker.result(job)
            await until(lambda: admin.fetchval("SELECT count(*) = 0 FROM cw_result"))  # a lease round purged it
            return
    again = cluster_engine(pg_dsn, clock, role="client")
    async with again:
        assert await again.result(job.id) == 42  # from the database: the engine that ran it is gone
        await settle(clock, again, seconds=31.0)
        with pytest.raises(KeyError, match="result_ttl"):
            await again.result(job.id)


async def scheduled_at_version(pg_dsn: str, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch, version: int) -> Job:
    """A job (key ``k``, due in 5 s) scheduled by code that knows the schema up to ``version`` only."""
    known = tuple(migration for migration in schema.MIGRATIONS if migration[0] <= version)
    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", known)
        patch.setattr(schema, "VERSION", known[-1][0])
        old = cluster_engine(pg_dsn, clock, role="client")
        old.task(name="job")(print)
        async with old:
            return await old.schedule("job", delay=5.0, key="k")


async def test_the_results_schema_upgrades_from_the_previous_version(
    pg_dsn: str, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at the version before results keeps its jobs across the upgrade, and gains ``cw_result``."""
    clock = VirtualClock()
    job = await scheduled_at_version(pg_dsn, clock, monkeypatch, 2)
    assert await admin.fetchval("SELECT to_regclass('cw_result')") is None
    new = cluster_engine(pg_dsn, clock, role="client")
    async with new:
        assert new.cluster is not None
        assert (await new.cluster.get("k")) is not None  # kept across the upgrade
    assert await admin.fetchval("SELECT max(version) FROM cw_version") == schema.VERSION
    assert await admin.fetchval("SELECT to_regclass('cw_result')::text") == "cw_result"
    assert job.id == await admin.fetchval("SELECT id FROM cw_job")


# -- queries through the store --------------------------------------------------------------------------------


LISTED = [  # key, task, delay (s), state after 5 s: in deadline order
    ("mail:1", "mail", 1.0, "succeeded"),
    ("boom", "boom", 2.0, "dead"),
    ("slow", "slow", 3.0, "running"),
    ("note:0", "note", 10.0, "pending"),
    ("note:1", "note", 20.0, "pending"),
    ("note:10", "note", 30.0, "pending"),
    ("note:2", "note", 40.0, "pending"),
]


@pytest.mark.parametrize("limit", [1, 3, 100])
@pytest.mark.parametrize(
    "where",
    [
        {},
        *({"state": state} for state in ("pending", "succeeded", "dead", "running")),
        {"task": "note"},
        {"key_prefix": "note:1"},
        {"state": "pending", "key_prefix": "note:1"},
    ],
    ids=lambda where: "-".join(f"{name}={value}" for name, value in where.items()) or "all",
)
async def test_cluster_jobs_pages_the_whole_clusters_jobs_by_deadline(
    pg_dsn: str, where: dict[str, str], limit: int
) -> None:
    """``engine.cluster.jobs()`` from a client: every engine's jobs, filtered, paged by a (deadline, id) cursor.

    The cursor's own job ending between pages (here cancelled, so kept as
    finished at the same place) neither repeats nor skips a job; ``engine.jobs()``
    of the client stays local (it holds none).
    """
    clock = VirtualClock()
    worker, client = cluster_engine(pg_dsn, clock), cluster_engine(pg_dsn, clock, role="client")
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    for engine in (worker, client):
        engine.task(name="mail")(lambda: "sent")
        engine.task(name="boom")(failing)
        engine.task(name="slow")(slow)
        engine.task(name="note")(print)
    async with worker, client:
        try:
            assert client.cluster is not None
            for key, task, delay, _ in LISTED:
                await client.schedule(task, args=(key,) if task == "boom" else (), delay=delay, key=key)
            await until(lambda: len(worker) == len(LISTED))  # the owner heard of them all
            await settle(clock, worker, client, seconds=5.0)
            expected = [
                (key, state)
                for key, task, _, state in LISTED
                if where.get("state", state) == state
                and where.get("task", task) == task
                and key.startswith(where.get("key_prefix", ""))
            ]
            listed: list[tuple[str | None, str]] = []
            after = None
            while True:
                page = await client.cluster.jobs(limit=limit, after=after, **where)
                assert len(page) <= limit
                listed += [(job.key, job.state) for job in page]
                if len(page) < limit:
                    break
                after = page[-1]
                if after.state == "pending":  # the cursor's own job ends (cancelled): the next page starts after it
                    assert after.key is not None
                    assert await client.cluster.cancel(after.key)
            assert listed == expected
            assert client.jobs() == []  # engine.jobs() is this engine's memory: a client keeps none
        finally:
            release.set()


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"state": "sleeping"}, ValueError, "state"),
        ({"limit": 0}, ValueError, "limit"),
        ({"limit": 10_001}, ValueError, "limit"),
        ({"after": "id"}, TypeError, "after"),
        ({"task": print}, TypeError, "task"),
        ({"key_prefix": 3}, TypeError, "key_prefix"),
    ],
    ids=lambda value: str(value) if not isinstance(value, dict) else "-".join(value),
)
async def test_cluster_jobs_checks_its_arguments(
    pg_dsn: str, arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    clock = VirtualClock()
    client = cluster_engine(pg_dsn, clock, role="client")
    async with client:
        assert client.cluster is not None
        with pytest.raises(error, match=match):
            await client.cluster.jobs(**arguments)


# -- pause and resume ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["local", "cluster-wide"])
@pytest.mark.parametrize(
    ("kind", "runs_by_45s"),
    [("one-shot", 1), ("series-skip", 1), ("series-fire_once", 2), ("series-fire_all", 4)],
)
async def test_a_paused_row_is_never_claimed_and_resume_applies_the_misfire_policy(
    pg_dsn: str, admin: asyncpg.Connection, how: str, kind: str, runs_by_45s: int
) -> None:
    """Paused at 1 s for 35 s: nothing fires (the row is state 4, which no claim takes); resumed, the one-shot is due
    at once and a series' misfire policy decides its missed runs (10, 20, 30 s), then it goes on (40 s).

    ``local``: the owner's ``engine.pause``/``resume`` (queued for its flush);
    ``cluster-wide``: a client's ``engine.cluster.pause``/``resume`` by key.
    """
    clock = VirtualClock()
    worker, client = cluster_engine(pg_dsn, clock), cluster_engine(pg_dsn, clock, role="client")
    runs: list[float] = []
    for engine in (worker, client):
        engine.task(name="job")(lambda: runs.append(clock.time()))
    async with worker, client:
        assert client.cluster is not None
        if kind == "one-shot":
            job = await worker.schedule("job", delay=5.0, key="k")
        else:
            misfire = kind.removeprefix("series-")
            job = await worker.schedule("job", every=Every(10.0), key="k", misfire=misfire)
        await settle(clock, worker, client, seconds=1.0)
        if how == "local":
            assert worker.pause("k")
        else:
            assert await client.cluster.pause("k")
        await settle(clock, worker, client)
        assert await admin.fetchval("SELECT state FROM cw_job WHERE id = $1", job.id) == 4
        await settle(clock, worker, client, seconds=35.0)
        assert runs == []
        assert [(job.key, job.state) for job in await client.cluster.jobs()] == [("k", "paused")]
        stored = await client.cluster.get("k")
        assert stored is not None
        assert stored.state == "paused"
        if how == "local":
            assert worker.resume("k")
        else:
            assert await client.cluster.resume("k")
            assert not await client.cluster.resume("k")  # resumed already

        async def waiting_again() -> bool:  # the owner heard of it (cluster-wide): in its wheel, or fired
            await settle(clock, worker, client)
            held = worker.get("k")
            return bool(runs) or (held is not None and held.state == "pending")

        await until(waiting_again)
        for _ in range(9):  # to 45 s, a second at a time: a claim's round trip is real time, the clock's jumps not
            await settle(clock, worker, client, seconds=1.0)
    assert len(runs) == runs_by_45s
    assert runs[-1] == (36.0 if kind == "one-shot" else 40.0)


async def test_pause_of_what_is_not_waiting(pg_dsn: str) -> None:
    """A key nobody holds, or a job not waiting: False, nothing changed; a client's sync calls see no copy."""
    clock = VirtualClock()
    worker, client = cluster_engine(pg_dsn, clock), cluster_engine(pg_dsn, clock, role="client")
    for engine in (worker, client):
        engine.task(name="job")(print)
    async with worker, client:
        assert client.cluster is not None
        await client.schedule("job", delay=60.0, key="k")
        assert await client.cluster.pause("nobody") is False
        assert await client.cluster.resume("k") is False  # not paused
        assert client.pause("k") is False  # the client keeps no copy
        assert await client.cluster.pause("k") is True
        assert await client.cluster.pause("k") is False  # paused already
        assert await client.cluster.count() == 1


@pytest.mark.parametrize(
    ("options", "keys"),
    [([], ["done", "paused", "waiting"]), (["--state", "succeeded"], ["done"]), (["--state", "paused"], ["paused"])],
    ids=["all", "succeeded", "paused"],
)
async def test_jobs_command_on_a_dsn_uses_the_clusters_query(
    pg_dsn: str, capsys: pytest.CaptureFixture[str], options: list[str], keys: list[str]
) -> None:
    """``chronowheel jobs DSN`` pages ``engine.cluster.jobs()``'s statement: finished and paused jobs are listed too."""
    from chronowheel._cli import main

    clock = VirtualClock(wall=time.time())  # the command has no engine clock: it expires outcomes by the real one
    worker = cluster_engine(pg_dsn, clock)
    worker.task(name="job")(print)
    async with worker:
        assert worker.cluster is not None
        await worker.schedule("job", delay=1.0, key="done")
        await worker.schedule("job", delay=50.0, key="paused")
        await worker.schedule("job", delay=60.0, key="waiting")
        assert await worker.cluster.pause("paused")
        await settle(clock, worker, seconds=2.0)
        assert await asyncio.to_thread(main, ["jobs", pg_dsn, "--json", *options]) == 0
    listed = json.loads(capsys.readouterr().out)["jobs"]
    assert [job["key"] for job in listed] == keys
    states = {"done": "succeeded", "paused": "paused", "waiting": "pending"}
    assert [job["state"] for job in listed] == [states[key] for key in keys]
