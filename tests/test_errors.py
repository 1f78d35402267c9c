"""The error hierarchy and the one argument validator: one mistake reads the same in every call."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import chronowheel
from chronowheel import (
    ChronowheelError,
    Cron,
    Engine,
    Every,
    JournalFailed,
    JournalLocked,
    NotStarted,
    Retry,
)
from chronowheel._recurrence import plan_misfire
from chronowheel.testing import VirtualClock
from helpers import Runner

Call = Callable[[Any], object]


def _engine() -> Engine:
    engine = Engine(clock=VirtualClock())
    engine.task(name="t")(print)
    return engine


# Every call that takes an int count, a name, a choice, a positive duration or a duration, by argument name.
INTS: list[tuple[str, Call]] = [
    ("concurrency", lambda v: _engine().add_pool("p", concurrency=v)),
    ("max_queued", lambda v: _engine().add_pool("p", concurrency=1, max_queued=v)),
    ("attempts", Retry),
    ("max_catch_up", lambda v: plan_misfire(Every(60), 0.0, 100.0, anchor=0.0, max_catch_up=v)),
]
NAMES: list[tuple[str, Call]] = [
    ("name", lambda v: _engine().add_pool(v, concurrency=1)),
    ("name", lambda v: _engine().task(name=v)),
    ("key", lambda v: _engine().schedule_nowait("t", delay=1, key=v)),
]
CHOICES: list[tuple[str, Call]] = [
    ("fsync", lambda v: Engine(fsync=v)),
    ("on_corrupt", lambda v: Engine(on_corrupt=v)),
    ("unknown_tasks", lambda v: Engine(unknown_tasks=v)),
    ("if_exists", lambda v: _engine().schedule_nowait("t", delay=1, if_exists=v)),
    ("overlap", lambda v: _engine().schedule_nowait("t", every=Every(60), overlap=v)),
    ("misfire", lambda v: _engine().schedule_nowait("t", every=Every(60), misfire=v)),
    ("misfire", lambda v: plan_misfire(Every(60), 0.0, 100.0, anchor=0.0, misfire=v)),
    ("fixed", lambda v: Every(60, fixed=v)),
]
POSITIVE_SECONDS: list[tuple[str, Call]] = [
    ("timeout", lambda v: _engine().task(timeout=v)),
    ("fsync_interval", lambda v: Engine(fsync_interval=v)),
]
SECONDS: list[tuple[str, Call]] = [
    *POSITIVE_SECONDS,
    ("tick", lambda v: Engine(tick=v)),
    ("delay", lambda v: _engine().schedule_nowait("t", delay=v)),
    ("backoff", lambda v: Retry(2, backoff=v)),
    ("jitter", lambda v: Every(60, jitter=v)),
    ("jitter", lambda v: Cron("* * * * *", jitter=v)),
    ("misfire_grace", lambda v: _engine().schedule_nowait("t", every=Every(60), misfire_grace=v)),
    ("misfire_grace", lambda v: plan_misfire(Every(60), 0.0, 100.0, anchor=0.0, misfire_grace=v)),
]


def _ids(table: list[tuple[str, Call]]) -> list[str]:
    return [f"{name}-{index}" for index, (name, _) in enumerate(table)]


@pytest.mark.parametrize(("name", "call"), INTS, ids=_ids(INTS))
@pytest.mark.parametrize(
    ("value", "error", "shown"),
    [
        ("2", TypeError, "str"),
        (1.5, TypeError, "float"),
        (True, TypeError, "bool"),
        (0, ValueError, "0"),
        (-3, ValueError, "-3"),
    ],
)
def test_an_int_count_is_refused_alike_everywhere(
    name: str, call: Call, value: object, error: type[Exception], shown: str
) -> None:
    with pytest.raises(error, match=rf"^{name} must be (None or )?an int >= 1, got {re.escape(shown)}$"):
        call(value)


@pytest.mark.parametrize(("name", "call"), NAMES, ids=_ids(NAMES))
@pytest.mark.parametrize(
    ("value", "error", "shown"), [("", ValueError, "''"), (5, TypeError, "int"), (b"k", TypeError, "bytes")]
)
def test_a_name_is_refused_alike_everywhere(
    name: str, call: Call, value: object, error: type[Exception], shown: str
) -> None:
    with pytest.raises(error, match=rf"^{name} must be a non-empty string( or None)?, got {shown}$"):
        call(value)


@pytest.mark.parametrize(("name", "call"), CHOICES, ids=_ids(CHOICES))
@pytest.mark.parametrize("value", ["bogus", "", 3, None])
def test_a_choice_is_refused_alike_everywhere(name: str, call: Call, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be one of '[a-z_]+'(, '[a-z_]+')+, got {value!r}$"):
        call(value)


@pytest.mark.parametrize(("name", "call"), POSITIVE_SECONDS, ids=_ids(POSITIVE_SECONDS))
@pytest.mark.parametrize("value", [0, 0.0, -0.0])
def test_a_zero_duration_is_refused_alike_where_one_must_pass(name: str, call: Call, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a number of seconds > 0, got {value!r}$"):
        call(value)


@pytest.mark.parametrize(("name", "call"), SECONDS, ids=_ids(SECONDS))
@pytest.mark.parametrize(("value", "shown"), [("5", "str"), (True, "bool"), (b"5", "bytes"), ([1], "list")])
def test_a_duration_of_the_wrong_type_is_refused_alike_everywhere(
    name: str, call: Call, value: object, shown: str
) -> None:
    with pytest.raises(TypeError, match=rf"^{name} must be a number of seconds, got {shown}$"):
        call(value)


@pytest.mark.parametrize(("name", "call"), SECONDS, ids=_ids(SECONDS))
@pytest.mark.parametrize("value", [-1, float("nan"), float("inf")])
def test_a_duration_out_of_range_is_refused_alike_everywhere(name: str, call: Call, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a number of seconds from \S+ to \S+, got {value!r}$"):
        call(value)


@pytest.mark.parametrize(
    ("error", "base"), [(JournalLocked, RuntimeError), (JournalFailed, OSError), (NotStarted, RuntimeError)]
)
def test_each_new_error_is_a_chronowheel_error_exported_with_its_stdlib_base(
    error: type[Exception], base: type[Exception]
) -> None:
    assert issubclass(error, ChronowheelError)
    assert issubclass(error, base)
    assert getattr(chronowheel, error.__name__) is error
    assert error.__name__ in chronowheel.__all__
    assert error.__module__ == "chronowheel"


def test_a_journal_open_in_another_engine_is_journal_locked(run: Runner, tmp_path: Path) -> None:
    path = str(tmp_path / "j.log")

    async def main() -> None:
        async with Engine(clock=VirtualClock(), journal=path):
            second = Engine(clock=VirtualClock(), journal=path)
            with pytest.raises(JournalLocked, match="open in another engine"):
                await second.start()

    run(main)


JOB_API: dict[str, Callable[[Engine], object]] = {
    "schedule_nowait": lambda engine: engine.schedule_nowait("t", delay=1),
    "cancel": lambda engine: engine.cancel("k"),
    "reschedule": lambda engine: engine.reschedule("k", delay=5),
    "get": lambda engine: engine.get("k"),
}


async def _call(call: Callable[[Engine], object], engine: Engine) -> object:
    return call(engine)


@pytest.mark.parametrize("call", [*JOB_API, "schedule"])
def test_the_job_api_of_a_journaled_engine_before_start_is_not_started(run: Runner, tmp_path: Path, call: str) -> None:
    """Until start() recovers the journal the engine cannot know its jobs: it neither finds nor changes one."""
    path = str(tmp_path / "j.log")

    async def main() -> None:
        first = Engine(clock=VirtualClock(), journal=path)  # a journal holding the key "k"
        first.task(name="t")(print)
        async with first:
            await first.schedule("t", delay=100, key="k")
        engine = Engine(clock=VirtualClock(), journal=path)
        engine.task(name="t")(print)
        with pytest.raises(NotStarted, match="start the engine first"):
            await (engine.schedule("t", delay=1) if call == "schedule" else _call(JOB_API[call], engine))
        assert len(engine) == 0
        async with engine:
            job = engine.get("k")
            assert job is not None
            assert job.state == "pending"

    run(main)


def test_an_in_memory_engine_takes_the_job_api_before_start(run: Runner) -> None:
    async def main() -> None:
        engine = _engine()
        engine.schedule_nowait("t", delay=1, key="k")
        assert engine.get("k") is not None
        assert engine.reschedule("k", delay=5)
        assert engine.cancel("k")

    run(main)


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_a_failed_fsync_is_journal_failed_keeping_its_errno(
    run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    async def main() -> None:
        engine = Engine(clock=VirtualClock(), journal=str(tmp_path / "j.log"), fsync="always")
        engine.task(name="t")(print)
        await engine.start()
        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(JournalFailed) as failed:
            await engine.schedule("t", delay=1)
        assert failed.value.errno == code
        with pytest.raises(JournalFailed, match="failed earlier") as again:
            engine.schedule_nowait("t", delay=1)
        assert again.value.errno == code
        assert isinstance(again.value.__cause__, OSError)
        with pytest.raises(JournalFailed):
            await engine.stop(grace=0)
        monkeypatch.undo()

    run(main)
