"""The native ``schedule_nowait`` (``JobPath``) against the Python method it stands in for: same jobs, same errors."""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from chronowheel import WHEEL, Engine, Every, Job
from chronowheel._job import id_pool
from chronowheel._selection import JobPath
from chronowheel.testing import VirtualClock

WALL = 1_767_225_600.0
START = 1000.0


def noop(*args: Any, **kwargs: Any) -> None:
    """A task that takes anything."""


def one(x: int) -> None:
    """A task that takes exactly one argument."""


def make_engine() -> Engine:
    engine = Engine(clock=VirtualClock(start=START, wall=WALL))
    engine.add_pool("p", concurrency=1)
    engine.task("t")(noop)
    engine.task("one", pool="p", priority=2)(one)
    return engine


# (id, the call's arguments): the usual calls the native path takes, then every kind it hands back.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("no args", {"delay": 1}),
    ("a tuple", {"args": (1, "a"), "delay": 2.5}),
    ("a list", {"args": [1, "a"], "delay": 3600}),
    ("by function", {"task": noop, "delay": 0}),
    ("a task's priority and pool", {"task": "one", "args": (1,), "delay": 0.001}),
    ("-0.0", {"delay": -0.0}),
    ("1e-9", {"delay": 1e-9}),
    ("MAX_DELAY", {"delay": 1e10}),
    ("a key", {"key": "k2", "delay": 5}),
    ("a key and a function", {"task": one, "args": [7], "key": "k3", "delay": 5}),
    ("the held key", {"key": "held", "delay": 5}),
    ("the held key, keep", {"key": "held", "delay": 5, "if_exists": "keep"}),
    ("the held key, replace", {"key": "held", "delay": 5, "if_exists": "replace"}),
    ("an empty key", {"key": "", "delay": 5}),
    ("a key not a str", {"key": 5, "delay": 5}),
    ("a priority", {"priority": 3, "delay": 5}),
    ("kwargs", {"kwargs": {"a": 1}, "delay": 5}),
    ("at", {"at": datetime.fromtimestamp(WALL + 30, UTC)}),
    ("a timedelta", {"delay": timedelta(seconds=3)}),
    ("a Fraction", {"delay": Fraction(1, 3)}),
    ("every", {"every": Every(5)}),
    ("a bool delay", {"delay": True}),
    ("nan", {"delay": math.nan}),
    ("-1", {"delay": -1}),
    ("past MAX_DELAY", {"delay": 1e10 + 1}),
    ("a huge int", {"delay": 10**400}),
    ("a str delay", {"delay": "1"}),
    ("no delay", {}),
    ("delay and at", {"delay": 1, "at": datetime.fromtimestamp(WALL, UTC)}),
    ("too many args", {"task": "one", "args": (1, 2), "delay": 1}),
    ("args a str", {"args": "ab", "delay": 1}),
    ("args a generator", {"args": (x for x in [1]), "delay": 1}),
    ("an unknown task", {"task": "nope", "delay": 1}),
    ("an unhashable task", {"task": [noop], "delay": 1}),
    ("a number for a task", {"task": 3, "delay": 1}),
    ("an unknown keyword", {"delay": 1, "bogus": 1}),
]


def outcome(engine: Engine, call: Any, arguments: dict[str, Any]) -> tuple[Any, ...]:
    """What a call did: the job's every field (its id's form, not its value) and what was indexed, or the error."""
    arguments = dict(arguments)
    task = arguments.pop("task", "t")
    try:
        job = call(task, **arguments)
    except Exception as exc:
        return ("raised", type(exc), re.sub(r"0x[0-9a-f]+", "0x", str(exc)))
    fields = {name: getattr(job, name, "<unset>") for name in Job.__slots__ if name not in ("id", "_engine", "_timer")}
    fields["_series"] = repr(job._series)  # a value with no equality of its own
    wheel = engine._registry.pool_of(job).wheel
    return (
        "filed",
        fields,
        re.fullmatch("[0-9a-f]{32}", job.id) is not None,
        job._engine is engine,
        None if job._timer is None else wheel.deadline(job._timer),
        engine._registry.jobs.get(job.id) is job,
        sorted(engine._registry.keyed),
        len(engine),
    )


@pytest.mark.parametrize("arguments", [row[1] for row in CALLS], ids=[row[0] for row in CALLS])
async def test_the_native_path_files_what_the_python_method_files(arguments: dict[str, Any]) -> None:
    native, python = make_engine(), make_engine()
    async with native, python:
        await asyncio.sleep(0)
        for engine in (native, python):
            Engine.schedule_nowait(engine, "t", key="held", delay=9)
        seen = outcome(native, native.schedule_nowait, arguments)
        assert seen == outcome(python, Engine.schedule_nowait.__get__(python), arguments)
    if WHEEL == "native":
        assert native.schedule_nowait != python.schedule_nowait  # the native one was under test
        assert type(getattr(native.schedule_nowait, "__self__", None)) is JobPath


@pytest.mark.parametrize("when", ["before start", "after stop"])
async def test_outside_the_running_engine_it_does_what_the_python_method_does(when: str) -> None:
    native, python = make_engine(), make_engine()
    if when == "after stop":
        for engine in (native, python):
            await engine.start()
            await engine.stop()
    for arguments in ({"delay": 1}, {"args": (1,), "delay": 2, "key": "k"}):
        assert outcome(native, native.schedule_nowait, arguments) == outcome(
            python, Engine.schedule_nowait.__get__(python), arguments
        )


@pytest.mark.parametrize("positional", [(), ("t", 1), ("t", 1, 2)], ids=["no task", "two", "three"])
async def test_wrong_positional_arguments_get_the_python_methods_error(positional: tuple[Any, ...]) -> None:
    native, python = make_engine(), make_engine()
    errors = []
    for call in (native.schedule_nowait, Engine.schedule_nowait.__get__(python)):
        with pytest.raises(TypeError) as caught:
            call(*positional, delay=1)
        errors.append(re.sub(r" \(and \d+ keyword-only arguments?\)", "", str(caught.value)))
    if positional:  # a task and more: the Python method's own words (the keywords passed on counted apart)
        assert errors[0] == errors[1]
    assert all("positional argument" in error for error in errors)


async def test_from_another_thread_it_is_refused_as_the_python_method_refuses() -> None:
    engine = make_engine()
    async with engine:
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match=r"schedule_nowait: called from thread .*engine.from_thread"):
            await asyncio.to_thread(engine.schedule_nowait, "t", delay=1)
        assert len(engine) == 0


def test_an_override_keeps_the_python_method_and_a_journal_takes_the_native_one(tmp_path: Any) -> None:
    class Mine(Engine):
        def schedule_nowait(self, *args: Any, **kwargs: Any) -> Job:
            return super().schedule_nowait(*args, **kwargs)

    class Plain(Engine):
        pass

    assert Mine().schedule_nowait.__func__ is Mine.schedule_nowait  # type: ignore[attr-defined]
    for native in (Plain().schedule_nowait, Engine(journal=str(tmp_path / "j.log")).schedule_nowait):
        assert (getattr(native, "__func__", None) is Engine.schedule_nowait) is (WHEEL == "pure")


async def test_ids_stay_unique_across_engines() -> None:
    engines = [make_engine() for _ in range(3)]
    ids = [engines[n % 3].schedule_nowait("t", delay=1).id for n in range(10_000)]  # past a batch of ids
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch("[0-9a-f]{32}", job_id) for job_id in ids)


# -- cloning: a job is a copy of Job's own template, or Job is called ---------------------------------------


class Derived(Job):
    """A field made from an argument: a copy of a template would get it wrong."""

    __slots__ = ("pair",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pair = (self.id, self.key)


class Fresh(Job):
    """A fresh list per job: a copy would share one."""

    __slots__ = ("notes",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.notes: list[str] = []


class WithDict(Job):
    """Instances with a ``__dict__``: fields the slots do not show."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.extra = 1


class Plain(Job):
    """Nothing new: its jobs can be copies."""

    __slots__ = ()


JOB_CLASSES: list[tuple[str, type[Job], bool]] = [
    ("Job", Job, True),
    ("a plain subclass", Plain, True),
    ("a derived field", Derived, False),
    ("a fresh list", Fresh, False),
    ("a __dict__", WithDict, False),
]


@pytest.mark.skipif(JobPath is None, reason="the native wheel is not built")
@pytest.mark.parametrize(("kind", "cloning"), [row[1:] for row in JOB_CLASSES], ids=[row[0] for row in JOB_CLASSES])
async def test_jobs_are_copies_only_of_a_class_whose_init_just_fills_slots(kind: type[Job], cloning: bool) -> None:
    engine = make_engine()
    assert JobPath is not None
    checked = Engine.schedule_nowait.__get__(engine)
    timers = engine._timers
    scheduled = Engine.schedule.__get__(engine)
    path = JobPath(engine, checked, timers.core, timers, kind, id_pool, engine._ticks.wall, engine._registry, scheduled)
    assert path.cloning is cloning
    async with engine:
        job = path.schedule_nowait("t", args=(1,), delay=2, key="k")
        built = kind(job.id, "k", "t", (1,), {}, 0, job._due_wall, job._due_tick)
        names = [name for cls in kind.__mro__[:-1] for name in cls.__dict__.get("__slots__", ())]
        assert {name: getattr(job, name, "<unset>") for name in names if name not in ("_engine", "_timer")} == {
            name: getattr(built, name, "<unset>") for name in names if name not in ("_engine", "_timer")
        }
        assert type(job) is kind
        assert job._engine is engine
        assert engine.get("k") is job
        assert getattr(job, "__dict__", None) == getattr(built, "__dict__", None)
        if kind is Fresh:
            assert job.notes is not path.schedule_nowait("t", delay=2).notes  # type: ignore[attr-defined]


@pytest.mark.parametrize("task", ["by name", "by function"])
async def test_a_task_registered_again_after_its_first_jobs_files_the_next_ones_its_new_way(task: str) -> None:
    engine = make_engine()
    name_or_function = "one" if task == "by name" else one
    async with engine:
        first = engine.schedule_nowait(name_or_function, args=(1,), delay=1)
        engine.task("one", pool="default", priority=-4)(one)  # the same function, a new pool and priority
        second = engine.schedule_nowait(name_or_function, args=(1,), delay=1)
        assert (first.priority, second.priority) == (2, -4)
        pools = engine._registry.pools
        assert pools["p"].wheel.deadline(first._timer) == first._due_tick
        assert pools["default"].wheel.deadline(second._timer) == second._due_tick
        assert pools["p"].wheel.deadline(second._timer) is None


@pytest.mark.parametrize("path", ["native", "python"])
async def test_ids_are_32_hex_digits_and_distinct_across_refills_of_the_pool(path: str) -> None:
    engine = make_engine()
    async with engine:
        schedule = engine.schedule_nowait if path == "native" else Engine.schedule_nowait.__get__(engine)
        id_pool.clear()  # the next call refills it (the native path in C, the method by new_job_id)
        ids = [schedule("t", delay=1).id for _ in range(9000)]  # past two refills of 4,096
        ids.append(
            Engine.schedule_nowait(engine, "t", delay=1).id
            if path == "native"
            else engine.schedule_nowait("t", delay=1).id
        )
        assert all(re.fullmatch("[0-9a-f]{32}", job_id) for job_id in ids)
        assert len(set(ids)) == len(ids)
        assert len(id_pool) == 3 * 4096 - len(ids)  # one pool, whichever path took from it
        await engine.stop(grace=0)
