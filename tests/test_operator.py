"""The operator's surface: queries (``jobs()``, ``get()``), pause and resume, discarding dead letters.

Each behaviour runs in memory and with a journal (the ``lab`` fixture), on
both loops, on a virtual clock; the durable parts also across a restart.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel import Cron, Engine, Every, Job, RecordedError, Retry
from chronowheel.testing import VirtualClock
from helpers import stopping

WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Lab:
    """Engines one after another, in memory or on one journal, each with tasks that record their runs."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else str(path / "timers.log")
        self.ran: list[Any] = []
        self.wall = WALL

    @property
    def durable(self) -> bool:
        return self.path is not None

    def engine(self, *, later: float = 0.0, **options: Any) -> tuple[Engine, VirtualClock]:
        self.wall += later
        clock = VirtualClock(wall=self.wall)
        engine = Engine(journal=self.path, clock=clock, **options)
        ran = self.ran

        @engine.task(name="remind")
        async def remind(n: int) -> str:
            ran.append(n)
            return f"sent {n}"

        @engine.task(name="slow")
        async def slow(n: int) -> None:
            ran.append(("slow", n))
            await engine_sleep(engine, 100)

        @engine.task(name="broken", retry=Retry(2, backoff=10.0, jitter=False))
        async def broken(n: int) -> None:
            raise ValueError(f"no reminder {n}")

        return engine, clock

    def finished(self, clock: VirtualClock) -> None:
        self.wall = clock.wall()


async def engine_sleep(engine: Engine, seconds: float) -> None:
    import asyncio

    done = asyncio.Event()
    engine.call_later(seconds, done.set)
    await done.wait()


def state(job: Job) -> str:
    """The job's state now (a call, so that a type checker does not narrow it across awaits)."""
    return job.state


@pytest.fixture(params=["memory", "journal"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Lab:
    return Lab(tmp_path if request.param == "journal" else None)


# -- jobs() ----------------------------------------------------------------------------


async def test_jobs_sees_every_state_ordered_by_deadline(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        await engine.schedule("broken", args=(1,), delay=1)  # fails at 1, retry due at 11, dead at 11
        await engine.schedule("broken", args=(2,), delay=30)  # fails at 30: failed, its retry due at 40
        await engine.schedule("slow", args=(3,), delay=2)  # running from 2 on
        paused = await engine.schedule("remind", args=(4,), delay=50, key="user:4")
        await engine.schedule("remind", args=(5,), delay=60, key="user:5")
        assert engine.pause(paused)
        await clock.advance(31)
        states = [(job.args[0], job.state) for job in engine.jobs()]
        assert states == [(3, "running"), (1, "dead"), (2, "failed"), (4, "paused"), (5, "pending")]
        deadlines = [job.deadline for job in engine.jobs()]
        assert deadlines == sorted(deadlines)
        await engine.stop(grace=0)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [1, 2, 3, 4]),
        ({"state": "pending"}, [1, 2, 4]),
        ({"state": "paused"}, [3]),
        ({"state": "dead"}, []),
        ({"task": "remind"}, [1, 2, 3]),
        ({"task": "slow"}, [4]),
        ({"key_prefix": "user:"}, [1, 3]),
        ({"key_prefix": "user:1"}, [1]),
        ({"key_prefix": "user:", "state": "pending"}, [1]),
        ({"limit": 2}, [1, 2]),
    ],
    ids=["all", "pending", "paused", "dead", "task", "other-task", "prefix", "longer-prefix", "prefix-state", "limit"],
)
async def test_jobs_filters(lab: Lab, filters: dict[str, Any], expected: list[int]) -> None:
    engine, _ = lab.engine()
    async with engine:
        await engine.schedule("remind", args=(1,), delay=10, key="user:1")
        await engine.schedule("remind", args=(2,), delay=20, key="team:2")
        await engine.schedule("remind", args=(3,), delay=30, key="user:3")
        await engine.schedule("slow", args=(4,), delay=40)
        engine.pause("user:3")
        assert [job.args[0] for job in engine.jobs(**filters)] == expected
        await engine.stop(grace=0)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [1, 2, 4, 3, 5]),
        ({"state": "succeeded"}, [1, 2]),
        ({"state": "cancelled"}, [3]),
        ({"state": "dead"}, [4]),
        ({"state": "running"}, []),
        ({"task": "remind"}, [1, 2, 3, 5]),
        ({"task": "broken"}, [4]),
        ({"key_prefix": "user:"}, [1, 4, 3, 5]),
        ({"key_prefix": "user:", "state": "succeeded"}, [1]),
        ({"key_prefix": "team:", "task": "remind", "state": "succeeded"}, [2]),
    ],
    ids=[
        "all", "succeeded", "cancelled", "dead", "running", "task", "other-task", "prefix", "prefix-state",
        "every-filter",
    ],
)  # fmt: skip
async def test_jobs_filters_finished_jobs_on_their_outcomes(
    lab: Lab, filters: dict[str, Any], expected: list[int]
) -> None:
    """Succeeded and cancelled jobs (kept outcomes) are filtered and ordered among the others; pages go through them."""
    engine, clock = lab.engine()
    async with stopping(engine):
        await engine.schedule("remind", args=(1,), delay=1, key="user:1")
        await engine.schedule("remind", args=(2,), delay=2, key="team:2")
        cancelled = await engine.schedule("remind", args=(3,), delay=50, key="user:3")
        await engine.schedule("broken", args=(4,), delay=3, key="user:4")  # dead at 13, its retry's deadline
        await engine.schedule("remind", args=(5,), delay=100, key="user:5")
        assert engine.cancel(cancelled)
        await clock.advance(20)
        assert [job.args[0] for job in engine.jobs(**filters)] == expected
        paged: list[int] = []
        after = None
        while page := engine.jobs(**filters, limit=1, after=after):
            paged += [job.args[0] for job in page]
            after = page[-1]
        assert paged == expected


async def test_jobs_task_filter_takes_the_function_too(lab: Lab) -> None:
    engine, _ = lab.engine()

    @engine.task(name="other")
    async def other() -> None:
        pass

    async with engine:
        job = await engine.schedule(other, delay=5)
        await engine.schedule("remind", args=(1,), delay=1)
        assert engine.jobs(task=other) == [job]
        await engine.stop(grace=0)


async def test_jobs_sees_recently_finished_and_succeeded_jobs_leave_it_after_result_ttl(lab: Lab) -> None:
    engine, clock = lab.engine(result_ttl=60.0)
    async with engine:
        job = await engine.schedule("remind", args=(1,), delay=1)
        await clock.advance(1)
        assert [(found.id, found.state) for found in engine.jobs()] == [(job.id, "succeeded")]
        assert engine.jobs(state="succeeded") == engine.jobs()
        await clock.advance(60)
        assert engine.jobs() == []
        await engine.stop(grace=0)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"state": "done"}, ValueError, "state must be one of 'pending', "),
        ({"state": 1}, ValueError, "state must be one of"),
        ({"key_prefix": ""}, ValueError, "key_prefix must be a non-empty string, got ''"),
        ({"key_prefix": b"user"}, TypeError, "key_prefix must be a non-empty string, got bytes"),
        ({"limit": 0}, ValueError, "limit must be an int >= 1, got 0"),
        ({"limit": 10_001}, ValueError, "limit must be an int from 1 to 10000, got 10001"),
        ({"limit": 2.0}, TypeError, "limit must be an int >= 1, got float"),
        ({"limit": True}, TypeError, "limit must be an int >= 1, got bool"),
        ({"after": "abc"}, TypeError, "after must be a Job (the last of the previous page) or None, got str"),
        ({"task": "nope"}, LookupError, "no task registered as 'nope'"),
    ],
    ids=[
        *("state", "state-type", "prefix-empty", "prefix-type", "limit-0", "limit-big", "limit-float"),
        *("limit-bool", "after", "task"),
    ],
)
def test_jobs_arguments_are_checked(arguments: dict[str, Any], error: type[Exception], message: str) -> None:
    engine = Engine(clock=VirtualClock())

    @engine.task(name="remind")
    async def remind() -> None:
        pass

    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine.jobs(**arguments)


@st.composite
def paging_runs(draw: st.DrawFn) -> tuple[list[int], int, list[list[tuple[str, int]]]]:
    """Deadlines (with ties) of the jobs there at the start, a page size, and changes made after each page."""
    deadlines = draw(st.lists(st.integers(0, 20), min_size=0, max_size=30))
    limit = draw(st.integers(1, 7))
    change = st.tuples(st.sampled_from(["add", "cancel", "move"]), st.integers(0, 40))
    changes = draw(st.lists(st.lists(change, max_size=4), min_size=10, max_size=10))
    return deadlines, limit, changes


@settings(max_examples=150, deadline=None)
@given(paging_runs())
def test_pages_concatenated_are_the_ordered_list_without_duplicates_under_changes(
    run: tuple[list[int], int, list[list[tuple[str, int]]]],
) -> None:
    """Jobs there all along are each listed once, in order; added or cancelled ones at most once.

    A job moved past the cursor may show again at its new place (a cursor
    is a position, as in any keyset paging): only moved ones may repeat.
    """
    deadlines, limit, changes = run
    engine = Engine(clock=VirtualClock())

    @engine.task(name="t")
    async def t() -> None:
        pass

    jobs = [engine.schedule_nowait("t", delay=float(deadline)) for deadline in deadlines]
    changed: set[str] = set()
    moved: set[str] = set()
    seen: list[Job] = []
    after: Job | None = None
    rounds = iter(changes)
    while True:
        page = engine.jobs(limit=limit, after=after)
        assert len(page) <= limit
        seen += page
        if len(page) < limit:
            break
        after = page[-1]
        for kind, number in next(rounds, []):
            if kind == "add":
                changed.add(engine.schedule_nowait("t", delay=float(number % 21)).id)
            elif jobs:
                victim = jobs[number % len(jobs)]
                changed.add(victim.id)
                if kind == "cancel":
                    engine.cancel(victim)
                else:
                    moved.add(victim.id)
                    engine.reschedule(victim, delay=float(number % 21))
    ids = [job.id for job in seen if job.id not in moved]
    assert len(ids) == len(set(ids))
    stayed = sorted((job for job in jobs if job.id not in changed), key=lambda job: (job._due_wall, job.id))
    assert [job for job in seen if job.id not in changed] == stayed


async def test_get_finds_a_running_job_by_key_until_it_ends(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("slow", args=(1,), delay=1, key="report")
        assert engine.get("report") is job
        await clock.advance(1)
        assert state(job) == "running"
        assert engine.get("report") is job
        newer = await engine.schedule("remind", args=(2,), delay=500, key="report")  # the key is free
        assert engine.get("report") is newer
        engine.cancel(newer)
        assert engine.get("report") is job
        await clock.advance(100)
        assert state(job) == "succeeded"
        assert engine.get("report") is None
        await engine.stop(grace=0)


# -- pause and resume -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("resume_after", "fires_at"),
    [(5.0, 10.0), (10.0, 10.0), (25.0, 25.0)],
    ids=["before-deadline", "at-deadline", "after-deadline"],
)
async def test_a_paused_job_does_not_fire_and_resumes_at_its_deadline_or_at_once(
    lab: Lab, resume_after: float, fires_at: float
) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("remind", args=(1,), delay=10, key="k")
        assert engine.pause("k")
        assert job.state == "paused"
        assert engine.pause("k") is False  # already paused
        await clock.advance(resume_after)
        assert lab.ran == []
        assert engine.resume(job)
        assert engine.resume(job) is False
        if fires_at > resume_after:
            await clock.advance(fires_at - resume_after - 0.002)
            assert lab.ran == []
        await clock.advance(0.002)  # at its deadline, or at once if that has passed
        assert lab.ran == [1]
        await engine.stop(grace=0)


async def test_a_paused_job_keeps_its_key_and_can_be_cancelled_or_replaced(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("remind", args=(1,), delay=10, key="k")
        engine.pause(job)
        assert engine.get("k") is job
        kept = await engine.schedule("remind", args=(2,), delay=1, key="k", if_exists="keep")
        assert kept is job
        assert engine.cancel("k")
        assert job.state == "cancelled"
        assert engine.resume(job) is False
        await clock.advance(20)
        assert lab.ran == []
        await engine.stop(grace=0)


async def test_a_running_or_finished_job_cannot_be_paused(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("slow", args=(1,), delay=1)
        await clock.advance(1)
        assert job.state == "running"
        assert engine.pause(job) is False
        await clock.advance(100)
        assert engine.pause(job) is False
        assert engine.resume(job) is False
        await engine.stop(grace=0)


async def test_a_paused_retry_resumes_as_a_retry(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("broken", args=(1,), delay=1)
        await clock.advance(1)
        assert (job.state, job.attempt) == ("failed", 1)
        assert engine.pause(job)
        await clock.advance(30)
        assert state(job) == "paused"
        engine.resume(job)
        assert state(job) == "failed"
        await clock.advance(0.001)
        assert (job.state, job.attempt) == ("dead", 2)
        await engine.stop(grace=0)


@pytest.mark.parametrize(
    ("misfire", "runs_on_resume"),
    [("fire_once", 1), ("fire_all", 5), ("skip", 0)],
    ids=["fire_once", "fire_all", "skip"],
)
async def test_a_resumed_series_applies_its_misfire_policy_to_the_runs_it_missed(
    lab: Lab, misfire: str, runs_on_resume: int
) -> None:
    engine, clock = lab.engine()
    async with engine:
        series = await engine.schedule("remind", args=(1,), every=Every(10), misfire=misfire, misfire_grace=1)
        await clock.advance(10)
        assert lab.ran == [1]
        assert engine.pause(series)
        await clock.advance(55)  # runs due at 20, 30, 40, 50 and 60 missed
        assert lab.ran == [1]
        engine.resume(series)
        await clock.advance(0.001)
        assert len(lab.ran) == 1 + runs_on_resume
        await clock.advance(10)  # back on its grid: the run at 70
        assert len(lab.ran) == 2 + runs_on_resume
        await engine.stop(grace=0)


async def test_a_paused_job_stays_paused_across_a_restart(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    engine, clock = lab.engine()
    async with engine:
        await engine.schedule("remind", args=(1,), delay=10, key="one")
        await engine.schedule("remind", args=(2,), every=Every(10), key="series")
        engine.pause("one")
        engine.pause("series")
        await clock.advance(5)
    lab.finished(clock)
    engine, clock = lab.engine(later=60)
    async with engine:
        one, series = engine.get("one"), engine.get("series")
        assert one is not None
        assert series is not None
        assert (one.state, series.state) == ("paused", "paused")
        assert one.deadline == datetime.datetime.fromtimestamp(WALL + 10, datetime.UTC)
        await clock.advance(100)
        assert lab.ran == []
        engine.resume("one")
        engine.resume("series")
        await clock.advance(0.001)
        assert sorted(lab.ran) == [1, 2]  # overdue: at once; the series fires once (fire_once)
    lab.finished(clock)
    engine, clock = lab.engine(later=1)
    async with engine:
        assert engine.get("one") is None
        series = engine.get("series")
        assert series is not None
        assert series.state == "pending"


@pytest.mark.parametrize(
    ("resume_at", "misfire", "fires_at"),
    [
        (12.0, "fire_once", 23.0),  # while its run goes on: timed from the run's end, as if never paused
        (15.0, "fire_once", 23.0),  # before its next run: at that run's time, not at once
        (15.0, "skip", 23.0),
        (40.0, "fire_once", 40.0),  # past it: the misfire policy decides
        (40.0, "fire_all", 40.0),  # a fixed-delay series has only that one run to catch up
        (40.0, "skip", 50.0),
    ],
    ids=["during-run", "early", "early-skip", "late-fire_once", "late-fire_all", "late-skip"],
)
async def test_a_fixed_delay_series_paused_while_its_run_goes_on(
    lab: Lab, resume_at: float, misfire: str, fires_at: float
) -> None:
    """Every 10 s from each run's end; the run at 10 ends at 13 and is paused at 11: the run finishes, and the
    series stays paused with its next run at 23 (so the cluster store, whose owner files it at that run's end)."""
    engine, clock = lab.engine()
    runs: list[float] = []
    first_run_ends = asyncio.Event()

    @engine.task(name="work")
    async def work() -> None:
        runs.append(clock.time())
        if len(runs) == 1:
            await first_run_ends.wait()

    async with engine:
        series = await engine.schedule("work", every=Every(10, fixed="delay"), key="k", misfire=misfire)
        await clock.advance(11)
        assert series.state == "running"
        assert engine.pause("k")
        assert engine.pause("k") is False  # paused already
        if resume_at < 13:
            await clock.advance(resume_at - 11)
            assert engine.resume("k")
            assert series.state == "running"  # its run goes on
        await clock.advance(13 - clock.time())
        first_run_ends.set()
        await clock.settle()
        if resume_at > 13:
            assert (series.state, series.deadline) == (
                "paused",
                datetime.datetime.fromtimestamp(WALL + 23, datetime.UTC),
            )
            await clock.advance(resume_at - 13)
            assert runs == [10.0]
            assert engine.resume("k")
        await clock.advance(55 - clock.time())
        assert runs[:2] == [10.0, fires_at]
        await engine.stop(grace=0)


# -- dead letters -----------------------------------------------------------------------


async def test_discard_and_purge_dead_remove_dead_letters(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        for n, delay in enumerate((1, 2, 3, 4)):
            await engine.schedule("broken", args=(n,), delay=delay)
        await clock.advance(20)
        dead = engine.dead_letters()
        assert [job.args[0] for job in dead] == [0, 1, 2, 3]
        assert engine.discard(dead[0])
        assert engine.discard(dead[0]) is False
        cutoff = datetime.datetime.fromtimestamp(WALL + 13.5, datetime.UTC)  # the last attempts: 11, 12, 13, 14
        assert engine.purge_dead(before=cutoff) == 2
        assert engine.dead_letters() == [dead[3]]
        assert engine.jobs(state="dead") == [dead[3]]
        await engine.stop(grace=0)
    lab.finished(clock)
    if lab.durable:
        engine, clock = lab.engine(later=1)
        async with engine:
            assert [job.id for job in engine.dead_letters()] == [dead[3].id]
            assert engine.purge_dead() == 1
        engine, clock = lab.engine(later=1)
        async with engine:
            assert engine.dead_letters() == []


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda engine: engine.discard("job"), TypeError, "job must be a Job, got str"),
        (lambda engine: engine.purge_dead(before=0), TypeError, "before must be an aware datetime or None, got int"),
        (
            lambda engine: engine.purge_dead(before=datetime.datetime(2026, 1, 1)),
            ValueError,
            "before must be an aware datetime",
        ),
        (lambda engine: engine.pause(3), TypeError, "key_or_job must be a key \\(str\\) or a Job, got int"),
        (lambda engine: engine.resume(None), TypeError, "key_or_job must be a key \\(str\\) or a Job, got NoneType"),
    ],
    ids=["discard", "purge-type", "purge-naive", "pause", "resume"],
)
def test_control_arguments_are_checked(call: Any, error: type[Exception], message: str) -> None:
    engine = Engine(clock=VirtualClock())
    with pytest.raises(error, match=message):
        call(engine)


async def test_a_dead_job_keeps_its_error_type_message_and_traceback_across_a_restart(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    engine, clock = lab.engine()
    async with engine:
        await engine.schedule("broken", args=(7,), delay=1)
        await clock.advance(20)
        (dead,) = engine.dead_letters()
        assert isinstance(dead.error, ValueError)
    lab.finished(clock)
    engine, clock = lab.engine(later=1)
    async with engine:
        (dead,) = engine.dead_letters()
        assert isinstance(dead.error, RecordedError)
        assert (dead.error.type_name, dead.error.message) == ("ValueError", "no reminder 7")
        assert str(dead.error) == "no reminder 7"
        assert "ValueError: no reminder 7" in (dead.traceback or "")


async def test_a_paused_job_can_be_rescheduled_and_resumes_at_its_new_deadline(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        job = await engine.schedule("remind", args=(1,), delay=10, key="k")
        engine.pause(job)
        assert engine.reschedule("k", delay=40)
        assert job.state == "paused"
        await clock.advance(20)
        engine.resume(job)
        await clock.advance(19.998)
        assert lab.ran == []
        await clock.advance(0.003)
        assert lab.ran == [1]


# -- jobs() over every state, for one-shot and recurring jobs -------------------------------

KINDS: dict[str, dict[str, Any]] = {
    "one-shot": {},
    "interval": {"every": Every(60)},
    "cron": {"cron": Cron("*/5 * * * *")},
}
STATES = ("pending", "queued", "running", "failed", "dead", "paused", "succeeded", "cancelled")


async def blocked(engine: Engine) -> None:
    """Wait on the engine's clock longer than any test advances it: a job that holds its worker."""
    await engine_sleep(engine, 10_000)


def scenario_engine(path: str | None, clock: VirtualClock, **options: Any) -> Engine:
    """One worker (so a second due job waits in the queue), and a task per way of ending an attempt."""
    engine = Engine(journal=path, clock=clock, **options)
    engine.add_pool("solo", concurrency=1)

    @engine.task(name="hold", pool="solo")
    async def hold() -> None:
        await blocked(engine)

    @engine.task(name="work", pool="solo", retry=Retry(2, backoff=200.0, jitter=False))
    async def work(mode: str) -> str:
        if mode == "block":
            await blocked(engine)
        if mode in ("retry", "die"):
            raise ValueError(mode)
        return "done"

    @engine.task(name="once", pool="solo")
    async def once(mode: str) -> str:
        raise ValueError(mode)

    return engine


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("wanted", STATES)
async def test_jobs_sees_every_state_of_one_shot_and_recurring_jobs(lab: Lab, kind: str, wanted: str) -> None:
    """The job (or the series' run) in each state is listed, by ``state=`` too; a queued run among them."""
    clock = VirtualClock(wall=WALL)
    engine = scenario_engine(lab.path, clock)
    mode = {"running": "block", "failed": "retry", "dead": "die"}.get(wanted, "ok")
    task = "once" if wanted == "dead" else "work"
    async with stopping(engine):
        if wanted == "queued":
            await engine.schedule("hold", delay=0)  # takes the only worker
        first = await engine.schedule(task, args=(mode,), delay=300, **KINDS[kind])
        if wanted == "paused":
            assert engine.pause(first)
        if wanted == "cancelled":
            assert engine.cancel(first)
        if wanted not in ("pending", "paused", "cancelled"):
            await clock.advance(300)
        listed = engine.jobs(limit=1000)
        shown = "pending" if wanted == "queued" else wanted  # a queued job has fired, and waits for a worker
        ours = [job for job in listed if job.task == task and job.state == shown]
        if kind != "one-shot" and wanted not in ("pending", "paused", "cancelled"):
            ours = [job for job in ours if job is not first]  # the series' run, not the series
        assert len(ours) == 1, [(job.id, job.task, job.state) for job in listed]
        (job,) = ours
        assert job.args == (mode,)
        assert job in engine.jobs(state=job.state, task=task)
        assert [found.id for found in listed].count(job.id) == 1
        if kind != "one-shot" and wanted != "cancelled":
            assert first in listed  # the series itself, waiting for its next run


async def test_jobs_sees_parked_one_shot_and_recurring_jobs(tmp_path: Path) -> None:
    path = str(tmp_path / "timers.log")
    clock = VirtualClock(wall=WALL)
    engine = scenario_engine(path, clock)
    async with stopping(engine):
        ids = [(await engine.schedule("work", args=("ok",), delay=300, **options)).id for options in KINDS.values()]
    later = Engine(journal=path, clock=VirtualClock(wall=WALL + 1), unknown_tasks="park")
    async with stopping(later):
        listed = later.jobs()
        assert sorted(job.id for job in listed) == sorted(ids)
        assert {job.state for job in listed} == {"parked"}
        assert [job.id for job in later.jobs(state="parked")] == [job.id for job in listed]


@pytest.mark.parametrize("kind", ["interval", "cron"])
async def test_a_queued_run_can_be_waited_for_and_is_not_cancelled_behind_its_queue(lab: Lab, kind: str) -> None:
    """A series' run waiting for a worker: ``result()`` waits for it; ``cancel``/``pause`` refuse it (it fired)."""
    clock = VirtualClock(wall=WALL)
    engine = scenario_engine(lab.path, clock)
    async with stopping(engine):
        holder = await engine.schedule("hold", delay=0)
        series = await engine.schedule("work", args=("ok",), delay=300, **KINDS[kind])
        await clock.advance(300)
        (run,) = [job for job in engine.jobs(task="work") if job is not series]
        assert run.state == "pending"
        assert engine.cancel(run) is False
        assert engine.pause(run) is False
        waiter = asyncio.ensure_future(engine.result(run.id))
        await clock.advance(1)
        assert not waiter.done()
        assert engine.cancel(holder) is False  # running: it holds the worker until it is done
        await clock.advance(10_000)
        assert await waiter == "done"
        assert state(run) == "succeeded"
