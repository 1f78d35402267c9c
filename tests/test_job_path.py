"""The job path's fast lane: ``schedule_nowait``'s usual call, inlined, against the checked calls it stands for."""

from __future__ import annotations

import functools
import gc
import math
import sys
from fractions import Fraction
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from chronowheel import WHEEL, Engine, UnknownTask, _wheel
from chronowheel._journal import schema as _schema
from chronowheel._journal import store as _store_module
from chronowheel._journal.records import expand_jobs
from chronowheel._journal.store import JournalStore
from chronowheel._journal.writer import JournalFile
from chronowheel.testing import VirtualClock
from helpers import journal_store


def noop(*args: Any, **kwargs: Any) -> None:
    """The task the jobs name; nothing here runs it."""


def python_calls(call: Any) -> list[str]:
    """The Python functions entered while ``call()`` (a C callable) runs, in order; the pure wheel's left out.

    The collector is off meanwhile: a collection would run weakref callbacks in between.
    """
    entered: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_filename != _wheel.__file__:
            entered.append(frame.f_code.co_qualname)

    gc.disable()
    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
        gc.enable()
    return entered


@pytest.mark.parametrize("task", ["by name", "by function"])
@pytest.mark.parametrize("args", [(), (1, "a"), [1, "a"]], ids=["no args", "a tuple", "a list"])
@pytest.mark.parametrize("delay", [0, 2.5, 3600], ids=["0", "2.5", "3600"])
async def test_the_usual_call_takes_no_python_frame_native_two_pure(task: str, args: Any, delay: float) -> None:
    engine = Engine()  # the system clock is C: a virtual one adds its own frames
    engine.task("t")(noop)
    name_or_function = "t" if task == "by name" else noop
    async with engine:
        engine.schedule_nowait("t", delay=1)  # the first takes a batch of ids: a Python call it makes once per 4,096
        calls = python_calls(functools.partial(engine.schedule_nowait, name_or_function, args=args, delay=delay))
        assert calls == ([] if WHEEL == "native" else ["Engine.schedule_nowait", "Job.__init__"])


DELAYS = [0, 0.0, -0.0, 1, 0.001, 2.5, 1e-9, 1e10, Fraction(1, 3), True]


@pytest.mark.parametrize("delay", DELAYS, ids=[f"{type(d).__name__} {d}" for d in DELAYS])
async def test_the_inlined_delay_check_files_as_check_when_and_set_due_do(delay: Any) -> None:
    """Every delay the checked path takes, the fast one files at the same tick and deadline; the rest it refuses."""
    clock = VirtualClock(start=1000.0)
    engine = Engine(clock=clock, tick=0.001)
    engine.task("t")(noop)
    async with engine:
        if delay is True:
            with pytest.raises(TypeError, match="delay must be a number of seconds, got bool"):
                engine.schedule_nowait("t", delay=delay)
            return
        job = engine.schedule_nowait("t", delay=delay)
        ticks = engine._ticks
        seconds = float(delay)
        assert job._due_tick == math.ceil((ticks.time() - ticks.epoch + seconds) * ticks.rate)
        assert job._due_wall == clock.wall() + seconds
        assert (job.state, job.args, job.kwargs, job.priority) == ("pending", (), {}, 0)


BAD_DELAYS = [(math.nan, ValueError), (-1, ValueError), (1e10 + 1, ValueError), (10**400, ValueError), ("1", TypeError)]


@pytest.mark.parametrize(("delay", "error"), BAD_DELAYS, ids=["nan", "-1", "past MAX_DELAY", "huge int", "str"])
async def test_delays_the_fast_lane_does_not_take_get_the_checked_error(delay: Any, error: type[Exception]) -> None:
    engine = Engine(clock=VirtualClock())
    engine.task("t")(noop)
    async with engine:
        with pytest.raises(error, match="delay must be a number of seconds"):
            engine.schedule_nowait("t", delay=delay)
        assert len(engine) == 0


class Name(str):
    """A str subclass naming a task: not the fast lane's exact str, still a name."""


TASKS: list[tuple[str, Any, type[Exception] | None]] = [
    ("a str subclass", Name("t"), None),
    ("an unknown name", "nope", UnknownTask),
    ("an unregistered function", print, UnknownTask),
    ("an unhashable value", [noop], TypeError),
    ("an unhashable callable", type("Unhashable", (), {"__call__": noop, "__hash__": None})(), UnknownTask),
    ("a number", 3, TypeError),
]


@pytest.mark.parametrize(("task", "error"), [row[1:] for row in TASKS], ids=[row[0] for row in TASKS])
async def test_task_lookup_outside_the_fast_lane_says_what_was_passed(task: Any, error: type[Exception] | None) -> None:
    engine = Engine(clock=VirtualClock())
    engine.task("t")(noop)
    async with engine:
        if error is None:
            assert engine.schedule_nowait(task, delay=1).task == "t"
        else:
            with pytest.raises(error, match="task"):
                engine.schedule_nowait(task, delay=1)


@pytest.mark.parametrize("journal", [False, True], ids=["in memory", "journaled"])
async def test_reregistering_a_function_under_its_name_is_what_its_jobs_get(journal: bool, tmp_path: Path) -> None:
    engine = Engine(clock=VirtualClock(), journal=str(tmp_path / "j.log") if journal else None)
    engine.task("t")(noop)
    engine.task("t", priority=7)(noop)  # the same function again: its options are replaced
    async with engine:
        assert engine.schedule_nowait(noop, delay=1).priority == 7
        assert engine.schedule_nowait("t", delay=1).priority == 7


@pytest.mark.parametrize("kwargs", [None, {}, {"a": 1}], ids=["None", "empty", "one"])
async def test_each_job_gets_its_own_kwargs_dict(kwargs: dict[str, Any] | None) -> None:
    engine = Engine(clock=VirtualClock())
    engine.task("t")(noop)
    async with engine:
        first, second = (engine.schedule_nowait("t", kwargs=kwargs, delay=1) for _ in range(2))
        assert first.kwargs == second.kwargs == (kwargs or {})
        assert first.kwargs is not second.kwargs
        assert first.kwargs is not kwargs


# -- the journal's bulk paths: recovery's refill, compaction's slices --------------------------------------

WALL = 1_767_225_600.0
# Seconds from the restart's wall clock to each job's deadline: overdue by far and by a little, due now, soon, later.
DUE_IN = [-86_400.0, -0.5, 0.0, 0.0004, 0.25, 3600.0, 9e9]


@pytest.mark.parametrize("later", [0.0, 30.0, 7200.0], ids=["at once", "30 s later", "2 h later"])
async def test_recovery_refills_each_job_at_the_tick_set_due_gives_it(later: float, tmp_path: Path) -> None:
    """The bulk refill files every job as ``set_due`` would: its deadline kept, overdue ones due now.

    Checked before the driver's first turn: nothing has fired yet.
    """
    path = str(tmp_path / "j.log")
    engine = Engine(journal=path, clock=VirtualClock(wall=WALL))
    engine.task("t")(noop)
    async with engine:
        ids = {}
        for number, due_in in enumerate(DUE_IN):
            job = engine.schedule_nowait("t", args=[number], delay=3600, key=f"k{number}")  # none fires here
            job_wall = WALL + due_in + later
            job._due_wall = job_wall  # the deadline its record holds: overdue ones as a longer downtime leaves them
            ids[job.id] = job_wall
            journal_store(engine).recorded(job)
        await engine.flush()
        await engine.stop(grace=0)

    clock = VirtualClock(start=5.0, wall=WALL + later)
    engine = Engine(journal=path, clock=clock)
    engine.task("t")(noop)
    async with engine:
        ticks = engine._ticks
        for job_id, job_wall in ids.items():
            job = next(job for job in journal_store(engine).live.values() if job.id == job_id)
            seconds = min(max(0.0, job_wall - clock.wall()), 1e12)
            assert job._due_wall == job_wall
            assert job._due_tick == math.ceil((ticks.time() - ticks.epoch + seconds) * ticks.rate)
            assert engine.get(job.key or "") is job
        assert len(engine) == len(DUE_IN)
        await engine.stop(grace=0)


@pytest.mark.parametrize("jobs", [1, 64, 65, 300], ids=["1 job", "one step", "a step and one", "five steps"])
async def test_a_compaction_in_the_shortest_slices_snapshots_every_live_job(
    jobs: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no time to spare a slice still encodes a step of jobs: the compaction ends, its snapshot whole."""
    monkeypatch.setattr(_store_module, "SNAPSHOT_SLICE", 0.0)
    monkeypatch.setattr(JournalStore, "compact_min", 1)
    monkeypatch.setattr(JournalStore, "compact_factor", 1.0)
    path = str(tmp_path / "j.log")
    engine = Engine(journal=path, clock=VirtualClock(wall=WALL), result_ttl=0)  # the snapshot: live jobs alone
    engine.task("t")(noop)
    async with engine:
        scheduled = {engine.schedule_nowait("t", args=[n], delay=100 + n).id: 100 + n for n in range(jobs)}
        store = journal_store(engine)
        while store.compaction is None:
            engine.cancel(engine.schedule_nowait("t", delay=1))  # records enough to start one
        await store.compaction
        await engine.stop(grace=0)
    records = [record.payload for record in JournalFile(path + ".snapshot").records()]
    snapshot = [job for record in records for job in (expand_jobs(record) if record["t"] == "jobs" else [record])]
    assert {record["id"]: record["due"] - WALL for record in snapshot if record["t"] == "job"} == scheduled
    assert [record["t"] for record in records] == ["jobs"] * -(-jobs // 64) + ["end"]  # a chunk per step
    assert records[-1] == {"t": "end", "count": len(records) - 1}


SOUND: dict[str, Any] = {
    "t": "job",
    "id": "a" * 32,
    "task": "t",
    "args": [1],
    "kwargs": {},
    "due": 1.5e9,
    "prio": 0,
    "att": 0,
    "state": "pending",
}
UNSOUND: list[tuple[str, dict[str, Any]]] = [
    *((f"no {field}", {name: v for name, v in SOUND.items() if name != field}) for field in SOUND if field != "t"),
    *(
        (f"{field} {value!r}", {**SOUND, field: value})
        for field, value in [
            ("state", ["pending"]),
            ("state", {"a": 1}),
            ("state", "running"),
            ("id", ""),
            ("task", 3),
            ("args", {}),
            ("due", "now"),
            ("due", 3e12),
            ("prio", 1.0),
            ("att", -1),
            ("key", ""),
            ("key", 7),
            ("surplus", 1),
        ]
    ),
]


@pytest.mark.parametrize("record", [row[1] for row in UNSOUND], ids=[row[0] for row in UNSOUND])
def test_the_fast_record_check_refuses_what_the_full_one_words(record: dict[str, Any]) -> None:
    """Every record the fast shape check turns away is worded by the full check; none of them raises."""
    assert (_schema._sound_jobs([record], 0) == 1) is False
    assert isinstance(_schema.check_log_record(record), str)


@pytest.mark.parametrize("extra", [{}, {"key": "k"}, {"key": None}], ids=["no key", "a key", "a null key"])
def test_the_fast_record_check_takes_the_usual_records(extra: dict[str, Any]) -> None:
    record = {**SOUND, **extra}
    assert (_schema._sound_jobs([record], 0) == 1) is (extra.get("key") is not None or not extra)
    assert _schema.check_log_record(record) is None
