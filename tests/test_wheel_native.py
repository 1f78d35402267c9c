"""The Cython wheel against the pure one: same operations, same outputs, and no leaks."""

from __future__ import annotations

import importlib
import os
import random
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel._wheel import TimerWheel as PureWheel

NativeWheel: Any = None
NATIVE_IMPORT_ERROR = ""
try:
    # Through importlib: the extension has no stub, and mypy must not need one.
    NativeWheel = importlib.import_module("chronowheel._cwheel").TimerWheel
except ImportError as exc:
    NATIVE_IMPORT_ERROR = repr(exc)

needs_native = pytest.mark.skipif(NativeWheel is None, reason=f"native wheel not built: {NATIVE_IMPORT_ERROR}")


def test_ci_builds_the_native_wheel() -> None:
    """On CI a missing native wheel is a failure, not a skip, unless it was turned off."""
    on_ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    if not on_ci or os.environ.get("CHRONOWHEEL_NO_EXTENSIONS"):
        pytest.skip("only on CI with extensions enabled")
    assert NativeWheel is not None, f"chronowheel._cwheel did not import on CI: {NATIVE_IMPORT_ERROR}"
    import chronowheel

    assert chronowheel.WHEEL == "native"


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


class Pair:
    """One operation stream, fed to the oracle and the native wheel; every output compared."""

    def __init__(self, levels: int) -> None:
        self.pure: Any = PureWheel(levels)
        self.native: Any = NativeWheel(levels)
        self.pure_handles: list[Any] = []
        self.native_handles: list[Any] = []
        self.deadline: dict[int, int] = {}  # payload -> deadline, while pending

    def check(self) -> None:
        assert len(self.native) == len(self.pure) == len(self.deadline)
        assert self.native.now == self.pure.now
        assert self.native.next_expiry() == self.pure.next_expiry()
        assert repr(self.native) == repr(self.pure)

    def add(self, deadline: int, priority: int) -> None:
        payload = len(self.pure_handles)
        self.pure_handles.append(self.pure.add(deadline, payload, priority))
        self.native_handles.append(self.native.add(deadline, payload, priority))
        self.deadline[payload] = deadline

    def pick(self, i: int) -> int | None:
        return i % len(self.pure_handles) if self.pure_handles else None

    def cancel(self, payload: int) -> None:
        done = self.pure.cancel(self.pure_handles[payload])
        assert self.native.cancel(self.native_handles[payload]) == done
        assert done == (payload in self.deadline)
        self.deadline.pop(payload, None)

    def reschedule(self, payload: int, deadline: int) -> None:
        done = self.pure.reschedule(self.pure_handles[payload], deadline)
        assert self.native.reschedule(self.native_handles[payload], deadline) == done
        assert done == (payload in self.deadline)
        if done:
            self.deadline[payload] = deadline

    def advance(self, now: int, limit: int | None = None) -> None:
        fired = self.pure.advance(now, limit)
        assert self.native.advance(now, limit) == fired
        for payload in fired:
            del self.deadline[payload]

    def earliest(self) -> int:
        return min(self.deadline.values(), default=self.pure.now)


def run_pair(levels: int, ops: list[tuple[Any, ...]]) -> None:
    pair = Pair(levels)
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
    # Drain: everything still pending fires exactly once, in the same order.
    pair.advance(max([pair.pure.now, *pair.deadline.values()]) + 64**levels)
    pair.check()
    assert len(pair.native) == 0
    assert pair.native.next_expiry() is None


@needs_native
@pytest.mark.parametrize("levels", [2, 3])
@settings(max_examples=700, deadline=None)
@given(ops=st.lists(operation, min_size=5, max_size=120))
def test_native_matches_pure(levels: int, ops: list[tuple[Any, ...]]) -> None:
    run_pair(levels, ops)


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


@pytest.mark.parametrize("handle", [None, "1", 1.0, -1, 0, 2**31, 2**64 - 1, 2**64, 2**100, -(2**70)])
@needs_native
def test_foreign_handles_are_not_pending(handle: Any) -> None:
    wheel = NativeWheel()
    wheel.add(5, "a")
    assert not wheel.cancel(handle)
    assert not wheel.reschedule(handle, 1)
    assert len(wheel) == 1


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
