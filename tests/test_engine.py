"""The engine on a virtual clock, on stock asyncio and on uvloop."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import chronowheel
from chronowheel import DuplicateKey, Engine, EngineClosed, Job, UnknownTask
from chronowheel.testing import VirtualClock
from helpers import CountingClock


async def test_call_later_fires_on_time_never_early() -> None:
    clock = VirtualClock()
    fired: list[tuple[str, float]] = []
    async with Engine(clock=clock) as engine:
        engine.call_later(1.5, lambda: fired.append(("a", clock.time())))
        engine.call_later(0.25, lambda: fired.append(("b", clock.time())))
        engine.call_at(2.0, lambda: fired.append(("c", clock.time())))
        await clock.advance(0.249)
        assert fired == []
        await clock.advance(0.001)
        assert fired == [("b", 0.25)]
        await clock.advance(1.249)
        assert fired == [("b", 0.25)]
        await clock.advance(1.0)
        assert fired == [("b", 0.25), ("a", 1.5), ("c", 2.0)]
        assert len(engine) == 0


async def test_call_later_passes_args_and_fires_within_one_tick() -> None:
    clock = VirtualClock()
    fired: list[tuple[int, float]] = []
    async with Engine(clock=clock, tick=0.01) as engine:
        for i in range(100):
            engine.call_later(i * 0.0037, lambda i, due: fired.append((i, clock.time() - due)), i, i * 0.0037)
        await clock.advance(1)
    assert sorted(i for i, _ in fired) == list(range(100))
    assert all(0 <= late <= 0.01 + 1e-9 for _, late in fired)


async def test_cancel_handle() -> None:
    clock = VirtualClock()
    fired: list[str] = []
    async with Engine(clock=clock) as engine:
        keep = engine.call_later(1, fired.append, "keep")
        drop = engine.call_later(1, fired.append, "drop")
        assert drop.cancel() is True
        assert drop.cancel() is False
        assert len(engine) == 1
        await clock.advance(1)
        assert fired == ["keep"]
        assert keep.cancel() is False  # already fired


async def test_earlier_timer_wakes_the_sleeping_driver() -> None:
    clock = VirtualClock()
    fired: list[float] = []
    async with Engine(clock=clock) as engine:
        engine.call_later(3600, lambda: fired.append(clock.time()))
        await clock.advance(10)  # the driver is now asleep until t=3600
        engine.call_later(5, lambda: fired.append(clock.time()))
        await clock.advance(5)
        assert fired == [15.0]


async def test_idle_engine_is_tickless() -> None:
    """1,000 timers an hour out: a handful of alarms (one per wheel level), not one per tick."""
    clock = CountingClock()
    fired: list[int] = []
    async with Engine(clock=clock) as engine:
        for i in range(1000):
            engine.call_later(3600 + i * 0.001, fired.append, i)
        await clock.advance(3599)
        assert fired == []
        assert clock.alarms <= 1 + engine._timers.wheel.levels  # 3.6 million ticks went by
        await clock.advance(2)
        assert fired == list(range(1000))


async def test_timer_callback_error_reaches_the_loop_handler_and_the_driver_goes_on() -> None:
    clock = VirtualClock()
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    async with Engine(clock=clock) as engine:
        engine.call_later(1, boom)
        engine.call_later(2, fired.append, "after")
        await clock.advance(3)
    assert fired == ["after"]
    assert len(errors) == 1
    assert isinstance(errors[0]["exception"], RuntimeError)


async def test_jobs_run_in_the_default_pool_sync_and_async() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    ran: list[tuple[str, Any]] = []
    sync_done = threading.Event()

    @engine.task
    async def greet(name: str, *, punct: str = "!") -> None:
        ran.append(("async", name + punct))

    @engine.task(name="blocking")
    def blocking(n: int) -> None:
        ran.append(("sync", (n, threading.current_thread() is threading.main_thread())))
        sync_done.set()

    async with engine:
        job = await engine.schedule(greet, args=("ada",), kwargs={"punct": "?"}, delay=60)
        sync_job = engine.schedule_nowait("blocking", args=[7], delay=30)
        assert isinstance(job, Job)
        initial = job.state
        assert initial == "pending"
        assert job.task.endswith("greet")
        assert job.deadline == datetime.fromtimestamp(clock.wall(), UTC) + timedelta(seconds=60)
        await clock.advance(30)
        await anyio.to_thread.run_sync(sync_done.wait)
        await clock.settle()
        assert ran == [("sync", (7, False))]
        assert sync_job.state == "succeeded"
        await clock.advance(30)
        assert ran[-1] == ("async", "ada?")
        assert job.state == "succeeded"
        assert job.attempt == 1
        stats = engine.stats()
        assert stats["succeeded"] == 2
        assert stats["fired"] == 2
        assert stats["pending"] == 0


async def test_schedule_at_aware_datetime_and_in_the_past() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    ran: list[float] = []

    @engine.task
    async def mark() -> None:
        ran.append(clock.time())

    now = datetime.fromtimestamp(clock.wall(), UTC)
    async with engine:
        await engine.schedule(mark, at=now + timedelta(seconds=90))
        await engine.schedule(mark, at=now - timedelta(days=1))  # overdue: runs at once
        await clock.advance(0)
        assert ran == [0.0]
        await clock.advance(90)
        assert ran == [0.0, 90.0]


async def test_keys_and_if_exists() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    ran: list[str] = []

    @engine.task
    async def note(text: str) -> None:
        ran.append(text)

    async with engine:
        first = await engine.schedule(note, args=("first",), delay=10, key="k")
        assert engine.get("k") is first
        with pytest.raises(DuplicateKey, match="'k'"):
            await engine.schedule(note, args=("dup",), delay=5, key="k")
        kept = await engine.schedule(note, args=("kept",), delay=5, key="k", if_exists="keep")
        assert kept is first
        replaced = await engine.schedule(note, args=("second",), delay=20, key="k", if_exists="replace")
        assert first.state == "cancelled"
        assert engine.get("k") is replaced
        assert len(engine) == 1
        await clock.advance(20)
        assert ran == ["second"]
        assert engine.get("k") is None
        # Once fired, the key is free again.
        await engine.schedule(note, args=("third",), delay=1, key="k")
        await clock.advance(1)
        assert ran == ["second", "third"]


async def test_cancel_and_reschedule_by_key_and_by_job() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    ran: list[tuple[str, float]] = []

    @engine.task
    async def note(text: str) -> None:
        ran.append((text, clock.time()))

    async with engine:
        await engine.schedule(note, args=("a",), delay=10, key="a")
        b = await engine.schedule(note, args=("b",), delay=10)
        c = await engine.schedule(note, args=("c",), delay=10, key="c")
        assert engine.reschedule("a", delay=30) is True
        assert engine.reschedule(b, delay=5) is True
        assert engine.cancel("c") is True
        assert engine.cancel(c) is False
        assert engine.cancel("missing") is False
        assert engine.reschedule("missing", delay=1) is False
        assert c.state == "cancelled"
        await clock.advance(10)
        assert ran == [("b", 5.0)]
        assert engine.reschedule(b, delay=1) is False  # already ran
        await clock.advance(20)
        assert ran == [("b", 5.0), ("a", 30.0)]
        assert engine.stats()["cancelled"] == 1


async def test_pool_concurrency_limit_and_priority() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("narrow", concurrency=2)
    gate = asyncio.Event()
    started: list[str] = []

    @engine.task(pool="narrow")
    async def work(name: str) -> None:
        started.append(name)
        await gate.wait()

    async with engine:
        for name in ("low1", "low2", "low3"):
            await engine.schedule(work, args=(name,), delay=1)
        await engine.schedule(work, args=("urgent",), delay=1, priority=5)
        await clock.advance(1)
        assert engine.stats()["running"] == 2
        assert engine.stats()["queued"] == 2
        assert started == ["urgent", "low1"]
        gate.set()
        await clock.settle()
        assert started == ["urgent", "low1", "low2", "low3"]


async def test_failing_job_is_logged_and_the_worker_survives(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="chronowheel")
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("solo", concurrency=1)
    ran: list[int] = []

    @engine.task(pool="solo")
    async def flaky(n: int) -> None:
        if n == 1:
            raise ValueError("bad input")
        ran.append(n)

    async with engine:
        bad = await engine.schedule(flaky, args=(1,), delay=1)
        await engine.schedule(flaky, args=(2,), delay=2)
        await clock.advance(2)
        assert bad.state == "dead"  # no retry policy: one attempt, then the dead letters
        assert isinstance(bad.error, ValueError)
        assert engine.dead_letters() == [bad]
        assert ran == [2]
        assert engine.stats()["failed"] == 1
        assert engine.stats()["dead"] == 1
    assert any("flaky" in record.getMessage() and record.exc_info for record in caplog.records)


async def test_stop_gives_running_jobs_grace_then_cancels() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    finished: list[str] = []
    cancelled: list[str] = []

    @engine.task
    async def slow(name: str, seconds: float) -> None:
        try:
            done = asyncio.Event()
            engine.call_later(seconds, done.set)
            await done.wait()
            finished.append(name)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    await engine.start()
    await engine.schedule(slow, args=("quick", 0.0), delay=1)
    await engine.schedule(slow, args=("stuck", 1e6), delay=1)
    await clock.advance(1)
    stopping = asyncio.create_task(engine.stop(grace=5))
    await clock.advance(4.9)
    assert not stopping.done()
    await clock.advance(0.1)
    await stopping
    assert finished == ["quick"]
    assert cancelled == ["stuck"]
    with pytest.raises(EngineClosed):
        engine.call_later(1, print)
    with pytest.raises(EngineClosed):
        await engine.schedule(slow, args=("late", 0), delay=1)


async def test_jobs_scheduled_before_start_run_after_it() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    ran: list[float] = []

    @engine.task
    async def mark() -> None:
        ran.append(clock.time())

    engine.schedule_nowait(mark, delay=2)
    await clock.advance(5)
    assert ran == []
    async with engine:
        await clock.advance(0)
        assert ran == [5.0]


async def test_real_clock_fires_due_timer() -> None:
    """The system clock path, without waiting on a timer: a zero delay is due at once."""
    done = asyncio.Event()
    async with Engine() as engine:
        engine.call_later(0, done.set)
        await asyncio.wait_for(done.wait(), timeout=5)
        assert isinstance(engine.time(), float)


async def test_restarting_is_refused() -> None:
    engine = Engine(clock=VirtualClock())
    async with engine:
        with pytest.raises(RuntimeError, match="starts once"):
            await engine.start()
    with pytest.raises(RuntimeError, match="starts once"):
        await engine.start()


def test_wheel_switch_is_exposed() -> None:
    assert chronowheel.WHEEL in ("native", "pure")


# -- bad input: every public call names the argument ---------------------------------


@pytest.mark.parametrize("delay", [math.nan, math.inf, -math.inf, 1e13])
def test_call_later_rejects_bad_delay(delay: float) -> None:
    engine = Engine(clock=VirtualClock())
    with pytest.raises(ValueError, match="delay"):
        engine.call_later(delay, print)


def test_bad_arguments_name_themselves() -> None:
    engine = Engine(clock=VirtualClock())

    @engine.task
    async def job() -> None:
        pass

    async def unregistered() -> None:
        pass

    naive = datetime(2030, 1, 1)
    cases: list[tuple[type[Exception], str, Any]] = [
        (TypeError, "delay", lambda: engine.call_later("soon", print)),  # type: ignore[arg-type]
        (TypeError, "callback", lambda: engine.call_later(1, "print")),  # type: ignore[arg-type]
        (ValueError, "when", lambda: engine.call_at(math.nan, print)),
        (ValueError, "delay", lambda: engine.schedule_nowait(job, delay=-5)),
        (ValueError, "delay", lambda: engine.schedule_nowait(job, delay=math.nan)),
        (TypeError, "delay", lambda: engine.schedule_nowait(job, delay="5")),  # type: ignore[arg-type]
        (ValueError, "at", lambda: engine.schedule_nowait(job, at=naive)),
        (ValueError, "delay= and at=", lambda: engine.schedule_nowait(job)),
        (ValueError, "delay= and at=", lambda: engine.schedule_nowait(job, delay=1, at=datetime.now(UTC))),
        (ValueError, "if_exists", lambda: engine.schedule_nowait(job, delay=1, if_exists="merge")),  # type: ignore[arg-type]
        (ValueError, "key", lambda: engine.schedule_nowait(job, delay=1, key="")),
        (TypeError, "args", lambda: engine.schedule_nowait(job, delay=1, args="abc")),  # type: ignore[arg-type]
        (TypeError, "kwargs", lambda: engine.schedule_nowait(job, delay=1, kwargs=[1])),  # type: ignore[arg-type]
        (TypeError, "priority", lambda: engine.schedule_nowait(job, delay=1, priority=1.5)),  # type: ignore[arg-type]
        (UnknownTask, "unregistered", lambda: engine.schedule_nowait(unregistered, delay=1)),
        (UnknownTask, "nope", lambda: engine.schedule_nowait("nope", delay=1)),
        (ValueError, "concurrency", lambda: engine.add_pool("p", concurrency=0)),
        (ValueError, "max_queued", lambda: engine.add_pool("p", concurrency=1, max_queued=0)),
        (ValueError, "name", lambda: engine.add_pool("default", concurrency=1)),
        (ValueError, "pool", lambda: engine.task(pool="missing")),
        (ValueError, "timeout", lambda: engine.task(timeout=-1)),
        (ValueError, "tick", lambda: Engine(tick=0)),
        (ValueError, "fsync", lambda: Engine(fsync="sometimes")),  # type: ignore[arg-type]
        (TypeError, "key_or_job", lambda: engine.cancel(42)),  # type: ignore[arg-type]
        (ValueError, "delay", lambda: engine.reschedule("x", delay=-1)),
    ]
    for error, word, call in cases:
        with pytest.raises(error, match=word):
            call()
