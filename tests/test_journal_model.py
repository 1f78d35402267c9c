"""A journaled engine against a reference model, across restarts and compactions.

Hypothesis drives random schedules, cancels, reschedules, clock advances and
restarts (with downtime) on one journal, compacting every few records. The
model is a dict of pending jobs. Every job must run exactly once (restarts
here are clean stops, so nothing is left unacknowledged), never early, and
on time unless the engine was down at its deadline; cancelled and replaced
jobs never run; after every restart the recovered jobs are exactly the
model's pending ones.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronowheel import Engine
from chronowheel._journal.store import JournalStore
from chronowheel.testing import VirtualClock

KEYS = [f"k{n}" for n in range(6)]
TICK = 0.001

Op = tuple[str, int, int]
op = st.one_of(
    st.tuples(st.just("schedule"), st.integers(0, len(KEYS) - 1), st.integers(1, 90)),
    st.tuples(st.just("cancel"), st.integers(0, len(KEYS) - 1), st.just(0)),
    st.tuples(st.just("reschedule"), st.integers(0, len(KEYS) - 1), st.integers(1, 90)),
    st.tuples(st.just("advance"), st.just(0), st.integers(0, 60)),
    st.tuples(st.just("restart"), st.just(0), st.integers(0, 120)),
)
ops = st.lists(op, min_size=15, max_size=50)
long_ops = st.lists(op, min_size=30, max_size=100)


class Scenario:
    """The engine under test and the model, stepped together."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.wall = 1_767_225_600.0
        self.pending: dict[str, tuple[int, float]] = {}  # key -> (serial, due wall time)
        self.expected: dict[int, float] = {}  # serial -> due, for every job that must run
        self.late_ok: set[int] = set()  # serials whose deadline passed while the engine was down
        self.ran: dict[int, float] = {}  # serial -> wall time it ran
        self.serial = 0

    async def open(self) -> None:
        self.clock = VirtualClock(wall=self.wall)
        self.engine = Engine(journal=self.path, clock=self.clock)

        @self.engine.task(name="job")
        async def job(serial: int) -> None:
            assert serial not in self.ran, f"job {serial} ran twice"
            self.ran[serial] = self.clock.wall()

        await self.engine.start()
        recovered = {key for key in KEYS if self.engine.get(key) is not None}
        overdue = {key for key, (_, due) in self.pending.items() if due <= self.clock.wall()}
        assert recovered == set(self.pending), "recovery must bring back exactly the pending jobs"
        self.late_ok |= {self.pending[key][0] for key in overdue}
        await self.advance(0)

    async def step(self, op: Op) -> None:
        name, index, amount = op
        key = KEYS[index]
        now = self.clock.wall()
        if name == "schedule":
            self.serial += 1
            await self.engine.schedule("job", args=(self.serial,), delay=amount, key=key, if_exists="replace")
            if key in self.pending:
                del self.expected[self.pending[key][0]]
            self.pending[key] = (self.serial, now + amount)
            self.expected[self.serial] = now + amount
        elif name == "cancel":
            assert self.engine.cancel(key) == (key in self.pending)
            if key in self.pending:
                del self.expected[self.pending.pop(key)[0]]
        elif name == "reschedule":
            assert self.engine.reschedule(key, delay=amount) == (key in self.pending)
            if key in self.pending:
                serial = self.pending[key][0]
                self.pending[key] = (serial, now + amount)
                self.expected[serial] = now + amount
        elif name == "advance":
            await self.advance(amount)
        else:
            await self.engine.stop(grace=0)
            self.wall = self.clock.wall() + amount
            await self.open()

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)
        now = self.clock.wall()
        for key, (_, due) in list(self.pending.items()):
            if due <= now:
                del self.pending[key]
        self.check(now)

    def check(self, now: float) -> None:
        due_by_now = {serial for serial, due in self.expected.items() if due <= now}
        assert set(self.ran) == due_by_now, "exactly the jobs due by now have run"
        for serial, ran_at in self.ran.items():
            due = self.expected[serial]
            assert ran_at >= due, f"job {serial} ran early"
            if serial not in self.late_ok:
                assert ran_at <= due + 2 * TICK, f"job {serial} ran late without a restart to excuse it"


def run_against_the_model(steps: list[Op]) -> None:
    """One sequence of steps on a fresh journal: the body both the suite's test and the soak's share."""
    with tempfile.TemporaryDirectory() as directory:
        scenario = Scenario(str(Path(directory) / "timers.log"))

        async def main() -> None:
            await scenario.open()
            for op in steps:
                await scenario.step(op)
            await scenario.engine.stop(grace=0)

        asyncio.run(main())


# 60 examples in make test (the suite's longest test: each example restarts engines on real files); the soak
# below runs 3,000 longer ones.
@pytest.mark.heavy
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_journaled_engine_matches_the_model(steps: list[Op]) -> None:
    run_against_the_model(steps)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(long_ops)
def test_journaled_engine_matches_the_model_soak(steps: list[Op]) -> None:
    """`make soak`: 50 times the examples, each up to twice as long (30 to 100 steps)."""
    run_against_the_model(steps)


@pytest.fixture(autouse=True)
def compact_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction every few records, so the sequences cross many snapshots."""
    monkeypatch.setattr(JournalStore, "compact_min", 4)
    monkeypatch.setattr(JournalStore, "compact_factor", 1.0)
