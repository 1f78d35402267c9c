"""``schedule(..., after=...)``: chains and fan-in, in memory and with a journal, across restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chronowheel import Engine, Every, Job, JobCancelled, Retry
from chronowheel.testing import VirtualClock
from helpers import stopping

WALL = 1_767_225_600.0


class Lab:
    """Engines one after another, in memory or on one journal; ``ran`` holds (engine time, name) of each run."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else str(path / "timers.log")
        self.ran: list[tuple[float, str]] = []
        self.wall = WALL

    def engine(self, *, later: float = 0.0) -> tuple[Engine, VirtualClock]:
        self.wall += later
        clock = VirtualClock(wall=self.wall)
        engine = Engine(journal=self.path, clock=clock)
        ran = self.ran

        @engine.task(name="step")
        async def step(name: str) -> str:
            ran.append((round(clock.wall() - WALL, 3), name))
            return name

        @engine.task(name="broken", retry=Retry(1))
        async def broken(name: str) -> None:
            raise RuntimeError(f"{name} broke")

        return engine, clock

    def finished(self, clock: VirtualClock) -> None:
        self.wall = clock.wall()

    @property
    def names(self) -> list[str]:
        return [name for _, name in self.ran]


@pytest.fixture(params=["memory", "journal"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Lab:
    return Lab(tmp_path if request.param == "journal" else None)


def state(job: Job) -> str:
    """The job's state now (a call, so that a type checker does not narrow it across awaits)."""
    return job.state


async def test_a_chain_runs_in_order_each_after_its_parent_and_its_own_delay(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        a = await engine.schedule("step", args=("a",), delay=5)
        b = await engine.schedule("step", args=("b",), after=a)  # due as soon as a succeeded
        c = await engine.schedule("step", args=("c",), delay=20, after=b)  # its own delay is later
        assert [job.state for job in (a, b, c)] == ["pending"] * 3
        await clock.advance(5.001)
        assert lab.ran == [(5.0, "a"), (5.0, "b")]
        await clock.advance(15)
        assert lab.ran == [(5.0, "a"), (5.0, "b"), (20.0, "c")]
        assert await engine.result(c) == "c"


@pytest.mark.parametrize(
    ("first", "second"), [(3.0, 7.0), (7.0, 3.0), (5.0, 5.0)], ids=["left-first", "right-first", "together"]
)
async def test_fan_in_waits_for_every_parent(lab: Lab, first: float, second: float) -> None:
    engine, clock = lab.engine()
    async with engine:
        left = await engine.schedule("step", args=("left",), delay=first)
        right = await engine.schedule("step", args=("right",), delay=second)
        joined = await engine.schedule("step", args=("joined",), after=[left, right.id])
        await clock.advance(max(first, second) - 0.001)
        assert "joined" not in lab.names
        await clock.advance(0.002)
        assert lab.names[-1] == "joined"
        assert lab.ran[-1][0] == max(first, second)
        assert joined.state == "succeeded"


async def test_a_parent_that_already_succeeded_counts(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        a = await engine.schedule("step", args=("a",), delay=1)
        await clock.advance(1)
        b = await engine.schedule("step", args=("b",), delay=2, after=a)
        await clock.advance(2)
        assert lab.names == ["a", "b"]
        assert b.state == "succeeded"


@pytest.mark.parametrize("ending", ["dead", "cancelled"])
async def test_a_parent_that_ends_dead_or_cancelled_cancels_the_chain_below_it(lab: Lab, ending: str) -> None:
    engine, clock = lab.engine()
    async with engine:
        parent = await engine.schedule("broken" if ending == "dead" else "step", args=("p",), delay=5)
        child = await engine.schedule("step", args=("child",), after=parent)
        grandchild = await engine.schedule("step", args=("grandchild",), after=[child])
        if ending == "cancelled":
            engine.cancel(parent)
        await clock.advance(10)
        assert lab.names == []
        assert (child.state, grandchild.state) == ("cancelled", "cancelled")
        assert isinstance(child.error, JobCancelled)
        assert child.error.reason == f"parent job {parent.id} of task {parent.task!r} ended {ending}"
        with pytest.raises(JobCancelled, match=f"parent job {child.id} of task 'step' ended cancelled"):
            await engine.result(grandchild)
        assert {child.id, grandchild.id} <= {job.id for job in engine.jobs(state="cancelled")}
    if lab.path is not None:
        lab.finished(clock)
        engine, clock = lab.engine(later=1)
        async with engine:
            with pytest.raises(JobCancelled, match=f"parent job {parent.id}"):
                await engine.result(child.id)


async def test_cancelling_a_waiting_child_leaves_its_parent_alone(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        parent = await engine.schedule("step", args=("p",), delay=5)
        child = await engine.schedule("step", args=("c",), after=parent, key="child")
        assert engine.get("child") is child
        assert engine.cancel("child")
        await clock.advance(5)
        assert lab.names == ["p"]
        assert child.state == "cancelled"


@pytest.mark.parametrize("stop_at", [2.0, 6.0, 12.0], ids=["before-a", "after-a", "after-b"])
async def test_a_restart_in_the_middle_of_a_chain_carries_on(tmp_path: Path, stop_at: float) -> None:
    lab = Lab(tmp_path)
    engine, clock = lab.engine()
    async with engine:
        a = await engine.schedule("step", args=("a",), delay=5)
        b = await engine.schedule("step", args=("b",), delay=10, after=a)
        c = await engine.schedule("step", args=("c",), after=[a, b])
        await clock.advance(stop_at)
    lab.finished(clock)
    engine, clock = lab.engine(later=1)
    async with engine:
        for job in (a, b, c):
            found = engine.jobs(limit=10)
            assert job.id in [each.id for each in found]
        await clock.advance(20)
        assert lab.names == ["a", "b", "c"]
        assert await engine.result(c.id) == "c"


async def test_a_child_whose_parent_died_before_the_restart_is_cancelled_at_start(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    engine, clock = lab.engine()
    async with engine:
        parent = await engine.schedule("broken", args=("p",), delay=5)
        child = await engine.schedule("step", args=("c",), after=parent)
        await clock.advance(1)
    lab.finished(clock)
    engine, clock = lab.engine(later=10)  # the parent fires at once after the restart, and dies
    async with engine:
        await clock.advance(0.001)
        with pytest.raises(JobCancelled, match="ended dead"):
            await engine.result(child.id)


@pytest.mark.parametrize(
    ("after", "error", "message"),
    [
        ([], TypeError, r"after must be a Job, a job id, or a non-empty list of them, got list \(empty\)"),
        (3, TypeError, "after must be a Job, a job id, or a non-empty list of them, got int"),
        ([3], TypeError, r"after: each parent must be a Job or a job id \(str\), got int"),
        ("f" * 32, ValueError, "after: no job f{32} in this engine"),
        ("dead", ValueError, "already ended dead; a job after it could never run"),
        ("cancelled", ValueError, "already ended cancelled"),
        ("series", ValueError, "is recurring; a job can only follow one-shot jobs"),
        ("foreign", ValueError, "is not a job of this engine"),
    ],
    ids=["empty", "type", "item-type", "unknown", "dead", "cancelled", "recurring", "foreign"],
)
async def test_parents_must_exist_and_be_able_to_succeed(after: Any, error: type[Exception], message: str) -> None:
    lab = Lab(None)
    engine, clock = lab.engine()
    other, _ = Lab(None).engine()
    async with engine:
        parents = {
            "dead": await engine.schedule("broken", args=("d",), delay=0),
            "cancelled": await engine.schedule("step", args=("x",), delay=9),
            "series": await engine.schedule("step", args=("s",), every=Every(60)),
            "foreign": other.schedule_nowait("step", args=("o",), delay=1),
        }
        engine.cancel(parents["cancelled"])
        await clock.advance(0.001)
        if isinstance(after, str) and after in parents:
            after = parents[after].id if after != "foreign" else parents[after]
        with pytest.raises(error, match=message):
            await engine.schedule("step", args=("child",), after=after)
        assert engine.jobs(task="step", state="pending") == [parents["series"]]  # nothing was scheduled


async def test_a_recurring_job_cannot_wait_for_others() -> None:
    engine, _ = Lab(None).engine()
    async with engine:
        parent = await engine.schedule("step", args=("p",), delay=1)
        with pytest.raises(ValueError, match="after: a recurring job"):
            await engine.schedule("step", args=("s",), every=Every(5), after=parent)


async def test_a_waiting_child_can_be_rescheduled(lab: Lab) -> None:
    engine, clock = lab.engine()
    async with engine:
        parent = await engine.schedule("step", args=("p",), delay=5)
        child = await engine.schedule("step", args=("c",), after=parent)
        assert engine.reschedule(child, delay=30)  # its own deadline, kept for when its parent succeeded
        await clock.advance(29.999)
        assert lab.names == ["p"]
        await clock.advance(0.002)
        assert lab.names == ["p", "c"]


# (when the child is paused, when it is resumed, its own delay): paused while its parent (due at 5) waits
PAUSES = [
    (1.0, 3.0, 0.0, 5.0),  # resumed before the parent succeeded: it waits for it, then runs at once
    (1.0, 8.0, 0.0, 8.0),  # resumed after: its deadline passed, it runs at the resume
    (1.0, 8.0, 20.0, 20.0),  # resumed after the parent, before its own delay: it runs at its deadline
    (6.0, 9.0, 30.0, 30.0),  # paused after the parent succeeded (so in its wheel), resumed before its delay
    (6.0, 40.0, 30.0, 40.0),  # the same, resumed after its delay
]


@pytest.mark.parametrize(
    ("pause_at", "resume_at", "delay", "runs_at"),
    PAUSES,
    ids=["resumed-before-parent", "resumed-after-parent", "resumed-before-delay", "filed-then-paused", "filed-late"],
)
async def test_a_child_paused_while_waiting_for_its_parent_runs_only_once_resumed(
    lab: Lab, pause_at: float, resume_at: float, delay: float, runs_at: float
) -> None:
    engine, clock = lab.engine()
    async with stopping(engine):
        parent = await engine.schedule("step", args=("p",), delay=5)
        child = await engine.schedule("step", args=("c",), delay=delay, after=parent, key="child")
        await clock.advance(pause_at)
        assert engine.pause("child")
        assert engine.pause(child) is False  # already paused
        assert state(child) == "paused"
        await clock.advance(resume_at - pause_at)
        assert lab.names == (["p"] if resume_at > 5 else [])
        assert state(child) == "paused"
        assert engine.resume(child)
        assert engine.resume(child) is False
        await clock.advance(runs_at - resume_at - 0.002 if runs_at > resume_at else 0)
        assert "c" not in lab.names or runs_at == resume_at
        await clock.advance(0.004)
        assert [when for when, name in lab.ran if name == "c"] == [runs_at]
        assert await engine.result(child) == "c"


@pytest.mark.parametrize("ending", ["dead", "cancelled"])
async def test_a_paused_child_is_cancelled_when_its_parent_fails(lab: Lab, ending: str) -> None:
    engine, clock = lab.engine()
    async with stopping(engine):
        parent = await engine.schedule("broken" if ending == "dead" else "step", args=("p",), delay=5)
        child = await engine.schedule("step", args=("c",), after=parent)
        assert engine.pause(child)
        if ending == "cancelled":
            engine.cancel(parent)
        await clock.advance(10)
        assert state(child) == "cancelled"
        assert engine.resume(child) is False
        with pytest.raises(JobCancelled, match=f"parent job {parent.id} of task {parent.task!r} ended {ending}"):
            await engine.result(child)


@pytest.mark.parametrize("parent_done", [False, True], ids=["parent-waiting", "parent-succeeded"])
async def test_a_paused_child_stays_paused_across_a_restart(tmp_path: Path, parent_done: bool) -> None:
    lab = Lab(tmp_path)
    engine, clock = lab.engine()
    async with stopping(engine):
        parent = await engine.schedule("step", args=("p",), delay=5)
        child = await engine.schedule("step", args=("c",), after=parent, key="child")
        assert engine.pause(child)
        await clock.advance(6 if parent_done else 1)
    lab.finished(clock)
    engine, clock = lab.engine(later=1)
    async with stopping(engine):
        await clock.advance(10)
        restored = engine.get("child")
        assert restored is not None
        assert restored.state == "paused"
        assert lab.names == ["p"]
        assert engine.resume("child")
        await clock.advance(0.002)
        assert lab.names == ["p", "c"]
        assert await engine.result(child.id) == "c"
