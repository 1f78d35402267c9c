"""Task names that survive a refactor (aliases), arguments bound at schedule time, and ``timedelta`` delays."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chronowheel import Engine, Every, Retry, UnknownTask
from chronowheel.testing import VirtualClock
from helpers import stopping


async def test_jobs_journaled_under_an_old_name_run_under_the_new_one(tmp_path: Path) -> None:
    path = str(tmp_path / "timers.log")
    ran: list[tuple[str, int]] = []
    wall = 1_700_000_000.0

    old = Engine(clock=VirtualClock(wall=wall), journal=path)

    @old.task(name="tasks:send")
    async def send_v1(n: int) -> None:
        ran.append(("v1", n))

    async with stopping(old):
        one = await old.schedule("tasks:send", args=(1,), delay=5, key="one")
        await old.schedule(send_v1, args=(2,), every=Every(60), key="series")

    clock = VirtualClock(wall=wall + 1)
    new = Engine(clock=clock, journal=path)  # unknown_tasks="error": an unresolved name would fail start()

    @new.task(name="pkg.tasks:send", aliases=("tasks:send",))
    async def send(n: int) -> None:
        ran.append(("v2", n))

    async with stopping(new):
        restored = new.get("one")
        assert restored is not None
        assert (restored.id, restored.task) == (one.id, "pkg.tasks:send")  # it takes the task's name
        series = new.get("series")
        assert series is not None
        assert series.task == "pkg.tasks:send"
        again = await new.schedule("tasks:send", args=(3,), delay=1)  # the old name still schedules
        assert again.task == "pkg.tasks:send"
        await clock.advance(61)
    assert sorted(ran) == [("v2", 1), ("v2", 2), ("v2", 3)]


@pytest.mark.parametrize(
    ("aliases", "error", "message"),
    [
        ("old", TypeError, "aliases must be a tuple of task names, got str"),
        (("old", ""), ValueError, "aliases must be a non-empty string, got ''"),
        ((1,), TypeError, "aliases must be a non-empty string, got int"),
        (
            ("taken",),
            ValueError,
            r"aliases: 'taken' is already the name of task 'taken' \('print'\); one name runs one function",
        ),
        (
            ("fresh", "old"),
            ValueError,
            r"aliases: 'old' is already an alias of task 'taken' \('print'\); one name runs one function",
        ),
    ],
    ids=["str", "empty", "int", "taken", "another-alias"],
)
def test_bad_aliases_are_named(aliases: Any, error: type[Exception], message: str) -> None:
    engine = Engine()
    engine.task(name="taken", aliases=("old",))(print)
    with pytest.raises(error, match=f"^{message}$"):
        engine.task(name="new", aliases=aliases)(repr)
    assert "new" not in engine._registry.tasks  # nothing half-registered
    assert "fresh" not in engine._registry.tasks


@pytest.mark.parametrize("name", ["taken", "old"], ids=["its-name", "its-alias"])
def test_a_name_taken_by_another_task_or_its_alias_is_named(name: str) -> None:
    engine = Engine()
    engine.task(name="taken", aliases=("old",))(print)
    role = "the name" if name == "taken" else "an alias"
    with pytest.raises(ValueError, match=rf"^name: '{name}' is already {role} of task 'taken' \('print'\)"):
        engine.task(name=name)(repr)
    engine.task(name=name)(print)  # the same function again: the same task


async def needs_two(a: int, b: int, *, flag: bool = False) -> None: ...
async def takes_any(*args: Any, **kwargs: Any) -> None: ...
async def needs_keyword(a: int, *, key: str) -> None: ...
async def defaults(a: int = 1, b: int = 2) -> None: ...


class Sender:
    async def send(self, to: str) -> None: ...


Calls = list[tuple[tuple[Any, ...], dict[str, Any] | None]]
SIGNATURES: dict[str, tuple[Callable[..., Any], Calls, Calls]] = {
    "two": (
        needs_two,
        [((1, 2), None), ((1,), {"b": 2}), ((), {"a": 1, "b": 2, "flag": True})],
        [((1,), None), ((1, 2, 3), None), ((1, 2), {"c": 3}), ((), None)],
    ),
    "any": (takes_any, [((), None), ((1, 2, 3), {"x": 1})], []),
    "keyword": (needs_keyword, [((1,), {"key": "k"})], [((1,), None), ((1, "k"), None)]),
    "defaults": (
        defaults,
        [((), None), ((5,), None), ((5, 6), None), ((), {"b": 0})],
        [((1, 2, 3), None), ((), {"z": 1})],
    ),
    "method": (Sender().send, [(("a@b",), None)], [((), None), (("a", "b"), None)]),
    "partial": (functools.partial(needs_two, 1), [((2,), None)], [((), None), ((2, 3), None)]),
}


@pytest.mark.parametrize("name", SIGNATURES)
def test_args_are_bound_against_the_signature_at_schedule_time(name: str) -> None:
    func, good, bad = SIGNATURES[name]
    engine = Engine()
    engine.task(name=name)(func)
    for args, kwargs in good:
        engine.schedule_nowait(name, args=args, kwargs=kwargs, delay=1)
    for args, kwargs in bad:
        with pytest.raises(TypeError, match=rf"^args/kwargs: task '{name}' takes \(.*\), not these: "):
            engine.schedule_nowait(name, args=args, kwargs=kwargs, delay=1)
        with pytest.raises(TypeError, match=rf"^args/kwargs: task '{name}' takes"):
            engine.schedule_nowait(name, args=args, kwargs=kwargs, every=Every(5))  # recurring too
    assert len(engine) == len(good)


class Opaque:
    """A callable whose signature Python cannot inspect (as for some builtins and extension functions)."""

    __signature__ = 42  # inspect.signature() raises TypeError on it

    async def __call__(self, *args: Any, **kwargs: Any) -> None: ...


@pytest.mark.parametrize(("args", "kwargs"), [((), None), (("anything", "at all"), {"sep": "-"})], ids=["none", "some"])
def test_a_callable_without_a_signature_is_not_checked(args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> None:
    engine = Engine()
    engine.task(name="opaque")(Opaque())
    with pytest.raises(TypeError):
        inspect.signature(Opaque())
    engine.schedule_nowait("opaque", args=args, kwargs=kwargs, delay=1)
    assert len(engine) == 1


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [
        (timedelta(seconds=90), 90.0),
        (timedelta(milliseconds=1), 0.001),
        (timedelta(0), 0.0),
        (timedelta(days=1), 86400.0),
    ],
    ids=["90s", "1ms", "zero", "one-day"],
)
async def test_a_delay_may_be_a_timedelta(delay: timedelta, seconds: float) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    ran: list[float] = []

    @engine.task(name="note", retry=Retry(2, backoff=0, jitter=False))
    async def note() -> None:
        ran.append(engine.time())
        raise ValueError("to the dead letters")

    async with stopping(engine):
        job = engine.schedule_nowait("note", delay=delay)
        assert job.deadline.timestamp() == pytest.approx(clock.wall() + seconds)
        other = engine.schedule_nowait("note", delay=100_000)
        assert engine.reschedule(other, delay=delay)
        assert other.deadline.timestamp() == pytest.approx(clock.wall() + seconds)
        engine.cancel(other)
        await clock.advance(seconds)
        assert job.state == "dead"
        engine.redrive(job, delay=delay)
        await clock.advance(seconds)
    assert ran == pytest.approx([seconds, seconds, 2 * seconds, 2 * seconds])


CALLS: dict[str, Callable[[Engine, Any, timedelta], object]] = {
    "schedule": lambda engine, job, delay: engine.schedule_nowait("note", delay=delay),
    "reschedule": lambda engine, job, delay: engine.reschedule(job, delay=delay),
    "redrive": lambda engine, job, delay: engine.redrive(job, delay=delay),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("delay", [timedelta(seconds=-1), timedelta(days=999_999_999)], ids=["negative", "huge"])
def test_a_negative_or_huge_timedelta_is_named(call: str, delay: timedelta) -> None:
    engine = Engine()
    engine.task(name="note")(print)
    job = engine.schedule_nowait("note", delay=1)
    if call == "redrive":  # as if it had run out of attempts
        engine.cancel(job)
        engine._execution.dead[job.id] = job
        job.state = "dead"
    with pytest.raises(ValueError, match=r"^delay must be a timedelta from 0 to 1e\+10 seconds, got datetime"):
        CALLS[call](engine, job, delay)


def test_an_unknown_alias_is_still_unknown() -> None:
    engine = Engine()
    engine.task(name="new", aliases=("old",))(print)
    with pytest.raises(UnknownTask, match="'older'"):
        engine.schedule_nowait("older", delay=1)


async def two_then_any(a: int, b: int = 0, *rest: int) -> None: ...


@pytest.mark.parametrize(
    "func", [*(entry[0] for entry in SIGNATURES.values()), two_then_any], ids=[*SIGNATURES, "star"]
)
def test_the_counts_schedule_trusts_are_counts_the_signature_binds(func: Callable[..., Any]) -> None:
    """``TaskSpec.counts`` lets schedule() skip ``bind()``: every count it lists must bind, and none it leaves out
    may be refused by ``check_call`` when it binds."""
    engine = Engine()
    engine.task(name="t")(func)
    spec = engine._registry.tasks["t"]
    signature = inspect.signature(func)
    for count in range(100):
        args = tuple(range(count))
        try:
            signature.bind(*args)
        except TypeError:
            assert count not in spec.counts
        else:
            spec.check_call(args, None)  # binds: check_call agrees, whether or not counts lists it
            assert count in spec.counts or count >= 64  # a *args signature lists its first 64 counts
