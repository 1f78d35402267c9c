"""The wheel against a sorted-list reference model, on random operation streams."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st


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


def run_stream(wheel: Any, ops: list[tuple[Any, ...]]) -> None:
    model = ReferenceWheel()
    handles: list[Any] = []
    for op in ops:
        kind = op[0]
        if kind in ("add", "add_near"):
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


@settings(max_examples=1000, deadline=None)
@given(st.lists(operation, min_size=5, max_size=150))
def test_wheel_matches_reference_model(wheel_factory: Any, ops: list[tuple[Any, ...]]) -> None:
    run_stream(wheel_factory(LEVELS), ops)
