"""``RankedWheel``: the wheel contract, but due payloads leave by (priority, deadline, filing order)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel._ranked import RankedWheel
from chronowheel._selection import TimerWheel
from chronowheel._wheel import TimerWheel as PureWheel

INNER = {"native-or-pure": TimerWheel, "pure": PureWheel}


class Model:
    """What the ranked wheel must do, by brute force: every pending timer in a dict."""

    def __init__(self) -> None:
        self.now = 0
        self.pending: dict[int, tuple[int, int, int, Any]] = {}  # handle -> (deadline, priority, order, payload)
        self.order = 0

    def add(self, handle: int, deadline: int, payload: Any, priority: int) -> None:
        self.order += 1
        self.pending[handle] = (deadline, priority, self.order, payload)

    def advance(self, now: int, limit: int | None) -> list[Any]:
        self.now = max(self.now, now)
        due = sorted((p, d, o, h) for h, (d, p, o, _) in self.pending.items() if d <= self.now)
        out = []
        for *_, handle in due[:limit]:
            out.append(self.pending.pop(handle)[3])
        return out


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 300), st.integers(-3, 3)),
        st.tuples(st.just("cancel"), st.integers(0, 60), st.just(0)),
        st.tuples(st.just("move"), st.integers(0, 60), st.integers(0, 300)),
        st.tuples(st.just("advance"), st.integers(0, 40), st.sampled_from([0, 1, 2, 5])),
    ),
    max_size=120,
)


@pytest.mark.parametrize("inner", list(INNER))
@settings(max_examples=150, deadline=None)
@given(steps=ops)
def test_ranked_wheel_matches_the_model(inner: str, steps: list[tuple[str, int, int]]) -> None:
    wheel = RankedWheel(INNER[inner]())
    model = Model()
    handles: list[int] = []
    for n, (op, a, b) in enumerate(steps):
        if op == "add":
            handle = wheel.add(a, n, b)
            handles.append(handle)
            model.add(handle, a, n, b)
        elif op == "cancel" and handles:
            handle = handles[a % len(handles)]
            assert wheel.cancel(handle) == (model.pending.pop(handle, None) is not None)
        elif op == "move" and handles:
            handle = handles[a % len(handles)]
            moved = handle in model.pending
            assert wheel.reschedule(handle, b) == moved
            if moved:
                _, priority, order, payload = model.pending[handle]
                model.pending[handle] = (b, priority, order, payload)
        elif op == "advance":
            limit = b or None
            now = wheel.now + a
            assert wheel.advance(now, limit) == model.advance(now, limit)
        assert len(wheel) == len(model.pending)
        for handle in handles:
            expected = model.pending.get(handle)
            assert wheel.deadline(handle) == (None if expected is None else expected[0])
        expiry = wheel.next_expiry()
        if model.pending:
            assert expiry is not None
            assert expiry <= max(model.now, min(d for d, *_ in model.pending.values()))
        else:
            assert expiry is None
    assert wheel.advance(wheel.now + 10**6) == model.advance(model.now + 10**6, None)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda w: w.cancel("1"), TypeError, "handle must be an int returned by add(), got str"),
        (lambda w: w.cancel(True), TypeError, "handle must be an int returned by add(), got bool"),
        (lambda w: w.deadline(1.0), TypeError, "handle must be an int returned by add(), got float"),
        (lambda w: w.reschedule(1, 2.5), TypeError, "deadline must be an int, got float"),
        (lambda w: w.reschedule(1, 2**63), ValueError, "deadline must be an int from"),
        (lambda w: w.add(1, "x", 1.0), TypeError, "priority must be an int, got float"),
        (lambda w: w.add(1.0, "x"), TypeError, "deadline must be an int, got float"),
        (lambda w: w.advance(1, 0), ValueError, "limit must be positive, got 0"),
        (lambda w: w.advance(1, True), TypeError, "limit must be an int or None, got bool"),
    ],
    ids=[
        "cancel-str",
        "cancel-bool",
        "deadline-float",
        "move-float",
        "move-huge",
        "priority",
        "add-float",
        "limit-0",
        "limit-bool",
    ],
)
def test_bad_input_is_refused_as_the_wheels_refuse_it(call: Any, error: type[Exception], message: str) -> None:
    wheel = RankedWheel(TimerWheel())
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(wheel)
    assert len(wheel) == 0


def test_unknown_handles_name_no_timer() -> None:
    wheel, other = RankedWheel(TimerWheel()), RankedWheel(TimerWheel())
    handle = other.add(5, "theirs")
    assert wheel.cancel(handle) is False
    assert wheel.reschedule(handle, 9) is False
    assert wheel.deadline(handle) is None
    assert other.advance(5) == ["theirs"]
    assert other.cancel(handle) is False
