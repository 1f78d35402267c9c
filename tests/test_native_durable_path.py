"""A journaled engine's native ``schedule_nowait``/``schedule`` (``JobPath``) against the Python methods.

The same calls go to two journaled engines on the same virtual clock: one
through the bound native path, one through ``Engine.schedule_nowait`` itself.
Each must file the same job and write the same record (field by field: the
ids are random), raise the same error, and an awaited ``schedule()`` must
return its job only once its record is written. The writer's native framing
is held to the pure one byte for byte.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import math
import os
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel import WHEEL, Engine, Job
from chronowheel._journal import format as _journal_format
from chronowheel._journal import records as _journal_records
from chronowheel._journal.format import Encoder, frame_records
from chronowheel._journal.native import frame_records as native_frame_records
from chronowheel._journal.native import settle as native_settle
from chronowheel._journal.records import encode_job
from chronowheel._journal.writer import JournalFile, settle
from chronowheel.testing import VirtualClock
from helpers import fill_the_disk, journal_store

WALL = 1_767_225_600.0
START = 1000.0


def noop(*args: Any, **kwargs: Any) -> None:
    """A task that takes anything."""


class Colour(enum.IntEnum):
    RED = 1


class Text(str):
    """A str subclass: JSON would hand back a plain str."""


def make_engine(path: Path, fsync: str = "never") -> Engine:
    engine = Engine(journal=str(path / "timers.log"), fsync=fsync, clock=VirtualClock(start=START, wall=WALL))  # type: ignore[arg-type]
    engine.add_pool("p", concurrency=1)
    engine.task("t")(noop)
    engine.task("two", pool="p", priority=-3)(noop)
    return engine


# (id, the call's arguments): the usual calls the native path takes, then the ones it hands to the method.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("no args", {"delay": 1}),
    ("atoms", {"args": ("a", 1, -2, 2.5, True, False, None), "delay": 2.5}),
    ("a list", {"args": [1, "b"], "delay": 3600}),
    ("unicode and escapes", {"args": ('é"\\\n\x01', "😀"), "delay": 1}),
    ("a float's edges", {"args": (1e16, -0.0, 5e-324, 1.7976931348623157e308), "delay": 1}),
    ("60-bit ints", {"args": (2**59, -(2**59)), "delay": 1}),
    ("by function", {"task": noop, "delay": 0.5}),  # not 0: a job due now may fire (and end) before the flush
    ("a task's pool and priority", {"task": "two", "args": (1,), "delay": 0.001}),
    ("a key", {"key": "k2", "delay": 5}),
    ("MAX_DELAY", {"delay": 1e10}),
    # handed to the Python method:
    ("a 64-bit int", {"args": (2**63 - 1,), "delay": 1}),
    ("an int past 64 bits", {"args": (2**64,), "delay": 1}),
    ("nan in args", {"args": (math.nan,), "delay": 1}),
    ("inf in args", {"args": (math.inf,), "delay": 1}),
    ("an IntEnum", {"args": (Colour.RED,), "delay": 1}),
    ("a str subclass", {"args": (Text("x"),), "delay": 1}),
    ("a lone surrogate", {"args": ("\ud800",), "delay": 1}),
    ("a nested list", {"args": ([1, [2, "x"]], {"a": (1,)}), "delay": 1}),
    ("bytes", {"args": (b"x",), "delay": 1}),
    ("kwargs", {"kwargs": {"a": 1}, "delay": 5}),
    ("a priority", {"priority": 3, "delay": 5}),
    ("the held key", {"key": "held", "delay": 5}),
    ("the held key, replace", {"key": "held", "delay": 5, "if_exists": "replace"}),
    ("a key not a str", {"key": 5, "delay": 5}),
    ("nan delay", {"delay": math.nan}),
    ("an unknown task", {"task": "nope", "delay": 1}),
]


def outcome(engine: Engine, call: Any, arguments: dict[str, Any]) -> tuple[Any, ...]:
    """What a call did: the job's every field (its id's form, not its value), its place, its record; or the error."""
    arguments = dict(arguments)
    task = arguments.pop("task", "t")
    try:
        job = call(task, **arguments)
    except Exception as exc:
        return ("raised", type(exc), re.sub(r"0x[0-9a-f]+", "0x", str(exc)))
    fields = {name: getattr(job, name, "<unset>") for name in Job.__slots__ if name not in ("id", "_engine", "_timer")}
    wheel = engine._registry.pool_of(job).wheel
    return (
        "filed",
        fields,
        re.fullmatch("[0-9a-f]{32}", job.id) is not None,
        job._engine is engine,
        wheel.deadline(job._timer),
        engine._registry.jobs.get(job.id) is job,
        journal_store(engine).live.get(job.id) is job,
        sorted(engine._registry.keyed),
    )


def written(engine: Engine) -> list[dict[str, Any]]:
    """The records in the engine's log so far, each job's id replaced by whether it is a job's of this engine (and
    by its form in a reason: a replaced job's names the new one)."""
    found = [record.payload for record in JournalFile(journal_store(engine).journal.path).records()]
    jobs = engine._registry.jobs
    return [
        {
            **record,
            "id": record["id"] in jobs,
            **({"why": re.sub("[0-9a-f]{32}", "<id>", record["why"])} if "why" in record else {}),
        }
        for record in found
    ]


@pytest.mark.parametrize("arguments", [row[1] for row in CALLS], ids=[row[0] for row in CALLS])
async def test_the_native_path_files_and_writes_what_the_python_method_does(
    tmp_path: Path, arguments: dict[str, Any]
) -> None:
    (tmp_path / "native").mkdir()
    (tmp_path / "python").mkdir()
    native, python = make_engine(tmp_path / "native"), make_engine(tmp_path / "python")
    async with native, python:
        for engine in (native, python):
            Engine.schedule_nowait(engine, "t", key="held", delay=9)
        seen = outcome(native, native.schedule_nowait, arguments)
        assert seen == outcome(python, Engine.schedule_nowait.__get__(python), arguments)
        await native.flush()
        await python.flush()
        assert written(native) == written(python)
    if WHEEL == "native":
        assert native.schedule_nowait != Engine.schedule_nowait.__get__(native)  # the native one was under test


@pytest.mark.parametrize("arguments", [row[1] for row in CALLS[:10]], ids=[row[0] for row in CALLS[:10]])
async def test_the_native_record_is_the_encoders_to_the_byte(tmp_path: Path, arguments: dict[str, Any]) -> None:
    engine = make_engine(tmp_path)
    async with engine:
        arguments = dict(arguments)
        job = engine.schedule_nowait(arguments.pop("task", "t"), **arguments)
        pending = journal_store(engine).journal._pending  # this turn's records, not yet handed over
        assert pending[-1] == encode_job(job, new=True)


@pytest.mark.parametrize("count", [3, 4095, 4097, 9000], ids=["a few", "one short of a hand-over", "past it", "two"])
@pytest.mark.parametrize("path", ["native", "python"])
async def test_commits_of_one_turn_return_whatever_the_hand_overs_in_between(
    tmp_path: Path, count: int, path: str
) -> None:
    engine = make_engine(tmp_path, "interval")
    async with engine:
        schedule = engine.schedule if path == "native" else Engine.schedule.__get__(engine)
        jobs = await asyncio.gather(*(schedule("t", args=(index,), delay=1) for index in range(count)))
        assert [job.args for job in jobs] == [(index,) for index in range(count)]
        tail = await schedule("t", args=("last",), delay=1)  # after the turn: waits for its own hand-over alone
        await engine.flush()
        on_disk = [record.payload["args"] for record in JournalFile(journal_store(engine).journal.path).records()]
        assert on_disk == [[index] for index in range(count)] + [list(tail.args)]


async def test_records_of_both_paths_keep_the_order_they_were_made_in(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    async with engine:
        first = engine.schedule_nowait("t", args=(1,), delay=5)  # native
        engine.cancel(first)  # Python: its outcome's record, after its job's
        keyed = Engine.schedule_nowait(engine, "t", args=(2,), delay=5, key="k")  # Python
        awaited = asyncio.ensure_future(engine.schedule("t", args=(3,), delay=5))  # native, not yet run
        await asyncio.sleep(0)
        engine.reschedule(keyed, delay=7)
        await awaited
        await engine.flush()
        kinds = [
            (record.payload["t"], record.payload.get("args"))
            for record in JournalFile(journal_store(engine).journal.path).records()
        ]
        assert kinds == [("job", [1]), ("done", None), ("job", [2]), ("job", [3]), ("move", None)]


@pytest.mark.parametrize("path", ["native", "python"])
async def test_a_failed_write_fails_every_waiting_caller_with_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    engine = make_engine(tmp_path, "always")
    async with engine:
        schedule = engine.schedule if path == "native" else Engine.schedule.__get__(engine)
        fill_the_disk(monkeypatch)
        failed = await asyncio.gather(
            *(schedule("t", args=(index,), delay=1) for index in range(20)), return_exceptions=True
        )
        assert all(isinstance(error, OSError) and "No space left" in str(error) for error in failed)
        assert len({id(error) for error in failed}) == 20
        with pytest.raises(OSError, match="failed earlier"):
            await engine.schedule("t", delay=1)
        with pytest.raises(OSError, match="failed"):
            await engine.stop(grace=0)
    monkeypatch.undo()


async def test_a_log_grown_by_the_native_path_is_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chronowheel._journal.store import JournalStore

    monkeypatch.setattr(JournalStore, "compact_min", 50)  # compact past 4 * 50 records (the live set is smaller)
    engine = make_engine(tmp_path)
    async with engine:
        store = journal_store(engine)
        generation = store.journal.generation
        job = engine.schedule_nowait("t", delay=5)
        for index in range(199):
            engine.reschedule(job, delay=6 + index)
        await asyncio.sleep(0)  # the hand-over weighs the log: 200 records, not yet more than 200
        assert (store.journal.log_records, store.compaction) == (200, None)
        engine.schedule_nowait("t", args=(1,), delay=5)  # the native path's record tips it
        await asyncio.sleep(0)
        assert store.compaction is not None
        await store.compaction
        assert store.journal.generation == generation + 1
        assert store.journal.log_records == 0


@pytest.mark.parametrize("when", ["before start", "after stop"])
async def test_outside_the_running_engine_it_does_what_the_python_method_does(tmp_path: Path, when: str) -> None:
    engines = []
    for name in ("native", "python"):
        (tmp_path / name).mkdir()
        engines.append(make_engine(tmp_path / name))
    native, python = engines
    if when == "after stop":
        for engine in engines:
            await engine.start()
            await engine.stop()
    for arguments in ({"delay": 1}, {"args": (1,), "delay": 2, "key": "k"}):
        assert outcome(native, native.schedule_nowait, arguments) == outcome(
            python, Engine.schedule_nowait.__get__(python), arguments
        )
        for call in (native.schedule, Engine.schedule.__get__(python)):
            with pytest.raises(RuntimeError):  # NotStarted before the start, EngineClosed after the stop
                await call("t", **arguments)


async def test_a_record_over_the_limit_is_the_methods_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_journal_records, "NEW_RECORD_MAX", 200)  # read when the engine is made
    errors = []
    for name, call in (("native", "schedule_nowait"), ("python", None)):
        (tmp_path / name).mkdir()
        engine = make_engine(tmp_path / name)
        async with engine:
            method = getattr(engine, call) if call else Engine.schedule_nowait.__get__(engine)
            with pytest.raises(ValueError, match="over the limit of 200") as caught:
                method("t", args=("x" * 100,), delay=1)
            errors.append(str(caught.value))
            assert len(engine) == 0
            assert method("t", args=("x",), delay=1).args == ("x",)  # under the limit: taken, the id not lost
    assert errors[0] == errors[1]


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
@pytest.mark.parametrize("callers", [1, 50], ids=["one caller", "fifty callers"])
async def test_an_awaited_schedule_returns_its_job_once_its_record_is_written(
    tmp_path: Path, fsync: str, callers: int
) -> None:
    engine = make_engine(tmp_path, fsync)
    async with engine:

        async def caller(index: int) -> None:
            for sequence in range(3):
                job = await engine.schedule("t", args=(index, sequence), delay=1 + sequence)
                assert isinstance(job, Job)
                assert engine._registry.jobs[job.id] is job
                on_disk = {record.payload["id"] for record in JournalFile(journal_store(engine).journal.path).records()}
                assert (
                    job.id in on_disk
                )  # acknowledged: written (and under "always", fsynced) before the await returned

        await asyncio.gather(*(caller(index) for index in range(callers)))
        assert len(engine) == 3 * callers


async def test_the_native_schedule_is_a_coroutine_a_task_can_run(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    for function in (engine.schedule, Engine().schedule):  # what frameworks ask before they await (Starlette)
        assert asyncio.iscoroutinefunction(function)
        assert inspect.iscoroutinefunction(function)
    async with engine:
        coroutine = engine.schedule("t", args=(1,), delay=1)
        assert asyncio.iscoroutine(coroutine)
        job = await asyncio.create_task(coroutine)
        assert engine._registry.jobs[job.id] is job
        unawaited = engine.schedule("t", delay=1)
        unawaited.close()  # never run: nothing filed
        assert len(engine) == 1


async def test_a_cancelled_caller_leaves_the_others_and_its_job_alone(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, "always")
    async with engine:
        tasks = [asyncio.create_task(engine.schedule("t", args=(index,), delay=1)) for index in range(10)]
        await asyncio.sleep(0)  # every one filed its job and waits for the commit
        tasks[3].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[3], asyncio.CancelledError)
        assert all(isinstance(job, Job) for index, job in enumerate(done) if index != 3)
        assert len(engine) == 10  # the cancelled caller's job was filed (and journaled) all the same
        await engine.flush()
        assert len(list(JournalFile(journal_store(engine).journal.path).records())) == 10


async def test_a_failed_journal_refuses_the_native_call_as_it_refuses_the_method(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    async with engine:
        journal = journal_store(engine).journal
        journal._failure = OSError(28, "No space left on device")
        for call in (engine.schedule_nowait, Engine.schedule_nowait.__get__(engine)):
            with pytest.raises(OSError, match="failed earlier; restart to recover"):
                call("t", delay=1)
        for awaited in (engine.schedule, Engine.schedule.__get__(engine)):
            with pytest.raises(OSError, match="failed earlier; restart to recover"):
                await awaited("t", delay=1)
        assert len(engine) == 0
        journal._failure = None


# -- the writer's framing: native against pure ----------------------------------------------------------------


@pytest.mark.skipif(native_frame_records is None, reason="the native framing is not built")
@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=20),
    seed=st.integers(0, 2**32 - 1),
    seq=st.integers(0, 2**64 - 21),
)
def test_the_native_framing_is_the_pure_one_to_the_byte(payloads: list[bytes], seed: int, seq: int) -> None:
    assert native_frame_records is not None
    assert native_frame_records(payloads, seed, seq) == frame_records(payloads, seed, seq)


def test_framed_records_read_back_each_with_its_number_and_crc() -> None:
    encoder = Encoder(_journal_format.LOG, os.urandom(16), 3, 7)
    payloads = [b'{"t":"ack","id":"a"}', b'{"t":"cancel","id":"b"}']
    data = encoder.frames(iter(payloads)) + encoder.frames([payloads[0]])
    assert encoder.seq == 10
    seed = int.from_bytes(encoder.header[-4:], "little")
    position, numbers = 0, []
    for payload in [*payloads, payloads[0]]:
        crc, length, number = (
            int.from_bytes(data[position + a : position + b], "little") for a, b in ((0, 4), (4, 8), (8, 16))
        )
        assert data[position + 16 : position + 16 + length] == payload
        assert crc == zlib.crc32(data[position + 4 : position + 16 + length], seed)
        numbers.append(number)
        position += 16 + length
    assert numbers == [7, 8, 9]
    assert position == len(data)


@pytest.mark.skipif(native_frame_records is None, reason="the native framing is not built")
@pytest.mark.parametrize(
    ("payloads", "error"),
    [([b"ok", "text"], r"payloads\[1\] must be bytes, got str"), ([bytearray(b"x")], r"payloads\[0\] must be bytes")],
    ids=["a str", "a bytearray"],
)
def test_the_native_framing_refuses_what_is_not_bytes(payloads: list[Any], error: str) -> None:
    assert native_frame_records is not None
    with pytest.raises(TypeError, match=error):
        native_frame_records(payloads, 0, 0)


def futures_in_states(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """Pairs of a future and its value: pending, done already, cancelled, a value None."""
    done, cancelled = loop.create_future(), loop.create_future()
    done.set_result("before")
    cancelled.cancel()
    return [loop.create_future(), 1, done, 2, cancelled, 3, loop.create_future(), None]


@pytest.mark.skipif(native_settle is None, reason="the native settling is not built")
@pytest.mark.parametrize("size", [0, 2, 4, 6, 8], ids=["none", "one", "two", "three", "four"])
async def test_the_native_settling_is_the_pure_one(size: int) -> None:
    assert native_settle is not None
    loop = asyncio.get_running_loop()
    seen = []
    for function in (settle, native_settle):
        pairs = futures_in_states(loop)[:size]
        function(pairs)
        seen.append(
            [
                ("cancelled",) if future.cancelled() else ("done", future.result()) if future.done() else ("pending",)
                for future in pairs[::2]
            ]
        )
    assert seen[0] == seen[1]
    assert all(state != ("pending",) for state in seen[0])


@pytest.mark.parametrize("function", ["pure", "native"])
def test_settling_refuses_a_future_without_its_value(function: str) -> None:
    chosen = settle if function == "pure" else native_settle
    if chosen is None:
        pytest.skip("the native settling is not built")
    with pytest.raises(ValueError, match="pairs must hold a value for each future, got 1 items"):
        chosen([object()])


@pytest.mark.parametrize(
    "arguments",
    [{"args": (1, "a"), "delay": 2}, {"key": "k", "delay": 1}, {"kwargs": {"a": 1}, "delay": 1}, {"delay": "1"}],
    ids=["usual", "a key", "kwargs: the method", "a str delay: the method's error"],
)
async def test_in_memory_the_native_schedule_returns_what_the_python_coroutine_returns(
    arguments: dict[str, Any],
) -> None:
    native, python = (Engine(clock=VirtualClock(start=START, wall=WALL)) for _ in range(2))
    for engine in (native, python):
        engine.task("t")(noop)
    async with native, python:

        async def awaited(call: Any) -> tuple[Any, ...]:
            try:
                job = await call("t", **arguments)
            except Exception as exc:
                return ("raised", type(exc), str(exc))
            return (
                "filed",
                job.args,
                job.key,
                job.kwargs,
                job._due_wall,
                job._due_tick,
                native._registry.jobs.get(job.id) is job or python._registry.jobs.get(job.id) is job,
            )

        assert await awaited(native.schedule) == await awaited(Engine.schedule.__get__(python))
    if WHEEL == "native":
        assert native.schedule != Engine.schedule.__get__(native)  # the native one was under test
