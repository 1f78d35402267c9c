"""``engine.from_thread`` from real threads (joined, never slept on), and the job API refusing other threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chronowheel import Engine, EngineClosed, Job, TimerHandle, UnknownTask
from chronowheel._volatile import Handle
from chronowheel.testing import VirtualClock
from helpers import stopping


@pytest.fixture(params=["memory", "journal"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    journal = None if request.param == "memory" else str(tmp_path / "timers.log")
    engine = Engine(clock=VirtualClock(), journal=journal)
    ran: list[Any] = []

    @engine.task(name="note")
    async def note(text: str = "") -> None:
        ran.append(text)

    engine.ran = ran  # type: ignore[attr-defined]
    return engine


async def in_thread(call: Callable[[], Any]) -> Any:
    """Run ``call`` on a thread of its own (not the loop's), join it from a helper thread, return what it returned."""
    outcome: list[Any] = []

    def body() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=body, name="caller")
    thread.start()
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    return outcome[0]


def clock_of(engine: Engine) -> VirtualClock:
    clock = engine._clock
    assert isinstance(clock, VirtualClock)
    return clock


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "asyncio-debug"])
async def test_schedule_from_a_thread_returns_a_future_of_the_job(engine: Engine, debug: bool) -> None:
    asyncio.get_running_loop().set_debug(debug)
    async with stopping(engine):
        job = await in_thread(
            lambda: engine.from_thread.schedule("note", args=("hi",), delay=timedelta(seconds=2), key="k").result(10)
        )
        assert isinstance(job, Job)
        assert engine.get("k") is job
        await clock_of(engine).advance(2)
        assert job.state == "succeeded"
    assert engine.ran == ["hi"]  # type: ignore[attr-defined]


async def test_cancel_reschedule_and_call_later_from_a_thread(engine: Engine) -> None:
    fired: list[str] = []
    async with stopping(engine):
        moved = await engine.schedule("note", args=("moved",), delay=10, key="moved")
        dropped = await engine.schedule("note", args=("dropped",), delay=10)

        def calls() -> tuple[bool, bool, bool, Handle]:
            cancelled = engine.from_thread.cancel(dropped).result(10)
            again = engine.from_thread.cancel(dropped).result(10)
            rescheduled = engine.from_thread.reschedule("moved", delay=1).result(10)
            handle = engine.from_thread.call_later(3, fired.append, "timer").result(10)
            return cancelled, again, rescheduled, handle

        cancelled, again, rescheduled, handle = await in_thread(calls)
        assert (cancelled, again, rescheduled) == (True, False, True)
        assert isinstance(handle, TimerHandle)
        await clock_of(engine).advance(1)
        assert moved.state == "succeeded"
        await clock_of(engine).advance(2)
        assert fired == ["timer"]
    assert dropped.state == "cancelled"
    assert engine.ran == ["moved"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda e: e.from_thread.schedule("nope", delay=0), UnknownTask, "no task registered as 'nope'"),
        (lambda e: e.from_thread.schedule("note", args=(1, 2), delay=0), TypeError, "task 'note' takes"),
        (lambda e: e.from_thread.reschedule("k", delay=-1), ValueError, "^delay must be"),
        (lambda e: e.from_thread.cancel(42), TypeError, "^key_or_job must be a key"),
        (lambda e: e.from_thread.call_later(1, "print"), TypeError, "^callback must be callable"),
    ],
    ids=["unknown-task", "bad-args", "bad-delay", "bad-key", "bad-callback"],
)
async def test_the_engines_errors_come_back_through_the_future(
    engine: Engine, call: Callable[[Engine], concurrent.futures.Future[Any]], error: type[Exception], message: str
) -> None:
    async with stopping(engine):
        raised = await in_thread(lambda: call(engine).exception(10))
    assert isinstance(raised, error)
    assert re.search(message, str(raised)), str(raised)


FROM_THREAD = {
    "schedule": lambda e: e.from_thread.schedule("note", delay=0),
    "cancel": lambda e: e.from_thread.cancel("k"),
    "reschedule": lambda e: e.from_thread.reschedule("k", delay=1),
    "call_later": lambda e: e.from_thread.call_later(1, print),
}


@pytest.mark.parametrize("call", FROM_THREAD)
async def test_from_thread_refuses_an_engine_that_is_not_running(engine: Engine, call: str) -> None:
    before = await in_thread(lambda: FROM_THREAD[call](engine))
    async with stopping(engine):
        pass
    after = await in_thread(lambda: FROM_THREAD[call](engine))
    for raised in (before, after):
        assert isinstance(raised, RuntimeError)
        assert str(raised) == f"engine.from_thread.{call}: the engine is not running; start() it first"


@pytest.mark.parametrize("call", FROM_THREAD)
async def test_from_thread_on_the_loops_own_thread_is_refused(call: str) -> None:
    """Its future could only be waited for by blocking the loop that must resolve it."""
    engine = Engine(clock=VirtualClock())
    engine.task(name="note")(asyncio.sleep)
    async with stopping(engine):
        with pytest.raises(RuntimeError, match=rf"^engine.from_thread.{call}: called on the engine's own event loop"):
            FROM_THREAD[call](engine)


async def test_from_thread_while_stopping_is_engine_closed() -> None:
    engine = Engine(clock=VirtualClock())
    engine.task(name="note")(asyncio.sleep)
    release = asyncio.Event()

    @engine.task(name="gatekeeper")
    async def gatekeeper() -> None:
        await release.wait()

    await engine.start()
    await engine.schedule("gatekeeper", delay=0)
    await clock_of(engine).advance(0)
    stop = asyncio.create_task(engine.stop(grace=5))
    await asyncio.sleep(0)  # stop() has begun, waiting for the gatekeeper: it takes no more jobs
    raised = await in_thread(lambda: engine.from_thread.schedule("note", delay=0).exception(10))
    release.set()
    await stop
    assert isinstance(raised, EngineClosed)


DIRECT = {
    "schedule_nowait": lambda e, job: e.schedule_nowait("note", delay=0),
    "cancel": lambda e, job: e.cancel(job),
    "reschedule": lambda e, job: e.reschedule(job, delay=1),
    "redrive": lambda e, job: e.redrive(job),
}


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "asyncio-debug"])
@pytest.mark.parametrize("call", DIRECT)
async def test_the_job_api_from_another_thread_names_from_thread(engine: Engine, call: str, debug: bool) -> None:
    asyncio.get_running_loop().set_debug(debug)
    async with stopping(engine):
        job = await engine.schedule("note", delay=5)
        raised = await in_thread(lambda: DIRECT[call](engine, job))
        assert isinstance(raised, RuntimeError)
        assert str(raised).startswith(f"{call}: called from thread 'caller'")
        assert "use engine.from_thread" in str(raised)
        assert len(engine) == 1
        assert job.state == "pending"


async def test_a_future_cancelled_before_the_loop_gets_to_it_does_nothing(engine: Engine) -> None:
    async with stopping(engine):
        job = await engine.schedule("note", delay=5)
        futures: list[concurrent.futures.Future[Any]] = []

        def caller() -> None:
            for future in (engine.from_thread.cancel(job), engine.from_thread.schedule("note", delay=0)):
                assert future.cancel()  # the loop is blocked (joining this thread): it has not run them
                futures.append(future)

        thread = threading.Thread(target=caller)
        thread.start()
        thread.join(10)  # on the loop's thread, on purpose: the calls wait behind it
        await asyncio.sleep(0)  # now the loop runs them: both find their future cancelled
        await clock_of(engine).advance(0)
        assert job.state == "pending"
        assert len(engine) == 1
        assert all(future.cancelled() for future in futures)


@pytest.mark.parametrize("call", FROM_THREAD)
async def test_a_closed_loop_is_named(call: str) -> None:
    """An engine left running on a loop that was closed (asyncio.run() returned without stop())."""
    engine = Engine(clock=VirtualClock())
    engine.task(name="note")(asyncio.sleep)
    closed = asyncio.new_event_loop()
    closed.close()
    engine._loop = (closed, -1)
    raised = await in_thread(lambda: FROM_THREAD[call](engine))
    assert isinstance(raised, RuntimeError)
    assert str(raised) == f"engine.from_thread.{call}: the engine's event loop is closed"


@pytest.mark.parametrize(("threads", "each"), [(2, 50), (8, 25)])
async def test_from_thread_from_many_threads_at_once(engine: Engine, threads: int, each: int) -> None:
    """Threads scheduling together: every call gets its own job, none lost, all run, on the loop's thread."""
    start = threading.Barrier(threads)
    futures: list[concurrent.futures.Future[Job]] = []
    lock = threading.Lock()

    def caller(number: int) -> None:
        start.wait(10)
        for n in range(each):
            future = engine.from_thread.schedule("note", args=(f"{number}-{n}",), delay=1)
            with lock:
                futures.append(future)

    async with stopping(engine):
        workers = [threading.Thread(target=caller, args=(number,)) for number in range(threads)]
        for worker in workers:
            worker.start()
        await asyncio.gather(*(asyncio.to_thread(worker.join, 10) for worker in workers))
        jobs = await asyncio.gather(*(asyncio.wrap_future(future) for future in futures))
        assert len({job.id for job in jobs}) == threads * each
        assert {job.id for job in engine.jobs(limit=10_000)} == {job.id for job in jobs}
        await clock_of(engine).advance(1)
        expected = {f"{number}-{n}" for number in range(threads) for n in range(each)}
        assert sorted(engine.ran) == sorted(expected)  # type: ignore[attr-defined]
