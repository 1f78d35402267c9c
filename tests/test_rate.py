# mypy: disable-error-code="comparison-overlap"
# (tests assert a job's state before and after awaits; narrowing cannot see it change)
"""Rate-limited pools: at most ``limit`` starts in any ``per`` seconds; waiting jobs stay in the pool's wheel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronowheel import Engine, Every, Rate, Retry
from chronowheel._rate import Limiter
from chronowheel.testing import VirtualClock
from helpers import run_on, stopping, virtual_sleep


def most_in_a_window(starts: list[float], per: float) -> int:
    """The most starts any half-open window of ``per`` seconds holds."""
    starts = sorted(starts)
    return max((sum(1 for t in starts[i:] if t < s + per - 1e-9) for i, s in enumerate(starts)), default=0)


bursts = st.lists(  # (ms, jobs, priority)
    st.tuples(st.integers(0, 3000), st.integers(1, 12), st.integers(-2, 2)), min_size=1, max_size=6
)


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=bursts,
    limit=st.integers(1, 5),
    per=st.sampled_from([0.01, 0.25, 1.0, 2.5]),
    concurrency=st.integers(1, 8),
    work=st.sampled_from([0.0, 0.004, 0.3]),
)
def test_no_window_sees_more_than_limit_starts(
    backend: str, shape: list[tuple[int, int, int]], limit: int, per: float, concurrency: int, work: float
) -> None:
    """Bursts of mixed priorities: the window holds, and no job starts while a higher-priority one waits."""
    jobs: list[tuple[float, int, float]] = []  # (due, priority, start) of each job

    async def main() -> None:
        clock = VirtualClock()
        engine = Engine(clock=clock)
        engine.add_pool("api", concurrency=concurrency, rate=Rate(limit, per=per))

        @engine.task(pool="api")
        async def call(due: float, priority: int) -> None:
            jobs.append((due, priority, engine.time()))
            if work:
                await virtual_sleep(engine, work)

        async with stopping(engine):
            for at_ms, count, priority in shape:
                for _ in range(count):
                    engine.schedule_nowait(call, args=(at_ms / 1000, priority), delay=at_ms / 1000, priority=priority)
            total = sum(count for _, count, _ in shape)
            await clock.advance(3 + (total / limit + 1) * per + total * work)
            assert engine.stats()["succeeded"] == total

    run_on(backend)(main)
    starts = [start for *_, start in jobs]
    assert most_in_a_window(starts, per) <= limit
    # Not slower than the limit needs: a full window's worth starts as soon as the first burst is due.
    first_burst = min(at for at, _, _ in shape) / 1000
    assert min(starts) == pytest.approx(first_burst, abs=0.002)
    for due, priority, start in jobs:  # every job due when this one started, and started later, ranks no higher
        passed_over = [p for d, p, s in jobs if d <= start + 1e-9 and s > start + 1e-9 and p > priority]
        assert not passed_over, (due, priority, start)


@pytest.mark.parametrize(("limit", "per"), [(1, 1.0), (2, 0.5), (3, 2.0)])
async def test_waiting_jobs_stay_in_the_wheel_not_against_their_timeout(limit: int, per: float) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("api", concurrency=4, rate=Rate(limit, per=per))
    ran: list[int] = []

    @engine.task(pool="api", timeout=0.5)
    async def call(n: int) -> None:
        await virtual_sleep(engine, 0.1)
        ran.append(n)

    async with stopping(engine):
        jobs = [engine.schedule_nowait(call, args=(n,), delay=0) for n in range(4 * limit)]
        await clock.advance(0)
        stats = engine.stats()
        assert (stats["running"], stats["queued"]) == (limit, 0)  # the rest wait in the pool's wheel
        assert stats["pending"] == 3 * limit + 2 * limit  # those, and the running ones' sleeps and timeouts
        assert engine.cancel(jobs[-1])  # a waiting job is still pending: it can be cancelled
        await clock.advance(4 * per + 1)
        stats = engine.stats()
    assert sorted(ran) == list(range(4 * limit - 1))  # none timed out while waiting for its turn
    assert stats["failed"] == 0
    last_start = (4 * limit - 2) // limit * per  # the last one was cancelled
    assert stats["lateness"]["p99"] == pytest.approx(last_start, abs=0.002)  # the wait shows as lateness


@pytest.mark.parametrize("limited_by", ["rate", "workers"])
@pytest.mark.parametrize(
    "priorities",
    [[0, 5, 1, 5, 3], [9, 8, 7], [1, 2, 3, 4, 5, 6], [0, 0, 2, 0]],
    ids=["mixed", "down", "up", "one-high"],
)
async def test_waiting_jobs_start_by_priority_as_in_a_pool_without_a_rate(
    priorities: list[int], limited_by: str
) -> None:
    """When the window opens the highest-priority waiting job starts, even one due after the others.

    The same order as a pool without a rate whose one worker is busy for as
    long as the window is shut: the ready queue orders its waiting jobs so.
    """
    clock = VirtualClock()
    engine = Engine(clock=clock)
    if limited_by == "rate":
        engine.add_pool("api", concurrency=3, rate=Rate(1, per=1.0))
    else:
        engine.add_pool("api", concurrency=1)
    order: list[tuple[int, int, float]] = []

    @engine.task(pool="api")
    async def call(serial: int, priority: int) -> None:
        order.append((priority, serial, engine.time()))
        if limited_by == "workers":
            await virtual_sleep(engine, 1.0)

    async with stopping(engine):
        for serial, priority in enumerate(priorities):
            engine.schedule_nowait(call, args=(serial, priority), delay=0.5, priority=priority)
        engine.schedule_nowait(call, args=(len(priorities), 99), delay=0.7, priority=99)  # due later, ranks first
        await clock.advance(len(priorities) + 2)
    expected = sorted(((p, s) for s, p in enumerate(priorities)), key=lambda ps: (-ps[0], ps[1]))
    assert [(p, s) for p, s, _ in order] == [expected[0], (99, len(priorities)), *expected[1:]]
    assert [t for *_, t in order] == pytest.approx([0.5 + n for n in range(len(priorities) + 1)], abs=0.002)


@pytest.mark.parametrize("attempts", [2, 3])
async def test_retries_count_as_starts(attempts: int) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("api", concurrency=5, rate=Rate(2, per=1.0))
    starts: list[float] = []

    @engine.task(pool="api", retry=Retry(attempts, backoff=0.0, jitter=False))
    async def flaky() -> None:
        starts.append(engine.time())
        raise ConnectionError("upstream said 503")

    async with stopping(engine):
        for _ in range(3):
            engine.schedule_nowait(flaky, delay=0)
        await clock.advance(3 * attempts + 2)
        stats = engine.stats()
    assert len(starts) == 3 * attempts
    assert (stats["failed"], stats["dead"]) == (3 * attempts, 3)
    assert most_in_a_window(starts, 1.0) <= 2


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0,), {}, ValueError, "limit must be an int >= 1, got 0"),
        ((10**7,), {}, ValueError, "limit must be an int from 1 to 1000000, got 10000000"),
        ((1.5,), {}, TypeError, "limit must be an int >= 1, got float"),
        ((True,), {}, TypeError, "limit must be an int >= 1, got bool"),
        ((1,), {"per": 0}, ValueError, "per must be a number of seconds > 0, got 0"),
        ((1,), {"per": -1.0}, ValueError, "per must be a number of seconds from 0 to"),
        ((1,), {"per": "1"}, TypeError, "per must be a number of seconds, got str"),
    ],
    ids=["zero", "huge", "float-limit", "bool-limit", "zero-per", "negative-per", "str-per"],
)
def test_rate_names_the_bad_argument(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{message}"):
        Rate(*args, **kwargs)


@pytest.mark.parametrize("rate", [5, (5, 1.0), "5/s"], ids=["int", "tuple", "str"])
def test_add_pool_refuses_a_rate_that_is_not_a_rate(rate: object) -> None:
    with pytest.raises(TypeError, match=f"^rate must be a Rate or None, got {type(rate).__name__}$"):
        Engine().add_pool("api", concurrency=1, rate=rate)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("per", "tick", "window"), [(1.0, 0.001, 1000), (0.0005, 0.001, 1), (0.0015, 0.001, 2), (2.5, 0.1, 25)]
)
def test_the_window_rounds_up_to_whole_ticks(per: float, tick: float, window: int) -> None:
    limiter = Limiter(Rate(1, per=per), 1 / tick)
    assert limiter.room(0) == 1
    limiter.took(0, 1)
    assert (limiter.room(window - 1), limiter.free_at(), limiter.room(window)) == (0, window, 1)


def test_rate_is_a_value() -> None:
    assert Rate(3, per=2) == Rate(3, per=2.0)
    assert len({Rate(3, per=2), Rate(3, per=2.0), Rate(2, per=2)}) == 2
    assert repr(Rate(3, per=0.5)) == "Rate(3, per=0.5)"
    assert Rate(3) != (3, 1.0)


async def test_the_driver_sleeps_until_the_window_frees() -> None:
    """No busy loop while jobs wait for the rate: the driver's next alarm is the window's end."""
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("api", concurrency=2, rate=Rate(1, per=5.0))
    started = asyncio.Event()

    @engine.task(pool="api")
    async def call() -> None:
        started.set()

    async with stopping(engine):
        engine.schedule_nowait(call, delay=0)
        second = engine.schedule_nowait(call, delay=0)
        await clock.advance(4.9)
        assert second.state == "pending"
        await clock.advance(0.1)
        assert second.state == "succeeded"


@pytest.mark.parametrize(("period", "per"), [(0.5, 2.0), (1.0, 1.5), (0.25, 1.0)])
async def test_a_recurring_job_keeps_to_the_rate(period: float, per: float) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("api", concurrency=2, rate=Rate(1, per=per))
    starts: list[float] = []

    @engine.task(pool="api")
    async def poll() -> None:
        starts.append(engine.time())

    async with stopping(engine):
        # misfire "fire_once" with no grace: the runs missed while waiting for the rate coalesce into one.
        # (Runs within the grace all start together, and may overfill the window: see docs/operations.md.)
        engine.schedule_nowait(poll, every=Every(period), misfire="fire_once", misfire_grace=0)
        engine.schedule_nowait(poll, delay=0.1)  # a one-shot job shares the window
        await clock.advance(10)
    assert len(starts) >= int(10 / per)
    assert most_in_a_window(starts, per) <= 1
