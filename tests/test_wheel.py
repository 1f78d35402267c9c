"""The wheel's edge paths, on every wheel implementation (``wheel_factory``)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest


def test_empty_wheel(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    assert wheel.levels == 6
    assert wheel.now == 0
    assert len(wheel) == 0
    assert wheel.next_expiry() is None
    assert wheel.advance(10**6) == []
    assert wheel.now == 10**6
    assert wheel.next_expiry() is None
    assert repr(wheel) == "<TimerWheel levels=6 now=1000000 pending=0>"
    assert repr(wheel_factory(3, start=7)) == "<TimerWheel levels=3 now=7 pending=0>"


def test_next_expiry_is_none_once_everything_is_gone(wheel_factory: Any) -> None:
    wheel = wheel_factory(2)
    cancelled = wheel.add(10, "cancelled")
    wheel.add(64**2 * 3, "overflow")
    wheel.add(5, "fired")
    assert wheel.cancel(cancelled)
    assert wheel.advance(5) == ["fired"]
    assert wheel.next_expiry() is not None
    assert wheel.advance(64**2 * 3) == ["overflow"]
    assert len(wheel) == 0
    assert wheel.next_expiry() is None


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"levels": 0}, "levels"),
        ({"levels": 11}, "levels"),
        ({"levels": True}, "levels"),
        ({"levels": 2.0}, "levels"),
        ({"start": -1}, "start"),
        ({"start": False}, "start"),
        ({"start": 1.5}, "start"),
    ],
)
def test_constructor_validation_names_the_argument(wheel_factory: Any, kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must be .*, got {kwargs[argument]!r}$"):
        wheel_factory(**kwargs)


@pytest.mark.parametrize("limit", [0, -3])
def test_limit_must_be_positive(wheel_factory: Any, limit: int) -> None:
    wheel = wheel_factory()
    wheel.add(1, "a")
    with pytest.raises(ValueError, match=rf"^limit must be positive, got {limit}$"):
        wheel.advance(5, limit=limit)
    assert len(wheel) == 1
    assert wheel.now == 0  # nothing moved
    assert wheel.advance(5, limit=1) == ["a"]


def test_levels_bounds_are_accepted(wheel_factory: Any) -> None:
    assert wheel_factory(1).levels == 1
    assert wheel_factory(10).levels == 10
    assert wheel_factory(start=5).now == 5


def test_priority_orders_a_tick_lower_first_then_insertion(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    wheel.add(5, "p2", 2)
    wheel.add(5, "m1", -1)
    wheel.add(5, "z0")
    wheel.add(4, "early", 9)  # the deadline comes before the priority
    wheel.add(5, "z0-later", priority=0)
    wheel.add(5, "m1-later", -1)
    assert len(wheel) == 6
    assert wheel.advance(5) == ["early", "m1", "m1-later", "z0", "z0-later", "p2"]
    assert len(wheel) == 0


def test_cancel_an_item_left_in_the_pending_due_batch(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    a = wheel.add(5, "a")
    b = wheel.add(5, "b")
    c = wheel.add(5, "c")
    assert wheel.advance(5, limit=1) == ["a"]
    assert len(wheel) == 2
    assert wheel.next_expiry() == 5  # the rest of the batch is due now
    assert not wheel.cancel(a)  # already handed out
    assert wheel.cancel(b)
    assert not wheel.cancel(b)
    assert not wheel.reschedule(b, 7)
    assert len(wheel) == 1
    assert wheel.advance(5, limit=1) == ["c"]
    assert len(wheel) == 0
    assert not wheel.cancel(c)
    assert wheel.advance(100) == []
    assert wheel.next_expiry() is None


def test_cancel_the_whole_rest_of_a_pending_batch(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    wheel.add(5, "a")
    b = wheel.add(5, "b")
    c = wheel.add(5, "c")
    wheel.add(9, "d")
    assert wheel.advance(20, limit=1) == ["a"]
    assert wheel.cancel(c)
    assert wheel.cancel(b)
    assert len(wheel) == 1
    assert wheel.advance(20, limit=1) == ["d"]
    assert wheel.advance(20) == []
    assert wheel.now == 20


def test_reschedule_an_item_in_the_pending_batch_earlier(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    assert wheel.advance(10) == []
    wheel.add(8, "a")
    b = wheel.add(8, "b")
    c = wheel.add(8, "c")
    assert wheel.advance(10, limit=1) == ["a"]
    assert wheel.reschedule(c, 2)  # earlier than b: it goes first
    assert len(wheel) == 2
    assert wheel.advance(10, limit=1) == ["c"]
    assert wheel.advance(10) == ["b"]
    assert not wheel.reschedule(b, 3)


def test_reschedule_an_item_in_the_pending_batch_past_now(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    wheel.add(5, "a")
    b = wheel.add(5, "b")
    wheel.add(5, "c")
    assert wheel.advance(5, limit=1) == ["a"]
    assert wheel.reschedule(b, 20)  # out of the batch, back into the wheel
    assert len(wheel) == 2
    assert wheel.advance(5) == ["c"]
    assert wheel.advance(19) == []
    assert wheel.next_expiry() == 20
    assert wheel.advance(20) == ["b"]
    assert len(wheel) == 0


def test_reschedule_an_item_in_the_pending_batch_later_but_still_due(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    assert wheel.advance(10) == []
    wheel.add(3, "a")
    b = wheel.add(3, "b")
    wheel.add(3, "c")
    assert wheel.advance(10, limit=1) == ["a"]
    assert wheel.reschedule(b, 7)  # later than c, still due: c goes first
    assert len(wheel) == 2
    assert wheel.advance(10) == ["c", "b"]


def test_overdue_add_during_a_pending_drain_is_merged_in_order(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    assert wheel.advance(10) == []
    wheel.add(5, "a")
    wheel.add(5, "b")
    wheel.add(7, "c")
    assert wheel.advance(10, limit=1) == ["a"]
    wheel.add(6, "d")  # between b and c
    wheel.add(5, "e", priority=-1)  # same tick as b, lower priority value: before it
    wheel.add(10, "f")  # due now: last
    wheel.add(0, "g")  # long past: first
    wheel.add(11, "later")  # not due: stays in the wheel
    assert len(wheel) == 7
    assert wheel.next_expiry() == 10
    assert wheel.advance(10, limit=2) == ["g", "e"]
    assert wheel.advance(10) == ["b", "d", "c", "f"]
    assert len(wheel) == 1
    assert wheel.advance(11) == ["later"]


def test_lazy_reschedule_by_one_tick_does_not_fire_early(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    low = wheel.add(5, "low")
    high = wheel.add(5000, "high")
    assert wheel.reschedule(low, 6)
    assert wheel.reschedule(high, 5001)
    assert wheel.next_expiry() == 5  # a lower bound: the old slot wakes the wheel to re-file
    assert wheel.advance(5) == []
    assert wheel.next_expiry() == 6
    assert wheel.advance(6) == ["low"]
    assert wheel.advance(5000) == []
    assert len(wheel) == 1
    assert wheel.advance(5001) == ["high"]
    assert len(wheel) == 0


def test_reschedule_keeps_the_insertion_order(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    a = wheel.add(5, "a")
    wheel.add(5, "b")
    assert wheel.reschedule(a, 900)  # later: lazy
    assert wheel.reschedule(a, 5)  # and back: filed again, with its first place in line
    assert wheel.advance(5) == ["a", "b"]


def test_past_deadlines_fire_on_the_next_advance(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    assert wheel.advance(100) == []
    wheel.add(100, "now")
    wheel.add(50, "past")
    wheel.add(-5, "negative")
    moved = wheel.add(500, "moved")
    assert wheel.reschedule(moved, 99)
    assert len(wheel) == 4
    assert wheel.next_expiry() == 100
    # A ``now`` behind the wheel's is the wheel's: everything due at 100 comes out.
    assert wheel.advance(0) == ["negative", "past", "moved", "now"]
    assert wheel.now == 100
    assert len(wheel) == 0


def test_start_sets_the_first_tick(wheel_factory: Any) -> None:
    wheel = wheel_factory(start=1000)
    wheel.add(999, "past")
    wheel.add(1001, "next")
    assert wheel.advance(1000) == ["past"]
    assert wheel.advance(1001) == ["next"]


@pytest.mark.parametrize("levels", [1, 2])
def test_overflow_fires_exactly_at_its_deadline(wheel_factory: Any, levels: int) -> None:
    span = 64**levels
    wheel = wheel_factory(levels)
    far = span * 5 + 17
    farther = span * 40 + 3
    wheel.add(farther, "farther")
    wheel.add(far, "far")
    wheel.add(3, "near")
    assert len(wheel) == 3
    assert wheel.advance(3) == ["near"]
    expiry = wheel.next_expiry()
    assert expiry is not None
    assert expiry <= far
    assert wheel.advance(far - 1) == []
    assert wheel.now == far - 1
    assert len(wheel) == 2
    assert wheel.advance(far) == ["far"]
    assert wheel.now == far
    # Step up to the next one through its lower bounds: never past it.
    while (expiry := wheel.next_expiry()) is not None and expiry < farther:
        assert wheel.advance(expiry) == []
    assert expiry == farther
    assert wheel.advance(farther + 10) == ["farther"]
    assert len(wheel) == 0


def test_overflow_can_be_cancelled_and_rescheduled(wheel_factory: Any) -> None:
    wheel = wheel_factory(1)
    gone = wheel.add(1000, "gone")
    moved = wheel.add(2000, "moved")
    assert wheel.cancel(gone)
    assert wheel.reschedule(moved, 3000)  # later: lazy, still overflow
    assert wheel.advance(2999) == []
    assert wheel.reschedule(moved, 3001)
    assert wheel.advance(3000) == []
    assert wheel.advance(3001) == ["moved"]
    again = wheel.add(5000, "again")
    assert wheel.reschedule(again, 3005)  # earlier: out of overflow, into the wheel
    assert wheel.advance(3005) == ["again"]


def test_limited_advance_leaves_now_at_the_batch(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    wheel.add(5, "a")
    wheel.add(5, "b")
    wheel.add(80, "c")
    assert wheel.advance(100, limit=1) == ["a"]
    assert wheel.now == 5  # the rest is handed out by the next calls
    assert wheel.advance(100, limit=5) == ["b", "c"]
    assert wheel.now == 100


def test_a_cycle_through_a_payload_is_collected(wheel_factory: Any) -> None:
    class Owner:
        pass

    owner = Owner()
    owner.wheel = wheel_factory()  # type: ignore[attr-defined]
    owner.wheel.add(10, owner)  # type: ignore[attr-defined]
    alive = weakref.ref(owner)
    del owner
    gc.collect()
    assert alive() is None
