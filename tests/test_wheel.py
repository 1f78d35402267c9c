"""The wheel's edge paths, on every wheel implementation (``wheel_factory``)."""

from __future__ import annotations

import copy
import enum
import gc
import math
import pickle
import re
import weakref
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from chronowheel._wheel_api import TICK_MAX, TICK_MIN


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
    ("kwargs", "argument", "error"),
    [
        ({"levels": 0}, "levels", ValueError),
        ({"levels": 11}, "levels", ValueError),
        ({"levels": 2**70}, "levels", ValueError),
        ({"levels": True}, "levels", TypeError),
        ({"levels": 2.0}, "levels", TypeError),
        ({"levels": None}, "levels", TypeError),
        ({"start": -1}, "start", ValueError),
        ({"start": TICK_MAX + 1}, "start", ValueError),
        ({"start": False}, "start", TypeError),
        ({"start": 1.5}, "start", TypeError),
        ({"start": "0"}, "start", TypeError),
    ],
)
def test_constructor_validation_names_the_argument(
    wheel_factory: Any, kwargs: dict[str, Any], argument: str, error: type[Exception]
) -> None:
    value = kwargs[argument]
    shown = re.escape(repr(value) if error is ValueError else type(value).__name__)
    with pytest.raises(error, match=rf"^{argument} must be an int.*, got {shown}$"):
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
    assert wheel_factory(start=TICK_MAX).now == TICK_MAX


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


@pytest.mark.parametrize("moved_to", [5, 3, 8], ids=["its-own-tick", "earlier", "later-still-due"])
@pytest.mark.parametrize("cancel_first", [False, True], ids=["alone", "after-a-cancel"])
def test_a_timer_of_a_pending_batch_moved_within_it_is_handed_out_once(
    wheel_factory: Any, moved_to: int, cancel_first: bool
) -> None:
    """Moved back into the batch under way, even to the very entry it left, it comes out once, in order."""
    wheel = wheel_factory()
    wheel.add(5, "a")
    b = wheel.add(5, "b")
    c = wheel.add(5, "c")
    wheel.add(5, "d")
    assert wheel.advance(10, limit=1) == ["a"]
    if cancel_first:
        assert wheel.cancel(c)
    assert wheel.reschedule(b, moved_to)
    assert wheel.reschedule(b, moved_to)  # and again, from its new entry
    rest = ["d"] if cancel_first else ["c", "d"]
    expected = ["b", *rest] if moved_to <= 5 else [*rest, "b"]  # (deadline, priority, insertion) order
    assert wheel.advance(10) == expected
    assert len(wheel) == 0
    assert wheel.next_expiry() is None


@pytest.mark.parametrize("limit", [1, 2])
def test_a_timer_cancelled_in_a_pending_batch_lets_its_payload_go(wheel_factory: Any, limit: int) -> None:
    class Payload:
        pass

    wheel = wheel_factory()
    kept = [Payload() for _ in range(4)]
    handles = [wheel.add(5, payload) for payload in kept]
    assert wheel.advance(5, limit=limit) == kept[:limit]
    gone = weakref.ref(kept[limit])
    assert wheel.cancel(handles[limit])
    del kept[limit]
    gc.collect()
    assert gone() is None
    assert wheel.advance(5) == kept[limit:]


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


# -- the contract on bad input (chronowheel._wheel_api): same on both wheels -------


class Tick(enum.IntEnum):
    """An int subclass: an int, so accepted wherever an int is."""

    SEVEN = 7


NOT_INTS = [None, True, False, 5.0, 5.9, -0.0, math.nan, math.inf, "5", b"5", Decimal(5), Fraction(5), 5j, [5]]
OUT_OF_RANGE = [TICK_MAX + 1, 2**64, 2**70, TICK_MIN - 1, -(2**70)]
RANGE = re.escape("from -(2**63 - 1) to 2**63 - 1")


def loaded(wheel_factory: Any) -> tuple[Any, int]:
    """A wheel with one timer due at 10 (and its handle), to see that a refused call changed nothing."""
    wheel = wheel_factory()
    return wheel, wheel.add(10, "a")


def assert_untouched(wheel: Any) -> None:
    assert len(wheel) == 1
    assert wheel.now == 0
    assert wheel.next_expiry() == 10
    assert wheel.advance(9) == []
    assert wheel.advance(10) == ["a"]


def calls(handle: int, value: Any) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """Each checked argument, as (method, arguments) with ``value`` in its place."""
    return {
        "add deadline": ("add", (value, "x")),
        "add priority": ("add", (5, "x", value)),
        "reschedule deadline": ("reschedule", (handle, value)),
        "reschedule deadline, unknown handle": ("reschedule", (handle + 10**6, value)),
        "advance now": ("advance", (value,)),
    }


ARGUMENT = {
    "add deadline": "deadline",
    "add priority": "priority",
    "reschedule deadline": "deadline",
    "reschedule deadline, unknown handle": "deadline",
    "advance now": "now",
}


@pytest.mark.parametrize("where", sorted(ARGUMENT))
@pytest.mark.parametrize("value", NOT_INTS, ids=repr)
def test_a_tick_or_priority_that_is_not_an_int_is_refused(wheel_factory: Any, where: str, value: Any) -> None:
    """Never rounded: a float deadline filed at its floor would fire early."""
    wheel, handle = loaded(wheel_factory)
    method, args = calls(handle, value)[where]
    name = re.escape(type(value).__name__)
    with pytest.raises(TypeError, match=rf"^{ARGUMENT[where]} must be an int, got {name}$"):
        getattr(wheel, method)(*args)
    assert_untouched(wheel)


@pytest.mark.parametrize("where", sorted(ARGUMENT))
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_a_tick_or_priority_out_of_range_is_refused(wheel_factory: Any, where: str, value: int) -> None:
    wheel, handle = loaded(wheel_factory)
    method, args = calls(handle, value)[where]
    with pytest.raises(ValueError, match=rf"^{ARGUMENT[where]} must be an int {RANGE}, got {value}$"):
        getattr(wheel, method)(*args)
    assert_untouched(wheel)


@pytest.mark.parametrize("levels", [1, 6, 10])
def test_reschedule_refuses_out_of_range_on_every_path(wheel_factory: Any, levels: int) -> None:
    """Lazy (later), re-filed (earlier), overflow, and a timer in a pending due batch."""
    wheel = wheel_factory(levels)
    filed, far = wheel.add(10, "filed"), wheel.add(64**levels * 3, "far")
    due = [wheel.add(5, f"due{i}") for i in range(3)]
    assert wheel.advance(5, limit=1) == ["due0"]
    for handle in (filed, far, due[1]):
        for value in (TICK_MAX + 1, TICK_MIN - 1):
            with pytest.raises(ValueError, match=rf"^deadline must be an int {RANGE}, got {value}$"):
                wheel.reschedule(handle, value)
    assert len(wheel) == 4
    assert wheel.advance(10) == ["due1", "due2", "filed"]
    assert wheel.advance(64**levels * 3) == ["far"]


def test_the_ends_of_the_range_are_accepted(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    wheel.add(TICK_MAX, "last", TICK_MAX)
    wheel.add(TICK_MAX, "last but higher", TICK_MIN)
    moved = wheel.add(7, "moved")
    assert wheel.reschedule(moved, TICK_MAX)  # lazy, far past the top level
    wheel.add(TICK_MIN, "first", TICK_MIN)
    assert wheel.advance(TICK_MIN) == ["first"]  # a now behind the wheel's is the wheel's
    assert wheel.now == 0
    assert len(wheel) == 3
    assert wheel.advance(TICK_MAX - 1) == []
    assert wheel.advance(TICK_MAX) == ["last but higher", "moved", "last"]
    assert wheel.now == TICK_MAX
    assert wheel.next_expiry() is None
    wheel.add(TICK_MAX, "again")
    assert wheel.next_expiry() == TICK_MAX
    assert wheel.advance(TICK_MAX) == ["again"]


def test_int_subclasses_are_ints(wheel_factory: Any) -> None:
    wheel = wheel_factory(Tick.SEVEN, start=Tick.SEVEN)
    assert (wheel.levels, wheel.now) == (7, 7)
    assert type(wheel.levels) is int
    handle = wheel.add(Tick.SEVEN, "a", Tick.SEVEN)
    assert wheel.reschedule(handle, Tick.SEVEN)
    assert wheel.advance(Tick.SEVEN, Tick.SEVEN) == ["a"]


@pytest.mark.parametrize("value", NOT_INTS, ids=repr)
def test_a_handle_that_is_not_an_int_is_refused(wheel_factory: Any, value: Any) -> None:
    """A bool or a float equal to a live handle must not cancel it (``True == 1``)."""
    wheel, handle = loaded(wheel_factory)
    name = re.escape(type(value).__name__)
    for method, args in (("cancel", (value,)), ("reschedule", (value, 3)), ("reschedule", (value, 2.5))):
        with pytest.raises(TypeError, match=rf"^handle must be an int returned by add\(\), got {name}$"):
            getattr(wheel, method)(*args)
    for lookalike in (float(handle), True, Decimal(handle)):
        with pytest.raises(TypeError, match=r"^handle must be an int"):
            wheel.cancel(lookalike)
    assert_untouched(wheel)


@pytest.mark.parametrize("foreign", [0, -1, 2**31, 2**32, 2**64 - 1, 2**64, 2**100, -(2**70), TICK_MAX])
def test_an_int_that_add_did_not_return_names_no_timer(wheel_factory: Any, foreign: int) -> None:
    wheel, _ = loaded(wheel_factory)
    assert not wheel.cancel(foreign)
    assert not wheel.reschedule(foreign, 3)
    assert_untouched(wheel)


def test_a_handle_in_an_int_subclass_is_the_handle(wheel_factory: Any) -> None:
    """The engine's ``TimerHandle`` is an int subclass holding the wheel's handle."""

    class Handle(int):
        __slots__ = ()

    wheel = wheel_factory()
    handle = Handle(wheel.add(10, "a"))
    assert wheel.reschedule(handle, 20)
    assert wheel.cancel(handle)
    assert not wheel.cancel(handle)
    assert len(wheel) == 0


def test_another_wheels_handles_name_no_timer_here(wheel_factory: Any) -> None:
    """Handles are unique in the process: however the slabs were recycled, no wheel takes another's."""
    ours, theirs = wheel_factory(), wheel_factory()
    mine = [ours.add(50 + i, f"ours{i}") for i in range(6)]
    others = [theirs.add(60 + i, f"theirs{i}") for i in range(6)]
    for handle in mine[::2]:
        assert ours.cancel(handle)  # recycled entries on our side
    mine += [ours.add(70 + i, f"ours-again{i}") for i in range(3)]
    others += [theirs.add(80 + i, f"theirs-again{i}") for i in range(3)]
    for handle in others:
        assert not ours.cancel(handle)
        assert not ours.reschedule(handle, 1)
    for handle in mine:
        assert not theirs.cancel(handle)
    assert len(ours) == 6
    assert len(theirs) == 9
    assert ours.advance(100) == ["ours1", "ours3", "ours5", "ours-again0", "ours-again1", "ours-again2"]


@pytest.mark.parametrize("limit", [True, False, 1.0, 2.5, "1", [1]], ids=repr)
def test_limit_that_is_not_an_int_is_refused(wheel_factory: Any, limit: Any) -> None:
    wheel, _ = loaded(wheel_factory)
    name = re.escape(type(limit).__name__)
    with pytest.raises(TypeError, match=rf"^limit must be an int or None, got {name}$"):
        wheel.advance(20, limit)
    assert_untouched(wheel)


def test_a_limit_beyond_any_size_is_no_limit(wheel_factory: Any) -> None:
    wheel = wheel_factory()
    wheel.add(1, "a")
    wheel.add(2, "b")
    assert wheel.advance(5, 2**100) == ["a", "b"]


def test_arguments_are_checked_in_order_whether_or_not_the_timer_is_pending(wheel_factory: Any) -> None:
    """The first bad argument is the one reported, and a dead handle excuses nothing."""
    wheel, handle = loaded(wheel_factory)
    with pytest.raises(TypeError, match=r"^deadline must be an int, got float$"):
        wheel.add(1.5, "x", None)
    with pytest.raises(ValueError, match=r"^deadline must be"):
        wheel.add(2**64, "x", None)
    with pytest.raises(TypeError, match=r"^priority must be an int, got NoneType$"):
        wheel.add(5, "x", None)
    with pytest.raises(TypeError, match=r"^handle must be an int returned by add"):
        wheel.reschedule(None, None)
    assert wheel.cancel(handle)
    for dead in (handle, handle + 1):
        with pytest.raises(TypeError, match=r"^deadline must be an int, got NoneType$"):
            wheel.reschedule(dead, None)
        with pytest.raises(ValueError, match=r"^deadline must be"):
            wheel.reschedule(dead, -(2**64))
    with pytest.raises(TypeError, match=r"^now must be an int, got str$"):
        wheel.advance("5", 0)
    with pytest.raises(ValueError, match=r"^now must be"):
        wheel.advance(2**64, 0)
    with pytest.raises(ValueError, match=r"^limit must be positive, got 0$"):
        wheel.advance(5, 0)
    assert len(wheel) == 0
    assert wheel.now == 0


def test_the_wheel_is_final_and_not_copyable(wheel_factory: Any) -> None:
    """As the native type is; the pure one says so in the same words."""
    with pytest.raises(TypeError, match=r"^type 'chronowheel.TimerWheel' is not an acceptable base type$"):
        type("Sub", (wheel_factory,), {})
    wheel, _ = loaded(wheel_factory)
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match=r"^cannot pickle 'chronowheel.TimerWheel' object$"):
            attempt(wheel)
    assert_untouched(wheel)


def test_a_wheel_made_without_init_is_the_default_wheel(wheel_factory: Any) -> None:
    wheel = wheel_factory.__new__(wheel_factory)
    assert repr(wheel) == "<TimerWheel levels=6 now=0 pending=0>"
    wheel.add(64**6 + 1, "far")
    assert wheel.advance(64**6 + 1) == ["far"]


def test_init_again_empties_the_wheel(wheel_factory: Any) -> None:
    wheel, handle = loaded(wheel_factory)
    wheel.__init__(2, start=5)
    assert repr(wheel) == "<TimerWheel levels=2 now=5 pending=0>"
    assert not wheel.cancel(handle)
    assert wheel.advance(100) == []
