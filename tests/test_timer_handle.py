"""``TimerHandle.reschedule``: later, earlier, after firing, after a cancel, on either loop.

The suite runs this file on the native wheel and again on the pure one (the Makefile's
``CHRONOWHEEL_NO_EXTENSIONS=1`` run), so both wheels move timers the same way.
"""

from __future__ import annotations

import pytest

from chronowheel import Engine
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
