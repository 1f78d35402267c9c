"""Recurring jobs through the engine: Every and Cron, overlap and misfire policies."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from chronowheel import Cron, Engine, Every
from chronowheel._recurrence import jittered
from chronowheel.testing import VirtualClock
from helpers import virtual_sleep


async def test_fixed_rate_does_not_drift_over_3000_runs() -> None:
    clock = VirtualClock(settle_rounds=6)
    engine = Engine(clock=clock)
    starts: list[float] = []

    @engine.task
    async def poll() -> None:
        starts.append(clock.time())
        await virtual_sleep(engine, 0.37)  # run time must not push later runs back

    async with engine:
        job = await engine.schedule(poll, every=Every(1.0))
        assert len(engine) == 1  # one wheel entry for the whole series
        await clock.advance(3_000)
        assert job.state == "pending"
        await engine.stop(grace=0)  # the run started at 3,000 s is still going
    assert len(starts) == 3_000
    assert all(abs(start - (k + 1)) < 1e-6 for k, start in enumerate(starts))


async def test_fixed_delay_waits_the_period_after_each_run() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    starts: list[float] = []

    @engine.task
    async def poll() -> None:
        starts.append(clock.time())
        await virtual_sleep(engine, 5)

    async with engine:
        await engine.schedule(poll, every=Every(10, fixed="delay"), key="poll")
        await clock.advance(60)
        assert engine.cancel("poll") is True  # cancelled between runs: no more runs
        await clock.advance(60)  # the run of 55 s ends at 60 s and files nothing
    assert starts == [10.0, 25.0, 40.0, 55.0]


@pytest.mark.parametrize(
    ("overlap", "expected"),
    [
        ("skip", [10.0, 40.0, 70.0]),
        ("queue", [10.0, 35.0, 60.0, 85.0]),
        ("allow", [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]),
    ],
)
async def test_overlap_policies(overlap: str, expected: list[float]) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    starts: list[float] = []

    @engine.task
    async def slow() -> None:
        starts.append(clock.time())
        await virtual_sleep(engine, 25)

    async with engine:
        await engine.schedule(slow, every=Every(10), overlap=overlap)
        await clock.advance(95)
        if overlap == "skip":
            assert engine.stats()["skipped"] == 6
        await engine.stop(grace=0)
    assert starts == expected


@pytest.mark.parametrize(("misfire", "expected_now"), [("fire_once", 1), ("fire_all", 10), ("skip", 0)])
async def test_misfire_policies_after_downtime(misfire: str, expected_now: int) -> None:
    """A series due every 10 s, whose engine only starts 100 s later."""
    clock = VirtualClock()
    engine = Engine(clock=clock)
    starts: list[float] = []

    @engine.task
    async def tick() -> None:
        starts.append(clock.time())

    await engine.schedule(tick, every=Every(10), misfire=misfire, misfire_grace=1.0)
    await clock.advance(105)
    async with engine:
        await clock.advance(0)
        assert starts == [105.0] * expected_now
        await clock.advance(10)
    assert starts == [105.0] * expected_now + [110.0]


async def test_catch_up_burst_into_a_small_pool_loses_nothing() -> None:
    """fire_all may queue more runs at once than max_queued: they all run, the driver survives."""
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("tiny", concurrency=1, max_queued=2)
    starts: list[float] = []

    @engine.task(pool="tiny")
    async def tick() -> None:
        starts.append(clock.time())

    await engine.schedule(tick, every=Every(10), misfire="fire_all")
    await engine.schedule(tick, delay=101)  # a one-shot job behind the burst
    await clock.advance(100)
    async with engine:
        await clock.advance(0)
        assert starts == [100.0] * 10
        await clock.advance(10)
    assert starts == [100.0] * 10 + [101.0, 110.0]


async def test_runs_within_misfire_grace_are_not_missed() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    starts: list[float] = []

    @engine.task
    async def tick() -> None:
        starts.append(clock.time())

    await engine.schedule(tick, every=Every(10), misfire="skip", misfire_grace=30.0)
    await clock.advance(25)
    async with engine:
        await clock.advance(0)
    assert starts == [25.0, 25.0]  # the runs of 10 s and 20 s were late, not missed


async def test_cron_runs_in_its_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 27, 12, 0, tzinfo=berlin)  # spring forward is on the 29th
    clock = VirtualClock(wall=start.timestamp())
    engine = Engine(clock=clock)
    runs: list[datetime] = []

    @engine.task
    async def report() -> None:
        runs.append(datetime.fromtimestamp(clock.wall(), berlin))

    async with engine:
        job = await engine.schedule(report, cron=Cron("30 2 * * *", tz="Europe/Berlin"), key="report")
        assert job.deadline == datetime(2026, 3, 28, 2, 30, tzinfo=berlin).astimezone(UTC)
        await clock.advance(4 * 86_400)
    local = [(run.day, run.hour, run.minute) for run in runs]
    # 02:30 does not exist on the 29th: it runs once, at 03:00.
    assert local == [(28, 2, 30), (29, 3, 0), (30, 2, 30), (31, 2, 30)]


async def test_reschedule_moves_the_next_run_and_cancel_stops_the_series() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    starts: list[float] = []

    @engine.task
    async def tick() -> None:
        starts.append(clock.time())

    async with engine:
        await engine.schedule(tick, every=Every(10), key="t")
        await clock.advance(10)
        assert engine.reschedule("t", delay=5) is True  # next run at 15, then back on the grid
        await clock.advance(20)
        assert engine.cancel("t") is True
        await clock.advance(100)
    assert starts == [10.0, 15.0, 20.0, 30.0]


async def test_keyed_series_is_idempotent_at_boot() -> None:
    engine = Engine(clock=VirtualClock())

    @engine.task
    async def report() -> None:
        pass

    async with engine:
        first = await engine.schedule(report, cron=Cron("0 9 * * 1-5"), key="daily", if_exists="keep")
        again = await engine.schedule(report, cron=Cron("0 9 * * 1-5"), key="daily", if_exists="keep")
        assert again is first
        replaced = await engine.schedule(report, cron=Cron("0 10 * * *"), key="daily", if_exists="replace")
        assert replaced is not first
        assert len(engine) == 1


def test_recurrence_arguments_are_checked() -> None:
    engine = Engine(clock=VirtualClock())

    @engine.task
    async def job() -> None:
        pass

    with pytest.raises(TypeError, match="every"):
        engine.schedule_nowait(job, every=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cron"):
        engine.schedule_nowait(job, cron="* * * * *")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every= and cron="):
        engine.schedule_nowait(job, every=Every(1), cron=Cron("* * * * *"))
    with pytest.raises(ValueError, match="overlap"):
        engine.schedule_nowait(job, every=Every(1), overlap="sometimes")
    with pytest.raises(ValueError, match="misfire"):
        engine.schedule_nowait(job, every=Every(1), misfire="never")
    with pytest.raises(ValueError, match="misfire_grace"):
        engine.schedule_nowait(job, every=Every(1), misfire_grace=-1)
    with pytest.raises(ValueError, match="expr"):
        Cron("61 * * * *")
    with pytest.raises(ValueError, match="tz"):
        Cron("* * * * *", tz="Mars/Olympus")


async def test_a_dead_run_redriven_does_not_stall_a_fixed_delay_series() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    starts: list[float] = []

    @engine.task
    async def sync_feeds() -> None:
        starts.append(clock.time())
        if len(starts) == 1:
            raise OSError("feed down")
        await virtual_sleep(engine, 5)

    async with engine:
        await engine.schedule(sync_feeds, every=Every(10, fixed="delay"))
        await clock.advance(10)
        (dead,) = engine.dead_letters()
        engine.redrive(dead)
        await clock.advance(5)
        assert dead.state == "succeeded"
        await clock.advance(40)
    # The series went on from the failed run's end, each next run 10 s after the
    # previous one finished; the redriven run was an extra, outside the series.
    assert starts == [10.0, 10.0, 20.0, 35.0, 50.0]


class CreepingClock(VirtualClock):
    """A virtual clock whose wall time moves 10 us at every read, as a real one does between two reads."""

    def __init__(self, wall: float) -> None:
        super().__init__(wall=wall)
        self.reads = 0

    def wall(self) -> float:
        self.reads += 1
        return super().wall() + self.reads * 1e-5


@pytest.mark.parametrize("wall", [1_767_225_600.0, 1_767_225_600.123457, 1_781_000_000.999_9, 1_781_000_000.3])
async def test_a_recurring_jobs_deadline_is_its_nominal_instant(wall: float) -> None:
    clock = CreepingClock(wall)
    engine = Engine(clock=clock)

    @engine.task
    async def tick() -> None:
        pass

    async with engine:
        every_second = await engine.schedule(tick, cron=Cron("* * * * * *"))
        rate = await engine.schedule(tick, every=Every(0.1))
        series = rate._series
        assert series is not None
        dues: list[float] = []
        for _ in range(30):
            due = every_second._due_wall
            assert due.is_integer()  # exactly the cron instant: 09:00:39.000000, not .000010
            assert every_second.deadline == datetime.fromtimestamp(due, UTC)
            dues.append(due)
            assert rate._due_wall == series.nominal  # on the grid from the first run, exactly
            k = round((series.nominal - series.anchor) / 0.1)
            assert series.nominal == series.anchor + k * 0.1
            await clock.advance(0.1)
        seconds = sorted(set(dues))
        assert seconds == [seconds[0] + k for k in range(len(seconds))]  # each second in turn
        assert len(seconds) >= 3


async def test_a_recurring_jobs_deadline_is_exact_on_the_real_clock() -> None:
    engine = Engine()

    @engine.task
    async def tick() -> None:
        pass

    async with engine:
        job = await engine.schedule(tick, cron=Cron("* * * * * *"))
        assert job.deadline.microsecond == 0


@pytest.mark.parametrize("seed", range(5))
async def test_a_jittered_deadline_is_the_nominal_instant_plus_the_jitter_drawn(seed: int) -> None:
    clock = CreepingClock(1_767_225_600.0)
    engine = Engine(clock=clock)
    engine._recurring.rng.seed(seed)  # the same draws as random.Random(seed)
    draws = random.Random(seed)
    starts: list[float] = []

    @engine.task
    async def tick() -> None:
        starts.append(clock.wall())

    async with engine:
        job = await engine.schedule(tick, cron=Cron("0 * * * *", jitter=30.0))
        for hour in range(1, 4):
            nominal = 1_767_225_600.0 + hour * 3600
            deadline = jittered(nominal, 30.0, draws)
            assert job._due_wall == deadline
            assert job.deadline == datetime.fromtimestamp(deadline, UTC)
            await clock.advance(deadline - clock.wall() + 0.01)
            assert deadline <= starts[-1] < deadline + 0.01  # it ran at the deadline shown
            assert len(starts) == hour
