"""The wheel against a sorted-list reference model, on random operation streams."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel._wheel_api import TICK_MAX, TICK_MIN


class ReferenceWheel:
    """What a timing wheel means, at the cost of a sort: the model to check against."""

    def __init__(self) -> None:
        self.now = 0
        self.pending: dict[int, tuple[int, int, int]] = {}  # payload -> (deadline, priority, seq)
        self.seq = 0

    def add(self, deadline: int, payload: int, priority: int) -> None:
        self.seq += 1
        self.pending[payload] = (deadline, priority, self.seq)

    def cancel(self, payload: int) -> bool:
        return self.pending.pop(payload, None) is not None

    def reschedule(self, payload: int, deadline: int) -> bool:
        if payload not in self.pending:
            return False
        _, priority, seq = self.pending[payload]
        self.pending[payload] = (deadline, priority, seq)
        return True

    def advance(self, now: int, limit: int | None = None) -> list[int]:
        self.now = max(self.now, now)
        due = sorted((key, p) for p, key in self.pending.items() if key[0] <= self.now)[:limit]
        for _, payload in due:
            del self.pending[payload]
        return [payload for _, payload in due]


LEVELS = 3  # 64**3 ticks in range, so a stream of small steps reaches the overflow too
SPAN = 64**LEVELS

# Offsets from the current tick, weighted towards the edges: now, slot and
# level boundaries, and just past them.
near = st.one_of(st.integers(-2, 2), st.integers(62, 66), st.integers(-3, 130))
operation = st.one_of(
    st.tuples(st.just("add"), st.integers(-50, 3 * SPAN), st.integers(-2, 2)),
    st.tuples(st.just("add_near"), near, st.integers(-2, 2)),
    st.tuples(st.just("cancel"), st.integers(0, 200)),
    st.tuples(st.just("reschedule"), st.integers(0, 200), st.integers(-50, 3 * SPAN)),
    st.tuples(st.just("reschedule_near"), st.integers(0, 200), near),
    st.tuples(st.just("nudge"), st.integers(0, 200), st.integers(-2, 2)),
    st.tuples(st.just("advance"), st.one_of(st.integers(0, 2), st.integers(0, 80))),
    st.tuples(st.just("advance_far"), st.integers(0, SPAN)),
    st.tuples(st.just("advance_edge"), st.integers(-1, 1)),
    st.tuples(st.just("advance_limited"), st.integers(0, 200), st.integers(1, 3)),
)
# Calls the contract refuses (chronowheel._wheel_api): they raise, and change nothing.
not_a_tick = st.one_of(
    st.sampled_from([None, True, False, "1", math.nan, math.inf]),
    st.floats(-1e6, 1e6),
    st.integers(TICK_MAX + 1, 2**70),
    st.integers(-(2**70), TICK_MIN - 1),
)
refused = st.one_of(
    st.tuples(st.just("refused_add"), not_a_tick, st.integers(-2, 2)),
    st.tuples(st.just("refused_add_priority"), st.integers(-50, 3 * SPAN), not_a_tick),
    st.tuples(st.just("refused_reschedule"), st.integers(0, 200), not_a_tick),
    st.tuples(st.just("refused_handle"), st.integers(0, 200), st.sampled_from([float, bool, str])),
    st.tuples(st.just("refused_advance"), not_a_tick),
    st.tuples(st.just("refused_limit"), st.integers(0, 200), st.sampled_from([0, -1, 1.0, True, "2"])),
)


def refused_call(wheel: Any, op: tuple[Any, ...], handles: list[Any], now: int) -> tuple[Any, ...]:
    """(method, arguments) of a call the contract refuses."""
    kind = op[0]
    handle = handles[op[1] % len(handles)] if handles and kind in ("refused_reschedule", "refused_handle") else 1
    if kind in ("refused_add", "refused_add_priority"):
        return wheel.add, (op[1], "refused", op[2])
    if kind == "refused_reschedule":
        return wheel.reschedule, (handle, op[2])
    if kind == "refused_handle":
        return wheel.cancel, (op[2](handle),)
    if kind == "refused_advance":
        return wheel.advance, (op[1],)
    return wheel.advance, (now + op[1], op[2])


def run_stream(wheel: Any, ops: list[tuple[Any, ...]]) -> None:
    model = ReferenceWheel()
    handles: list[Any] = []
    for op in ops:
        kind = op[0]
        if kind.startswith("refused"):
            method, args = refused_call(wheel, op, handles, model.now)
            with pytest.raises((TypeError, ValueError)):
                method(*args)
        elif kind in ("add", "add_near"):
            deadline = max(0, model.now + op[1]) if kind == "add_near" else max(0, op[1])
            payload = len(handles)
            handles.append(wheel.add(deadline, payload, op[2]))
            model.add(deadline, payload, op[2])
        elif kind == "cancel":
            if handles:
                payload = op[1] % len(handles)
                assert wheel.cancel(handles[payload]) == model.cancel(payload)
        elif kind in ("reschedule", "reschedule_near"):
            if handles:
                payload = op[1] % len(handles)
                deadline = max(0, op[2]) if kind == "reschedule" else max(0, model.now + op[2])
                assert wheel.reschedule(handles[payload], deadline) == model.reschedule(payload, deadline)
        elif kind == "nudge":
            # Move a timer a few ticks either way from its own deadline: the
            # lazy path (later) and the re-file path (earlier) at their edges.
            if handles:
                payload = op[1] % len(handles)
                current = model.pending.get(payload)
                deadline = max(0, (current[0] if current else model.now) + op[2])
                assert wheel.reschedule(handles[payload], deadline) == model.reschedule(payload, deadline)
        elif kind == "advance_limited":
            # One bounded batch; the rest stays due, open to cancel and reschedule.
            now = model.now + op[1]
            assert wheel.advance(now, limit=op[2]) == model.advance(now, limit=op[2])
        else:
            if kind == "advance_edge":
                # To just before, at, or just after the earliest deadline.
                earliest = min((d for d, _, _ in model.pending.values()), default=model.now)
                now = max(model.now, earliest + op[1])
            else:
                now = model.now + op[1]
            assert wheel.advance(now) == model.advance(now)
        assert len(wheel) == len(model.pending)
        nxt = wheel.next_expiry()
        if model.pending:
            earliest = max(model.now, min(d for d, _, _ in model.pending.values()))
            assert nxt is not None
            assert nxt <= earliest
    # Drain: everything still live fires exactly once, and the wheel is empty.
    final = model.now + 4 * SPAN
    assert wheel.advance(final) == model.advance(final)
    assert len(wheel) == 0
    assert wheel.next_expiry() is None


@pytest.mark.heavy
@settings(max_examples=1000, deadline=None)
@given(st.lists(operation, min_size=5, max_size=150))
def test_wheel_matches_reference_model(wheel_factory: Any, ops: list[tuple[Any, ...]]) -> None:
    run_stream(wheel_factory(LEVELS), ops)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(operation, refused), min_size=5, max_size=100))
def test_refused_calls_change_nothing(wheel_factory: Any, ops: list[tuple[Any, ...]]) -> None:
    """Every argument is checked before anything moves: the model, which never sees them, still agrees."""
    run_stream(wheel_factory(LEVELS), ops)
