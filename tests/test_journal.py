"""A journaled engine across restarts: what comes back, when it fires, and what runs again.

Each test runs an engine on a virtual clock, stops it (or lets it fail), and
starts a new engine on the same journal with the wall clock moved on, as a
deploy or a crash would. The journal's bytes are tested in
test_journal_format.py and real crashes in test_crash.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import math
import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from chronowheel import Cron, DuplicateKey, Engine, Every, Retry, UnknownTask
from chronowheel._job import Job
from chronowheel._journal import format as _journal_format
from chronowheel._journal import records as _journal_records
from chronowheel._journal.records import NEW_RECORD_MAX, encode_job
from chronowheel._journal.store import JournalStore
from chronowheel._journal.writer import JournalFile
from chronowheel.testing import VirtualClock
from helpers import Runner, fill_the_disk, journal_store

HOUR = 3600.0


class Harness:
    """Engines on one journal, one after another, each with a task that records its runs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path / "timers.log")
        self.ran: list[Any] = []
        self.wall = 1_767_225_600.0

    def engine(self, *, later: float = 0.0, register: bool = True, **options: Any) -> tuple[Engine, VirtualClock]:
        """A new engine on the journal, its wall clock ``later`` seconds after the last one's."""
        self.wall += later
        clock = VirtualClock(wall=self.wall)
        engine = Engine(journal=self.path, clock=clock, **options)
        if register:
            # Takes any arguments: the tests of what a journal keeps pass all kinds (schedule() binds them).
            @engine.task(name="remind")
            async def remind(user: Any = None, *more: Any, **extra: Any) -> None:
                self.ran.append(user)

        return engine, clock

    def finished(self, clock: VirtualClock) -> None:
        self.wall = clock.wall()

    def records(self, suffix: str = "") -> list[dict[str, Any]]:
        return [record.payload for record in JournalFile(self.path + suffix).records()]

    def has(self, suffix: str) -> bool:
        return os.path.exists(self.path + suffix)

    def flip_bit(self, offset: int) -> None:
        with open(self.path, "r+b") as file:
            file.seek(offset)
            byte = file.read(1)[0]
            file.seek(offset)
            file.write(bytes([byte ^ 0x10]))


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def test_pending_jobs_come_back_with_their_wall_clock_deadlines(harness: Harness) -> None:
    engine, clock = harness.engine()
    async with engine:
        job = await engine.schedule("remind", args=(1,), delay=HOUR, key="remind:1")
        await engine.schedule("remind", args=(2,), delay=2 * HOUR)
        await clock.advance(600)
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine(later=1200)  # 10 minutes run, 20 down: 30 minutes to go
    async with engine:
        again = engine.get("remind:1")
        assert again is not None
        assert (again.id, again.deadline, again.args) == (job.id, job.deadline, (1,))
        assert len(engine) == 2
        await clock.advance(30 * 60 - 0.01)
        assert harness.ran == []
        await clock.advance(0.01)
        assert harness.ran == [1]
        await clock.advance(HOUR)
        assert harness.ran == [1, 2]
        await engine.stop(grace=0)


async def test_overdue_one_shot_jobs_run_at_once_after_a_restart(harness: Harness) -> None:
    engine, clock = harness.engine()
    async with engine:
        await engine.schedule("remind", args=(1,), delay=60)
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine(later=HOUR)
    async with engine:
        await clock.advance(0.001)
        assert harness.ran == [1]
        await engine.stop(grace=0)
    assert engine.stats()["pending"] == 0


@pytest.mark.parametrize(("misfire", "runs"), [("fire_once", 1), ("fire_all", 10), ("skip", 0)])
def test_overdue_recurring_jobs_follow_their_misfire_policy(
    run: Runner, harness: Harness, misfire: str, runs: int
) -> None:
    async def main() -> None:
        engine, clock = harness.engine()
        async with engine:
            await engine.schedule("remind", args=(7,), every=Every(60), misfire=misfire, key="tick")
            await engine.stop(grace=0)
        harness.finished(clock)

        engine, clock = harness.engine(later=10 * 60 + 30)  # ten runs missed while down
        async with engine:
            await clock.advance(1)
            assert harness.ran == [7] * runs
            series = engine.get("tick")
            assert series is not None
            assert series.deadline.timestamp() == harness.wall + 30  # back on its grid: 11 min after the first
            await engine.stop(grace=0)

    run(main)


async def test_a_job_interrupted_by_stop_runs_again_after_the_restart(harness: Harness) -> None:
    """At-least-once: a run that never acknowledged is run again; one that did is not."""
    started = asyncio.Event()
    engine, clock = harness.engine()

    @engine.task(name="slow")
    async def slow(n: int) -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes by itself

    async with engine:
        await engine.schedule("slow", args=(1,), delay=1)
        await engine.schedule("remind", args=(2,), delay=1)
        await clock.advance(1)
        await started.wait()
        assert harness.ran == [2]
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine(later=5)
    reruns: list[int] = []

    @engine.task(name="slow")
    async def slow_again(n: int) -> None:
        reruns.append(n)

    async with engine:
        await clock.advance(0.001)
        assert reruns == [1]
        assert harness.ran == [2]  # acknowledged before the stop: not run twice
        await engine.stop(grace=0)


async def test_retries_and_dead_letters_survive_a_restart(harness: Harness) -> None:
    calls: list[int] = []

    def register(engine: Engine) -> None:
        @engine.task(name="flaky", retry=Retry(3, backoff=10.0, jitter=False))
        async def flaky(n: int) -> None:
            calls.append(n)
            raise RuntimeError(f"boom {n}")

    engine, clock = harness.engine()
    register(engine)
    async with engine:
        await engine.schedule("flaky", args=(1,), delay=1)
        await clock.advance(1)  # attempt 1 fails, retry in 10 s
        assert calls == [1]
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine(later=2)
    register(engine)
    async with engine:
        (job,) = [record for record in harness.records() if record.get("state") == "failed"]
        assert job["att"] == 1
        await clock.advance(8)  # attempt 2, on its retry deadline
        assert calls == [1, 1]
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine(later=1)
    register(engine)
    async with engine:
        await clock.advance(20)  # attempt 3, the last
        assert calls == [1, 1, 1]
        (dead,) = engine.dead_letters()
        assert dead.attempt == 3
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine(later=1)
    register(engine)
    async with engine:
        (dead,) = engine.dead_letters()
        assert (dead.state, dead.attempt, dead.args) == ("dead", 3, (1,))
        assert "boom 1" in (dead.traceback or "")
        engine.redrive(dead)
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine(later=1)
    register(engine)
    async with engine:
        assert engine.dead_letters() == []
        await clock.advance(0.001)
        assert calls == [1, 1, 1, 1]  # the redrive, with a fresh set of attempts
        await engine.stop(grace=0)


async def test_cancel_and_reschedule_are_journaled(harness: Harness) -> None:
    engine, clock = harness.engine()
    async with engine:
        await engine.schedule("remind", args=(1,), delay=HOUR, key="a")
        await engine.schedule("remind", args=(2,), delay=HOUR, key="b")
        assert engine.cancel("a")
        assert engine.reschedule("b", delay=10)
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine()
    async with engine:
        assert engine.get("a") is None
        assert len(engine) == 1
        await clock.advance(10)
        assert harness.ran == [2]
        await engine.stop(grace=0)


@pytest.mark.parametrize("if_exists", ["keep", "replace"])
def test_registering_a_keyed_job_at_every_boot_behaves_the_same_after_a_restart(
    run: Runner, harness: Harness, if_exists: Any
) -> None:
    """``key="daily-report"`` registered at each start: one job, whether or not the process restarted."""

    async def boot(later: float) -> tuple[str, int]:
        engine, clock = harness.engine(later=later)
        async with engine:
            job = await engine.schedule(
                "remind", args=(9,), cron=Cron("0 9 * * *"), key="daily-report", if_exists=if_exists
            )
            again = await engine.schedule(
                "remind", args=(9,), cron=Cron("0 9 * * *"), key="daily-report", if_exists=if_exists
            )
            if if_exists == "keep":
                assert again is job
            count = len(engine)
            await engine.stop(grace=0)
        harness.finished(clock)
        return job.id, count

    async def main() -> None:
        first, count = await boot(0)
        assert count == 1
        second, count = await boot(60)
        assert count == 1
        assert (second == first) == (if_exists == "keep")
        live = {record["id"] for record in harness.records() if record["t"] == "job"}
        acked = {record["id"] for record in harness.records() if record["t"] in ("cancel", "ack", "done")}
        assert len(live - acked) == 1

    run(main)


async def test_a_journaled_task_no_longer_registered_is_an_error_naming_it(harness: Harness) -> None:
    engine, clock = harness.engine()

    @engine.task(name="retired")
    async def retired() -> None: ...

    async with engine:
        await engine.schedule("retired", delay=HOUR)
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine()
    with pytest.raises(UnknownTask, match="'retired'"):
        await engine.start()

    @engine.task(name="retired")
    async def back() -> None: ...

    await engine.start()  # registering it and starting again recovers the job
    assert len(engine) == 1
    await engine.stop(grace=0)


def test_parked_jobs_stay_in_the_journal_until_their_task_is_back(
    run: Runner, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        engine, clock = harness.engine()

        @engine.task(name="retired")
        async def retired(n: int) -> None:
            harness.ran.append(("retired", n))

        async with engine:
            await engine.schedule("retired", args=(5,), delay=10, key="old")
            await engine.stop(grace=0)
        harness.finished(clock)

        monkeypatch.setattr(JournalStore, "compact_min", 2)
        # No outcomes kept: the jobs below leave no done records, so ten of them outweigh the live set.
        engine, clock = harness.engine(unknown_tasks="park", result_ttl=0)
        async with engine:
            (parked,) = engine.parked()
            assert (parked.task, parked.state, parked.args, parked.key) == ("retired", "parked", (5,), "old")
            assert len(engine) == 0
            for n in range(10):  # enough records to compact: the snapshot must keep the parked job
                await engine.schedule("remind", args=(n,), delay=1)
                await clock.advance(1)
            await engine.flush()
            assert harness.has(".snapshot")
            await engine.stop(grace=0)
        harness.finished(clock)

        engine, clock = harness.engine(later=60)

        @engine.task(name="retired")
        async def retired_again(n: int) -> None:
            harness.ran.append(("retired", n))

        async with engine:
            await clock.advance(0.001)
            assert ("retired", 5) in harness.ran
            await engine.stop(grace=0)

    run(main)


async def test_args_json_cannot_hold_are_a_type_error_at_schedule_time(harness: Harness) -> None:
    engine, _ = harness.engine()
    async with engine:
        await engine.schedule("remind", args=(1,), delay=HOUR, key="k")
        with pytest.raises(TypeError, match="args and kwargs"):
            await engine.schedule("remind", args=(object(),), delay=HOUR, key="k", if_exists="replace")
        with pytest.raises(TypeError, match="args and kwargs"):
            await engine.schedule("remind", kwargs={"user": __import__("datetime").datetime.now()}, delay=1)
        assert engine.get("k") is not None  # the failed replace left the pending job alone
        assert len(engine) == 1
        await engine.stop(grace=0)
    assert [record["t"] for record in harness.records()] == ["job"]


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"


class Perm(enum.IntFlag):
    READ = 4


@dataclasses.dataclass
class Point:
    x: int


class Text(str):
    pass


class Number(int):
    pass


class Real(float):  # how numpy.float64 is built: a float subclass
    pass


class Items(list[int]):
    pass


class Table(dict[str, int]):
    pass


# Every kind of value orjson serializes natively (its "Types": str, dict, list, tuple, int, float, bool, None,
# dataclass, datetime/date/time, enum, uuid, numpy with an option, subclasses of str/int/list/dict, Fragment),
# and the edges of each. Those JSON would hand back as something else are refused at schedule():
REFUSED = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(uuid.UUID(int=7), id="uuid"),
    pytest.param(Color.RED, id="enum"),
    pytest.param(Level.HIGH, id="int-enum"),
    pytest.param(Mode.FAST, id="str-enum"),
    pytest.param(Perm.READ, id="int-flag"),
    pytest.param(orjson.Fragment(b'{"a":1}'), id="orjson-fragment"),
    pytest.param(Point(1), id="dataclass"),
    pytest.param(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), id="datetime"),
    pytest.param(datetime.date(2026, 1, 1), id="date"),
    pytest.param(datetime.time(12, 0), id="time"),
    pytest.param(Text("x"), id="str-subclass"),
    pytest.param(Number(1), id="int-subclass"),
    pytest.param(Real(1.5), id="float-subclass"),
    pytest.param(Items([1]), id="list-subclass"),
    pytest.param(Table(a=1), id="dict-subclass"),
    pytest.param(2**64, id="int-over-64-bits"),
    pytest.param(-(2**63) - 1, id="int-under-64-bits"),
    pytest.param("\ud800", id="lone-surrogate"),
    pytest.param({1: "a"}, id="int-key"),
    pytest.param({Text("k"): 1}, id="str-subclass-key"),
    pytest.param({"nested": [1, {"deep": math.nan}]}, id="nested-nan"),
    pytest.param(decimal.Decimal(1), id="decimal"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param({1, 2}, id="set"),
    pytest.param(1j, id="complex"),
    pytest.param(object(), id="object"),
]
# ... and those it hands back as themselves come back exactly, types included, after a restart:
EXACT = [
    pytest.param("", id="empty-str"),
    pytest.param("好 🐈 \x00 \n \"'\\", id="unicode-and-escapes"),
    pytest.param(0, id="zero"),
    pytest.param(2**64 - 1, id="u64-max"),
    pytest.param(-(2**63), id="i64-min"),
    pytest.param(2**53 + 1, id="beyond-double"),
    pytest.param(-0.0, id="negative-zero"),
    pytest.param(5e-324, id="subnormal"),
    pytest.param(1.7976931348623157e308, id="max-float"),
    pytest.param(0.1, id="tenth"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(None, id="none"),
    pytest.param([], id="empty-list"),
    pytest.param({}, id="empty-dict"),
    pytest.param({"a": [1, 2.5, None, {"b": [True, "x"]}]}, id="nested"),
]


def same(value: Any, back: Any) -> bool:
    """Equal, with the same types all the way down (nested tuples aside: they come back as lists, as documented)."""
    if isinstance(value, tuple):
        return type(back) is list and len(value) == len(back) and all(map(same, value, back))
    if type(value) is not type(back):
        return False
    if isinstance(value, list):
        return len(value) == len(back) and all(map(same, value, back))
    if isinstance(value, dict):
        return value.keys() == back.keys() and all(same(value[k], back[k]) for k in value)
    if isinstance(value, float):
        return math.copysign(1.0, value) == math.copysign(1.0, back) and value == back
    return bool(value == back)


@pytest.mark.parametrize("value", REFUSED)
def test_args_json_would_change_are_a_type_error_before_anything_changes(
    run: Runner, harness: Harness, value: Any
) -> None:
    async def main() -> None:
        engine, _ = harness.engine()
        async with engine:
            await engine.schedule("remind", args=(1,), delay=HOUR, key="k")
            for args, kwargs in (((value,), None), ((), {"v": value}), (([0, (value,)],), None)):
                with pytest.raises(TypeError, match="args and kwargs of a journaled job must be JSON values"):
                    await engine.schedule("remind", args=args, kwargs=kwargs, delay=HOUR, key="k", if_exists="replace")
            assert engine.get("k") is not None  # the failed replace left the pending job alone
            assert len(engine) == 1
            await engine.stop(grace=0)
        assert [record["t"] for record in harness.records()] == ["job"]

    run(main)


async def test_a_refused_value_is_named_with_where_it_is_and_what_it_would_become(harness: Harness) -> None:
    engine, _ = harness.engine()
    async with engine:
        with pytest.raises(TypeError) as caught:
            await engine.schedule("remind", args=(1, [2, Color.RED]), delay=HOUR)
        assert str(caught.value).startswith(
            "args[1][1] is <Color.RED: 'red'> (Color), which would come back from the journal as 'red'"
        )
        with pytest.raises(TypeError) as caught:
            await engine.schedule("remind", kwargs={"user": {"id": uuid.UUID(int=7)}}, delay=HOUR)
        assert str(caught.value).startswith(
            "kwargs['user']['id'] is UUID('00000000-0000-0000-0000-000000000007') (UUID), which would come back"
            " from the journal as '00000000-0000-0000-0000-000000000007'"
        )
        await engine.stop(grace=0)


@pytest.mark.parametrize("value", EXACT)
async def test_json_values_come_back_exactly_after_a_restart(harness: Harness, value: Any) -> None:
    engine, clock = harness.engine()
    async with engine:
        await engine.schedule("remind", args=(value, (value,)), kwargs={"v": value}, delay=HOUR, key="k")
        await engine.stop(grace=0)
    harness.finished(clock)
    engine, _ = harness.engine(later=1)
    async with engine:
        job = engine.get("k")
        assert job is not None
        assert type(job.args) is tuple  # the top level is a tuple again; nested tuples are lists
        assert same((value, (value,)), list(job.args)), job.args
        assert same({"v": value}, job.kwargs), job.kwargs
        await engine.stop(grace=0)


def test_a_record_the_decoder_could_not_read_back_is_refused_before_anything_changes(
    run: Runner, harness: Harness
) -> None:
    """D5 at its real size: 65 MiB of args; nothing is journaled, the keyed job it would replace stays."""

    async def main() -> None:
        engine, _ = harness.engine()
        async with engine:
            await engine.schedule("remind", args=(1,), delay=HOUR, key="big")
            big = "x" * (65 << 20)
            for args, kwargs in (((big,), None), ((), {"text": big})):
                with pytest.raises(ValueError, match="args and kwargs of a journaled job must fit") as caught:
                    await engine.schedule(
                        "remind", args=args, kwargs=kwargs, delay=HOUR, key="big", if_exists="replace"
                    )
                size = re.search(
                    r"this job's record takes ([\d,]+) bytes, over the limit of ([\d,]+)", str(caught.value)
                )
                assert size is not None
                assert len(big) < int(size[1].replace(",", "")) < len(big) + 1000
                assert int(size[2].replace(",", "")) == NEW_RECORD_MAX
            kept = engine.get("big")
            assert kept is not None
            assert kept.args == (1,)
            await engine.schedule("remind", delay=HOUR, key="after")
            await engine.stop(grace=0)
        assert [record.get("key") for record in harness.records()] == ["big", "after"]

    run(main)


@pytest.fixture
def small_records(monkeypatch: pytest.MonkeyPatch) -> int:
    """A decoder limit of 256 KiB instead of 64 MiB (the same rules, records a test can afford): the limit."""
    limit = 256 << 10
    monkeypatch.setattr(_journal_format, "MAX_PAYLOAD", limit)
    monkeypatch.setattr(_journal_records, "MAX_PAYLOAD", limit)
    monkeypatch.setattr(_journal_records, "NEW_RECORD_MAX", limit - _journal_records._GROWTH)
    return limit


async def test_every_record_of_a_job_at_the_size_limit_reads_back(harness: Harness, small_records: int) -> None:
    """A new record at the limit is taken, one byte over is refused; its retry's record, error text and all, fits."""
    new_max = small_records - _journal_records._GROWTH
    calls: list[int] = []

    def register(engine: Engine) -> None:
        @engine.task(name="flaky", retry=Retry(3, backoff=10.0, jitter=False))
        async def flaky(text: str) -> None:
            calls.append(len(text))
            raise RuntimeError("\x01" * 100_000 + " the end")  # escaped as \u0001: 6 bytes a character

    engine, clock = harness.engine()
    register(engine)
    async with engine:
        padding = new_max - len(encode_job(Job("0" * 32, "k", "flaky", ("",), {}, 0, clock.wall() + 1, 0), new=True))
        with pytest.raises(ValueError, match=f"takes {new_max + 1:,} bytes, over the limit of {new_max:,}"):
            await engine.schedule("flaky", args=("x" * (padding + 1),), delay=1, key="k")
        job = await engine.schedule("flaky", args=("x" * padding,), delay=1, key="k")
        assert len(encode_job(job, new=True)) == new_max
        await clock.advance(1)  # attempt 1 fails: its record carries the error text
        assert calls == [padding]
        await engine.stop(grace=0)
    harness.finished(clock)
    records = harness.records()  # every record was read back, through the decoder and its limit
    assert [record["state"] for record in records] == ["pending", "failed"]
    error = records[-1]["err"]
    assert len(error) == _journal_records.ERR_MAX + 4
    assert error.startswith("...\n")
    assert error.endswith(" the end\n")

    engine, clock = harness.engine(later=1)
    register(engine)
    async with engine:
        await clock.advance(10)  # attempt 2, from the recovered retry
        assert calls == [padding, padding]
        await engine.stop(grace=0)


def test_a_journaled_engine_takes_jobs_only_once_started(harness: Harness) -> None:
    engine, _ = harness.engine()
    with pytest.raises(RuntimeError, match="start the engine first"):
        engine.schedule_nowait("remind", args=(1,), delay=1)


async def test_a_journal_is_open_in_one_engine_at_a_time(harness: Harness) -> None:
    first, _ = harness.engine()
    second, _ = harness.engine()
    async with first:
        with pytest.raises(RuntimeError, match="open in another engine"):
            await second.start()
        await first.stop(grace=0)
    await second.start()  # the lock went with the first engine
    await second.stop(grace=0)


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
async def test_every_fsync_policy_recovers_after_a_clean_stop(harness: Harness, fsync: str) -> None:
    engine, clock = harness.engine(fsync=fsync, fsync_interval=0.01)
    async with engine:
        await engine.schedule("remind", args=(1,), delay=HOUR)
        engine.schedule_nowait("remind", args=(2,), delay=HOUR)
        await engine.stop(grace=0)
    harness.finished(clock)
    engine, clock = harness.engine(fsync=fsync)
    async with engine:
        assert len(engine) == 2
        await engine.stop(grace=0)


def test_concurrent_schedules_share_fsyncs_and_none_runs_on_the_loop_thread(
    run: Runner, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: 1,000 concurrent awaited schedules, far fewer fsyncs, all off the event loop."""
    fsync_threads: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsync_threads.append(threading.current_thread().name)
        real_fsync(fd)

    async def main() -> None:
        engine, _ = harness.engine()
        async with engine:
            monkeypatch.setattr(os, "fsync", counting_fsync)
            loop_thread = threading.current_thread().name
            await asyncio.gather(*(engine.schedule("remind", args=(n,), delay=HOUR) for n in range(1000)))
            assert 1 <= len(fsync_threads) < 100
            assert loop_thread not in fsync_threads
            await engine.stop(grace=0)
        assert len(harness.records()) == 1000

    run(main)


@pytest.mark.parametrize(("fsync", "fsyncs_per_schedule"), [("always", 1), ("interval", 0), ("never", 0)])
def test_only_always_waits_for_an_fsync_and_flush_fsyncs_under_every_policy(
    run: Runner, harness: Harness, monkeypatch: pytest.MonkeyPatch, fsync: str, fsyncs_per_schedule: int
) -> None:
    """``interval`` (with an interval longer than the test) and ``never`` return after the write alone."""
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    async def main() -> None:
        engine, _ = harness.engine(fsync=fsync, fsync_interval=3600)
        async with engine:
            monkeypatch.setattr(os, "fsync", counting_fsync)
            for n in range(5):
                await engine.schedule("remind", args=(n,), delay=HOUR)
            assert len(calls) == 5 * fsyncs_per_schedule
            assert len(harness.records()) == 5  # written, whatever the policy
            await engine.flush()  # fsyncs what is written and not yet fsynced: nothing, under "always"
            assert len(calls) == 5 * fsyncs_per_schedule + (fsync != "always")
            await engine.stop(grace=0)

    run(main)


def test_a_failed_write_fails_loudly_and_what_was_durable_survives(
    run: Runner, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        engine, clock = harness.engine()
        async with engine:
            await engine.schedule("remind", args=(1,), delay=HOUR, key="durable")
            fill_the_disk(monkeypatch)
            with pytest.raises(OSError, match="No space left"):
                await engine.schedule("remind", args=(2,), delay=HOUR, key="lost")
            with pytest.raises(OSError, match="failed"):
                await engine.stop(grace=0)
        monkeypatch.undo()
        harness.finished(clock)
        engine, clock = harness.engine()
        async with engine:
            assert engine.get("durable") is not None
            assert engine.get("lost") is None  # never written, never acknowledged
            await engine.stop(grace=0)

    run(main)


def test_a_failed_fsync_fails_loudly_and_is_never_retried(
    run: Runner, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    async def main() -> None:
        engine, clock = harness.engine()
        async with engine:
            await engine.schedule("remind", args=(1,), delay=HOUR)
            monkeypatch.setattr(os, "fsync", broken_fsync)
            with pytest.raises(OSError, match="Input/output error"):
                await engine.schedule("remind", args=(2,), delay=HOUR)
            with pytest.raises(OSError, match="failed earlier"):
                engine.schedule_nowait("remind", args=(3,), delay=HOUR)
            fired: list[bool] = []
            engine.call_later(1, fired.append, True)  # volatile timers carry on
            await clock.advance(1)
            assert fired == [True]
            with pytest.raises(OSError, match="failed"):
                await engine.stop(grace=0)
        monkeypatch.undo()
        harness.finished(clock)
        engine, clock = harness.engine()
        async with engine:  # what was fsynced is there; the unacknowledged schedule may or may not be
            assert 1 <= len(engine) <= 2
            await engine.stop(grace=0)

    run(main)


def test_compaction_while_running_keeps_the_live_set_and_timers_firing(
    run: Runner, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JournalStore, "compact_min", 50)

    async def main() -> None:
        engine, clock = harness.engine(result_ttl=0)  # each short job leaves no done record: the log outgrows
        fired: list[float] = []
        async with engine:
            for n in range(20):
                await engine.schedule("remind", args=(n,), delay=HOUR + n, key=f"keep:{n}")
            for _ in range(400):  # short jobs: each a job record and an ack
                engine.schedule_nowait("remind", args=(-1,), delay=0.5)
                engine.call_later(0.25, fired.append, clock.time())
                await clock.advance(1)
            compaction = journal_store(engine).compaction
            if compaction is not None:
                await compaction  # the last one may still be sealing its snapshot
            assert len(engine) == 20
            assert len(fired) == 400
            assert not harness.has(".old")
            await engine.stop(grace=0)
        harness.finished(clock)
        log = JournalFile(harness.path)
        written = len(list(log.records()))
        assert log.header is not None
        assert log.header.generation > 1  # compacted at least once while running
        assert written < 20 + 400 * 2  # the log holds only what came after the last snapshot
        snapshot = harness.records(".snapshot")
        assert snapshot[-1] == {"t": "end", "count": len(snapshot) - 1}

        engine, clock = harness.engine()
        async with engine:
            assert all(engine.get(f"keep:{n}") is not None for n in range(20))
            assert len(engine) == 20
            await engine.stop(grace=0)

    run(main)


async def test_a_recurring_job_waiting_for_its_run_is_not_doubled_by_a_restart(harness: Harness) -> None:
    """A fixed-delay series whose run was interrupted: after the restart the run repeats once, then the series."""
    started = asyncio.Event()
    engine, clock = harness.engine()

    @engine.task(name="report")
    async def report() -> None:
        started.set()
        await asyncio.Event().wait()

    async with engine:
        await engine.schedule("report", every=Every(60, fixed="delay"), key="report")
        await clock.advance(60)
        await started.wait()
        await engine.stop(grace=0)
    harness.finished(clock)

    engine, clock = harness.engine(later=5)
    runs: list[float] = []

    @engine.task(name="report")
    async def report_again() -> None:
        runs.append(clock.time())

    async with engine:
        await clock.advance(59)
        assert runs == [0.0]  # the interrupted run, once; the series waited for it
        await clock.advance(1)
        assert runs == [0.0, 60.0]  # then the series, 60 s after that run ended
        await engine.stop(grace=0)


async def test_a_bad_record_in_the_middle_stops_the_start_unless_told_to_truncate(harness: Harness) -> None:
    engine, clock = harness.engine()
    async with engine:
        for n in range(3):
            await engine.schedule("remind", args=(n,), delay=HOUR)
        await engine.stop(grace=0)
    harness.finished(clock)
    second = [record.offset for record in JournalFile(harness.path).records()][1]
    harness.flip_bit(second + 12)

    from chronowheel import JournalCorrupt

    engine, clock = harness.engine()
    with pytest.raises(JournalCorrupt) as caught:
        await engine.start()
    assert caught.value.offset == second

    engine, clock = harness.engine(on_corrupt="truncate")
    async with engine:
        assert len(engine) == 1  # the first job; the damaged one and all after it are dropped
        await engine.stop(grace=0)


def test_engine_journal_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="journal"):
        Engine(journal=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fsync_interval"):
        Engine(journal=str(tmp_path / "j"), fsync_interval=0)
    with pytest.raises(ValueError, match="on_corrupt"):
        Engine(journal=str(tmp_path / "j"), on_corrupt="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown_tasks"):
        Engine(journal=str(tmp_path / "j"), unknown_tasks="drop")  # type: ignore[arg-type]


async def test_duplicate_key_after_restart(harness: Harness) -> None:
    engine, clock = harness.engine()
    async with engine:
        await engine.schedule("remind", args=(1,), delay=HOUR, key="k")
        await engine.stop(grace=0)
    harness.finished(clock)
    engine, clock = harness.engine()
    async with engine:
        with pytest.raises(DuplicateKey):
            await engine.schedule("remind", args=(1,), delay=HOUR, key="k")
        await engine.stop(grace=0)
