"""A recovery's refill (``_refill.refill``) and its native twin (``_cwheel.refill``) file the same jobs the same way.

Over a family of restored jobs (every state, parents or none, deadlines
overdue, ahead and beyond the wheel's reach, ints and floats, priorities to
the int64 edges, keys shared), each twin run as
:meth:`chronowheel._placement.Placement.restore` runs them (a twin from an
index, the job it stops at handled in Python, on from the next) must stop at
the same jobs and leave the same ticks, deadlines in the wheel, priorities,
engines, id index and key index. Native cases are skipped where the native
wheel is not built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel._job import Job
from chronowheel._limits import MAX_AHEAD
from chronowheel._refill import refill as refill_py
from chronowheel._wheel import TimerWheel as PureWheel
from chronowheel._wheel_api import Wheel

try:
    from chronowheel._cwheel import TimerWheel as NativeWheel
    from chronowheel._cwheel import refill as refill_native
except ImportError:  # not built
    NativeWheel = refill_native = None  # type: ignore[assignment, misc]

needs_native = pytest.mark.skipif(refill_native is None, reason="native wheel not built")

NOW = 1_767_225_600.0
OWNER = object()
TASKS = ("a", "b")

Spec = tuple[str, float | int, int, str | None, list[str] | None]  # state, due wall, priority, key, after


def jobs_of(specs: list[Spec]) -> list[Job]:
    jobs = []
    for number, (state, due, priority, key, after) in enumerate(specs):
        job = Job(f"job-{number}", key, TASKS[number % 2], (number,), {}, priority, due, 0)
        job.state = state  # type: ignore[assignment]
        job._after = after
        jobs.append(job)
    return jobs


def run(
    twin: Callable[..., int], wheel_type: Callable[[], Wheel], specs: list[Spec], since_epoch: float, rate: float
) -> dict[str, Any]:
    """``twin`` over jobs of ``specs`` as ``Placement.restore`` calls it; what it filed, and where it stopped."""
    jobs = jobs_of(specs)
    wheels = {task: wheel_type() for task in TASKS}
    indexed: dict[str, Job] = {}
    keyed: dict[str, Job] = {}
    stops = []
    index = 0
    while (index := twin(jobs, index, OWNER, NOW, since_epoch, rate, wheels, indexed, keyed)) < len(jobs):
        stops.append(index)
        index += 1
    return {
        "stops": stops,
        "filed": [  # each job's engine, tick, and deadline in its wheel (None: not filed)
            (
                job.id,
                job._engine is OWNER,
                job._due_tick,
                None if job._timer is None else wheels[job.task].deadline(job._timer),
            )
            for job in jobs
        ],
        "due": {task: wheel.advance(2**62) for task, wheel in wheels.items()},  # by deadline, then priority
        "indexed": list(indexed),
        "keyed": {key: job.id for key, job in keyed.items()},
    }


def outcome(result: dict[str, Any]) -> dict[str, Any]:
    """The run's result with the jobs the wheels handed out named by id (each run builds its own)."""
    return {**result, "due": {task: [job.id for job in due] for task, due in result["due"].items()}}


CASES: dict[str, list[Spec]] = {
    "pending": [("pending", NOW + 60.0, 0, None, None), ("pending", NOW + 0.25, 0, "k", None)],
    "overdue and now": [("pending", NOW - 3600.0, 0, None, None), ("failed", NOW, 0, None, None)],
    "int deadlines": [("pending", int(NOW) + 7, 0, None, None), ("pending", int(NOW) - 7, 0, None, None)],
    "beyond the wheel's reach": [("pending", NOW + MAX_AHEAD * 1.5, 0, None, None), ("pending", 2e12, 0, None, None)],
    "priorities": [
        ("pending", NOW + 1.0, 2**63 - 1, None, None),
        ("pending", NOW + 1.0, -(2**63 - 1), None, None),
        ("pending", NOW + 1.0, 5, None, None),
        ("pending", NOW + 1.0, -5, None, None),
    ],
    "a key shared: the first job keeps it": [
        ("paused", NOW + 5.0, 0, "shared", None),
        ("pending", NOW + 1.0, 0, "shared", None),
        ("pending", NOW + 2.0, 0, "other", None),
        ("pending", NOW + 3.0, 0, "other", None),
    ],
    "every other state stops it": [
        ("pending", NOW + 1.0, 0, None, None),
        ("dead", NOW + 1.0, 0, None, None),
        ("pending", NOW + 2.0, 0, None, None),
        ("paused", NOW + 1.0, 0, None, None),
        ("running", NOW + 1.0, 0, None, None),
        ("pending", NOW + 3.0, 0, None, ["parent"]),
        ("failed", NOW + 4.0, 0, None, None),
    ],
    "none": [],
}


@needs_native
@pytest.mark.parametrize("rate", [1000.0, 1.0, 64.0], ids=["ms-ticks", "s-ticks", "64-per-s"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_twins_file_alike(name: str, rate: float) -> None:
    specs = CASES[name]
    pure = run(refill_py, PureWheel, specs, 12.5, rate)
    native = run(refill_native, NativeWheel, specs, 12.5, rate)
    assert outcome(native) == outcome(pure)
    assert len(pure["indexed"]) == len(specs) - len(pure["stops"])


@pytest.mark.parametrize("name", list(CASES))
def test_the_pure_loop_files_what_is_waiting_and_stops_at_the_rest(name: str) -> None:
    specs = CASES[name]
    result = run(refill_py, PureWheel, specs, 0.0, 1000.0)
    waiting = [i for i, (state, _, _, _, after) in enumerate(specs) if state in ("pending", "failed") and after is None]
    assert result["stops"] == [i for i in range(len(specs)) if i not in waiting]
    for i in waiting:
        _, engine_set, tick, deadline = result["filed"][i]
        seconds = min(max(specs[i][1] - NOW, 0.0), MAX_AHEAD)
        assert engine_set
        assert deadline == tick >= seconds * 1000.0


@needs_native
def test_the_native_loop_leaves_a_wheel_it_does_not_know_and_an_int_too_big_to_read() -> None:
    """A rate-limited pool's wheel (not a TimerWheel), or a deadline int past 60 bits: Placement files it instead."""
    jobs = jobs_of([("pending", NOW + 1.0, 0, None, None), ("pending", 2**70, 0, None, None)])
    wheels: dict[str, Wheel] = {"a": PureWheel(), "b": NativeWheel()}
    assert refill_native(jobs, 0, OWNER, NOW, 0.0, 1000.0, wheels, {}, {}) == 0
    assert refill_native(jobs, 1, OWNER, NOW, 0.0, 1000.0, wheels, {}, {}) == 1
    assert jobs[0]._timer is None
    assert jobs[1]._timer is None
    assert jobs[0]._engine is None


@needs_native
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("pending", "failed", "dead")),
            st.one_of(st.floats(NOW - 1e6, NOW + 2e6), st.integers(int(NOW) - 10**6, int(NOW) + 10**6), st.just(NOW)),
            st.integers(-(2**63 - 1), 2**63 - 1),
            st.sampled_from((None, "x", "y")),
            st.none(),
        ),
        max_size=12,
    ),
    st.floats(0.0, 1e7),
    st.sampled_from((1000.0, 1.0, 1024.0, 3.0)),
)
def test_the_twins_file_alike_to_the_bit(specs: list[Spec], since_epoch: float, rate: float) -> None:
    assert outcome(run(refill_native, NativeWheel, specs, since_epoch, rate)) == outcome(
        run(refill_py, PureWheel, specs, since_epoch, rate)
    )
