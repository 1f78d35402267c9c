"""The Cython wheel against the pure one: same operations, same outputs, and no leaks.

"Same" covers bad input too: the same call, however ill-typed or out of range,
returns the same or raises the same exception type with the same message on
both (``chronowheel._wheel_api`` is the contract both keep).
"""

from __future__ import annotations

import enum
import itertools
import math
import os
import random
import sys
import weakref
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel._wheel import TimerWheel as PureWheel
from chronowheel._wheel_api import TICK_MAX, TICK_MIN, Wheel

NativeWheel: Any = None
NATIVE_IMPORT_ERROR = ""
try:
    from chronowheel._cwheel import TimerWheel as _NativeWheel
except ImportError as exc:
    NATIVE_IMPORT_ERROR = repr(exc)
else:
    NativeWheel = _NativeWheel

needs_native = pytest.mark.skipif(NativeWheel is None, reason=f"native wheel not built: {NATIVE_IMPORT_ERROR}")


def test_ci_builds_the_native_wheel() -> None:
    """On CI a missing native wheel is a failure, not a skip, unless it was turned off."""
    on_ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    if not on_ci or os.environ.get("CHRONOWHEEL_NO_EXTENSIONS"):
        pytest.skip("only on CI with extensions enabled")
    assert NativeWheel is not None, f"chronowheel._cwheel did not import on CI: {NATIVE_IMPORT_ERROR}"
    import chronowheel

    assert chronowheel.WHEEL == "native"


# -- arguments, good and bad -------------------------------------------------------


class Tick(enum.IntEnum):
    SEVEN = 7


class Handle(int):
    """An int subclass holding a handle, as the engine's ``TimerHandle`` does."""

    __slots__ = ()


NOT_INTS: list[Any] = [
    *(None, True, False, 5.0, 5.9, -0.0, math.nan, math.inf, -math.inf),
    *("5", b"", [], (), Decimal(5), Fraction(11, 2), 5j, object()),
]
EDGE_INTS: list[Any] = [
    *(0, 1, -1, 63, 64, 4095, 4096, 2**31, 2**32, 2**53 + 1, Tick.SEVEN),
    *(TICK_MAX - 1, TICK_MAX, TICK_MAX + 1, TICK_MIN, TICK_MIN - 1, 2**64 - 1, 2**64, 2**70, -(2**70)),
]
# Ints no wheel hands out in a test session: the pure wheel's counter stays below 2**31,
# and the native handle ``seq << 32 | index`` has a seq from 1 to far below 2**31.
FOREIGN_HANDLES: list[Any] = [0, -1, -5, 2**31, 2**32 - 1, TICK_MAX, 2**64, 2**64 + 2**32, 2**100, -(2**70)]
LIMITS: list[Any] = [None, 1, 2, 3, 0, -1, 2**63, 2**100, Tick.SEVEN]
# What to pass instead of a handle, made from each twin's own handle for the same timer.
HANDLE_FORMS: dict[str, Callable[[int], Any]] = {
    "itself": lambda h: h,
    "int subclass": Handle,
    "float": float,
    "decimal": Decimal,
    "negated": lambda h: -h,
    "str": str,
}
NAMING_FORMS = ("itself", "int subclass")  # the forms that are the handle; the rest name no timer

ticks = st.one_of(
    st.sampled_from(NOT_INTS + EDGE_INTS),
    st.integers(-(2**70), 2**70),
    st.integers(-70, 4200),
    st.floats(allow_nan=True, allow_infinity=True),
)
handles = st.one_of(
    st.tuples(st.just("ref"), st.integers(0, 10**6), st.sampled_from(sorted(HANDLE_FORMS))),
    st.tuples(st.just("other wheel"), st.integers(0, 10**6)),
    st.tuples(st.just("value"), st.sampled_from(NOT_INTS + FOREIGN_HANDLES)),
)
limits = st.one_of(st.sampled_from(NOT_INTS + LIMITS), st.integers(-3, 5))


def outcome(method: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What a call did: ("returned", its result), or the exception's type name and message."""
    try:
        return "returned", method(*args)
    except Exception as exc:
        return type(exc).__name__, str(exc)


# -- the differential test ---------------------------------------------------------

near = st.one_of(
    st.integers(-2, 2), st.integers(-20, 0), st.integers(62, 66), st.integers(-3, 130), st.integers(4090, 4100)
)
index = st.one_of(st.integers(-4, -1), st.integers(0, 10**6))  # negative: one of the last timers added
operation = st.one_of(
    st.tuples(st.just("add"), st.integers(-50, 3 * 64**3), st.integers(-2, 2)),
    st.tuples(st.just("add_near"), near, st.integers(-2, 2)),
    st.tuples(st.just("add_same"), index, st.integers(-2, 2)),  # onto another timer's deadline
    st.tuples(st.just("burst"), st.integers(-3, 3), st.integers(2, 5)),  # timers sharing a tick: a batch
    st.tuples(st.just("cancel"), index),
    st.tuples(st.just("reschedule"), index, st.integers(-50, 3 * 64**3)),
    st.tuples(st.just("reschedule_near"), index, near),
    st.tuples(st.just("nudge"), index, st.integers(-2, 2)),
    st.tuples(st.just("advance"), st.one_of(st.integers(0, 2), st.integers(0, 80))),
    st.tuples(st.just("advance_back"), st.integers(1, 100)),
    st.tuples(st.just("advance_far"), st.integers(0, 3 * 64**3)),
    st.tuples(st.just("advance_edge"), st.integers(-1, 1)),
    st.tuples(st.just("advance_expiry"), st.integers(-1, 1)),
    st.tuples(st.just("advance_limited"), st.one_of(st.integers(0, 3), st.integers(0, 200)), st.integers(1, 3)),
)
# The same calls with any argument at all, most of them refused.
any_operation = st.one_of(
    st.tuples(st.just("any_add"), ticks, ticks),
    st.tuples(st.just("any_cancel"), handles),
    st.tuples(st.just("any_reschedule"), handles, ticks),
    st.tuples(st.just("any_advance"), ticks, limits),
)


class Pair:
    """One operation stream, fed to the oracle and the native wheel; every output compared."""

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self.pure: Wheel = PureWheel(levels)
        self.native: Wheel = NativeWheel(levels)
        self.pure_handles: list[int] = []
        self.native_handles: list[int] = []
        self.deadline: dict[int, int] = {}  # payload -> deadline, while pending
        # Timers in another pair of wheels: their handles name nothing in these two.
        self.others: tuple[Wheel, Wheel] = (PureWheel(levels), NativeWheel(levels))
        self.other_handles = [(self.others[0].add(i, i), self.others[1].add(i, i)) for i in range(8)]

    def check(self) -> None:
        assert len(self.native) == len(self.pure) == len(self.deadline)
        assert self.native.now == self.pure.now
        assert self.native.next_expiry() == self.pure.next_expiry()
        assert repr(self.native) == repr(self.pure)

    def both(self, method: str, args: tuple[Any, ...], native_args: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
        """Call ``method`` on both wheels and assert they did the same: (pure outcome, native outcome)."""
        pure = outcome(getattr(self.pure, method), *args)
        native = outcome(getattr(self.native, method), *(args if native_args is None else native_args))
        if method == "add" and pure[0] == native[0] == "returned":
            assert type(pure[1]) is type(native[1]) is int  # handles: opaque, so not compared
        else:
            assert native == pure, f"{method}{args}: pure {pure}, native {native}"
        return pure, native

    def add(self, deadline: Any, priority: Any = 0) -> None:
        payload = len(self.pure_handles)
        pure, native = self.both("add", (deadline, payload, priority))
        if pure[0] == "returned":
            self.pure_handles.append(pure[1])
            self.native_handles.append(native[1])
            self.deadline[payload] = deadline

    def pick(self, i: int) -> int | None:
        return i % len(self.pure_handles) if self.pure_handles else None

    def cancel(self, payload: int, form: str = "itself") -> None:
        make = HANDLE_FORMS[form]
        pure, _ = self.both("cancel", (make(self.pure_handles[payload]),), (make(self.native_handles[payload]),))
        self.moved(payload, form, pure, None)

    def reschedule(self, payload: int, deadline: Any, form: str = "itself") -> None:
        make = HANDLE_FORMS[form]
        pure, _ = self.both(
            "reschedule", (make(self.pure_handles[payload]), deadline), (make(self.native_handles[payload]), deadline)
        )
        self.moved(payload, form, pure, deadline)

    def moved(self, payload: int, form: str, pure: tuple[str, Any], deadline: Any) -> None:
        """Book a cancel (``deadline`` None) or reschedule through a handle in ``form``; check its answer."""
        if pure[0] != "returned":
            return
        names_it = form in NAMING_FORMS
        assert pure[1] == (names_it and payload in self.deadline)
        if pure[1] and deadline is None:
            del self.deadline[payload]
        elif pure[1]:
            self.deadline[payload] = int(deadline)

    def advance(self, now: Any, limit: Any = None) -> None:
        pure, _ = self.both("advance", (now, limit))
        if pure[0] == "returned":
            for payload in pure[1]:
                del self.deadline[payload]

    def with_handle(self, method: str, ref: tuple[Any, ...], *rest: Any) -> None:
        """``cancel`` or ``reschedule`` with a handle of the kind ``ref`` describes (see ``handles``)."""
        if ref[0] == "ref":
            payload = self.pick(ref[1])
            if payload is not None:
                getattr(self, method)(payload, *rest, form=ref[2])
            return
        if ref[0] == "other wheel":
            theirs = self.other_handles[ref[1] % len(self.other_handles)]
            pure, _ = self.both(method, (theirs[0], *rest), (theirs[1], *rest))
        else:
            pure, _ = self.both(method, (ref[1], *rest))
        assert pure[0] != "returned" or pure[1] is False

    def drain(self) -> None:
        """Everything still pending fires exactly once, in the same order; both wheels end empty."""
        self.advance(min(TICK_MAX, max([self.pure.now, *self.deadline.values()]) + 64**self.levels))
        self.check()
        assert len(self.native) == 0
        assert self.native.next_expiry() is None
        for wheel in self.others:
            assert len(wheel) == len(self.other_handles)  # no call through the pair touched them

    def earliest(self) -> int:
        return min(self.deadline.values(), default=self.pure.now)


def run_pair(levels: int, ops: list[tuple[Any, ...]]) -> None:
    pair = Pair(levels)
    run_pair_ops(pair, ops)
    pair.drain()


def run_pair_ops(pair: Pair, ops: list[tuple[Any, ...]]) -> None:
    for op in ops:
        kind = op[0]
        now = pair.pure.now
        target = pair.pick(op[1]) if kind in ("add_same", "cancel", "reschedule", "reschedule_near", "nudge") else None
        if kind == "add":
            pair.add(op[1], op[2])
        elif kind == "add_near":
            pair.add(now + op[1], op[2])
        elif kind == "burst":
            for priority in range(op[2]):
                pair.add(now + op[1], -priority % 2)
        elif kind == "add_same":
            pair.add(pair.deadline.get(target, now) if target is not None else now, op[2])
        elif kind == "any_add":
            pair.add(op[1], op[2])
        elif kind == "any_cancel":
            pair.with_handle("cancel", op[1])
        elif kind == "any_reschedule":
            pair.with_handle("reschedule", op[1], op[2])
        elif kind == "any_advance":
            pair.advance(op[1], op[2])
        elif target is None:
            pass  # nothing added yet
        elif kind == "cancel":
            pair.cancel(target)
        elif kind == "reschedule":
            pair.reschedule(target, op[2])
        elif kind == "reschedule_near":
            pair.reschedule(target, now + op[2])
        elif kind == "nudge":
            # A few ticks either way from the timer's own deadline: the lazy
            # path (later) and the re-file path (earlier) at their edges.
            pair.reschedule(target, pair.deadline.get(target, now) + op[2])
        if kind == "advance":
            pair.advance(now + op[1])
        elif kind == "advance_back":
            pair.advance(now - op[1])
        elif kind == "advance_far":
            pair.advance(now + op[1])
        elif kind == "advance_edge":
            pair.advance(max(now, pair.earliest() + op[1]))
        elif kind == "advance_expiry":
            expiry = pair.pure.next_expiry()
            pair.advance((now if expiry is None else expiry) + op[1])
        elif kind == "advance_limited":
            pair.advance(now + op[1], op[2])
        pair.check()


@needs_native
@pytest.mark.heavy
@pytest.mark.parametrize("levels", [2, 3])
@settings(max_examples=700, deadline=None)
@given(ops=st.lists(operation, min_size=5, max_size=120))
def test_native_matches_pure(levels: int, ops: list[tuple[Any, ...]]) -> None:
    run_pair(levels, ops)


@needs_native
@pytest.mark.heavy
@pytest.mark.parametrize("levels", [1, 3])
@settings(max_examples=400, deadline=None)
@given(ops=st.lists(st.one_of(operation, any_operation), min_size=5, max_size=80))
def test_native_matches_pure_on_any_input(levels: int, ops: list[tuple[Any, ...]]) -> None:
    """Ill-typed and out-of-range calls mixed into the streams: refused alike, and nothing changed by them."""
    run_pair(levels, ops)


# Every argument position with every kind of value, in wheels in different states.
STATES: dict[str, list[tuple[Any, ...]]] = {
    "empty": [],
    "filed and overflowing": [("add", 5, 1), ("add", 70, 0), ("add", 64**3 * 2, -1), ("add", -3, 2)],
    "mid-drain": [("burst", 3, 4), ("add", 40, 0), ("advance_limited", 3, 1)],
    "near the end of time": [("any_advance", TICK_MAX - 70, None), ("add", TICK_MAX, 0), ("add_near", 5, 0)],
}
TICK_VALUES = NOT_INTS + EDGE_INTS
HANDLE_VALUES: list[tuple[Any, ...]] = [
    *(("ref", i, form) for i in (0, 1, -1) for form in sorted(HANDLE_FORMS)),
    *(("other wheel", i) for i in range(3)),
    *(("value", v) for v in NOT_INTS + FOREIGN_HANDLES),
]
CALLS: dict[str, tuple[list[Any], Callable[[Pair, Any], None]]] = {
    "add(deadline)": (TICK_VALUES, lambda pair, v: pair.add(v)),
    "add(priority)": (TICK_VALUES, lambda pair, v: pair.add(pair.pure.now + 2, v)),
    "add(priority), overdue": (TICK_VALUES, lambda pair, v: pair.add(-5, v)),
    "cancel(handle)": (HANDLE_VALUES, lambda pair, v: pair.with_handle("cancel", v)),
    "reschedule(handle)": (HANDLE_VALUES, lambda pair, v: pair.with_handle("reschedule", v, pair.pure.now + 1)),
    "reschedule(deadline)": (TICK_VALUES, lambda pair, v: pair.with_handle("reschedule", ("ref", 0, "itself"), v)),
    "reschedule(deadline), last timer": (
        TICK_VALUES,
        lambda pair, v: pair.with_handle("reschedule", ("ref", -1, "itself"), v),
    ),
    "reschedule(deadline), foreign handle": (
        TICK_VALUES,
        lambda pair, v: pair.with_handle("reschedule", ("value", -1), v),
    ),
    "advance(now)": (TICK_VALUES, lambda pair, v: pair.advance(v)),
    "advance(limit)": (NOT_INTS + LIMITS, lambda pair, v: pair.advance(pair.pure.now + 100, v)),
    # Two arguments wrong at once: the same one is reported.
    "add(deadline, priority)": (
        list(itertools.product([None, 1.5, 2**64, 5], [None, 1.5, -(2**64), 0])),
        lambda pair, v: pair.add(*v),
    ),
    "reschedule(handle, deadline)": (
        list(itertools.product([("value", None), ("value", -1), ("ref", 0, "float")], [None, 2.5, 2**64, 9])),
        lambda pair, v: pair.with_handle("reschedule", *v),
    ),
    "advance(now, limit)": (
        list(itertools.product([None, 2.5, 2**64, 9], [None, 0, 1.0, True])),
        lambda pair, v: pair.advance(*v),
    ),
}


@needs_native
@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_native_matches_pure_on_every_argument(state: str, call: str) -> None:
    values, make_call = CALLS[call]
    for value in values:
        pair = Pair(3)
        run_pair_ops(pair, STATES[state])
        make_call(pair, value)
        pair.check()
        pair.drain()


def value_id(value: Any) -> str:
    """The repr, but ``object()`` for a bare object: its repr holds an address, different in every process."""
    return "object()" if type(value) is object else repr(value)


def made(cls: Callable[..., Wheel], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return repr(cls(*args, **kwargs))


@needs_native
@pytest.mark.parametrize("value", NOT_INTS + EDGE_INTS + [2**70], ids=value_id)
def test_native_matches_pure_on_constructor_arguments(value: Any) -> None:
    for args, kwargs in (((value,), {}), ((), {"start": value}), ((3,), {"start": value})):
        assert outcome(made, NativeWheel, args, kwargs) == outcome(made, PureWheel, args, kwargs)


def test_object_protocol_errors_differ_only_in_wording() -> None:
    """Not our arguments: CPython's and Cython's own errors, which we do not word.

    The exception types are the same. CPython names the native type by its
    dotted ``tp_name`` (``'chronowheel.TimerWheel'``), so the messages match
    once that is read as the pure class's name; a read-only attribute is a
    property on one and a getset descriptor on the other, and Cython words its
    own errors for a wrong number of arguments, so there only the type matches.
    """
    if NativeWheel is None:
        pytest.skip(f"native wheel not built: {NATIVE_IMPORT_ERROR}")
    same_words: list[Callable[[Any], Any]] = [
        lambda w: setattr(w, "payload", 5),
        weakref.ref,
        iter,
        lambda w: w[0],
        lambda w: w.missing,
    ]
    other_words: list[Callable[[Any], Any]] = [
        lambda w: setattr(w, "now", 5),
        lambda w: w.add(5),
        lambda w: w.add(5, "x", 0, 1),
        lambda w: w.cancel(),
        lambda w: w.reschedule(1),
        lambda w: w.advance(),
        lambda w: w.advance(1, 2, 3),
        lambda w: w.next_expiry(1),
        lambda w: w.add(5, "x", urgency=1),
        lambda w: type(w)(3, 4),
        lambda w: type(w)(levels=3, begin=4),
    ]
    for probe in same_words + other_words:
        pure = outcome(probe, PureWheel())
        native = outcome(probe, NativeWheel())
        assert pure[0] == native[0] != "returned"
        if probe in same_words:
            assert native[1].replace("'chronowheel.TimerWheel'", "'TimerWheel'") == pure[1]


# Hand-written streams through the paths that random ones reach least often.
SCRIPTS: dict[str, list[tuple[Any, ...]]] = {
    "cancel-the-rest-of-a-pending-batch": [
        ("burst", 0, 3),
        ("advance_limited", 5, 1),
        ("cancel", -1),
        ("cancel", -2),
        ("add_near", -1, 0),
        ("advance_limited", 0, 1),
        ("advance", 0),
    ],
    "cancel-the-middle-of-a-pending-batch": [
        ("burst", 2, 4),
        ("advance_limited", 2, 1),
        ("cancel", -3),
        ("advance_limited", 0, 1),
        ("advance_limited", 0, 1),
        ("advance", 0),
    ],
    "reschedule-out-of-a-pending-batch-and-back": [
        ("advance", 10),
        ("burst", -5, 3),
        ("burst", -2, 2),
        ("advance_limited", 0, 1),
        ("reschedule_near", -4, 70),
        ("reschedule_near", -4, -1),
        ("nudge", -1, 2),
        ("nudge", -5, -2),
        ("advance_limited", 0, 2),
        ("advance", 80),
    ],
    "overdue-adds-during-a-drain": [
        ("advance", 70),
        ("burst", -3, 3),
        ("advance_limited", 0, 2),
        ("add_near", -3, 1),
        ("add_near", -3, -1),
        ("add_near", 0, 0),
        ("add_near", -70, 0),
        ("advance_limited", 0, 1),
        ("advance", 0),
    ],
    "lazy-moves-across-slot-and-level-edges": [
        ("add_near", 63, 0),
        ("add_near", 64, 0),
        ("add_near", 4095, 0),
        ("nudge", -1, 1),
        ("nudge", -2, 1),
        ("nudge", -3, 2),
        ("advance_expiry", 0),
        ("advance_expiry", 0),
        ("advance_expiry", 0),
        ("advance_edge", 0),
        ("advance_expiry", 0),
    ],
    "overflow-windows": [
        ("add", 3 * 64**3, 0),
        ("add", 64**3 + 1, 1),
        ("add", 64**3 + 1, -1),
        ("nudge", -3, 1),
        ("advance_far", 64**3 - 1),
        ("advance_expiry", 0),
        ("advance_limited", 1, 1),
        ("advance_far", 2 * 64**3),
    ],
}


@needs_native
@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_native_matches_pure_on_scripted_streams(levels: int, script: str) -> None:
    run_pair(levels, SCRIPTS[script])


@needs_native
def test_native_matches_pure_on_a_long_random_stream() -> None:
    """Thousands of timers in a few slots: big batches, limits, deep cascades."""
    rng = random.Random(1234)
    pair = Pair(2)
    for _ in range(6000):
        roll = rng.random()
        now = pair.pure.now
        if roll < 0.45:
            pair.add(
                now + rng.choice([-3, 0, 1, 2, 63, 64, 4095, 4096, 9000, rng.randrange(30000)]), rng.randrange(-1, 2)
            )
        elif roll < 0.55 and pair.pure_handles:
            pair.cancel(rng.randrange(len(pair.pure_handles)))
        elif roll < 0.75 and pair.pure_handles:
            target = rng.randrange(len(pair.pure_handles))
            pair.reschedule(target, pair.deadline.get(target, now) + rng.randrange(-3, 4))
        elif roll < 0.9:
            pair.advance(now + rng.randrange(0, 70), rng.choice([None, 1, 2, 7]))
        else:
            pair.advance(now + rng.randrange(0, 20000))
        pair.check()
    pair.advance(pair.pure.now + 10**6)
    pair.check()


@needs_native
@pytest.mark.parametrize("first", [0, 1, 63, 64, 65, 1000])
def test_native_matches_pure_when_priorities_start_late(first: int) -> None:
    """The native wheel keeps priorities only from the first one that is not 0 on: timers before it rank as 0.

    ``first`` timers of priority 0 come first, spread over the slab's growth
    points (64, 128, ...); then priorities of every sign, sharing deadlines
    with the earlier ones, fired in batches and compared in order.
    """
    rng = random.Random(first)
    pair = Pair(2)
    for _ in range(first):
        pair.add(rng.randrange(1, 40))
    for _ in range(600):
        pair.add(rng.randrange(1, 40), rng.choice([-(2**40), -1, 0, 1, 2**62]))
    pair.check()
    for i in range(0, len(pair.pure_handles), 7):
        pair.reschedule(i, rng.randrange(1, 40))
    while pair.deadline:
        pair.advance(pair.pure.now + 3, rng.choice([None, 5]))
        pair.check()


# -- payload references and handles ------------------------------------------------


@needs_native
def test_payload_released_on_cancel() -> None:
    wheel = NativeWheel()
    payload = object()
    before = sys.getrefcount(payload)
    handle = wheel.add(100, payload)
    assert sys.getrefcount(payload) == before + 1
    assert wheel.reschedule(handle, 200)
    assert wheel.reschedule(handle, 50)
    assert sys.getrefcount(payload) == before + 1
    assert wheel.cancel(handle)
    assert sys.getrefcount(payload) == before
    assert not wheel.cancel(handle)
    assert sys.getrefcount(payload) == before


@needs_native
def test_payload_released_after_firing() -> None:
    wheel = NativeWheel(1)
    payload = object()
    before = sys.getrefcount(payload)
    wheel.add(10, payload)
    wheel.add(10**6, payload)  # overflow
    assert sys.getrefcount(payload) == before + 2
    fired = wheel.advance(10**6)
    assert fired == [payload, payload]
    assert sys.getrefcount(payload) == before + 2  # the list holds them now
    del fired
    assert sys.getrefcount(payload) == before


@needs_native
def test_payload_released_when_cancelled_in_the_due_batch() -> None:
    wheel = NativeWheel()
    payloads = [object() for _ in range(3)]
    before = [sys.getrefcount(p) for p in payloads]
    handles = [wheel.add(5, p) for p in payloads]
    out = wheel.advance(5, limit=1)
    assert out == payloads[:1]
    del out
    assert wheel.cancel(handles[1])
    assert [sys.getrefcount(p) for p in payloads] == [before[0], before[1], before[2] + 1]
    assert wheel.reschedule(handles[2], 3)
    assert wheel.advance(5) == payloads[2:]
    assert [sys.getrefcount(p) for p in payloads] == before


@needs_native
def test_payloads_released_with_the_wheel() -> None:
    payload = object()
    before = sys.getrefcount(payload)
    wheel = NativeWheel(1)
    for deadline in (-1, 5, 100, 10**9):  # due, filed, filed high, overflow
        wheel.add(deadline, payload)
    wheel.add(0, payload)
    wheel.advance(0, limit=1)  # leave a due batch behind
    assert sys.getrefcount(payload) == before + 4
    del wheel
    assert sys.getrefcount(payload) == before


@needs_native
def test_stale_handles_are_not_confused_with_recycled_entries() -> None:
    wheel = NativeWheel()
    old = wheel.add(5, "old")
    assert wheel.advance(5) == ["old"]
    assert not wheel.cancel(old)
    assert not wheel.reschedule(old, 9)
    new = wheel.add(7, "new")  # reuses the freed entry
    assert new != old
    assert not wheel.cancel(old)
    assert not wheel.reschedule(old, 6)
    assert len(wheel) == 1
    cancelled = wheel.add(8, "cancelled")
    assert wheel.cancel(cancelled)
    again = wheel.add(8, "again")
    assert not wheel.cancel(cancelled)
    assert wheel.advance(10) == ["new", "again"]
    assert not wheel.cancel(new)
    assert not wheel.cancel(again)


@needs_native
def test_a_huge_batch_in_one_slot() -> None:
    n = 50_000
    rng = random.Random(7)
    priorities = [rng.randrange(-5, 5) for _ in range(n)]
    pure, native = PureWheel(), NativeWheel()
    handles = []
    for i, priority in enumerate(priorities):
        pure.add(1000, i, priority)
        handles.append(native.add(1000, i, priority))
    expected = sorted(range(n), key=lambda i: (priorities[i], i))
    assert len(native) == n
    first = native.advance(1000, limit=10_000)
    assert first == pure.advance(1000, limit=10_000) == expected[:10_000]
    cancelled = set(expected[10_000:20_000:3])
    for i in cancelled:
        assert native.cancel(handles[i])
    assert len(native) == n - 10_000 - len(cancelled)
    rest = native.advance(1000)
    assert rest == [i for i in expected[10_000:] if i not in cancelled]
    assert len(native) == 0
    assert native.next_expiry() is None


@needs_native
def test_many_timers_cascading_into_one_tick() -> None:
    wheel = NativeWheel(2)
    deadline = 64**2 * 3 + 64 * 5 + 9  # beyond the top level: overflow, then both levels
    for i in range(20_000):
        wheel.add(deadline, i)
    assert wheel.advance(deadline - 1) == []
    assert wheel.advance(deadline) == list(range(20_000))


@needs_native
def test_the_package_exports_the_native_wheel() -> None:
    import chronowheel

    if os.environ.get("CHRONOWHEEL_NO_EXTENSIONS"):
        assert chronowheel.WHEEL == "pure"
    else:
        assert chronowheel.WHEEL == "native"
        assert chronowheel.TimerWheel is NativeWheel
        assert NativeWheel.__module__ == "chronowheel"
