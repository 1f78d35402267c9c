# mypy: disable-error-code="comparison-overlap"
# (tests assert a job's state before and after awaits; narrowing cannot see it change)
"""Nothing a task, a callback or a failing journal does stops the engine; stopping loses no work."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from chronowheel import Engine, Every, Job, Retry
from chronowheel.testing import VirtualClock
from helpers import Runner, fill_the_disk, join_threads, journal_store


class Custom(BaseException):
    """A BaseException of the user's own, as some libraries define."""


# Every kind a task or callback may raise: asyncio's, the interpreter's, the user's own, a plain Exception.
CAUGHT = [asyncio.CancelledError, GeneratorExit, Custom, ValueError]
FATAL = [KeyboardInterrupt, SystemExit]  # recorded, then on to the loop's caller, as asyncio does
RETRY = {"no-retry": None, "retry": Retry(2, backoff=1.0, jitter=False)}


def new_loop(backend: str) -> asyncio.AbstractEventLoop:
    if backend == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_through(
    backend: str,
    main: Callable[[], Coroutine[Any, Any, None]],
    fatal: type[BaseException],
    errors: list[dict[str, Any]] | None = None,
) -> int:
    """Run ``main`` on a loop of its own, running the loop on after each ``fatal`` that reaches its caller.

    Returns how many reached it: the loop goes on where it was, as after a
    KeyboardInterrupt caught around ``run_until_complete``. The loop's
    exception handler appends to ``errors``, if given.
    """
    loop = new_loop(backend)
    if errors is not None:
        loop.set_exception_handler(lambda loop, context: errors.append(context))
    reached = 0
    try:
        task = loop.create_task(main())
        while True:
            try:
                loop.run_until_complete(task)
                return reached
            except fatal:
                reached += 1
                assert reached < 10
    finally:
        loop.close()


def one_worker_engine(clock: VirtualClock, kind: type[BaseException], is_async: bool, retry: Retry | None) -> Engine:
    """A one-worker pool with a task ``bad`` that raises ``kind`` and a task ``after`` that records its run."""
    engine = Engine(clock=clock)
    engine.add_pool("one", concurrency=1)
    engine.ran = []  # type: ignore[attr-defined]

    def raise_it() -> None:
        raise kind("from the task")

    async def bad_async() -> None:
        raise_it()

    engine.task(name="bad", pool="one", retry=retry)(bad_async if is_async else raise_it)

    @engine.task(name="after", pool="one")
    async def after(n: int) -> None:
        engine.ran.append(n)  # type: ignore[attr-defined]

    return engine


async def settle_threads(engine: Engine, clock: VirtualClock, *jobs: Job) -> None:
    """Wait until none of the engine's sync job threads runs any more (those of ``jobs``)."""
    await join_threads(clock, *jobs)
    assert engine._timers.threads == 0


# -- jobs that raise -------------------------------------------------------------


@pytest.mark.parametrize("retry", RETRY.values(), ids=RETRY.keys())
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
@pytest.mark.parametrize("kind", CAUGHT, ids=lambda kind: kind.__name__)
def test_whatever_a_job_raises_is_a_failed_attempt_and_its_worker_survives(
    run: Runner, kind: type[BaseException], is_async: bool, retry: Retry | None
) -> None:
    async def main() -> None:
        clock = VirtualClock()
        engine = one_worker_engine(clock, kind, is_async, retry)
        attempts = 1 if retry is None else retry.attempts
        async with engine:
            bad = engine.schedule_nowait("bad", delay=0)
            afters = [engine.schedule_nowait("after", args=(n,), delay=0.5 + n) for n in range(3)]
            for _ in range(5):
                await clock.advance(1)
                if not is_async:
                    await settle_threads(engine, clock, bad)
            stats = engine.stats()
            assert bad.state == "dead"
            assert isinstance(bad.error, kind)
            assert bad.traceback is not None
            assert "from the task" in bad.traceback
            assert bad.attempt == attempts
            assert engine.dead_letters() == [bad]
            assert [job.state for job in afters] == ["succeeded"] * 3
            assert engine.ran == [0, 1, 2]  # type: ignore[attr-defined]
            assert (stats["queued"], stats["running"], stats["pending"]) == (0, 0, 0)
            assert (stats["failed"], stats["retried"], stats["succeeded"]) == (attempts, attempts - 1, 3)
            assert not any(worker.done() for worker in engine._registry.pools["one"].workers)
            assert engine._driver.task is not None
            assert not engine._driver.task.done()

    run(main)


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
@pytest.mark.parametrize("retry", RETRY.values(), ids=RETRY.keys())
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
@pytest.mark.parametrize("kind", FATAL, ids=lambda kind: kind.__name__)
def test_keyboard_interrupt_and_system_exit_are_recorded_then_reach_the_loops_caller(
    backend: str, kind: type[BaseException], is_async: bool, retry: Retry | None
) -> None:
    """As from any asyncio task; should the caller run the loop on, the pool still has its worker."""
    clock = VirtualClock()
    engine = one_worker_engine(clock, kind, is_async, retry)
    attempts = 1 if retry is None else retry.attempts
    jobs: dict[str, Any] = {}

    async def main() -> None:
        async with engine:
            jobs["first worker"] = engine._registry.pools["one"].workers[0]
            jobs["bad"] = engine.schedule_nowait("bad", delay=0)
            jobs["afters"] = [engine.schedule_nowait("after", args=(n,), delay=0.5 + n) for n in range(3)]
            for _ in range(5):
                await clock.advance(1)
                if not is_async:
                    await settle_threads(engine, clock, jobs["bad"])
            bad = jobs["bad"]
            assert (bad.state, bad.attempt, type(bad.error)) == ("dead", attempts, kind)
            assert engine.dead_letters() == [bad]
            assert [job.state for job in jobs["afters"]] == ["succeeded"] * 3
            assert engine.ran == [0, 1, 2]  # type: ignore[attr-defined]
            assert engine.stats()["queued"] == 0
            workers = engine._registry.pools["one"].workers
            assert len(workers) == 1
            assert not workers[0].done()

    errors: list[dict[str, Any]] = []
    reached = run_through(backend, main, kind, errors)
    assert reached == attempts  # each attempt's exception reached the caller, after it was recorded
    replaced = jobs["first worker"]
    # Marked as seen when it was replaced: no "Task exception was never retrieved" once it is collected.
    assert not replaced._log_traceback
    assert type(replaced.exception()) is kind
    assert errors == []


# -- timer callbacks ----------------------------------------------------------------


def fire_two(backend: str, kind: type[BaseException], call_later: str) -> tuple[list[str], list[str], int]:
    """A callback raising ``kind`` and one due right after it, on asyncio's ``loop.call_later`` or the engine's."""
    handled: list[str] = []
    fired: list[str] = []

    def bad() -> None:
        raise kind()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: handled.append(type(context["exception"]).__name__))
        if call_later == "loop":
            loop.call_later(0.001, bad)
            loop.call_later(0.001, fired.append, "same time")
            loop.call_later(0.002, fired.append, "later")
            done = asyncio.Event()
            loop.call_later(0.003, done.set)
            await done.wait()
            return
        clock = VirtualClock()
        async with Engine(clock=clock) as engine:
            engine.call_later(1, bad)
            engine.call_later(1, fired.append, "same time")  # the same tick: the same batch as bad
            engine.call_later(2, fired.append, "later")
            await clock.advance(3)
            assert engine._driver.task is not None
            assert not engine._driver.task.done()

    reached = run_through(backend, main, kind) if kind in FATAL else run_through(backend, main, KeyboardInterrupt)
    gc.collect()
    return handled, fired, reached


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
@pytest.mark.parametrize("kind", CAUGHT + FATAL, ids=lambda kind: kind.__name__)
def test_timer_callbacks_fail_as_with_loop_call_later(backend: str, kind: type[BaseException]) -> None:
    """SystemExit and KeyboardInterrupt reach the loop's caller, the rest its exception handler; all carry on."""
    expected = ([], 1) if kind in FATAL else ([kind.__name__], 0)
    handled, fired, reached = fire_two(backend, kind, "loop")
    assert (handled, reached) == expected  # what asyncio and uvloop do themselves
    assert fired == ["same time", "later"]
    assert fire_two(backend, kind, "engine") == (handled, fired, reached)  # and the engine does the same


# -- the journal fails ------------------------------------------------------------------


def test_after_a_failed_journal_write_jobs_finish_recur_and_timers_fire(
    run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "timers.log")
    ids: dict[str, str] = {}

    def make(clock: VirtualClock) -> tuple[Engine, list[str], asyncio.Event]:
        engine = Engine(journal=path, clock=clock)
        engine.add_pool("one", concurrency=1)
        ran: list[str] = []
        release = asyncio.Event()

        @engine.task(name="long", pool="one")
        async def long() -> None:
            await release.wait()
            ran.append("long")

        @engine.task(name="queued", pool="one")
        async def queued() -> None:
            ran.append("queued")

        @engine.task(name="tick")
        async def tick() -> None:
            ran.append("tick")

        @engine.task(name="fails", retry=Retry(2, backoff=1.0, jitter=False))
        async def fails() -> None:
            ran.append("fails")
            raise ValueError("x")

        return engine, ran, release

    async def first() -> None:
        clock = VirtualClock()
        engine, ran, release = make(clock)
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        await engine.start()
        ids["long"] = (await engine.schedule("long", delay=0)).id
        await clock.advance(0)
        queued = await engine.schedule("queued", delay=0)  # behind long, in the one worker's pool
        ids["queued"] = queued.id
        ids["tick"] = (await engine.schedule("tick", every=Every(1), key="tick")).id
        fails = await engine.schedule("fails", delay=0.5)
        ids["fails"] = fails.id

        fill_the_disk(monkeypatch)
        with pytest.raises(OSError, match="No space left"):
            await engine.schedule("queued", delay=100)
        with pytest.raises(OSError, match="failed earlier"):
            engine.schedule_nowait("queued", delay=100)  # durable calls fail loudly
        release.set()  # long finishes: its ack cannot be written
        await clock.advance(3.5)  # the recurring job's run records, the retry and the dead letter cannot either
        fired: list[int] = []
        engine.call_later(1, fired.append, 1)
        await clock.advance(1)
        assert fired == [1]
        assert ran.count("tick") == 4
        assert ran.count("fails") == 2
        assert ran[:2] == ["long", "queued"]
        assert queued.state == "succeeded"
        assert fails.state == "dead"
        assert engine._driver.task is not None
        assert not engine._driver.task.done()
        assert not engine._registry.pools["one"].workers[0].done()
        assert errors == []
        with pytest.raises(OSError, match="failed"):
            await engine.stop(grace=0)

    async def after_restart() -> None:
        engine, _ran, _release = make(VirtualClock())
        await engine.start()
        # What reached the disk: every schedule acknowledged before the failure, none of what came after.
        assert {job.id for job in journal_store(engine).live.values()} == set(ids.values())
        await engine.stop(grace=0)

    run(first)
    run(after_restart)


# -- stopping -------------------------------------------------------------------------


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journal"])
@pytest.mark.parametrize("grace", [0.0, 10.0])
@pytest.mark.parametrize("turns", range(6))
def test_stop_while_jobs_are_handed_to_workers_buries_none(
    run: Runner, tmp_path: Path, turns: int, grace: float, journal: bool
) -> None:
    """D19: jobs handed out as stop() begins either run or stay pending (to run after a restart); none die."""
    path = str(tmp_path / "timers.log") if journal else None
    ran: list[str] = []
    ids: list[str] = []

    def make(clock: VirtualClock) -> Engine:
        engine = Engine(journal=path, clock=clock)
        engine.add_pool("api", concurrency=5)

        @engine.task(name="work", pool="api", retry=Retry(attempts=1), timeout=5.0)
        async def work(i: int) -> None:
            await asyncio.sleep(0)  # one turn: a grace of 0 cuts it off
            ran.append(f"{i}")

        return engine

    async def main() -> None:
        clock = VirtualClock()
        engine = make(clock)
        await engine.start()
        jobs = [engine.schedule_nowait("work", args=(i,), delay=0) for i in range(10)]
        ids.extend(job.id for job in jobs)
        for _ in range(turns):
            await asyncio.sleep(0)
        await engine.stop(grace=grace)
        assert engine.dead_letters() == []
        assert engine.stats()["failed"] == 0
        assert {job.state for job in jobs} <= {"succeeded", "pending"}
        assert sorted(ran) == sorted(str(i) for i, job in enumerate(jobs) if job.state == "succeeded")
        if path is None:
            return
        later = VirtualClock()
        again = make(later)
        async with again:
            await later.advance(1)
            assert again.dead_letters() == []
        assert sorted(ran) == [str(i) for i in range(10)]  # every job ran once: the rest after the restart

    run(main)


@pytest.mark.parametrize("grace", [0.0, 1.0, 5.0])
def test_stop_gives_up_on_a_job_that_swallows_its_cancellation(
    run: Runner, grace: float, caplog: pytest.LogCaptureFixture
) -> None:
    """D11: stop() returns after the grace period and a bounded wait for cancelled jobs, and names the job."""

    async def main() -> None:
        clock = VirtualClock()
        engine = Engine(clock=clock)
        released = False
        wake = asyncio.Event()

        @engine.task(name="stubborn")
        async def stubborn() -> None:
            while not released:
                with contextlib.suppress(asyncio.CancelledError):
                    await wake.wait()

        @engine.task(name="polite")
        async def polite() -> None:
            await asyncio.Event().wait()

        await engine.start()
        job = engine.schedule_nowait("stubborn", delay=0)
        other = engine.schedule_nowait("polite", delay=0)
        await clock.advance(0)
        stopping = asyncio.create_task(engine.stop(grace=grace))
        await clock.advance(grace)
        assert not stopping.done()
        await clock.advance(0.999)
        assert not stopping.done()
        await clock.advance(0.001)  # the bounded wait for the cancelled jobs: 1 s on the engine clock
        assert stopping.done()
        assert stopping.result() is None
        assert other.state == "pending"  # cut off, as it let itself be
        assert job.state == "running"  # given up on: it runs on
        assert any(job.id in record.getMessage() and "gave up" in record.getMessage() for record in caplog.records)
        released = True
        wake.set()
        await clock.settle()

    with caplog.at_level(logging.WARNING, logger="chronowheel"):
        run(main)


STOP_FROM_A_JOB = """
import asyncio, sys
from chronowheel import Engine
from chronowheel.testing import VirtualClock

journal = sys.argv[2] if len(sys.argv) > 2 else None

def make(clock):
    engine = Engine(clock=clock, journal=journal)
    engine.add_pool("other", concurrency=2)
    ran = []
    stopped = asyncio.Event()
    @engine.task(name="shutdown")
    async def shutdown():
        await engine.stop(grace=1)
        ran.append("stop returned")
        stopped.set()
    @engine.task(name="long", pool="other")
    async def long():
        await asyncio.Event().wait()
    return engine, ran, stopped

async def main():
    clock = VirtualClock()
    engine, ran, stopped = make(clock)
    await engine.start()
    job = engine.schedule_nowait("shutdown", delay=0)
    other = engine.schedule_nowait("long", delay=0)
    await clock.advance(0)
    await clock.advance(1)  # the grace period, for the long job
    await asyncio.wait_for(stopped.wait(), 30)  # closing the journal joins its thread: real time
    print(ran, job.state, other.state, engine._driver.task.done(), engine._timers.closed)
    if journal:
        engine, _, _ = make(VirtualClock())
        await engine.start()
        print(sorted(job.task for job in engine._store.live.values()))
        await engine.stop(grace=0)

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journal"])
@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_a_job_that_awaits_stop_lets_it_complete(backend: str, journal: bool, tmp_path: Path) -> None:
    """D10, in a child with a time limit: recursion damage would leak into this interpreter."""
    args = [sys.executable, "-c", STOP_FROM_A_JOB, backend] + ([str(tmp_path / "j.log")] if journal else [])
    child = subprocess.run(args, check=False, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    lines = child.stdout.splitlines()
    # The caller is not waited for nor cancelled: stop() returns to it, the other job is cut off after the grace.
    assert lines[0] == "['stop returned'] succeeded pending True True"
    if journal:  # the caller is acknowledged, or it would stop the engine at every start; the cut-off job is back
        assert lines[1] == "['long']"
    assert "Recursion" not in child.stderr, child.stderr
    assert "destroyed" not in child.stderr, child.stderr


STUCK_SYNC_JOB = """
import asyncio, sys, threading
from chronowheel import Engine
from chronowheel.testing import VirtualClock

async def main():
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("one", concurrency=1)
    @engine.task(name="stuck", pool="one", timeout=0.2)
    def stuck():
        threading.Event().wait()
    @engine.task(name="next", pool="one")
    def next_job():
        pass
    async with engine:
        job = engine.schedule_nowait("stuck", delay=0)
        follow = engine.schedule_nowait("next", delay=0.1)
        await clock.advance(5)
        print(job.state, type(job.error).__name__, follow.state, engine.stats()["queued"], flush=True)
asyncio.run(main())
print("asyncio.run returned", flush=True)
"""


def test_a_timed_out_sync_job_does_not_keep_the_process_from_exiting() -> None:
    """D15: its thread is a daemon; meanwhile its pool of one does not start another job."""
    child = subprocess.run(
        [sys.executable, "-c", STUCK_SYNC_JOB], check=False, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines() == ["dead TimeoutError pending 1", "asyncio.run returned"]


@pytest.mark.parametrize("is_async", [True, False], ids=["async-next", "sync-next"])
async def test_a_timed_out_sync_job_keeps_its_slot_until_its_thread_returns(is_async: bool) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("one", concurrency=1)
    release = threading.Event()
    ran: list[str] = []

    @engine.task(name="stuck", pool="one", timeout=1.0)
    def stuck() -> None:
        release.wait(30)
        ran.append("stuck returned")

    def record() -> None:
        ran.append("next")

    async def record_async() -> None:
        record()

    engine.task(name="next", pool="one")(record_async if is_async else record)
    async with engine:
        job = engine.schedule_nowait("stuck", delay=0)
        follow = engine.schedule_nowait("next", delay=0.5)
        await clock.advance(10)
        assert (job.state, type(job.error)) == ("dead", TimeoutError)  # recorded at its timeout...
        assert (follow.state, engine.stats()["queued"], ran) == ("pending", 1, [])  # ...but it holds the slot
        release.set()
        await join_threads(clock, job, follow)
        assert follow.state == "succeeded"
        assert ran == ["stuck returned", "next"]


# -- calls from a sync job's thread ----------------------------------------------------------

THREAD_CALLS: dict[str, Callable[[Engine, Job, Any], object]] = {
    "schedule_nowait": lambda engine, job, handle: engine.schedule_nowait("noop", delay=0),
    "cancel": lambda engine, job, handle: engine.cancel(job),
    "reschedule": lambda engine, job, handle: engine.reschedule(job, delay=5),
    "redrive": lambda engine, job, handle: engine.redrive(job),
    "call_later": lambda engine, job, handle: engine.call_later(0, print),
    "call_at": lambda engine, job, handle: engine.call_at(0, print),
    "handle.cancel": lambda engine, job, handle: handle.cancel(),
    "handle.reschedule": lambda engine, job, handle: handle.reschedule(5),
}


@pytest.mark.parametrize("call", THREAD_CALLS)
async def test_calls_from_a_sync_jobs_thread_name_the_thread_safe_way(call: str) -> None:
    """D16: refused with a RuntimeError naming engine.from_thread; loop.call_soon_threadsafe does the call promptly."""
    clock = VirtualClock()
    engine = Engine(clock=clock)
    loop = asyncio.get_running_loop()
    refused: list[BaseException] = []
    followed = threading.Event()

    @engine.task(name="noop")
    async def noop() -> None:
        followed.set()

    @engine.task(name="sync_job")
    def sync_job() -> None:
        try:
            THREAD_CALLS[call](engine, target, handle)
        except RuntimeError as exc:
            refused.append(exc)
        loop.call_soon_threadsafe(functools.partial(engine.schedule_nowait, "noop", delay=0))
        assert followed.wait(10)  # the loop woke up and ran it while this thread waits

    async with engine:
        target = engine.schedule_nowait("noop", delay=100)
        handle = engine.call_later(100, print)
        job = engine.schedule_nowait("sync_job", delay=0)
        await clock.advance(0)
        late = engine.call_later(50, print)  # the loop's own thread: fine while the job runs
        await join_threads(clock, job)
        assert job.state == "succeeded"
        assert len(refused) == 1
        message = str(refused[0])
        assert call.rsplit(".", maxsplit=1)[-1] in message
        assert "engine.from_thread" in message
        assert target.state == "pending"
        assert len(engine) == 3
        assert late.cancel()
        await settle_threads(engine, clock, job)
        assert not engine._timers.guarded  # no thread runs: the hot calls skip the check again


async def test_calls_from_any_other_thread_are_refused_too() -> None:
    async with Engine(clock=VirtualClock()) as engine:
        engine.task(name="t")(lambda: None)
        errors: list[BaseException] = []

        def other() -> None:
            try:
                engine.schedule_nowait("t", delay=0)
            except RuntimeError as exc:
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()
        assert len(errors) == 1
        assert "engine.from_thread" in str(errors[0])
        assert len(engine) == 0


# -- the engine's own faults ------------------------------------------------------------------


def test_a_fault_of_the_engine_while_starting_a_job_spares_the_driver(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Belt and braces: the job goes to the dead letters and the loop's handler hears of it."""

    async def main() -> None:
        clock = VirtualClock()
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        async with Engine(clock=clock) as engine:
            engine.task(name="t")(lambda: None)

            def broken(job: Job, pool: Any) -> None:
                raise RuntimeError("bug")

            monkeypatch.setattr(engine._driver, "_fire_series", broken)
            series = engine.schedule_nowait("t", every=Every(1))
            fired: list[int] = []
            engine.call_later(2, fired.append, 1)
            one_shot = engine.schedule_nowait("t", delay=2)
            await clock.advance(3)
            assert engine.dead_letters() == [series]
            assert str(series.error) == "bug"
            assert fired == [1]
            assert one_shot.state == "succeeded"
            assert [context["message"] for context in errors] == [
                f"chronowheel: job {series.id} of task 't' could not be started"
            ]

    run(main)


def test_a_fault_of_the_engine_while_recording_a_job_spares_the_worker(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        clock = VirtualClock()
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        engine = Engine(clock=clock)
        engine.add_pool("one", concurrency=1)

        @engine.task(name="fails", pool="one")
        async def fails() -> None:
            raise ValueError("x")

        @engine.task(name="after", pool="one")
        async def after() -> None:
            pass

        def broken(*args: Any) -> None:
            raise RuntimeError("bug")

        monkeypatch.setattr(engine._execution, "failed", broken)
        async with engine:
            engine.schedule_nowait("fails", delay=0)
            later = engine.schedule_nowait("after", delay=1)
            await clock.advance(2)
            assert later.state == "succeeded"
            assert len(errors) == 1
            assert "failed to record job" in errors[0]["message"]

    run(main)


async def test_timeouts_fire_during_the_grace_period() -> None:
    """Timers keep working while stop() waits: a job's timeout ends it, and stop() with it."""
    clock = VirtualClock()
    engine = Engine(clock=clock)

    @engine.task(name="slow", timeout=2.0)
    async def slow() -> None:
        await asyncio.Event().wait()

    await engine.start()
    job = engine.schedule_nowait("slow", delay=0)
    await clock.advance(0)
    stopping = asyncio.create_task(engine.stop(grace=10))
    await clock.advance(1.999)
    assert not stopping.done()
    await clock.advance(0.001)
    assert stopping.done()
    assert (job.state, type(job.error)) == ("dead", TimeoutError)
