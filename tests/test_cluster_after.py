"""``schedule(after=...)`` in cluster mode against a real PostgreSQL: chains and fan-in across engines and shards.

The engines run on the virtual clock; the database's round trips and
notifications are real, so the tests wait for conditions (``until``), never
for a fixed time.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import asyncpg
import pytest

from chronowheel import Engine, Job, JobCancelled, JobFailed
from chronowheel._cluster import schema
from chronowheel._cluster.ownership import shard_of
from chronowheel.testing import VirtualClock
from helpers import until
from test_cluster import settle
from test_cluster_failures import SHARDS
from test_cluster_ops import cluster_engine, scheduled_at_version


@pytest.fixture
async def admin(pg_dsn: str) -> Any:
    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


def engines(pg_dsn: str, clock: VirtualClock, runs: list[str], roles: tuple[str, ...]) -> list[Engine]:
    """Engines sharing the cluster, each with the task ``step(name)`` (it notes its run) and ``boom`` (it fails)."""
    made = []
    for role in roles:
        engine = cluster_engine(pg_dsn, clock, role=role)

        @engine.task(name="step")
        def step(name: str) -> str:
            runs.append(name)
            return name

        @engine.task(name="boom")
        def boom(name: str) -> None:
            runs.append(name)
            raise RuntimeError(f"{name} failed")

        made.append(engine)
    return made


async def state_of(admin: asyncpg.Connection, job_id: str) -> int | None:
    state: int | None = await admin.fetchval("SELECT state FROM cw_job WHERE id = $1", job_id)
    return state


def keys_on_distinct_shards(count: int) -> list[str]:
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < count:
        keys.setdefault(shard_of(f"p{n}", SHARDS), f"p{n}")
        n += 1
    return list(keys.values())


# -- chains and fan-in ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", ["worker", "client"])
async def test_a_chain_of_three_across_two_engines_runs_in_order(
    pg_dsn: str, admin: asyncpg.Connection, scheduler: str
) -> None:
    """a, then b after a, then c after b, all scheduled at once: each waits (state 5) until its parent succeeded."""
    clock = VirtualClock()
    runs: list[str] = []
    worker, other = engines(pg_dsn, clock, runs, ("worker", scheduler))
    async with worker, other:
        a = await other.schedule("step", args=("a",), delay=5.0)
        b = await other.schedule("step", args=("b",), after=a)
        c = await other.schedule("step", args=("c",), after=b.id)
        assert [await state_of(admin, job.id) for job in (a, b, c)] == [0, 5, 5]
        assert await admin.fetchval("SELECT count(*) FROM cw_after") == 2
        await settle(clock, worker, other, seconds=1.0)
        assert runs == []  # b and c wait for a, whatever their own (zero) delay
        for step in range(3):
            await settle(clock, worker, other, seconds=5.0 if step == 0 else 0.0)
            await until(functools.partial(_settled_all, clock, (worker, other), runs, step + 1))
        assert runs == ["a", "b", "c"]
        assert [await other.result(job, timeout=10.0) for job in (a, b, c)] == ["a", "b", "c"]
    assert await admin.fetchval("SELECT count(*) FROM cw_after") == 0
    assert await admin.fetchval("SELECT count(*) FROM cw_job") == 0


async def test_a_fan_in_of_three_parents_on_different_shards_waits_for_the_last(
    pg_dsn: str, admin: asyncpg.Connection
) -> None:
    """Three parents on three shards, owned by two workers: the child runs once, after the last one."""
    clock = VirtualClock()
    runs: list[str] = []
    first, second, client = engines(pg_dsn, clock, runs, ("worker", "worker", "client"))
    async with first, second, client:
        keys = keys_on_distinct_shards(3)
        parents: list[Job | str] = [
            await client.schedule("step", args=(key,), key=key, delay=delay)
            for key, delay in zip(keys, (1.0, 2.0, 3.0), strict=True)
        ]
        child = await client.schedule("step", args=("child",), after=parents)
        assert await admin.fetchval("SELECT count(*) FROM cw_after WHERE child = $1", child.id) == 3
        for done in range(1, 3):
            await settle(clock, first, second, client, seconds=1.0)  # one more parent is due
            await until(functools.partial(_settled_all, clock, (first, second, client), runs, done))
            assert runs == keys[:done]
            assert await state_of(admin, child.id) == 5

            async def edges_left(done: int = done) -> bool:  # a parent's edge goes with its ack's flush, after its run
                return bool(
                    await admin.fetchval("SELECT count(*) FROM cw_after WHERE child = $1", child.id) == 3 - done
                )

            await until(edges_left)
        await settle(clock, first, second, client, seconds=1.0)
        await until(lambda: _settled_all(clock, (first, second, client), runs, 4))
        assert runs == [*keys, "child"]
        assert await client.result(child, timeout=10.0) == "child"


async def _settled_all(
    clock: VirtualClock, all_engines: tuple[Engine, ...], runs: list[str], count: int, seconds: float = 0.0
) -> bool:
    if len(runs) < count:
        await settle(clock, *all_engines, seconds=seconds)
    return len(runs) >= count


# -- parents that fail, are cancelled, or already ended ------------------------------------------------------

ENDS = {
    # how the parent ends -> what the child's result() raises, and its reason
    "dead": (JobCancelled, r"parent job \w+ of task 'boom' ended dead"),
    "cancelled-locally": (JobCancelled, r"parent job \w+ of task 'step' ended cancelled"),
    "cancelled-cluster-wide": (JobCancelled, r"parent job \w+ of task 'step' ended cancelled"),
}


@pytest.mark.parametrize("end", list(ENDS))
async def test_a_parent_that_ends_dead_or_cancelled_cancels_the_chain_below_it(
    pg_dsn: str, admin: asyncpg.Connection, end: str
) -> None:
    """Child and grandchild are cancelled (kept as their outcome), on any engine; nothing of them is left.

    The engine whose write ended the parent reports each cancel once: its
    ``"cancelled"`` hooks and its count.
    """
    clock = VirtualClock()
    runs: list[str] = []
    worker, client = engines(pg_dsn, clock, runs, ("worker", "client"))
    error, reason = ENDS[end]
    reported: list[tuple[str, str, str]] = []  # (engine, job id, the job's error)

    def report(role: str, job: Job) -> None:
        reported.append((role, job.id, str(job.error)))

    for role, engine in (("worker", worker), ("client", client)):
        engine.on("cancelled", functools.partial(report, role))
    async with worker, client:
        parent = await client.schedule("boom" if end == "dead" else "step", args=("p",), key="p", delay=5.0)
        child = await client.schedule("step", args=("child",), after=parent)
        grandchild = await client.schedule("step", args=("grandchild",), after=[child, parent])
        await until(lambda: worker.get("p") is not None)  # its owner heard of it
        if end == "cancelled-locally":
            assert worker.cancel("p")
        elif end == "cancelled-cluster-wide":
            assert client.cluster is not None
            assert await client.cluster.cancel("p")
        await settle(clock, worker, client, seconds=5.0)
        await until(lambda: admin.fetchval("SELECT count(*) = 0 FROM cw_job WHERE state <> 3"))  # a dead parent stays
        assert await admin.fetchval("SELECT count(*) FROM cw_after") == 0
        reporter = "client" if end == "cancelled-cluster-wide" else "worker"
        expected = {child.id, grandchild.id} | (set() if end == "dead" else {parent.id})
        await until(lambda: len(reported) >= len(expected))
        assert sorted((role, job_id) for role, job_id, _ in reported) == sorted((reporter, i) for i in expected)
        errors = {job_id: text for _, job_id, text in reported}
        assert re.search(reason, errors[child.id])
        assert re.search(rf"parent job ({child.id}|{parent.id}) of task", errors[grandchild.id])
        assert {"worker": worker.stats()["cancelled"], "client": client.stats()["cancelled"]} == {
            role: len(expected) if role == reporter else 0 for role in ("worker", "client")
        }
        for engine in (worker, client):
            with pytest.raises(error, match=reason):
                await engine.result(child, timeout=10.0)
            with pytest.raises(JobCancelled, match=rf"parent job {child.id} of task 'step' ended cancelled|{reason}"):
                await engine.result(grandchild, timeout=10.0)
        if end == "dead":
            with pytest.raises(JobFailed):
                await client.result(parent)
    assert runs == (["p"] if end == "dead" else [])


@pytest.mark.parametrize(
    ("parent_end", "expected"),
    [
        ("succeeded", None),
        ("dead", r"already ended dead; a job after it could never run"),
        ("cancelled", r"already ended cancelled; a job after it could never run"),
        ("unknown", r"no job 0+ in the cluster \(unknown, or finished more than result_ttl ago\)"),
        ("recurring", r"is recurring; a job can only follow one-shot jobs"),
    ],
)
async def test_a_parent_already_ended_counts_as_done_or_refuses_the_child(
    pg_dsn: str, admin: asyncpg.Connection, parent_end: str, expected: str | None
) -> None:
    """As in one engine: a succeeded parent (outcome kept) is done; dead, cancelled, unknown, recurring: ValueError."""
    from chronowheel import Every

    clock = VirtualClock()
    runs: list[str] = []
    worker, client = engines(pg_dsn, clock, runs, ("worker", "client"))
    async with worker, client:
        if parent_end == "unknown":
            parent_id = "0" * 32
        elif parent_end == "recurring":
            series = await worker.schedule("step", args=("s",), every=Every(seconds=60.0), delay=30.0)
            parent_id = series.id
        else:
            parent = await worker.schedule("boom" if parent_end == "dead" else "step", args=("p",), delay=1.0, key="p")
            parent_id = parent.id
            if parent_end == "cancelled":
                assert worker.cancel(parent)
            await settle(clock, worker, client, seconds=1.0)
            await until(lambda: admin.fetchval("SELECT count(*) = 0 FROM cw_job WHERE state <> 3"))
        if expected is None:
            child = await client.schedule("step", args=("child",), after=parent_id)
            assert await admin.fetchval("SELECT count(*) FROM cw_after") == 0  # nothing to wait for: due at once
            await until(lambda: _settled_all(clock, (worker, client), runs, 2))
            assert runs == ["p", "child"]
            assert await client.result(child, timeout=10.0) == "child"
        else:
            with pytest.raises(ValueError, match=expected):
                await client.schedule("step", args=("child",), after=parent_id)
            assert await admin.fetchval("SELECT count(*) FROM cw_job WHERE record LIKE '%child%'") == 0


async def test_a_child_with_its_own_delay_waits_for_it_after_its_parent(pg_dsn: str, admin: asyncpg.Connection) -> None:
    """Released at 1 s, its delay of 10 s runs from when it was scheduled: it fires at 10 s, not at 1 s or 11 s."""
    clock = VirtualClock()
    runs: list[str] = []
    (worker,) = engines(pg_dsn, clock, runs, ("worker",))
    async with worker:
        parent = await worker.schedule("step", args=("p",), delay=1.0)
        child = await worker.schedule("step", args=("child",), after=parent, delay=10.0)
        await until(lambda: _settled_all(clock, (worker,), runs, 1, seconds=1.0))
        await until(lambda: _released(admin, child.id))
        await settle(clock, worker, seconds=8.0)
        await settle(clock, worker)
        assert runs == ["p"]
        await settle(clock, worker, seconds=1.0)
        await until(lambda: _settled_all(clock, (worker,), runs, 2))
        assert runs == ["p", "child"]


async def _released(admin: asyncpg.Connection, job_id: str) -> bool:
    return bool(await admin.fetchval("SELECT state = 0 FROM cw_job WHERE id = $1", job_id))


async def test_the_after_schema_upgrades_from_the_previous_version(
    pg_dsn: str, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at the version before ``after=`` keeps its jobs across the upgrade, and gains ``cw_after`` and
    ``waited``."""
    clock = VirtualClock()
    job = await scheduled_at_version(pg_dsn, clock, monkeypatch, 3)
    assert await admin.fetchval("SELECT to_regclass('cw_after')") is None
    new = cluster_engine(pg_dsn, clock, role="client")
    new.task(name="job")(print)
    async with new:
        child = await new.schedule("job", after=job)  # the old row is a parent like any other
        assert await admin.fetchval("SELECT waited FROM cw_job WHERE id = $1", job.id) is True
        assert await state_of(admin, child.id) == 5
    assert await admin.fetchval("SELECT max(version) FROM cw_version") == schema.VERSION


# -- the other ends of a parent, and what a held child is ----------------------------------------------------


async def test_the_transactional_ack_of_a_parent_releases_its_child(pg_dsn: str, admin: asyncpg.Connection) -> None:
    """``engine.cluster.transaction(job)``: the child waits again in the transaction that commits the task's ack."""
    clock = VirtualClock()
    runs: list[str] = []
    (worker,) = engines(pg_dsn, clock, runs, ("worker",))
    released: list[int | None] = []

    @worker.task(name="acks")
    async def acks() -> None:
        assert worker.cluster is not None
        job = next(job for _, job in worker._registry.pools["default"].running_jobs())
        async with worker.cluster.transaction(job):
            pass
        released.append(await state_of(admin, child.id))  # committed: before the engine's own flush

    async with worker:
        parent = await worker.schedule("acks", delay=1.0)
        child = await worker.schedule("step", args=("child",), after=parent)
        await settle(clock, worker, seconds=1.0)
        await until(lambda: _settled_all(clock, (worker,), runs, 1))
        assert released != [5]  # no longer waiting (0; or 1, even gone: claimed, or run, by now)
        assert len(released) == 1
        assert runs == ["child"]


async def test_two_parents_ending_at_once_on_two_connections_release_the_child(
    pg_dsn: str, admin: asyncpg.Connection
) -> None:
    """Each strikes off its own edge, then waits for the child's lock: the second sees the first's commit."""
    import asyncio

    from chronowheel._cluster import dependencies

    clock = VirtualClock()
    (client,) = engines(pg_dsn, clock, [], ("client",))
    async with client:
        parents = [await client.schedule("step", args=(name,), delay=60.0) for name in ("p1", "p2")]
        child = await client.schedule("step", args=("child",), after=list[Job | str](parents))
    first, second = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        assert await dependencies.follow(first, {parents[0].id: "succeeded"}, None) == ([], [])  # p2 is still there
        blocked = asyncio.create_task(dependencies.follow(second, {parents[1].id: "succeeded"}, None))
        await until(lambda: admin.fetchval("SELECT count(*) > 0 FROM pg_locks WHERE NOT granted"))
        assert not blocked.done()
        await one.commit()
        notes, cancelled = await blocked
        await two.commit()
    finally:
        await first.close()
        await second.close()
    assert (notes, cancelled) == ([f"n{shard_of(child.id, SHARDS)}/{child.id}"], [])
    assert await state_of(admin, child.id) == 0
    assert await admin.fetchval("SELECT count(*) FROM cw_after") == 0


async def test_a_held_child_is_only_in_the_database(pg_dsn: str, admin: asyncpg.Connection) -> None:
    """No engine keeps a copy of a child waiting for its parents: the cluster-wide calls find, move and cancel it,
    and its cancellation cancels its own children; its edges go with its parent's end."""
    clock = VirtualClock()
    runs: list[str] = []
    (worker,) = engines(pg_dsn, clock, runs, ("worker",))
    async with worker:
        assert worker.cluster is not None
        parent = await worker.schedule("step", args=("p",), delay=60.0)
        child = await worker.schedule("step", args=("child",), after=parent, key="child")
        grandchild = await worker.schedule("step", args=("grandchild",), after=child)
        assert worker.get("child") is None
        assert worker.pause("child") is False
        assert worker.cancel("child") is False
        assert (await worker.cluster.get("child")) is not None
        assert await worker.cluster.reschedule("child", delay=30.0) is True
        assert await admin.fetchval("SELECT due FROM cw_job WHERE id = $1", child.id) == pytest.approx(
            clock.wall() + 30.0
        )
        assert await state_of(admin, child.id) == 5  # moved, still waiting for its parent
        assert await worker.cluster.cancel("child") is True
        with pytest.raises(JobCancelled, match=rf"parent job {child.id} of task 'step' ended cancelled"):
            await worker.result(grandchild, timeout=10.0)
        assert await admin.fetchval("SELECT array_agg(id) FROM cw_job") == [parent.id]
        # The cancelled child's edge to its parent stays (it names no row) until the parent ends.
        assert await admin.fetchval("SELECT array_agg(child) FROM cw_after") == [child.id]
        await settle(clock, worker, seconds=60.0)
        await until(lambda: _settled_all(clock, (worker,), runs, 1))
        await until(lambda: admin.fetchval("SELECT count(*) = 0 FROM cw_after"))
    assert runs == ["p"]


@pytest.mark.parametrize("replacer", ["its-owner", "another-engine"])
async def test_a_parent_replaced_under_its_key_cancels_its_children(
    pg_dsn: str, admin: asyncpg.Connection, replacer: str
) -> None:
    """``schedule(..., key=, if_exists="replace")`` ends the job it takes the key of, on any engine: its children are
    cancelled for it (the replace on another engine gives the row the new job's id, and must not leave them waiting).
    The replacer reports the replaced job and its child (hooks, counts), and both keep their cancelled outcome.
    """
    clock = VirtualClock()
    runs: list[str] = []
    worker, client = engines(pg_dsn, clock, runs, ("worker", "client"))
    reported: list[tuple[Engine, str]] = []
    for engine in (worker, client):
        engine.on("cancelled", functools.partial(lambda engine, job: reported.append((engine, job.id)), engine))
    async with worker, client:
        parent = await client.schedule("step", args=("old",), key="p", delay=60.0)
        child = await client.schedule("step", args=("child",), after=parent)
        await until(lambda: worker.get("p") is not None)  # its owner holds it
        replacing = worker if replacer == "its-owner" else client
        new = await replacing.schedule("step", args=("new",), key="p", delay=5.0, if_exists="replace")
        assert new.id != parent.id
        for engine in (worker, client):
            with pytest.raises(JobCancelled, match=rf"parent job {parent.id} of task 'step' ended cancelled"):
                await engine.result(child, timeout=10.0)
        assert await admin.fetchval("SELECT count(*) FROM cw_after") == 0
        assert await admin.fetchval("SELECT array_agg(id) FROM cw_job") == [new.id]
        await until(lambda: any(job_id == child.id for _, job_id in reported))
        assert [engine for engine, job_id in reported if job_id == child.id] == [replacing]  # once, by the replacer
        assert [engine for engine, job_id in reported if job_id == parent.id] == [replacing]  # the replaced, too
        for engine in (worker, client):
            with pytest.raises(JobCancelled, match=rf"replaced by job {new.id} \(if_exists='replace'\)"):
                await engine.result(parent, timeout=10.0)
        assert replacing.stats()["cancelled"] == 2
        await settle(clock, worker, client, seconds=5.0)
        await until(lambda: _settled_all(clock, (worker, client), runs, 1))
        await settle(clock, worker, client, seconds=60.0)
    assert runs == ["new"]
