"""Hot-path micro-benchmarks under pytest-benchmark: ``make bench-micro``.

Each benchmark times one operation against a structure already holding
``RESIDENT`` timers, so it measures the resident cost (cache misses, slot
lookups) and not an empty structure. Each timed round is a batch of ``OPS``
operations: divide the figures by 10,000 for the cost of one. Results are saved as JSON under
``bench/.results`` with the commit in the name; compare two commits with
``pytest-benchmark compare``. Not part of ``make test``: timings are noisy on a
shared machine and are never asserted.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from chronowheel import Engine

RESIDENT = 200_000
LOW, HIGH = 1_000, 3_600_000  # ticks: deadlines between 1 s and 1 h at the default 1 ms tick
OPS = 10_000  # operations per timed round

WHEELS = ["pure"]
try:
    importlib.import_module("chronowheel._cwheel")
    WHEELS.append("native")
except ImportError:  # built without the extension: the pure wheel alone
    pass


def wheel_class(name: str) -> Any:
    module = "chronowheel._wheel" if name == "pure" else "chronowheel._cwheel"
    return importlib.import_module(module).TimerWheel


def _noop() -> None:
    pass


def timed(benchmark: BenchmarkFixture, batch: Callable[[], None], *, rounds: int) -> None:
    """Time ``rounds`` calls of ``batch``, one each (pytest-benchmark's ``pedantic`` is untyped)."""
    benchmark.pedantic(batch, rounds=rounds, iterations=1)  # type: ignore[no-untyped-call]


@pytest.fixture(params=WHEELS)
def filled(request: pytest.FixtureRequest) -> tuple[Any, list[int]]:
    """A wheel of either kind holding RESIDENT timers, and their handles."""
    wheel = wheel_class(request.param)()
    rng = random.Random(42)
    handles = [wheel.add(rng.randint(LOW, HIGH), _noop) for _ in range(RESIDENT)]
    return wheel, handles


def test_wheel_add(benchmark: BenchmarkFixture, filled: tuple[Any, list[int]]) -> None:
    wheel, _ = filled
    deadlines = [random.Random(1).randint(LOW, HIGH) for _ in range(OPS)]

    def add_batch() -> None:
        add = wheel.add
        for deadline in deadlines:
            add(deadline, _noop)

    timed(benchmark, add_batch, rounds=5)


def test_wheel_reschedule_later(benchmark: BenchmarkFixture, filled: tuple[Any, list[int]]) -> None:
    wheel, handles = filled
    moves = itertools.count(HIGH + 1)
    targets = random.Random(2).sample(handles, OPS)

    def reschedule_batch() -> None:
        reschedule = wheel.reschedule
        base = next(moves) * 2
        for handle in targets:
            reschedule(handle, base)

    timed(benchmark, reschedule_batch, rounds=5)


def test_wheel_cancel(benchmark: BenchmarkFixture, filled: tuple[Any, list[int]]) -> None:
    wheel, handles = filled
    batches: Iterator[list[int]] = iter([handles[start : start + OPS] for start in range(0, RESIDENT, OPS)])

    def cancel_batch() -> None:
        cancel = wheel.cancel
        for handle in next(batches):
            cancel(handle)

    timed(benchmark, cancel_batch, rounds=5)


def test_wheel_advance(benchmark: BenchmarkFixture, filled: tuple[Any, list[int]]) -> None:
    wheel, _ = filled
    steps = itertools.count(LOW, 10_000)

    def advance_step() -> None:
        wheel.advance(next(steps), 1 << 30)

    timed(benchmark, advance_step, rounds=20)


def _in_engine(body: Callable[[Engine], None]) -> None:
    async def main() -> None:
        async with Engine() as engine:
            body(engine)

    asyncio.run(main())


def test_engine_call_later(benchmark: BenchmarkFixture) -> None:
    def body(engine: Engine) -> None:
        rng = random.Random(3)
        for _ in range(RESIDENT):
            engine.call_later(rng.uniform(1, 3600), _noop)
        delays = [rng.uniform(1, 3600) for _ in range(OPS)]

        def call_batch() -> None:
            call_later = engine.call_later
            for delay in delays:
                call_later(delay, _noop)

        timed(benchmark, call_batch, rounds=5)

    _in_engine(body)


def test_handle_reschedule_then_cancel(benchmark: BenchmarkFixture) -> None:
    def body(engine: Engine) -> None:
        rng = random.Random(4)
        handles = [engine.call_later(rng.uniform(1, 3600), _noop) for _ in range(RESIDENT)]
        batches = iter([handles[start : start + OPS] for start in range(0, RESIDENT, OPS)])
        round_ = itertools.count(2)

        def touch_then_cancel() -> None:
            batch = next(batches)
            later = 3600.0 * next(round_)
            for handle in batch:
                handle.reschedule(later)
            for handle in batch:
                handle.cancel()

        timed(benchmark, touch_then_cancel, rounds=5)

    _in_engine(body)


def test_schedule_nowait(benchmark: BenchmarkFixture) -> None:
    def body(engine: Engine) -> None:
        engine.task(name="noop")(_noop)

        def schedule_batch() -> None:
            schedule = engine.schedule_nowait
            for _ in range(OPS):
                schedule("noop", delay=3600)

        timed(benchmark, schedule_batch, rounds=5)

    _in_engine(body)
