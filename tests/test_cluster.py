"""Cluster mode against a real PostgreSQL (tests/pgserver.py), and the job API in both durable modes.

The engines run on a virtual clock: deadlines, retries and periods move only
when the test says. The database's round trips are real I/O, so ``settle``
waits for the store to be idle after each step. The leases run on the
database's clock and the local monotonic one (real time): their tests use
short leases, or move the tokens in the database by hand.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chronowheel import Cluster, DuplicateKey, Engine, Every, LeaseLost, Retry
from chronowheel._cluster.store import ClusterStore
from chronowheel.testing import VirtualClock
from helpers import until
from pgserver import PgServer

MODES = ["journal", "cluster"]


def store_of(engine: Engine) -> ClusterStore:
    store = engine._store
    assert isinstance(store, ClusterStore)
    return store


async def settle(clock: VirtualClock, *engines: Engine, seconds: float = 0.0) -> None:
    """Advance the clock, then let every cluster store finish its round trips (and what they start)."""
    await clock.advance(seconds)
    for _ in range(20):
        busy = False
        for engine in engines:
            store = engine._store
            if isinstance(store, ClusterStore):
                busy = busy or store.flusher.task is not None or bool(store.listener.fetches)
                await store.flush()
                await asyncio.gather(*store.listener.fetches)
        await clock.settle()
        if not busy:
            return


Factory = Callable[..., Engine]


@pytest.fixture(params=MODES)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Engines of one durable mode: a journal each, or one cluster (one schema) for all."""
    if request.param == "journal":
        paths = iter(range(100))
        return lambda clock, **options: Engine(clock=clock, journal=str(tmp_path / f"j{next(paths)}"))
    dsn = request.getfixturevalue("pg_dsn")

    def cluster_engine(clock: VirtualClock, **options: Any) -> Engine:
        return Engine(clock=clock, cluster=Cluster(dsn, shards=options.pop("shards", 16), lease=5.0, **options))

    return cluster_engine


@pytest.fixture
def cluster_of(pg_dsn: str) -> Callable[..., Engine]:
    def cluster_engine(clock: VirtualClock, **options: Any) -> Engine:
        shards, lease = options.pop("shards", 16), options.pop("lease", 5.0)
        return Engine(clock=clock, cluster=Cluster(pg_dsn, shards=shards, lease=lease, **options))

    return cluster_engine


# -- settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({"dsn": 5}, TypeError, "dsn"),
        ({"dsn": "  "}, ValueError, "dsn"),
        ({"shards": 0}, ValueError, "shards"),
        ({"shards": 70_000}, ValueError, "shards"),
        ({"shards": 2.0}, TypeError, "shards"),
        ({"shards": True}, TypeError, "shards"),
        ({"lease": 0}, ValueError, "lease"),
        ({"lease": "10"}, TypeError, "lease"),
        ({"horizon": -1}, ValueError, "horizon"),
        ({"role": "owner"}, ValueError, "'owner'"),
    ],
    ids=lambda value: str(value) if not isinstance(value, dict) else "-".join(map(str, value)),
)
def test_cluster_settings_are_checked(options: dict[str, Any], error: type[Exception], names: str) -> None:
    arguments: dict[str, Any] = {"dsn": "postgresql:///x", **options}
    dsn = arguments.pop("dsn")
    with pytest.raises(error, match=names):
        Cluster(dsn, **arguments)


def test_journal_and_cluster_together_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="journal= or cluster="):
        Engine(journal=str(tmp_path / "j"), cluster=Cluster("postgresql:///x"))
    with pytest.raises(TypeError, match=r"cluster must be a chronowheel\.Cluster"):
        Engine(cluster="postgresql:///x")  # type: ignore[arg-type]


def test_the_package_imports_without_asyncpg_and_cluster_mode_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['asyncpg'] = None\n"
        "import chronowheel\n"
        "try:\n"
        "    chronowheel.Engine(cluster=chronowheel.Cluster('postgresql:///x'))\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "chronowheel[postgres]" in done.stdout


# -- the job API, in both modes -------------------------------------------------------------------------


async def test_jobs_fire_once_each_on_time(make: Factory) -> None:
    clock = VirtualClock()
    engine = make(clock)
    ran: list[tuple[int, float]] = []

    @engine.task
    async def note(n: int) -> None:
        ran.append((n, clock.time()))

    async with engine:
        delays = [0.5, 0.01, 3.0, 1.25, 0.5, 2.0]
        for n, delay in enumerate(delays):
            await engine.schedule(note, args=(n,), delay=delay)
        for _ in range(4):
            await settle(clock, engine, seconds=1.0)
    assert sorted(n for n, _ in ran) == list(range(len(delays)))
    for n, at in ran:
        assert delays[n] <= at <= delays[n] + 1.0  # on the first step at or after its deadline, never early


@pytest.mark.parametrize("change", ["cancel", "reschedule"])
async def test_cancel_and_reschedule_by_key_and_by_job(make: Factory, change: str) -> None:
    clock = VirtualClock()
    engine = make(clock)
    ran: list[str] = []

    @engine.task
    async def note(name: str) -> None:
        ran.append(name)

    async with engine:
        by_key = await engine.schedule(note, args=("keyed",), delay=5, key="k")
        by_job = await engine.schedule(note, args=("plain",), delay=5)
        await settle(clock, engine)
        if change == "cancel":
            assert engine.cancel("k") is True
            assert engine.cancel(by_job) is True
            assert engine.cancel("k") is False
        else:
            assert engine.reschedule("k", delay=20) is True
            assert engine.reschedule(by_job, delay=20) is True
        await settle(clock, engine, seconds=10)
        assert ran == []
        await settle(clock, engine, seconds=15)
    assert sorted(ran) == ([] if change == "cancel" else ["keyed", "plain"])
    assert by_key.key == "k"


@pytest.mark.parametrize("if_exists", ["error", "keep", "replace"])
async def test_keys_are_unique_across_engines(cluster_of: Callable[..., Engine], if_exists: str) -> None:
    """Two engines on one database: the second one's schedule with the same key meets the first's job."""
    clock = VirtualClock()
    first, second = cluster_of(clock), cluster_of(clock, role="client")
    ran: list[str] = []
    for engine in (first, second):
        engine.task(name="note")(ran.append)
    async with first, second:
        original = await first.schedule("note", args=("first",), delay=5, key="daily")
        if if_exists == "error":
            with pytest.raises(DuplicateKey, match="daily"):
                await second.schedule("note", args=("second",), delay=5, key="daily")
        else:
            got = await second.schedule("note", args=("second",), delay=5, key="daily", if_exists=if_exists)  # type: ignore[arg-type]
            assert (got.id == original.id) is (if_exists == "keep")
        assert second.cluster is not None
        assert await second.cluster.count() == 1
        await settle(clock, first, second, seconds=6)
    assert ran == (["second"] if if_exists == "replace" else ["first"])


async def test_retries_dead_letters_and_redrive(make: Factory) -> None:
    clock = VirtualClock()
    engine = make(clock)
    attempts: list[int] = []

    @engine.task(retry=Retry(attempts=3, backoff=1.0, jitter=False))
    async def flaky() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 5:
            raise RuntimeError("not yet")

    async with engine:
        job = await engine.schedule(flaky, delay=0.1)
        for _ in range(8):
            await settle(clock, engine, seconds=1.0)
        assert len(attempts) == 3
        assert [dead.id for dead in engine.dead_letters()] == [job.id]
        engine.redrive(job, delay=0.5)
        for _ in range(4):
            await settle(clock, engine, seconds=1.0)
    assert len(attempts) == 5  # the redrive's two attempts, the second succeeds
    assert engine.dead_letters() == []


@pytest.mark.parametrize("period", [1.0, 2.5])
async def test_an_interval_series_runs_once_per_period(make: Factory, period: float) -> None:
    clock = VirtualClock()
    engine = make(clock)
    runs: list[float] = []

    @engine.task
    async def tick() -> None:
        runs.append(clock.time())

    async with engine:
        await engine.schedule(tick, every=Every(period), key="ticker")
        for _ in range(10):
            await settle(clock, engine, seconds=1.0)
    assert len(runs) == int(10 // period)
    assert runs == sorted(set(runs))


# -- cluster only ---------------------------------------------------------------------------------------


async def test_a_client_schedules_and_a_worker_fires(cluster_of: Callable[..., Engine]) -> None:
    clock = VirtualClock()
    worker, client = cluster_of(clock), cluster_of(clock, role="client")
    ran: list[int] = []

    async def note(n: int) -> None:  # async: a sync task's ack follows its thread, after settle() may have looked
        ran.append(n)

    for engine in (worker, client):
        engine.task(name="note")(note)
    async with worker, client:
        assert client.cluster is not None
        for n in range(20):
            await client.schedule("note", args=(n,), delay=1 + n % 3, key=f"r{n}")
        await settle(clock, worker, client)
        assert len(client) == 0  # the client keeps no job in its wheel
        assert (await client.cluster.get("r3")) is not None
        assert await client.cluster.cancel("r3") is True
        assert await client.cluster.reschedule("r4", delay=50) is True
        await settle(clock, worker, client, seconds=5)
        assert sorted(ran) == [n for n in range(20) if n not in (3, 4)]
        assert await client.cluster.count() == 1
        await settle(clock, worker, client, seconds=50)
        stats = worker.stats()["cluster"]
    assert sorted(ran) == [n for n in range(20) if n != 3]
    assert stats["owned_shards"] == 16
    assert stats["refused_claims"] == 0
    assert client.stats()["cluster"]["owned_shards"] == 0


async def test_two_workers_split_the_shards_and_fire_each_job_once(cluster_of: Callable[..., Engine]) -> None:
    clock = VirtualClock()
    first, second = cluster_of(clock, shards=32), cluster_of(clock, shards=32)
    ran: list[tuple[str, int]] = []
    first.task(name="note")(lambda n: ran.append(("first", n)))
    second.task(name="note")(lambda n: ran.append(("second", n)))
    async with first, second:  # the second joins: the first hands over its share at its next lease round
        for engine in (first, second):  # that round, and the second's acquisition, now rather than in real time
            store = store_of(engine)
            assert store.holdings.host is not None
            store.holdings.host.load(await store.leases.tend_once())
        await settle(clock, first, second)
        owned = (first.stats()["cluster"]["owned_shards"], second.stats()["cluster"]["owned_shards"])
        for n in range(200):
            await first.schedule("note", args=(n,), delay=0.5)
        await settle(clock, first, second, seconds=1.0)
        await settle(clock, first, second, seconds=1.0)
    assert sum(owned) == 32
    assert min(owned) > 0
    assert sorted(n for _, n in ran) == list(range(200))
    assert {engine for engine, _ in ran} == {"first", "second"}


async def test_a_claim_under_a_stale_token_is_refused(cluster_of: Callable[..., Engine], pg_dsn: str) -> None:
    """Another engine took the shards (their tokens moved on): the fence refuses the claim, nothing runs."""
    clock = VirtualClock()
    engine = cluster_of(clock)
    ran: list[int] = []
    engine.task(name="note")(ran.append)
    async with engine:
        for n in range(5):
            await engine.schedule("note", args=(n,), delay=1)
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("UPDATE cw_shard SET token = token + 1, owner = 'thief'")
            await settle(clock, engine, seconds=2)
            assert ran == []
            stats = engine.stats()["cluster"]
            assert stats["refused_claims"] == 5
            stolen = await conn.fetchval("SELECT count(DISTINCT shard) FROM cw_job")
            assert stats["owned_shards"] == 16 - stolen  # the claim found those shards lost
            assert await conn.fetchval("SELECT count(*) FROM cw_job WHERE state = 0") == 5
        finally:
            await conn.close()


async def test_a_refused_claim_leaves_no_copy_in_this_engines_indexes(
    cluster_of: Callable[..., Engine], pg_dsn: str
) -> None:
    """A job whose claim the fence refused is another engine's: not in ``jobs()``, its key not held here."""
    clock = VirtualClock()
    engine = cluster_of(clock)
    engine.task(name="note")(print)
    async with engine:
        for n in range(3):
            await engine.schedule("note", args=(n,), delay=1, key=f"k{n}")
        assert len(engine.jobs()) == 3
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("UPDATE cw_shard SET token = token + 1, owner = 'thief'")
            await settle(clock, engine, seconds=2)
            assert engine.stats()["cluster"]["refused_claims"] == 3
            assert engine.jobs() == []
            assert [engine.get(f"k{n}") for n in range(3)] == [None, None, None]
            assert await conn.fetchval("SELECT count(*) FROM cw_job WHERE state = 0") == 3  # still stored
        finally:
            await conn.close()


@pytest.mark.parametrize("outcome", ["commit", "fenced", "raises"])
async def test_the_transactional_ack_commits_with_the_tasks_writes(
    cluster_of: Callable[..., Engine], pg_dsn: str, outcome: str
) -> None:
    clock = VirtualClock()
    engine = cluster_of(clock)
    errors: list[BaseException] = []
    setup = await asyncpg.connect(pg_dsn)
    await setup.execute("CREATE TABLE sent (id text PRIMARY KEY)")

    @engine.task
    async def send() -> None:
        assert engine.cluster is not None
        job = next(job for _, job in engine._registry.pools["default"].running_jobs())
        try:
            async with engine.cluster.transaction(job) as conn:
                await conn.execute("INSERT INTO sent VALUES ($1)", job.id)
                if outcome == "fenced":
                    await setup.execute("UPDATE cw_shard SET token = token + 1")
                if outcome == "raises":
                    raise RuntimeError("the task failed after its write")
        except (LeaseLost, RuntimeError) as exc:
            errors.append(exc)

    try:
        async with engine:
            job = await engine.schedule(send, delay=0.1)
            await settle(clock, engine, seconds=1)
        sent = await setup.fetchval("SELECT count(*) FROM sent")
        left = await setup.fetchval("SELECT count(*) FROM cw_job WHERE id = $1", job.id)
    finally:
        await setup.close()
    # raises: the block's write rolled back; the task caught the error and succeeded, so its ack went through
    assert (sent, left) == {"commit": (1, 0), "fenced": (0, 1), "raises": (0, 0)}[outcome]
    assert [type(exc) for exc in errors] == {"commit": [], "fenced": [LeaseLost], "raises": [RuntimeError]}[outcome]
    if outcome != "commit":
        assert job.fence is not None


async def test_a_graceful_stop_hands_the_shards_over_at_once(cluster_of: Callable[..., Engine]) -> None:
    clock = VirtualClock()
    first, second = cluster_of(clock, lease=30.0), cluster_of(clock, lease=30.0)
    async with first:
        await second.start()
        await first.stop()  # releases everything and notifies: no waiting for a 30 s lease to expire
        await until(lambda: second.stats()["cluster"]["owned_shards"] == 16, seconds=10.0)
        await second.stop()
    assert second.stats()["cluster"]["owned_shards"] == 0  # released at its own stop
    assert second.stats()["cluster"]["takeovers"] == 0  # handed over, not taken from a dead owner


async def test_schema_upgrades_race_safely_and_from_the_command_line(pg_server: PgServer, pg_dsn: str) -> None:
    from chronowheel._cluster.schema import MIGRATIONS, VERSION, upgrade

    async def one() -> int:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return await upgrade(conn, 8)
        finally:
            await conn.close()

    assert await asyncio.gather(*(one() for _ in range(5))) == [VERSION] * 5
    conn = await asyncpg.connect(pg_dsn)
    try:
        versions = await conn.fetchval("SELECT array_agg(version ORDER BY version) FROM cw_version")
        assert versions == [version for version, _ in MIGRATIONS]  # each once
        assert await conn.fetchval("SELECT count(*) FROM cw_shard") == 8
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="shards=16"):
        async with Engine(cluster=Cluster(pg_dsn, shards=16)):
            pass


@pytest.mark.parametrize("kind", ["fresh", "current", "unreachable"])
def test_db_upgrade_from_the_command_line(
    pg_server: PgServer, kind: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``python -m chronowheel db upgrade DSN``: creates or upgrades the schema; 1 with the reason if it cannot."""
    from chronowheel.__main__ import main
    from chronowheel._cluster.schema import VERSION

    schema = f"cli{os.getpid()}_{kind}"
    pg_server.psql(f"CREATE SCHEMA {schema}")
    dsn = pg_server.dsn(schema) if kind != "unreachable" else f"postgresql://postgres@/postgres?host={tmp_path}"
    if kind == "current":
        assert main(["db", "upgrade", dsn]) == 0
    status = main(["db", "upgrade", dsn])
    out, err = capsys.readouterr()
    if kind == "unreachable":
        assert status == 1
        assert "db upgrade:" in err
    else:
        assert status == 0
        assert f"cluster schema at version {VERSION}" in out
        assert pg_server.psql(f"SELECT max(version) FROM {schema}.cw_version").strip() == str(VERSION)


@pytest.mark.parametrize("call", ["cancel", "reschedule", "get"])
async def test_the_sync_job_calls_act_on_this_engines_jobs_and_the_async_ones_on_the_cluster(
    cluster_of: Callable[..., Engine], call: str
) -> None:
    """The documented contract (docs/cluster.md): ``engine.cancel/reschedule/get`` see this engine's wheel only.

    A client keeps no job after its commit, so its sync call finds nothing; the
    owner's finds its copy, and the change it makes is queued for its next flush,
    after which every engine sees it. ``engine.cluster.*`` answer from the database.
    """
    clock = VirtualClock()
    worker, client = cluster_of(clock), cluster_of(clock, role="client")
    ran: list[str] = []
    for engine in (worker, client):
        engine.task(name="note")(ran.append)
    async with worker, client:
        assert client.cluster is not None
        assert worker.cluster is not None
        for key in ("local", "remote"):
            await client.schedule("note", args=(key,), delay=5.0, key=key)

        async def both_heard() -> bool:  # the owner hears of them by NOTIFY, delivered after the commit
            await settle(clock, worker, client)
            return len(worker) == 2

        await until(both_heard)
        sync: dict[str, Callable[[Engine, str], object]] = {
            "cancel": lambda engine, key: engine.cancel(key),
            "reschedule": lambda engine, key: engine.reschedule(key, delay=20.0),
            "get": lambda engine, key: engine.get(key) is not None,
        }
        assert sync[call](client, "local") is False  # not in the client's wheel: "not here", not "nowhere"
        assert sync[call](worker, "local") is True  # the owner's copy; the store change goes out with its flush
        await settle(clock, worker, client)
        stored = await client.cluster.get("local")
        if call == "cancel":
            assert stored is None
        else:
            assert stored is not None
            assert stored._due_wall == pytest.approx(clock.wall() + (20.0 if call == "reschedule" else 5.0))
        assert (await client.cluster.get("remote")) is not None  # the async calls: from the database, anywhere
        if call == "cancel":
            assert await client.cluster.cancel("remote") is True
        elif call == "reschedule":
            assert await client.cluster.reschedule("remote", delay=20.0) is True
        await settle(clock, worker, client, seconds=6.0)
        early = sorted(ran)
        await settle(clock, worker, client, seconds=15.0)
    assert early == {"cancel": [], "reschedule": [], "get": ["local", "remote"]}[call]
    assert sorted(ran) == {"cancel": [], "reschedule": ["local", "remote"], "get": ["local", "remote"]}[call]


async def test_jobs_command_lists_a_clusters_jobs_read_only(
    cluster_of: Callable[..., Engine], pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``chronowheel jobs DSN``: the stored jobs by deadline, filtered, from one SELECT beside running engines."""
    from chronowheel._cli import main

    clock = VirtualClock()
    client = cluster_of(clock, role="client")
    client.task(name="note")(print)
    client.task(name="mail")(print)
    async with client:
        for n in range(3):
            await client.schedule("note", args=(n,), delay=60 - n, key=f"note:{n}")
        await client.schedule("mail", delay=30, key="mail:1")
        status = await asyncio.to_thread(main, ["jobs", pg_dsn, "--json"])
        assert status == 0
        listed = json.loads(capsys.readouterr().out)["jobs"]
        assert [job["key"] for job in listed] == ["mail:1", "note:2", "note:1", "note:0"]  # by deadline
        assert {job["state"] for job in listed} == {"pending"}
        assert (
            await asyncio.to_thread(main, ["jobs", pg_dsn, "--json", "--task", "note", "--key-prefix", "note:1"]) == 0
        )
        assert [job["key"] for job in json.loads(capsys.readouterr().out)["jobs"]] == ["note:1"]
        assert client.cluster is not None
        assert await client.cluster.count() == 4  # nothing taken or changed
