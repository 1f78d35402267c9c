# mypy: disable-error-code="comparison-overlap"
# (tests assert a job's state before and after awaits; narrowing cannot see it change)
"""Worker pools: priorities, backpressure, retries, timeouts, dead letters, shutdown."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading

import anyio
import pytest

from chronowheel import Engine, Retry
from chronowheel.testing import VirtualClock
from helpers import virtual_sleep


async def test_equal_priority_runs_in_due_order_when_saturated() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("one", concurrency=1)
    order: list[str] = []

    @engine.task(pool="one", priority=1)
    async def work(name: str) -> None:
        order.append(name)
        await virtual_sleep(engine, 10)

    async with engine:
        await engine.schedule(work, args=("blocker",), delay=0)
        await clock.advance(0)
        await engine.schedule(work, args=("late-due",), delay=3)
        await engine.schedule(work, args=("early-due",), delay=2)
        await engine.schedule(work, args=("low",), delay=1, priority=0)
        await engine.schedule(work, args=("high",), delay=4, priority=9)
        await clock.advance(60)
    # Task priority 1 beats the per-job override 0; 9 beats both; equal ones in due order.
    assert order == ["blocker", "high", "early-due", "late-due", "low"]


async def test_overload_is_bounded_and_loses_nothing() -> None:
    """10x more due jobs than the pool can hold: the rest wait in the wheel."""
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("small", concurrency=2, max_queued=10)
    ran: list[int] = []
    queue_high_water = 0

    @engine.task(pool="small")
    async def work(n: int) -> None:
        nonlocal queue_high_water
        queue_high_water = max(queue_high_water, engine.stats()["queued"])
        await virtual_sleep(engine, 1)
        ran.append(n)

    async with engine:
        for n in range(120):
            await engine.schedule(work, args=(n,), delay=1)
        await clock.advance(1)
        stats = engine.stats()
        assert stats["queued"] == 10
        assert stats["running"] == 2
        # The rest waits in the pool's wheel, beside the running jobs' two sleep timers.
        assert stats["pending"] == (120 - 10 - 2) + 2
        await clock.advance(70)
        stats = engine.stats()
    assert sorted(ran) == list(range(120))
    assert queue_high_water <= 10
    assert stats["succeeded"] == 120
    # Two at a time, one second each: the last of 120 starts ~59 s late.
    assert stats["lateness"]["p99"] >= 50


async def test_retry_with_exponential_backoff_then_dead_letter_and_redrive() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    attempts: list[float] = []
    healed = False

    @engine.task(retry=Retry(attempts=4, backoff=1.0, max_backoff=3.0, jitter=False))
    async def flaky() -> None:
        attempts.append(clock.time())
        if not healed:
            raise ConnectionError("down")

    async with engine:
        job = await engine.schedule(flaky, delay=0)
        await clock.advance(0)
        assert job.state == "failed"  # waiting in the wheel for attempt 2
        assert len(engine) == 1
        await clock.advance(100)
        # Waits of 1, 2, then 4 capped to 3 seconds.
        assert attempts == [0.0, 1.0, 3.0, 6.0]
        assert job.state == "dead"
        assert job.attempt == 4
        assert isinstance(job.error, ConnectionError)
        assert job.traceback is not None
        assert "ConnectionError: down" in job.traceback
        assert engine.dead_letters() == [job]
        stats = engine.stats()
        assert (stats["failed"], stats["retried"], stats["dead"]) == (4, 3, 1)

        healed = True
        assert engine.redrive(job) is job
        assert engine.dead_letters() == []
        await clock.advance(0)
        assert job.state == "succeeded"
        assert job.attempt == 1
        with pytest.raises(ValueError, match="job"):
            engine.redrive(job)


async def test_jittered_backoff_stays_within_bounds() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    starts: dict[int, list[float]] = {}

    @engine.task(retry=Retry(attempts=5, backoff=2.0, max_backoff=10.0))
    async def fail(n: int) -> None:
        starts.setdefault(n, []).append(clock.time())
        raise RuntimeError("always")

    async with engine:
        for n in range(50):
            await engine.schedule(fail, args=(n,), delay=0)
        await clock.advance(1000)
    caps = [2.0, 4.0, 8.0, 10.0]
    waits_seen: list[list[float]] = [[] for _ in caps]
    for times in starts.values():
        assert len(times) == 5
        for i, cap in enumerate(caps):
            wait = times[i + 1] - times[i]
            assert 0 <= wait <= cap + 0.002  # full jitter, plus tick rounding
            waits_seen[i].append(wait)
    # Jitter really spreads them: not all the same wait.
    assert all(len({round(w, 3) for w in waits}) > 10 for waits in waits_seen)


async def test_non_retryable_errors_go_straight_to_the_dead_letters() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    calls: list[str] = []

    @engine.task(retry=Retry(attempts=5, non_retryable=(KeyError,)))
    async def lookup(kind: str) -> None:
        calls.append(kind)
        raise KeyError(kind) if kind == "missing" else OSError(kind)

    async with engine:
        dead = await engine.schedule(lookup, args=("missing",), delay=0)
        retried = await engine.schedule(lookup, args=("io",), delay=0)
        await clock.advance(0)
        assert dead.state == "dead"
        assert retried.state == "failed"
        assert calls == ["missing", "io"]


async def test_cancel_stops_a_pending_retry() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    calls = 0

    @engine.task(retry=Retry(attempts=3, backoff=5.0, jitter=False))
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("nope")

    async with engine:
        job = await engine.schedule(flaky, delay=0, key="flaky")
        await clock.advance(0)
        assert engine.get("flaky") is job
        assert engine.cancel("flaky") is True
        await clock.advance(60)
    assert calls == 1
    assert job.state == "cancelled"


async def test_timeout_cancels_an_async_job_and_counts_as_a_failed_attempt() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    cancelled = 0

    @engine.task(timeout=5.0, retry=Retry(attempts=2, backoff=1.0, jitter=False))
    async def hang() -> None:
        nonlocal cancelled
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise

    async with engine:
        job = await engine.schedule(hang, delay=0)
        await clock.advance(4.999)
        assert job.state == "running"
        await clock.advance(0.001)
        assert job.state == "failed"
        assert isinstance(job.error, TimeoutError)
        await clock.advance(1 + 5)
        assert job.state == "dead"
        assert cancelled == 2
        assert engine.stats()["running"] == 0


async def test_timeout_abandons_a_stuck_sync_job() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    release = threading.Event()

    @engine.task(timeout=2.0)
    def stuck() -> None:
        release.wait(30)

    async with engine:
        job = await engine.schedule(stuck, delay=0)
        await clock.advance(2)
        assert job.state == "dead"
        assert isinstance(job.error, TimeoutError)
        release.set()


async def test_sync_jobs_run_in_threads_bounded_by_the_pool() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("blocking", concurrency=2)
    lock = threading.Lock()
    active = 0
    most = 0
    threads: set[int] = set()
    both_in = threading.Barrier(2)
    finished: list[int] = []
    all_finished = threading.Event()

    @engine.task(pool="blocking")
    def block(n: int) -> None:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
            threads.add(threading.get_ident())
        both_in.wait(10)  # only passes when two run at once
        with lock:
            active -= 1
            finished.append(n)
            if len(finished) == 6:
                all_finished.set()

    async with engine:
        jobs = [await engine.schedule(block, args=(n,), delay=1) for n in range(6)]
        await clock.advance(1)
        assert await anyio.to_thread.run_sync(all_finished.wait, 10)
        await clock.settle()
        assert [job.state for job in jobs] == ["succeeded"] * 6
    assert most == 2
    assert threading.get_ident() not in threads


async def test_stop_reports_due_jobs_that_never_ran(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="chronowheel")
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("one", concurrency=1)

    @engine.task(pool="one")
    async def long(n: int) -> None:
        await virtual_sleep(engine, 100)

    await engine.start()
    jobs = [await engine.schedule(long, args=(n,), delay=0) for n in range(3)]
    await clock.advance(0)
    stopping = asyncio.create_task(engine.stop(grace=1))
    await clock.advance(1)
    await stopping
    assert [job.state for job in jobs] == ["pending", "pending", "pending"]
    assert any("3 due jobs did not complete" in record.getMessage() for record in caplog.records)


def test_retry_validation_names_the_argument() -> None:
    for kwargs, word in [
        ({"attempts": 0}, "attempts"),
        ({"attempts": 2, "backoff": -1.0}, "backoff"),
        ({"attempts": 2, "max_backoff": math.nan}, "max_backoff"),
        ({"attempts": 2, "backoff": 10.0, "max_backoff": 1.0}, "max_backoff"),
    ]:
        with pytest.raises(ValueError, match=word):
            Retry(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non_retryable"):
        Retry(2, non_retryable=(ValueError, "x"))  # type: ignore[arg-type]
    engine = Engine(clock=VirtualClock())
    with pytest.raises(TypeError, match="retry"):
        engine.task(retry=3)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="timeout"):
        engine.task(timeout=0)


def test_backoff_delays_are_exponential_and_capped() -> None:
    rng = random.Random(7)
    plain = Retry(10, backoff=0.5, max_backoff=6.0, jitter=False)
    assert [plain.delay(n, rng) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 6.0, 6.0]
    jittered = Retry(10, backoff=0.5, max_backoff=6.0)
    assert all(0 <= jittered.delay(5, rng) <= 6.0 for _ in range(1000))
    assert plain.should_retry(OSError(), 9)
    assert not plain.should_retry(OSError(), 10)
