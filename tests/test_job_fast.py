"""The job path's shortcuts hold what the long way made: a success's outcome, the histograms' first bucket."""

from __future__ import annotations

from bisect import bisect_left
from pathlib import Path
from typing import Any

import pytest

from chronowheel import Engine, current_job
from chronowheel._histogram import JOB_SECONDS
from chronowheel._outcome import Outcome
from chronowheel.testing import VirtualClock
from helpers import virtual_sleep

WALL = 1_767_225_600.0
VALUES: list[Any] = [None, 0, "ok", [1, "a"], {"n": 2}]


@pytest.mark.parametrize("journal", [False, True], ids=["in memory", "journaled"])
@pytest.mark.parametrize("value", VALUES, ids=["None", "0", "str", "list", "dict"])
async def test_a_success_keeps_the_outcome_its_constructor_would_make(
    journal: bool, value: Any, tmp_path: Path
) -> None:
    clock = VirtualClock(wall=WALL)
    engine = Engine(clock=clock, result_ttl=60.0, journal=str(tmp_path / "j.log") if journal else None)

    @engine.task(name="echo")
    async def echo(x: Any) -> Any:
        return x

    async with engine:
        job = await engine.schedule("echo", args=(value,), delay=1)
        await clock.advance(1)
        assert await engine.result(job) == value
        kept = engine._results.kept(job.id)
        assert kept is not None
        expected = Outcome(job, value, clock.wall() + 60.0)
        assert {slot: getattr(kept, slot) for slot in Outcome.__slots__} == {
            slot: getattr(expected, slot) for slot in Outcome.__slots__
        }


# Whole numbers of ticks (1 ms), each well inside one bucket, and 0: a run that does not wait.
DURATIONS = [0.0, 0.002, 0.004, 0.008, 0.02, 0.04, 0.08, 0.2, 0.4, 0.8, 2.0, 4.0, 8.0, 20.0, 40.0, 200.0, 600.0,
             1000.0, 3000.0, 5000.0]  # fmt: skip


async def test_each_attempt_lands_in_the_bucket_bisect_gives() -> None:
    """Run times in every bucket: the first-bucket shortcut and the bisect agree with ``bisect_left``."""
    clock = VirtualClock()
    engine = Engine(clock=clock)

    @engine.task(name="takes")
    async def takes(seconds: float) -> None:
        if seconds:
            await virtual_sleep(engine, seconds)

    async with engine:
        for seconds in DURATIONS:
            job = await engine.schedule("takes", args=(seconds,), delay=0)
            await clock.advance(0)
            await clock.advance(seconds + 0.01)  # past its last tick: the run is over
            assert job.state == "succeeded"
        figures = engine.stats()["tasks"]["takes"]
    expected = [0] * (len(JOB_SECONDS) + 1)
    for seconds in DURATIONS:
        expected[bisect_left(JOB_SECONDS, seconds)] += 1
    assert expected.count(0) == 0  # every bucket has its sample
    assert figures["duration"]["counts"] == expected
    assert figures["lateness"]["counts"][0] == len(DURATIONS)  # all on time: the first bucket


@pytest.mark.parametrize("journal", [False, True], ids=["in memory", "journaled"])
@pytest.mark.parametrize("key", [None, "k"], ids=["no key", "a key"])
@pytest.mark.parametrize("delay", [0, 0.5, 30.0], ids=["0", "0.5", "30"])
async def test_schedule_nowait_files_a_job_as_placement_place_does(
    journal: bool, key: str | None, delay: float, tmp_path: Path
) -> None:
    """The inlined filing against ``Placement.place``: the pool's wheel at the due tick, the indexes, the wake-up."""
    clock = VirtualClock(wall=WALL)
    engine = Engine(clock=clock, journal=str(tmp_path / "j.log") if journal else None)
    engine.add_pool("side", concurrency=1)
    ran: list[str] = []

    @engine.task(name="t", pool="side", priority=3)
    async def t() -> None:
        ran.append(current_job().id)

    async with engine:
        engine.schedule_nowait("t", delay=3600)  # the driver sleeps until it: the next job must wake it
        await clock.advance(0)
        job = engine.schedule_nowait("t", delay=delay, key=key)
        registry = engine._registry
        wheel = registry.pools["side"].wheel
        assert wheel.deadline(job._timer) == job._due_tick
        assert registry.jobs[job.id] is job
        if key is None:
            assert job not in registry.keyed.values()
        else:
            assert registry.keyed[key] is job
            assert engine.get(key) is job
        await clock.advance(delay)
        assert ran == [job.id]
        assert job.id not in registry.jobs
