"""Results: ``await engine.result(job)`` and ``Engine(result_ttl=)``, in memory and with a journal, across restarts."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

import pytest

from chronowheel import ChronowheelError, Engine, EngineClosed, Job, JobCancelled, JobFailed, Retry, current_job
from chronowheel.testing import VirtualClock
from helpers import join_threads, journal_store, stopping

WALL = 1_767_225_600.0


class Lab:
    """Engines one after another, in memory or on one journal, with a task returning its argument."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else str(path / "timers.log")
        self.wall = WALL

    def engine(self, *, later: float = 0.0, **options: Any) -> tuple[Engine, VirtualClock]:
        self.wall += later
        clock = VirtualClock(wall=self.wall)
        engine = Engine(journal=self.path, clock=clock, **options)

        @engine.task(name="echo")
        async def echo(value: Any) -> Any:
            return value

        @engine.task(name="echo_sync")
        def echo_sync(value: Any) -> Any:
            return value

        @engine.task(name="broken", retry=Retry(2, backoff=1.0, jitter=False))
        async def broken() -> None:
            raise LookupError("no such user")

        @engine.task(name="flaky_echo", retry=Retry(2, backoff=1.0, jitter=False))
        async def flaky_echo(value: Any) -> Any:
            if current_job().attempt == 1:
                raise ConnectionError("refused")
            return value

        @engine.task(name="make_set")
        async def make_set() -> set[int]:
            return {1, 2}

        return engine, clock

    def finished(self, clock: VirtualClock) -> None:
        self.wall = clock.wall()


@pytest.fixture(params=["memory", "journal"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Lab:
    return Lab(tmp_path if request.param == "journal" else None)


VALUES = [None, 0, -7, 2.5, "ok", True, [1, "a", None], {"sent": 3, "to": ["a", "b"]}]


@pytest.mark.parametrize("value", VALUES, ids=[type(value).__name__ + str(i) for i, value in enumerate(VALUES)])
@pytest.mark.parametrize("task", ["echo", "echo_sync"])
async def test_result_waits_for_the_return_value(lab: Lab, task: str, value: Any) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule(task, args=(value,), delay=5)
        waiting = asyncio.ensure_future(engine.result(job))
        also = asyncio.ensure_future(engine.result(job.id))  # by id, and a second waiter
        await clock.advance(4.999)
        assert not waiting.done()
        await clock.advance(0.001)
        assert await waiting == value  # a sync task's thread hands its value back through the loop
        assert await also == value
        assert await engine.result(job) == value  # kept: asked again after the end


async def test_a_result_survives_a_restart_until_its_ttl_has_passed(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    engine, clock = lab.engine(result_ttl=600)
    async with engine:
        job = await engine.schedule("echo", args=({"n": [1, 2]},), delay=1)
        await clock.advance(1)
        assert await engine.result(job) == {"n": [1, 2]}
    lab.finished(clock)
    engine, clock = lab.engine(later=300, result_ttl=600)
    async with engine:
        assert await engine.result(job.id) == {"n": [1, 2]}
        (finished,) = engine.jobs(state="succeeded")
        assert (finished.id, finished.task) == (job.id, "echo")
        await clock.advance(301)
        with pytest.raises(KeyError, match="result_ttl"):
            await engine.result(job.id)
    lab.finished(clock)
    engine, clock = lab.engine(later=1, result_ttl=600)
    async with engine:
        with pytest.raises(KeyError):
            await engine.result(job.id)
        assert engine.jobs() == []


async def test_a_result_json_cannot_hold_is_kept_in_memory_and_said_lost_after_a_restart(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("make_set", delay=1)
        await clock.advance(1)
        assert await engine.result(job) == {1, 2}  # this process still has it
    lab.finished(clock)
    engine, clock = lab.engine(later=1)
    async with engine:
        with pytest.raises(
            KeyError, match=r"succeeded, but its return value was not kept: the value is \{1, 2\} \(set\)"
        ):
            await engine.result(job.id)


async def test_a_dead_job_raises_job_failed_naming_its_last_error(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("broken", delay=1)
        waiting = asyncio.ensure_future(engine.result(job))
        await clock.advance(2)
        with pytest.raises(JobFailed) as failed:
            await waiting
        assert isinstance(failed.value, ChronowheelError)
        assert failed.value.job is job
        assert (failed.value.error_type, failed.value.error_message) == ("LookupError", "no such user")
        assert "ended dead: LookupError: no such user" in str(failed.value)
    if lab.path is not None:
        lab.finished(clock)
        engine, clock = lab.engine(later=1)
        async with engine:
            with pytest.raises(JobFailed, match="LookupError: no such user"):
                await engine.result(job.id)
            (dead,) = engine.dead_letters()
            engine.discard(dead)
            with pytest.raises(KeyError):
                await engine.result(job.id)


async def test_a_cancelled_job_raises_job_cancelled_with_the_reason(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("echo", args=(1,), delay=10)
        waiting = asyncio.ensure_future(engine.result(job))
        await clock.advance(1)
        engine.cancel(job)
        with pytest.raises(JobCancelled, match="cancel\\(\\) was called") as cancelled:
            await waiting
        assert cancelled.value.job is job
        assert cancelled.value.reason == "cancel() was called"
        with pytest.raises(JobCancelled):
            await engine.result(job.id)
        assert engine.jobs(state="cancelled") == [job]
    if lab.path is not None:
        lab.finished(clock)
        engine, clock = lab.engine(later=1)
        async with engine:
            with pytest.raises(JobCancelled, match="cancel\\(\\) was called"):
                await engine.result(job.id)


async def test_result_times_out_on_the_engine_clock(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("echo", args=(1,), delay=10)
        waiting = asyncio.ensure_future(engine.result(job, timeout=3))
        await clock.advance(2.999)
        assert not waiting.done()
        await clock.advance(0.002)
        with pytest.raises(TimeoutError, match=f"job {job.id} did not end within 3s"):
            await waiting
        await clock.advance(10)
        assert await engine.result(job, timeout=0) == 1


async def test_with_result_ttl_zero_nothing_is_kept_but_waiters_get_the_value(lab: Lab) -> None:
    engine, clock = lab.engine(result_ttl=0)
    async with engine:
        job = await engine.schedule("echo", args=("x",), delay=1)
        waiting = asyncio.ensure_future(engine.result(job))
        await clock.advance(1)
        assert await waiting == "x"
        with pytest.raises(KeyError, match=r"result_ttl \(0s\)"):
            await engine.result(job)
        assert engine.jobs() == []


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda engine: engine.result(3), TypeError, "job_or_id must be a Job or a job id \\(str\\), got int"),
        (lambda engine: engine.result("x", timeout=-1), ValueError, "timeout must be a number of seconds"),
        (lambda engine: engine.result("x", timeout="1"), TypeError, "timeout must be a number of seconds, got str"),
        (lambda engine: engine.result("nope"), KeyError, "job nope: no such job"),
    ],
    ids=["job-type", "timeout-negative", "timeout-type", "unknown"],
)
async def test_result_arguments_are_checked(call: Any, error: type[Exception], message: str) -> None:
    engine = Engine(clock=VirtualClock())
    async with engine:
        with pytest.raises(error, match=message):
            await call(engine)


@pytest.mark.parametrize(
    ("ttl", "error", "message"),
    [
        (-1, ValueError, "result_ttl must be a number of seconds from 0"),
        ("1", TypeError, "result_ttl must be a number"),
    ],
    ids=["negative", "type"],
)
def test_result_ttl_is_checked(ttl: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Engine(result_ttl=ttl)


async def test_inspect_counts_kept_outcomes_apart_from_the_live_set(tmp_path: Path) -> None:
    from chronowheel._inspect import inspect_journal, live_summary

    lab = Lab(tmp_path)
    engine, clock = lab.engine()
    async with engine:
        await engine.schedule("echo", args=(1,), delay=1)
        cancelled = await engine.schedule("echo", args=(2,), delay=5)
        await engine.schedule("echo", args=(3,), delay=50)
        engine.cancel(cancelled)
        await clock.advance(1)
    assert lab.path is not None
    summary = live_summary(inspect_journal(lab.path).live)
    assert (summary["count"], summary["outcomes"]) == (1, 2)
    assert summary["by_state"] == {"pending": 1}


async def test_kept_outcomes_survive_a_compaction_and_expired_ones_leave_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chronowheel._journal.store import JournalStore
    from chronowheel._journal.writer import JournalFile

    monkeypatch.setattr(JournalStore, "compact_min", 8)
    monkeypatch.setattr(JournalStore, "compact_factor", 1.0)
    lab = Lab(tmp_path)
    engine, clock = lab.engine(result_ttl=100)
    async with engine:
        early = [await engine.schedule("echo", args=(n,), delay=1) for n in range(10)]
        await clock.advance(150)  # the first ten expire
        late = [await engine.schedule("echo", args=(n,), delay=1) for n in range(10, 40)]
        await clock.advance(1)
        compaction = journal_store(engine).compaction
        if compaction is not None:
            await compaction
    assert lab.path is not None
    snapshot = [record.payload for record in JournalFile(lab.path + ".snapshot").records()]
    kept = {record["id"] for record in snapshot if record["t"] == "done"}
    assert kept  # a compaction ran with outcomes kept, and wrote them
    assert not kept & {job.id for job in early}
    lab.finished(clock)
    engine, clock = lab.engine(later=10, result_ttl=100)
    async with engine:
        assert [await engine.result(job.id) for job in late] == list(range(10, 40))
        for job in early:
            with pytest.raises(KeyError):
                await engine.result(job.id)


@pytest.mark.parametrize("restart", [False, True], ids=["no-restart", "restart-between-attempts"])
@pytest.mark.parametrize("succeeds_at", [2, 3])
async def test_result_of_a_job_retried_until_it_succeeds_is_its_last_value(
    tmp_path: Path, succeeds_at: int, restart: bool
) -> None:
    """A failed attempt does not settle ``result()``: the waiter gets the value of the attempt that succeeded."""
    path = str(tmp_path / "timers.log") if restart else None
    clock = VirtualClock(wall=WALL)

    def make(clock: VirtualClock) -> Engine:
        engine = Engine(journal=path, clock=clock)

        @engine.task(name="flaky", retry=Retry(3, backoff=10.0, jitter=False))
        async def flaky() -> str:
            attempt = current_job().attempt
            if attempt < succeeds_at:
                raise ConnectionError(f"attempt {attempt} refused")
            return f"sent at attempt {attempt}"

        return engine

    engine = make(clock)
    async with stopping(engine):
        job = await engine.schedule("flaky", delay=1)
        waiting = asyncio.ensure_future(engine.result(job))
        await clock.advance(1)
        assert job.state == "failed"
        assert not waiting.done()
        if not restart:
            await clock.advance(100)
            assert await waiting == f"sent at attempt {succeeds_at}"
    if restart:
        with pytest.raises(EngineClosed, match=f"job {job.id}: the engine stopped before it ended; it runs again"):
            await waiting  # the engine it waited on stopped
        with pytest.raises(EngineClosed, match=f"job {job.id}: the engine is stopped"):
            await engine.result(job)
        clock = VirtualClock(wall=WALL + 2)
        engine = make(clock)
        async with stopping(engine):
            waiting = asyncio.ensure_future(engine.result(job.id))
            await clock.advance(100)
            assert await waiting == f"sent at attempt {succeeds_at}"
    assert await engine.result(job.id) == f"sent at attempt {succeeds_at}"


async def test_a_waiter_is_told_when_the_engine_stops_before_its_job_ended(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with stopping(engine):
        job = await engine.schedule("echo", args=(1,), delay=10)
        waiting = asyncio.ensure_future(engine.result(job))
        await clock.advance(1)
    later = "; it runs again at the next start" if lab.path is not None else ""
    with pytest.raises(EngineClosed, match=f"^job {job.id}: the engine stopped before it ended{later}$"):
        await waiting
    with pytest.raises(EngineClosed, match=f"^job {job.id}: the engine is stopped; the job did not end in it$"):
        await engine.result(job.id)


# -- a finished job keeps its outcome, not its Job ------------------------------------------------


def one_worker(engine: Engine) -> None:
    """Tasks in a pool of one worker: its next job makes the worker forget the last one (its context, its locals)."""
    engine.add_pool("solo", concurrency=1)

    @engine.task(name="keep", pool="solo")
    async def keep(value: Any, *, note: str = "") -> Any:
        return value

    @engine.task(name="keep_sync", pool="solo")
    def keep_sync(value: Any, *, note: str = "") -> Any:
        return value


@pytest.mark.parametrize("task", ["keep", "keep_sync"])
async def test_a_succeeded_jobs_job_is_released_while_its_outcome_answers(lab: Lab, task: str) -> None:
    """The engine lets a succeeded Job go: result(), jobs() and get() answer from its outcome; restarted too."""
    engine, clock = lab.engine()
    one_worker(engine)
    async with engine:
        job = await engine.schedule(task, args=({"n": [1]},), kwargs={"note": "x"}, delay=1, key="report:1")
        await clock.advance(1)
        await join_threads(clock, job)
        released = weakref.ref(job)
        job_id, deadline = job.id, job.deadline
        del job
        await engine.schedule("keep", args=("next",), delay=0)  # the worker's next job
        await clock.advance(0)
        gc.collect()
        assert released() is None
        assert await engine.result(job_id) == {"n": [1]}
        assert engine.get("report:1") is None
        (shown,) = engine.jobs(key_prefix="report:")
        seen = (shown.id, shown.task, shown.key, shown.args, shown.kwargs, shown.attempt, shown.state)
        assert seen == (job_id, task, "report:1", ({"n": [1]},), {"note": "x"}, 1, "succeeded")
        assert (shown.deadline, shown.error, shown.traceback, shown.recurrence) == (deadline, None, None, None)
    if lab.path is not None:
        lab.finished(clock)
        engine, clock = lab.engine(later=1)
        one_worker(engine)
        async with engine:
            assert await engine.result(job_id) == {"n": [1]}
            assert engine.get("report:1") is None
            (shown,) = engine.jobs(key_prefix="report:")
            assert (shown.id, shown.task, shown.key, shown.deadline) == (job_id, task, "report:1", deadline)
            assert shown.state == "succeeded"


ENDS = ["succeeded", "retried", "cancelled"]


async def ending(engine: Engine, clock: VirtualClock, end: str) -> Job:
    """A job that ends as ``end`` says (one of ``ENDS``, or ``"dead"``), or is still ``"pending"``."""
    if end == "pending":
        return await engine.schedule("echo", args=(7,), delay=60)
    if end == "dead":
        job = await engine.schedule("broken", delay=1)
        await clock.advance(5)
    elif end == "cancelled":
        job = await engine.schedule("echo", args=(7,), delay=10)
        engine.cancel(job)
    else:
        job = await engine.schedule("flaky_echo" if end == "retried" else "echo", args=(7,), delay=1)
        await clock.advance(3)
    return job


async def finish(engine: Engine, clock: VirtualClock, end: str) -> str:
    """:func:`ending`'s job's id (the test keeps no reference to the Job)."""
    return (await ending(engine, clock, end)).id


@pytest.mark.parametrize("where", ["memory", "journal", "journal-restart"])
@pytest.mark.parametrize("end", ENDS)
async def test_a_finished_job_in_jobs_is_one_object_while_held_and_the_engine_answers_for_it(
    tmp_path: Path, end: str, where: str
) -> None:
    """The Job jobs() shows for a finished job: the same object on every page while held; cancel(), reschedule()
    and pause() say False for it, result() answers, and a succeeded one is a parent ``after=`` takes."""
    lab = Lab(None if where == "memory" else tmp_path)
    restart = where == "journal-restart"
    engine, clock = lab.engine()
    await engine.start()
    job_id = await finish(engine, clock, end)
    if restart:
        await engine.stop()
        lab.finished(clock)
        engine, clock = lab.engine(later=1)
        await engine.start()
    try:
        state = "cancelled" if end == "cancelled" else "succeeded"
        listed = engine.jobs(state=state)
        assert [job.id for job in listed] == [job_id]
        (again,) = engine.jobs()
        assert again is listed[0]  # held: the same object, not a copy per call
        (shown,) = listed
        attempts = 0 if restart else {"succeeded": 1, "retried": 2, "cancelled": 0}[end]  # a done record keeps none
        assert (shown.attempt, shown.state) == (attempts, state)
        assert engine.cancel(shown) is False
        assert engine.reschedule(shown, delay=5) is False
        assert engine.pause(shown) is False
        if end == "cancelled":
            assert isinstance(shown.error, JobCancelled)
            with pytest.raises(JobCancelled, match="cancel\\(\\) was called"):
                await engine.result(shown)
        else:
            assert await engine.result(shown) == 7
            child = await engine.schedule("echo", args=("child",), after=shown)
            await clock.advance(0)
            assert await engine.result(child) == "child"
    finally:
        await engine.stop(grace=0)


@pytest.mark.parametrize("where", ["memory", "journal", "journal-restart"])
@pytest.mark.parametrize("end", ["pending", *ENDS, "dead"])
async def test_the_job_a_caller_holds_equals_what_jobs_shows_of_it(tmp_path: Path, end: str, where: str) -> None:
    """Jobs are equal when they are the same job, by id: ``job in engine.jobs()`` holds for the job schedule()
    returned, whatever object a page shows for it (a succeeded one's is rebuilt from its outcome, a restarted
    engine's are its own), and a job equals no other job and not its id."""
    lab = Lab(None if where == "memory" else tmp_path)
    engine, clock = lab.engine()
    await engine.start()
    other = await engine.schedule("echo", args=(0,), delay=50)
    job = await ending(engine, clock, end)
    if where == "journal-restart":
        await engine.stop()
        lab.finished(clock)
        engine, clock = lab.engine(later=1)
        await engine.start()
    try:
        listed = engine.jobs()
        assert job in listed
        assert other in listed
        (shown,) = [each for each in listed if each.id == job.id]
        assert shown == job
        assert hash(shown) == hash(job)
        assert not shown != job  # noqa: SIM202 (__ne__ is what it tests)
        assert job != other
        assert shown != other
        assert job != job.id  # a job is not its id
        assert job.id not in listed
        assert len({job, shown, other}) == 2
    finally:
        await engine.stop(grace=0)


ATOMS = [None, 0, -7, 2.5, "ok", True]


@pytest.mark.parametrize("value", ATOMS, ids=[type(value).__name__ + str(i) for i, value in enumerate(ATOMS)])
async def test_a_kept_success_of_plain_values_is_left_alone_by_the_collector(lab: Lab, value: Any) -> None:
    """A success keeps a tuple the collector untracks at its first collection: it costs later collections nothing."""
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("echo", args=(value,), delay=1, key="plain")
        await clock.advance(1)
        gc.collect()
        kept = engine._results.kept(job.id)
        assert kept is not None
        assert not gc.is_tracked(kept.record)
        assert await engine.result(job) == value


async def kept_per_job(lab: Lab, **options: Any) -> float:
    """Bytes still allocated per job once 500 jobs finished (and the journal wrote their records, and the next)."""
    engine, clock = lab.engine(**options)
    async with engine:
        await clock.advance(0)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(500):
                engine.schedule_nowait("echo", args=(n,), delay=1)
            await clock.advance(1)
            await engine.flush()
            await engine.schedule("echo", args=(-1,), delay=1000)  # a new batch: the writer drops the last
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - before) / 500
        finally:
            tracemalloc.stop()
            lab.finished(clock)


async def test_a_journal_keeps_each_done_record_in_a_block_of_its_own_size(tmp_path: Path) -> None:
    """A kept outcome costs a journaled engine a few hundred bytes: orjson's bytes carry a 4 KiB buffer, which the
    journal kept per finished job with its done record (for snapshots) until it copied the record out."""
    kept = await kept_per_job(Lab(tmp_path / "kept"))
    none = await kept_per_job(Lab(tmp_path / "none"), result_ttl=0)
    assert kept - none < 2048, (kept, none)  # about 1,200 at 500 jobs (their indexes' growth is most of it)


@pytest.mark.parametrize("count", [1, 50, 1500], ids=["one", "a-batch", "over-a-batch"])
async def test_of_a_batch_of_finished_jobs_only_a_workers_last_stays_referenced(lab: Lab, count: int) -> None:
    """The driver keeps none of the jobs it handed out while it sleeps; a worker, the last one it ran (its context)."""
    engine, clock = lab.engine()
    one_worker(engine)
    async with engine:
        jobs = [engine.schedule_nowait("keep", args=(n,), delay=1) for n in range(count)]
        ids = [job.id for job in jobs]
        released = [weakref.ref(job) for job in jobs]
        del jobs
        await clock.advance(1)
        gc.collect()
        assert [ref() for ref in released if ref() is not None] == [released[-1]()]
        assert [await engine.result(job_id) for job_id in ids] == list(range(count))
