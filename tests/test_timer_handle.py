"""``TimerHandle.reschedule``: later, earlier, after firing, after a cancel, on either loop.

The suite runs this file on the native wheel and again on the pure one (the Makefile's
``CHRONOWHEEL_NO_EXTENSIONS=1`` run), so both wheels move timers the same way.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Callable

import pytest

from chronowheel import WHEEL, Engine
from chronowheel.testing import VirtualClock

TICK = 0.001

# (first delay, when the move is made, the new delay): from a near slot to a far one across wheel levels,
# and back; within a slot; to zero.
LATER = [(1, 0, 2), (10, 5, 30), (0.5, 0.25, 3600), (2, 1, 86_400 * 30), (3600, 3599, 1e6)]
EARLIER = [(2, 0, 1), (3600, 10, 5), (86_400 * 30, 100, 0.5), (1e6, 1, 3600), (5, 4, 0)]


async def advance_to(clock: VirtualClock, when: float) -> None:
    """Move the clock to ``when`` exactly: steps summed by the test would drift by rounding."""
    await clock.advance(max(0.0, when - clock.time()))


@pytest.mark.parametrize(("first", "at", "delay"), LATER, ids=[f"{f}-at{a}-to{d}" for f, a, d in LATER])
async def test_moved_later_fires_at_the_new_time_not_the_old(first: float, at: float, delay: float) -> None:
    clock = VirtualClock()
    fired: list[float] = []
    async with Engine(clock=clock) as engine:
        handle = engine.call_later(first, lambda: fired.append(clock.time()))
        await clock.advance(at)
        assert handle.reschedule(delay) is True
        await advance_to(clock, first + TICK)  # past the old deadline: nothing yet
        assert fired == []
        assert len(engine) == 1
        await advance_to(clock, at + delay - TICK / 2)
        assert fired == []
        await advance_to(clock, at + delay)
        assert fired == [at + delay]
        assert len(engine) == 0


@pytest.mark.parametrize(("first", "at", "delay"), EARLIER, ids=[f"{f}-at{a}-to{d}" for f, a, d in EARLIER])
async def test_moved_earlier_wakes_the_driver_and_fires_at_the_new_time(first: float, at: float, delay: float) -> None:
    clock = VirtualClock()
    fired: list[float] = []
    async with Engine(clock=clock) as engine:
        handle = engine.call_later(first, lambda: fired.append(clock.time()))
        await clock.advance(at)  # the driver now sleeps until the old deadline
        assert handle.reschedule(delay) is True
        if delay > 0:
            await advance_to(clock, at + delay - TICK / 2)
            assert fired == []
        await advance_to(clock, at + delay)
        assert fired == [at + delay]
        await advance_to(clock, first + 1)  # the old deadline passes: it does not fire again
        assert fired == [at + delay]
        assert len(engine) == 0


async def test_touched_again_and_again_it_fires_once_a_full_delay_after_the_last_touch() -> None:
    """The session-expiry pattern: each touch pushes the expiry out; the old deadlines are not kept."""
    clock = VirtualClock()
    fired: list[float] = []
    async with Engine(clock=clock) as engine:
        handle = engine.call_later(10, lambda: fired.append(clock.time()))
        for _ in range(20):
            await clock.advance(7)
            assert handle.reschedule(10) is True
        assert fired == []
        await clock.advance(10)
        assert fired == [150.0]


async def test_after_firing_it_is_not_pending_and_does_not_fire_again() -> None:
    clock = VirtualClock()
    fired: list[float] = []
    async with Engine(clock=clock) as engine:
        handle = engine.call_later(1, lambda: fired.append(clock.time()))
        await clock.advance(1)
        assert fired == [1.0]
        assert handle.reschedule(5) is False
        assert len(engine) == 0
        await clock.advance(10)
        assert fired == [1.0]


async def test_from_its_own_callback_it_is_not_pending() -> None:
    """A timer firing is gone from the wheel before its callback runs: it cannot re-arm itself that way."""
    clock = VirtualClock()
    answers: list[bool] = []
    async with Engine(clock=clock) as engine:
        handle = engine.call_later(1, lambda: answers.append(handle.reschedule(1)))
        await clock.advance(5)
        assert answers == [False]
        assert len(engine) == 0


async def test_after_a_cancel_it_is_not_pending_and_never_fires() -> None:
    clock = VirtualClock()
    fired: list[str] = []
    async with Engine(clock=clock) as engine:
        handle = engine.call_later(5, fired.append, "cancelled")
        other = engine.call_later(5, fired.append, "other")
        assert handle.cancel() is True
        assert handle.reschedule(1) is False
        assert handle.reschedule(10) is False
        assert len(engine) == 1
        await clock.advance(20)
        assert fired == ["other"]
        assert other.reschedule(1) is False


async def test_moving_one_timer_leaves_the_others_alone() -> None:
    clock = VirtualClock()
    fired: list[tuple[str, float]] = []
    async with Engine(clock=clock) as engine:
        handles = {name: engine.call_later(10, lambda name=name: fired.append((name, clock.time()))) for name in "abc"}
        assert handles["b"].reschedule(3) is True
        assert handles["c"].reschedule(20) is True
        await clock.advance(30)
        assert fired == [("b", 3.0), ("a", 10.0), ("c", 20.0)]


async def test_a_call_at_handle_moves_too() -> None:
    clock = VirtualClock()
    fired: list[float] = []
    async with Engine(clock=clock) as engine:
        handle = engine.call_at(100.0, lambda: fired.append(clock.time()))
        await clock.advance(50)
        assert handle.reschedule(5) is True  # a delay from now, not a time
        await clock.advance(5)
        assert fired == [55.0]


# -- the handle as asyncio's, the fire loop, the collector, the thread check ---------------------------


@pytest.mark.parametrize(("delay", "when"), [(1.5, 1.5), (0.0004, 0.001), (0, 0.0), (-3, 0.0), (-1e308, 0.0)], ids=str)
async def test_when_is_the_deadline_on_the_engine_clock_and_negative_is_due_now(delay: float, when: float) -> None:
    clock = VirtualClock()
    fired: list[float] = []
    async with Engine(clock=clock) as engine:
        handle = engine.call_later(delay, lambda: fired.append(clock.time()))
        assert (handle.when(), handle.cancelled()) == (when, False)
        await clock.advance(when)
        assert fired == [when]
        assert (handle.when(), handle.cancelled()) == (None, False)


async def test_cancelled_says_cancel_was_called() -> None:
    clock = VirtualClock()
    async with Engine(clock=clock) as engine:
        pending, fired = engine.call_later(5, print), engine.call_later(1, lambda: None)
        assert pending.cancel()
        assert pending.cancelled()
        await clock.advance(2)
        assert not fired.cancelled()
        assert fired.cancel() is False
        assert fired.cancelled()  # as asyncio's: cancel() was called, if too late


@pytest.mark.parametrize("count", [1025, 5000])
async def test_the_loop_runs_between_batches_so_a_first_callback_does_not_wait_for_all(count: int) -> None:
    """The driver fires at most one batch (1024) before yielding: the loop's own callbacks run in between."""
    clock = VirtualClock()
    loop = asyncio.get_running_loop()
    fired: list[int] = []
    seen: list[int] = []
    async with Engine(clock=clock) as engine:
        engine.call_later(1, lambda: loop.call_soon(lambda: seen.append(len(fired))))
        for i in range(count):
            engine.call_later(1, fired.append, i)
        await clock.advance(1)
        assert fired == list(range(count))
        assert seen
        assert seen[0] <= 1024


async def test_the_collector_skips_the_timers_while_the_driver_runs() -> None:
    """GC-quiet while running (nothing it holds can be garbage then); walked again once stopped."""
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.call_later(10, print, "payload")
    assert not engine._timers.core.quiet
    async with engine:
        await asyncio.sleep(0)
        assert engine._timers.core.quiet
        if WHEEL == "native":
            assert gc.get_referents(engine._timers.wheel) == []
    assert not engine._timers.core.quiet
    if WHEEL == "native":
        assert (print, ("payload",)) in gc.get_referents(engine._timers.wheel)


async def test_a_stopped_engine_with_pending_timers_in_a_cycle_is_collected() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    async with engine:
        engine.call_later(10, lambda engine=engine: engine)  # engine -> wheel -> payload -> engine
    gone = weakref.ref(engine)
    del engine
    for _ in range(3):  # the stopped driver's last callbacks run
        await asyncio.sleep(0)
    gc.collect()
    assert gone() is None


async def test_in_debug_mode_call_later_from_another_thread_is_refused() -> None:
    """Issue 15: the volatile path checks its caller's thread only in asyncio debug mode, where it is cheap enough."""
    loop = asyncio.get_running_loop()
    debug = loop.get_debug()
    loop.set_debug(True)
    try:
        async with Engine(clock=VirtualClock()) as engine:
            assert engine._timers.guarded
            errors: list[BaseException] = []

            def other() -> None:
                calls: list[Callable[[], object]] = [
                    lambda: engine.call_later(1, print),
                    lambda: engine.call_at(1, print),
                ]
                for call in calls:
                    try:
                        call()
                    except RuntimeError as exc:
                        errors.append(exc)

            thread = threading.Thread(target=other)
            thread.start()
            await asyncio.to_thread(thread.join, 10)
            assert [str(exc).split(":")[0] for exc in errors] == ["call_later", "call_at"]
            assert all("engine.from_thread" in str(exc) for exc in errors)
            assert len(engine) == 0
            engine.call_later(1, print)  # the loop's own thread: fine
    finally:
        loop.set_debug(debug)


async def test_outside_debug_mode_the_hot_calls_check_nothing() -> None:
    async with Engine(clock=VirtualClock()) as engine:
        assert not asyncio.get_running_loop().get_debug()
        assert not engine._timers.guarded
