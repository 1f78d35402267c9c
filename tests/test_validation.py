"""Every numeric argument of every public call, at, just inside and just past its bounds.

A refused call raises an error naming the argument and changes nothing: the
keyed job stays pending with its deadline, ``len`` and the counts stay, and
(with a journal) a restart recovers the same jobs. An accepted value can be
carried out: the clock is driven to it, and the driver is shown alive after
it by firing one more timer. Run on both loops here, and on the pure wheel by
the Makefile's second run.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chronowheel import Cron, Engine, EngineClosed, Every, Job, Retry, UnknownTask
from chronowheel._clock import SystemClock
from chronowheel._limits import EARLIEST, LATEST, MAX_DELAY, MAX_PRIORITY, MIN_PERIOD
from chronowheel.testing import VirtualClock

TICK = 0.001
AFTER_MAX = math.nextafter(MAX_DELAY, math.inf)
BEFORE_MAX = math.nextafter(MAX_DELAY, 0)

# The tables: what each seconds argument must refuse (and with which error), and what it must carry out.
TOO_FAR: list[Any] = [-1, -1e-300, math.nan, math.inf, -math.inf, AFTER_MAX, 1e13, 2**63, 2**64, -(2**63), 10**400]
NOT_NUMBERS: list[Any] = [True, False, Decimal(1), Decimal("NaN"), "1", b"1", 1j, [1]]
IN_RANGE: list[Any] = [0, -0.0, 1, 0.5, Fraction(1, 3), BEFORE_MAX, MAX_DELAY, int(MAX_DELAY)]
Refused = list[tuple[Any, type[Exception]]]


def refused(*, zero: bool = True) -> Refused:
    """The refused values, each with its error; ``zero=False`` for a timeout or an interval, where 0 means nothing."""
    cases: Refused = [(value, ValueError) for value in TOO_FAR]
    cases += [] if zero else [(0, ValueError), (-0.0, ValueError)]
    return cases + [(value, TypeError) for value in NOT_NUMBERS]


def accepted(*, zero: bool = True) -> list[Any]:
    return [pytest.param(v, id=repr(v)[:24]) for v in IN_RANGE if zero or v != 0]


# Volatile timers' delays (call_later, handle.reschedule) are loop.call_later's: 0 or less is due now.
DUE_NOW: list[Any] = [-1, -1e-300, -(2**63), -(10**400), -1e308, Fraction(-1, 3)]
VOLATILE_REFUSED: Refused = [(value, ValueError) for value in TOO_FAR if value not in DUE_NOW]
VOLATILE_REFUSED += [(value, TypeError) for value in [*NOT_NUMBERS, Decimal(-1)]]
VOLATILE_ACCEPTED = [pytest.param(v, id=repr(v)[:24]) for v in IN_RANGE + DUE_NOW]


def rejects(cases: Refused) -> list[Any]:
    return [pytest.param(value, error, id=f"{type(value).__name__}-{value!r:.20}") for value, error in cases]


@dataclass
class World:
    """An engine on a virtual clock at 0: a keyed job pending, a volatile timer, a dead letter."""

    engine: Engine
    clock: VirtualClock
    path: str | None
    keyed: Job
    dead: Job
    handle: Any
    ran: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        stats = self.engine.stats()
        del stats["lateness"]
        stats.pop("journal", None)  # the writer thread's fsync figures: they move on their own, in real time
        return {
            "len": len(self.engine),
            "keyed": (self.engine.get("k") is self.keyed, self.keyed.state, self.keyed.deadline),
            "dead": [job.id for job in self.engine.dead_letters()],
            "stats": stats,
        }

    async def alive(self) -> None:
        """The driver still fires: a timer set now goes off on time."""
        mark = f"alive-{len(self.fired)}"
        self.engine.call_later(1, self.fired.append, mark)
        await self.clock.advance(1 + TICK)
        assert mark in self.fired

    async def recovered(self) -> dict[str, Any]:
        """Stop, start a new engine on the journal, and say what it holds."""
        await self.engine.stop(grace=0)
        assert self.path is not None
        again = build_engine(self.path, VirtualClock(self.clock.time(), wall=self.clock.wall()), [])
        async with again:
            keyed = again.get("k")
            return {
                "len": len(again),
                "keyed": None if keyed is None else (keyed.id, keyed.deadline),
                "dead": [job.id for job in again.dead_letters()],
            }


def build_engine(path: str | None, clock: VirtualClock, ran: list[str]) -> Engine:
    engine = Engine(clock=clock, journal=path)

    @engine.task(name="t")
    async def t(*args: object, **kwargs: object) -> None:
        ran.append("t")

    @engine.task(name="fails")
    async def fails() -> None:
        ran.append("fails")
        raise RuntimeError("always")

    return engine


async def make_world(path: str | None = None) -> World:
    clock = VirtualClock()
    ran: list[str] = []
    engine = build_engine(path, clock, ran)
    await engine.start()
    dead = await engine.schedule("fails", delay=0)
    await clock.advance(0)  # due at once: the clock stays at 0
    assert dead.state == "dead"
    keyed = await engine.schedule("t", delay=100, key="k")
    world = World(engine, clock, path, keyed, dead, None, ran)
    world.handle = engine.call_later(50, world.fired.append, "handle")
    return world


async def expect_refused(world: World, call: Callable[[Any], object], cases: Refused, name: str) -> None:
    """Each value raises naming ``name`` and changes nothing, in memory or (with a journal) after a restart."""
    before = world.snapshot()
    for value, error in cases:
        with pytest.raises(error, match=name):
            call(value)
        assert world.snapshot() == before, f"{name}={value!r} was refused but changed the engine"
    assert world.keyed.state == "pending"
    if world.path is not None:
        recovered = await world.recovered()
        assert recovered == {"len": 1, "keyed": (world.keyed.id, world.keyed.deadline), "dead": [world.dead.id]}
    else:
        await world.alive()
        await world.clock.advance(50)
        assert "handle" in world.fired  # the timer too is where it was
        await world.engine.stop(grace=0)


async def carried_out(world: World, seconds: float) -> None:
    """Drive the clock ``seconds`` on, and a tick: what is due by then has run."""
    await world.clock.advance(max(0.0, seconds) + TICK)


# -- delays: call_later, call_at, TimerHandle.reschedule -----------------------------------------------


async def test_call_later_refuses() -> None:
    world = await make_world()
    await expect_refused(world, lambda v: world.engine.call_later(v, print), VOLATILE_REFUSED, "delay")


@pytest.mark.parametrize("value", VOLATILE_ACCEPTED)
async def test_call_later_carries_out(value: Any) -> None:
    world = await make_world()
    world.engine.call_later(value, world.fired.append, "late")
    await carried_out(world, float(max(0, value)))
    assert "late" in world.fired
    await world.alive()
    await world.engine.stop(grace=0)


async def test_handle_reschedule_refuses() -> None:
    world = await make_world()
    await expect_refused(world, world.handle.reschedule, VOLATILE_REFUSED, "delay")


@pytest.mark.parametrize("value", VOLATILE_ACCEPTED)
async def test_handle_reschedule_carries_out(value: Any) -> None:
    world = await make_world()
    assert world.handle.reschedule(value) is True
    await carried_out(world, float(max(0, value)))
    assert "handle" in world.fired
    await world.alive()
    await world.engine.stop(grace=0)


# On a clock at 0, ``when`` is a delay, except that a time in the past is due at once, however far back.
CALL_AT_REFUSED: Refused = [(v, ValueError) for v in (math.nan, math.inf, -math.inf, AFTER_MAX, 1e13, 2**64, 10**400)]
CALL_AT_REFUSED += [(v, TypeError) for v in NOT_NUMBERS]
CALL_AT_ACCEPTED = [-1e308, -(2**63), -(10**400), -1, -0.0, 0, Fraction(1, 3), 1, BEFORE_MAX, MAX_DELAY]


async def test_call_at_refuses() -> None:
    world = await make_world()
    assert world.engine.time() == 0
    await expect_refused(world, lambda v: world.engine.call_at(v, print), CALL_AT_REFUSED, "when")


@pytest.mark.parametrize("value", [pytest.param(v, id=repr(v)[:24]) for v in CALL_AT_ACCEPTED])
async def test_call_at_carries_out(value: Any) -> None:
    world = await make_world()
    world.engine.call_at(value, world.fired.append, "at")
    await carried_out(world, float(max(0, value)))
    assert "at" in world.fired
    await world.alive()
    await world.engine.stop(grace=0)


# -- job delays and times: schedule, reschedule, redrive, on both kinds of engine ----------------------------


JOB_CALLS: dict[str, Callable[[World, Any], object]] = {
    "schedule": lambda w, v: w.engine.schedule_nowait("t", delay=v, key="k", if_exists="replace"),
    "schedule-every": lambda w, v: w.engine.schedule_nowait(
        "t", every=Every(3600), delay=v, key="k", if_exists="replace"
    ),
    "reschedule-key": lambda w, v: w.engine.reschedule("k", delay=v),
    "reschedule-job": lambda w, v: w.engine.reschedule(w.keyed, delay=v),
    "redrive": lambda w, v: w.engine.redrive(w.dead, delay=v),
}


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journal"])
@pytest.mark.parametrize("call", sorted(JOB_CALLS))
async def test_job_delay_refused(tmp_path: Path, journal: bool, call: str) -> None:
    world = await make_world(str(tmp_path / "timers.log") if journal else None)
    await expect_refused(world, lambda v: JOB_CALLS[call](world, v), refused(), "delay")


@pytest.mark.parametrize("call", sorted(JOB_CALLS))
@pytest.mark.parametrize(
    ("value", "journal"),
    [*((v, False) for v in IN_RANGE), (0, True), (MAX_DELAY, True)],
    ids=lambda v: repr(v)[:24],
)
async def test_job_delay_carried_out(tmp_path: Path, call: str, value: Any, journal: bool) -> None:
    world = await make_world(str(tmp_path / "timers.log") if journal else None)
    JOB_CALLS[call](world, value)
    await carried_out(world, float(value))
    task, runs = ("fails", 2) if call == "redrive" else ("t", 1)
    assert world.ran.count(task) == runs
    await world.alive()
    await world.engine.stop(grace=0)


_NOW = datetime.fromtimestamp(VirtualClock().wall(), UTC)
AT_REFUSED: Refused = [
    (datetime.max.replace(tzinfo=timezone(timedelta(hours=-23))), ValueError),
    (datetime.max.replace(tzinfo=UTC), ValueError),
    (_NOW + timedelta(seconds=MAX_DELAY + 1), ValueError),
    (datetime(2030, 1, 1), ValueError),  # naive
    ("2030-01-01", TypeError),
    (VirtualClock().wall() + 10, TypeError),  # a timestamp is not a datetime
]
AT_ACCEPTED = [
    pytest.param(datetime.min.replace(tzinfo=timezone(timedelta(hours=23))), id="min+23h"),
    pytest.param(_NOW - timedelta(days=1), id="yesterday"),
    pytest.param(_NOW + timedelta(hours=1), id="in-an-hour"),
    pytest.param(_NOW + timedelta(seconds=MAX_DELAY - 1), id="max-delay"),
]
AT_CALLS: dict[str, Callable[[World, Any], object]] = {
    "schedule": lambda w, v: w.engine.schedule_nowait("t", at=v, key="k", if_exists="replace"),
    "schedule-every": lambda w, v: w.engine.schedule_nowait("t", at=v, every=Every(3600), key="k", if_exists="replace"),
    "reschedule": lambda w, v: w.engine.reschedule("k", at=v),
}


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journal"])
@pytest.mark.parametrize("call", sorted(AT_CALLS))
async def test_at_refused(tmp_path: Path, journal: bool, call: str) -> None:
    world = await make_world(str(tmp_path / "timers.log") if journal else None)
    await expect_refused(world, lambda v: AT_CALLS[call](world, v), AT_REFUSED, "at")


@pytest.mark.parametrize("call", sorted(AT_CALLS))
@pytest.mark.parametrize("value", AT_ACCEPTED)
async def test_at_carried_out(call: str, value: datetime) -> None:
    world = await make_world()
    AT_CALLS[call](world, value)
    await carried_out(world, value.timestamp() - world.clock.wall())
    assert world.ran.count("t") == 1
    await world.alive()
    await world.engine.stop(grace=0)


# -- the other seconds arguments --------------------------------------------------------------------------


async def test_misfire_grace_refused() -> None:
    world = await make_world()

    def call(value: Any) -> object:
        return world.engine.schedule_nowait("t", every=Every(10), misfire_grace=value, key="k", if_exists="replace")

    await expect_refused(world, call, refused(), "misfire_grace")


@pytest.mark.parametrize("value", accepted())
async def test_misfire_grace_carried_out(value: Any) -> None:
    world = await make_world()
    world.engine.schedule_nowait("t", every=Every(10), misfire_grace=value, key="k", if_exists="replace")
    await carried_out(world, 10)
    assert world.ran.count("t") == 1
    await world.alive()
    await world.engine.stop(grace=0)


async def test_task_timeout_refused() -> None:
    world = await make_world()
    await expect_refused(world, lambda v: world.engine.task(timeout=v), refused(zero=False), "timeout")


@pytest.mark.parametrize("value", accepted(zero=False))
async def test_task_timeout_carried_out(value: Any) -> None:
    world = await make_world()

    @world.engine.task(name="timed", timeout=value)
    async def timed() -> None:
        world.ran.append("timed")

    world.engine.schedule_nowait("timed", delay=1)
    await carried_out(world, 1)
    assert world.ran.count("timed") == 1
    await world.alive()
    await world.engine.stop(grace=0)


async def test_stop_grace_refused() -> None:
    world = await make_world()
    before = world.snapshot()
    for value, error in refused():
        with pytest.raises(error, match="grace"):
            await world.engine.stop(grace=value)
        assert world.snapshot() == before
    await world.alive()  # still running
    await world.engine.stop(grace=0)


@pytest.mark.parametrize("value", accepted())
async def test_stop_grace_carried_out(value: Any) -> None:
    world = await make_world()
    await world.engine.stop(grace=value)  # nothing is running: it returns at once, whatever the grace
    with pytest.raises(EngineClosed):
        world.engine.call_later(1, print)


def test_fsync_interval() -> None:
    for value, error in refused(zero=False):
        with pytest.raises(error, match="fsync_interval"):
            Engine(fsync_interval=value)
    for value in IN_RANGE:
        if value != 0:
            Engine(fsync_interval=value)


TICK_REFUSED: Refused = [(v, ValueError) for v in (0, -0.0, math.nextafter(1e-6, 0), 60.000001, math.nan, 2**64, -1)]
TICK_REFUSED += [(v, TypeError) for v in (True, Decimal("0.01"), "0.01")]


def test_tick_refused() -> None:
    for value, error in TICK_REFUSED:
        with pytest.raises(error, match="tick"):
            Engine(tick=value)


@pytest.mark.parametrize(
    ("value", "far"), [(1e-6, 1e5), (Fraction(1, 100), MAX_DELAY), (1, MAX_DELAY), (60, MAX_DELAY)]
)
async def test_tick_carried_out(value: Any, far: float) -> None:
    """Also the longest delay. (At a 1e-6 tick that is 1e16 ticks, past the wheel's top level 145,000 times:
    the virtual clock would take minutes to step through each re-filing, so a shorter far delay there.)"""
    clock = VirtualClock()
    fired: list[float] = []
    async with Engine(clock=clock, tick=value) as engine:
        engine.call_later(far, fired.append, 1.0)
        engine.call_later(0.5, fired.append, 0.5)
        await clock.advance(60)
        assert fired == [0.5]
        await clock.advance(far)
        assert fired == [0.5, 1.0]


# -- Every and Retry: built only with values the engine can carry out ------------------------------------


PERIODS_REFUSED: Refused = [(v, ValueError) for v in TOO_FAR]
PERIODS_REFUSED += [(v, ValueError) for v in (0, -0.0, 5e-324, 1e-20, 1e-7, math.nextafter(MIN_PERIOD, 0))]
PERIODS_REFUSED += [(v, TypeError) for v in NOT_NUMBERS]


@pytest.mark.parametrize(("value", "error"), rejects(PERIODS_REFUSED))
def test_every_seconds_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="seconds"):
        Every(value)


@pytest.mark.parametrize(
    "value", [pytest.param(v, id=repr(v)[:24]) for v in (MIN_PERIOD, Fraction(1, 1000), 1, BEFORE_MAX, MAX_DELAY)]
)
async def test_every_seconds_carried_out(value: Any) -> None:
    """The first run, then the one the driver files after it; a 1e-6 period on a 1e-6 tick does not block the loop."""
    clock = VirtualClock()
    runs: list[float] = []
    fired: list[str] = []
    period = float(value)
    tick = 1e-6 if period < 1 else TICK  # a 1e10 s period at a 1e-6 tick: see test_tick_carried_out
    async with Engine(clock=clock, tick=tick) as engine:

        @engine.task(name="t")
        async def t() -> None:
            runs.append(clock.time())

        engine.schedule_nowait("t", every=Every(value), key="k")
        await clock.advance(period + 3 * tick)  # a tick late at most, wall-clock rounding aside
        first = len(runs)
        assert first >= 1
        await clock.advance(period + 3 * tick)
        assert len(runs) > first
        assert engine.cancel("k") is True  # still pending; and a 1e-6 period would run 1e6 times below
        engine.call_later(1, fired.append, "alive")
        await clock.advance(1 + 3 * tick)
        assert fired == ["alive"]


@pytest.mark.parametrize(
    ("seconds", "tick", "accepted"), [(0.0005, 0.001, False), (0.001, 0.001, True), (1, 60, False)]
)
def test_every_period_is_at_least_the_engines_tick(seconds: float, tick: float, accepted: bool) -> None:
    engine = Engine(clock=VirtualClock(), tick=tick)
    engine.task(name="t")(print)
    if accepted:
        engine.schedule_nowait("t", every=Every(seconds))
    else:
        with pytest.raises(ValueError, match="every"):
            engine.schedule_nowait("t", every=Every(seconds), key="k")
        assert len(engine) == 0
        assert engine.get("k") is None


@pytest.mark.parametrize(("value", "error"), rejects(refused()))
def test_every_jitter_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="jitter"):
        Every(60, jitter=value)


@pytest.mark.parametrize("value", accepted())
async def test_every_jitter_carried_out(value: Any) -> None:
    world = await make_world()
    world.engine._recurring.rng.seed(7)  # the jitter draws, and with them the number of runs below, are fixed
    world.engine.schedule_nowait("t", every=Every(60, jitter=value), key="k", if_exists="replace")
    await carried_out(world, 60 + float(value))  # the latest the first run can be
    assert world.ran.count("t") >= 1
    await world.alive()
    await world.engine.stop(grace=0)


class _Draws(random.Random):
    """A random source that draws what it is told to."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__()
        self.draws = draws

    def uniform(self, a: float, b: float) -> float:
        return self.draws.pop(0)


async def test_longest_period_and_jitter_survive_a_wall_clock_stepped_back() -> None:
    """Re-filing from the driver cannot fail: a period and a jitter at their bounds, the wall clock a day back."""
    clock = VirtualClock()
    runs: list[float] = []
    fired: list[str] = []
    async with Engine(clock=clock) as engine:

        @engine.task(name="t")
        async def t() -> None:
            runs.append(clock.time())

        engine._recurring.rng = _Draws([0.0, MAX_DELAY])  # the worst case: no jitter first, all of it next
        job = engine.schedule_nowait("t", every=Every(MAX_DELAY, jitter=MAX_DELAY), delay=0, key="k")
        wait = job.deadline.timestamp() - clock.wall()  # the first run is jittered too
        clock._wall_offset -= 86_400  # NTP, a VM restore: the wall clock goes back under a waiting job
        await clock.advance(wait + TICK)
        assert len(runs) == 1
        # Re-filed over two bounds (and the day) ahead of the wall clock: within what the wheels hold.
        assert engine.get("k") is job
        assert job.state == "pending"
        assert job.deadline.year < 10_000
        engine.call_later(1, fired.append, "alive")
        await clock.advance(1 + TICK)
        assert fired == ["alive"]


def test_cron_jitter_is_bounded_at_schedule_time() -> None:
    engine = Engine(clock=VirtualClock())
    engine.task(name="t")(print)
    with pytest.raises(ValueError, match="cron: jitter"):
        engine.schedule_nowait("t", cron=Cron("* * * * *", jitter=AFTER_MAX), key="k")
    assert len(engine) == 0
    assert engine.get("k") is None
    engine.schedule_nowait("t", cron=Cron("* * * * *", jitter=MAX_DELAY), key="k")


@pytest.mark.parametrize("argument", ["backoff", "max_backoff"])
@pytest.mark.parametrize(("value", "error"), rejects(refused()))
def test_retry_backoff_refused(argument: str, value: Any, error: type[Exception]) -> None:
    bounds = {"backoff": value, "max_backoff": MAX_DELAY} if argument == "backoff" else {"max_backoff": value}
    with pytest.raises(error, match=argument):
        Retry(2, jitter=False, **bounds)


@pytest.mark.parametrize("argument", ["backoff", "max_backoff"])
@pytest.mark.parametrize("value", accepted())
async def test_retry_backoff_carried_out(argument: str, value: Any) -> None:
    """The value as both bounds, named one way or the other: the retry waits exactly that long."""
    retry = Retry(2, jitter=False, **{argument: value, "max_backoff" if argument == "backoff" else "backoff": value})
    clock = VirtualClock()
    attempts: list[float] = []
    fired: list[str] = []
    async with Engine(clock=clock) as engine:

        @engine.task(name="fails", retry=retry)
        async def fails() -> None:
            attempts.append(clock.time())
            raise RuntimeError("x")

        job = engine.schedule_nowait("fails", delay=0)
        await clock.advance(TICK)
        if float(value) > 1:
            assert job.state == "failed"
            assert len(engine) == 1  # waiting for its retry, not lost
        await clock.advance(float(value) + TICK)
        assert len(attempts) == 2
        assert job.state == "dead"
        assert attempts[1] - attempts[0] == pytest.approx(float(value), abs=2 * TICK)
        engine.call_later(1, fired.append, "alive")
        await clock.advance(1 + TICK)
        assert fired == ["alive"]


def test_retry_attempts_is_an_int() -> None:
    cases: list[tuple[Any, type[Exception]]] = [
        (True, TypeError),
        (2.0, TypeError),
        ("2", TypeError),
        (0, ValueError),
        (-1, ValueError),
    ]
    for value, error in cases:
        with pytest.raises(error, match="attempts"):
            Retry(value)
    assert Retry(2**64).should_retry(RuntimeError(), 2**63)


@given(
    anchor=st.floats(-1e11, 3e11),
    offset=st.floats(-1e6, 1e11),
    period=st.floats(MIN_PERIOD, MAX_DELAY),
    strict=st.booleans(),
)
def test_every_index_is_the_first_grid_point_past_the_bound(
    anchor: float, offset: float, period: float, strict: bool
) -> None:
    """The smallest k: past at k, not past at k - 1, found without stepping (any period, any anchor)."""
    every = Every(period)
    bound = anchor + offset

    def past(k: int) -> bool:
        value = anchor + k * period
        return value > bound if strict else value >= bound

    k = every._index(bound, anchor, strict=strict)
    assert past(k)
    assert k == 0 or not past(k - 1)


@pytest.mark.parametrize("anchor", [0.0, 1.7e9, 2.5e11])
def test_every_smallest_period_far_from_zero(anchor: float) -> None:
    """Near 2.5e11 one float step is 3e-5 s: many k round to the same grid point, the first is found."""
    every = Every(MIN_PERIOD)
    after = anchor + 1000.0
    nxt = every.next_after(after, anchor)
    assert nxt > after
    assert every._index(after, anchor, strict=True) == every._index(nxt, anchor, strict=False)


# -- priorities -------------------------------------------------------------------------------------------


PRIORITY_REFUSED: Refused = [(v, ValueError) for v in (2**63, -(2**63), 2**64, -(2**64), 10**30)]
PRIORITY_REFUSED += [(v, TypeError) for v in (True, False, 1.0, "1", Decimal(1))]
PRIORITY_ACCEPTED = [0, 1, -1, MAX_PRIORITY, -MAX_PRIORITY]


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journal"])
async def test_schedule_priority_refused(tmp_path: Path, journal: bool) -> None:
    """Refused before the old keyed job is replaced and before anything is journaled (D6)."""
    world = await make_world(str(tmp_path / "timers.log") if journal else None)

    def call(value: Any) -> object:
        return world.engine.schedule_nowait("t", delay=1, key="k", if_exists="replace", priority=value)

    await expect_refused(world, call, PRIORITY_REFUSED, "priority")


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journal"])
@pytest.mark.parametrize("value", PRIORITY_ACCEPTED)
async def test_schedule_priority_carried_out(tmp_path: Path, journal: bool, value: int) -> None:
    world = await make_world(str(tmp_path / "timers.log") if journal else None)
    job = world.engine.schedule_nowait("t", delay=1, key="k", if_exists="replace", priority=value)
    assert job.priority == value
    if journal:  # and it comes back from the journal, on either wheel
        recovered = await world.recovered()
        assert recovered["keyed"] == (job.id, job.deadline)
        return
    await carried_out(world, 1)
    assert world.ran.count("t") == 1
    await world.alive()
    await world.engine.stop(grace=0)


@pytest.mark.parametrize(("value", "error"), rejects(PRIORITY_REFUSED))
def test_task_priority_refused(value: Any, error: type[Exception]) -> None:
    engine = Engine(clock=VirtualClock())
    with pytest.raises(error, match="priority"):
        engine.task(name="p", priority=value)
    with pytest.raises(UnknownTask):
        engine.schedule_nowait("p", delay=1)


@pytest.mark.parametrize("value", PRIORITY_ACCEPTED)
def test_task_priority_accepted(value: int) -> None:
    engine = Engine(clock=VirtualClock())
    engine.task(name="p", priority=value)(print)
    assert engine.schedule_nowait("p", delay=1).priority == value


async def test_extreme_priorities_run_in_order() -> None:
    clock = VirtualClock()
    order: list[int] = []
    engine = Engine(clock=clock)
    engine.add_pool("one", concurrency=1)

    @engine.task(name="p", pool="one")
    async def p(priority: int) -> None:
        order.append(priority)

    async with engine:
        for priority in (0, -MAX_PRIORITY, MAX_PRIORITY, 1, -1):
            engine.schedule_nowait("p", args=(priority,), delay=1, priority=priority)
        await clock.advance(1 + TICK)
        assert order == [MAX_PRIORITY, 1, 0, -1, -MAX_PRIORITY]


# -- deadlines a datetime can show --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wall", "expected"),
    [
        (LATEST - 100, datetime.max.replace(tzinfo=UTC, microsecond=0)),
        (EARLIEST - 1e9, datetime.min.replace(tzinfo=UTC)),
    ],
    ids=["near-year-10000", "before-year-1"],
)
async def test_deadline_is_total_on_any_clock(wall: float, expected: datetime) -> None:
    clock = VirtualClock(wall=wall)
    async with Engine(clock=clock) as engine:
        engine.task(name="t")(print)
        job = engine.schedule_nowait("t", delay=MAX_DELAY if wall > 0 else 0)
        assert job.deadline == expected
        assert expected.isoformat() in repr(job)


@pytest.mark.parametrize("delay", [0, 1, 1e9, BEFORE_MAX, MAX_DELAY])
def test_deadline_of_an_accepted_delay(delay: float) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.task(name="t")(print)
    job = engine.schedule_nowait("t", delay=delay)
    assert job.deadline.timestamp() == pytest.approx(clock.wall() + delay, abs=1e-5)
    assert "deadline=" in repr(job)


# -- the wrong engine, a stopped engine ------------------------------------------------------------------------


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journal"])
async def test_a_job_of_another_engine_is_refused(tmp_path: Path, journal: bool) -> None:
    a = await make_world(str(tmp_path / "a.log") if journal else None)
    b = await make_world(str(tmp_path / "b.log") if journal else None)
    finished = a.engine.schedule_nowait("t", delay=0)
    await a.clock.advance(TICK)
    assert finished.state == "succeeded"
    calls: list[Callable[[Job], object]] = [a.engine.cancel, lambda job: a.engine.reschedule(job, delay=1)]
    for call in calls:
        assert call(finished) is False  # a's own job, no longer pending: False, not an error
        for theirs in (b.keyed, b.dead):
            before_a, before_b = a.snapshot(), b.snapshot()
            with pytest.raises(ValueError, match="not a job of this engine"):
                call(theirs)
            assert (a.snapshot(), b.snapshot()) == (before_a, before_b)
    with pytest.raises(ValueError, match="dead letters"):
        a.engine.redrive(b.dead)
    assert a.engine.cancel(a.keyed) is True  # its own, still found
    assert b.keyed.state == "pending"
    assert len(b.engine) == 2
    await a.engine.stop(grace=0)
    await b.engine.stop(grace=0)


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journal"])
@pytest.mark.parametrize(
    "call",
    [
        lambda w: w.engine.cancel("k"),
        lambda w: w.engine.cancel(w.keyed),
        lambda w: w.engine.reschedule("k", delay=5),
        lambda w: w.engine.reschedule(w.keyed, at=datetime.now(UTC)),
        lambda w: w.engine.cancel("missing"),
    ],
    ids=["cancel-key", "cancel-job", "reschedule-key", "reschedule-job", "cancel-missing"],
)
async def test_a_stopped_engine_refuses_changes(tmp_path: Path, journal: bool, call: Any) -> None:
    world = await make_world(str(tmp_path / "timers.log") if journal else None)
    await world.engine.stop(grace=0)
    before = world.snapshot()
    with pytest.raises(EngineClosed):
        call(world)
    assert world.snapshot() == before
    if journal:
        again = build_engine(world.path, VirtualClock(wall=world.clock.wall()), [])
        async with again:
            keyed = again.get("k")
            assert keyed is not None
            assert keyed.deadline == world.keyed.deadline


# -- the rest of the gaps: kwargs keys, clock=, journal= ---------------------------------------------------------


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journal"])
async def test_kwargs_keys_are_strings(tmp_path: Path, journal: bool) -> None:
    """Refused when scheduled, in memory too: the job would only fail when called."""
    world = await make_world(str(tmp_path / "timers.log") if journal else None)

    def call(kwargs: Any) -> object:
        return world.engine.schedule_nowait("t", delay=0, kwargs=kwargs, key="k", if_exists="replace")

    cases: Refused = [(kwargs, TypeError) for kwargs in ({1: 2}, {None: 1}, {("a",): 1}, {"ok": 1, 2: 3})]
    await expect_refused(world, call, cases, "kwargs")


class _NoCallAt:
    def time(self) -> float:
        return 0.0

    def wall(self) -> float:
        return 0.0


class _WallNotCallable(_NoCallAt):
    wall = 5.0  # type: ignore[assignment]

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        raise AssertionError("not called")


class _Duck(_NoCallAt):
    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        raise AssertionError("not called")


@pytest.mark.parametrize(
    "clock", [object(), 5, "clock", VirtualClock, _NoCallAt(), _WallNotCallable()], ids=lambda c: type(c).__name__
)
def test_clock_is_checked(clock: Any) -> None:
    with pytest.raises(TypeError, match="clock"):
        Engine(clock=clock)


@pytest.mark.parametrize("clock", [None, SystemClock(), VirtualClock(), _Duck()], ids=lambda c: type(c).__name__)
def test_clocks_that_have_the_methods(clock: Any) -> None:
    Engine(clock=clock)


class _BytesPath:
    def __fspath__(self) -> bytes:
        return b"timers.log"

    def __repr__(self) -> str:  # the test id: the default repr holds an address, different in every process
        return "_BytesPath()"


@pytest.mark.parametrize(
    ("journal", "error"),
    [
        ("", ValueError),
        (".", ValueError),
        ("adir", ValueError),
        ("missing-dir" + os.sep, ValueError),
        (b"timers.log", TypeError),
        (_BytesPath(), TypeError),
        (5, TypeError),
    ],
    ids=repr,
)
def test_journal_path_is_checked_before_any_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: Any, error: type[Exception]
) -> None:
    (tmp_path / "work" / "adir").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(error, match="journal"):
        Engine(journal=journal)
    assert sorted(tmp_path.rglob("*")) == before


async def test_journal_path_like_is_accepted(tmp_path: Path) -> None:
    async with Engine(journal=tmp_path / "timers.log", clock=VirtualClock()):  # type: ignore[arg-type]
        pass
    assert (tmp_path / "timers.log").exists()
