"""Hooks, middleware, ``current_job()`` and the log records of failed attempts, with a journal and without."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from chronowheel import Engine, Job, Retry, current_job
from chronowheel.testing import VirtualClock
from helpers import join_threads, stopping, virtual_sleep


@pytest.fixture(params=["memory", "journal"])
def make_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], tuple[Engine, VirtualClock]]:
    def make() -> tuple[Engine, VirtualClock]:
        clock = VirtualClock()
        journal = None if request.param == "memory" else str(tmp_path / "timers.log")
        return Engine(clock=clock, journal=journal), clock

    return make


def flaky_until(attempt: int) -> Callable[[], Awaitable[str]]:
    async def flaky() -> str:
        if current_job().attempt < attempt:
            raise ConnectionError(f"attempt {current_job().attempt} refused")
        return "ok"

    return flaky


# (attempts allowed, attempt that succeeds or 0 for never) -> the events, in order
OUTCOMES = {
    "first-time": (1, 1, ["started", "succeeded"]),
    "after-a-retry": (3, 2, ["started", "failed", "started", "succeeded"]),
    "dead": (2, 0, ["started", "failed", "started", "dead"]),
    "dead-at-once": (1, 0, ["started", "dead"]),
}


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_hooks_see_every_event_in_order(
    make_engine: Callable[[], tuple[Engine, VirtualClock]], outcome: str, kind: str
) -> None:
    attempts, succeeds, expected = OUTCOMES[outcome]
    engine, clock = make_engine()
    engine.task(name="flaky", retry=Retry(attempts, backoff=1, jitter=False))(flaky_until(succeeds or 99))
    seen: list[tuple[str, str, int]] = []
    for event in ("started", "succeeded", "failed", "dead", "cancelled"):
        if kind == "sync":
            engine.on(event, lambda job, event=event: seen.append((event, job.id, job.attempt)))  # type: ignore[misc]
        else:

            async def hook(job: Job, event: str = event) -> None:
                seen.append((event, job.id, job.attempt))

            engine.on(event, hook)
    async with stopping(engine):
        job = await engine.schedule("flaky", delay=1)
        await clock.advance(10)
    assert [event for event, *_ in seen] == expected
    assert {job_id for _, job_id, _ in seen} == {job.id}
    assert [attempt for event, _, attempt in seen if event == "started"] == list(range(1, len(expected) // 2 + 1))


@pytest.mark.parametrize("how", ["by-job", "by-key", "replaced"])
async def test_the_cancelled_hook(make_engine: Callable[[], tuple[Engine, VirtualClock]], how: str) -> None:
    engine, _ = make_engine()
    engine.task(name="noop")(flaky_until(1))
    cancelled: list[Job] = []
    engine.on("cancelled", cancelled.append)
    async with stopping(engine):
        job = await engine.schedule("noop", delay=5, key="k")
        if how == "by-job":
            assert engine.cancel(job)
        elif how == "by-key":
            assert engine.cancel("k")
        else:
            await engine.schedule("noop", delay=5, key="k", if_exists="replace")
        assert not engine.cancel(job)  # not pending any more: no second event
    assert cancelled == [job]
    assert job.state == "cancelled"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_failing_hook_is_logged_and_changes_nothing(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.task(name="noop")(flaky_until(1))
    after: list[str] = []

    def broken(job: Job) -> None:
        raise RuntimeError("the hook is broken")

    async def broken_async(job: Job) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("the hook is broken")

    engine.on("succeeded", broken if kind == "sync" else broken_async)
    engine.on("succeeded", lambda job: after.append(job.id))  # the next hook still runs
    async with stopping(engine):
        job = await engine.schedule("noop", delay=0)
        await clock.advance(1)
        assert job.state == "succeeded"
    assert after == [job.id]
    errors = [record for record in caplog.records if "hook" in record.getMessage()]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert errors[0].exc_info is not None
    assert "the hook is broken" in str(errors[0].exc_info[1])
    assert errors[0].job_id == job.id  # type: ignore[attr-defined]
    assert engine.stats()["succeeded"] == 1


@pytest.mark.parametrize(
    ("event", "callback", "error", "message"),
    [
        ("finished", print, ValueError, "event must be one of 'started', 'succeeded', 'failed', 'dead', 'cancelled', "),
        ("Started", print, ValueError, "event must be one of .*got 'Started'$"),
        (None, print, ValueError, "event must be one of .*got None$"),
        ("started", "print", TypeError, "callback must be callable, got str$"),
    ],
    ids=["unknown", "case", "none", "not-callable"],
)
def test_on_names_what_is_wrong(event: Any, callback: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=f"^{message}"):
        Engine().on(event, callback)


@pytest.mark.parametrize("mw", [print, lambda job, call_next: call_next(), "mw"], ids=["builtin", "sync", "str"])
def test_middleware_must_be_async(mw: Any) -> None:
    with pytest.raises(TypeError, match=r"^mw must be an async function, async def mw\(job, call_next\), got "):
        Engine().add_middleware(mw)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_middleware_wraps_every_attempt_in_order(
    make_engine: Callable[[], tuple[Engine, VirtualClock]], kind: str
) -> None:
    engine, clock = make_engine()
    trail: list[str] = []
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")

    def body() -> str:
        trail.append(f"task attempt={current_job().attempt} request={request_id.get()}")
        if current_job().attempt == 1:
            raise ConnectionError("first attempt fails")
        return "value"

    async def async_body() -> str:
        return body()

    engine.task(name="work", retry=Retry(2, backoff=1, jitter=False))(body if kind == "sync" else async_body)

    async def outer(job: Job, call_next: Callable[[], Awaitable[Any]]) -> Any:
        trail.append(f"outer in {job.attempt}")
        token = request_id.set(f"req-{job.id[:4]}")  # a context variable the task sees, its thread too
        try:
            result = await call_next()
        except ConnectionError:
            trail.append("outer saw the failure")
            raise
        finally:
            request_id.reset(token)
        trail.append(f"outer out {result}")
        return result

    async def inner(job: Job, call_next: Callable[[], Awaitable[Any]]) -> Any:
        trail.append("inner in")
        return await call_next()

    engine.add_middleware(outer)
    engine.add_middleware(inner)
    async with stopping(engine):
        job = await engine.schedule("work", delay=0)
        await clock.advance(0)
        await join_threads(clock, job)  # a sync attempt's thread hands its outcome back
        await clock.advance(2)
        await join_threads(clock, job)
    request = f"req-{job.id[:4]}"
    assert trail == [
        "outer in 1",
        "inner in",
        f"task attempt=1 request={request}",
        "outer saw the failure",
        "outer in 2",
        "inner in",
        f"task attempt=2 request={request}",
        "outer out value",
    ]
    assert job.state == "succeeded"


async def test_middleware_can_fail_an_attempt_and_runs_inside_the_timeout() -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock)
    ran: list[int] = []

    @engine.task(name="work", timeout=1.0)
    async def work() -> None:
        ran.append(1)

    async def slow_gate(job: Job, call_next: Callable[[], Awaitable[Any]]) -> Any:
        await virtual_sleep(engine, 5)  # longer than the task's timeout
        return await call_next()

    engine.add_middleware(slow_gate)
    async with stopping(engine):
        job = await engine.schedule("work", delay=0)
        await clock.advance(2)
    assert job.state == "dead"
    assert isinstance(job.error, TimeoutError)
    assert ran == []


async def test_current_job_outside_a_job_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match=r"^current_job: no chronowheel job is running in this context$"):
        current_job()
    clock = VirtualClock()
    engine = Engine(clock=clock)
    seen: list[Job] = []

    @engine.task(name="work")
    async def work() -> None:
        seen.append(current_job())

    async with stopping(engine):
        jobs = [await engine.schedule("work", delay=n) for n in range(3)]
        await clock.advance(5)
        with pytest.raises(LookupError):
            current_job()  # the worker's value does not leak into the test's task
    assert seen == jobs


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_current_job_in_the_task_and_its_hooks(
    make_engine: Callable[[], tuple[Engine, VirtualClock]], kind: str
) -> None:
    engine, clock = make_engine()
    seen: list[tuple[str, str]] = []

    def body(label: str) -> None:
        seen.append((label, current_job().id))

    async def async_body(label: str) -> None:
        body(label)

    engine.task(name="work")(body if kind == "sync" else async_body)
    engine.on("started", lambda job: seen.append(("hook", current_job().id)))
    async with stopping(engine):
        jobs = [await engine.schedule("work", args=(f"job{n}",), delay=0) for n in range(3)]
        await clock.advance(0)
        await join_threads(clock, *jobs)
    assert sorted(seen) == sorted(
        [("hook", job.id) for job in jobs] + [(f"job{n}", job.id) for n, job in enumerate(jobs)]
    )


@pytest.mark.parametrize("key", [None, "invoice:7"])
async def test_a_retry_is_one_info_line_and_a_death_one_error_with_its_traceback(
    key: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chronowheel")
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("mail", concurrency=1)

    @engine.task(name="send", pool="mail", retry=Retry(3, backoff=1, jitter=False))
    async def send() -> None:
        raise ConnectionError("smtp said 421")

    async with stopping(engine):
        job = await engine.schedule("send", delay=0, key=key)
        await clock.advance(10)
    records = [record for record in caplog.records if record.name == "chronowheel"]
    assert [record.levelno for record in records] == [logging.INFO, logging.INFO, logging.ERROR]
    for attempt, record in enumerate(records, start=1):
        fields = {name: getattr(record, name) for name in ("job_id", "task", "key", "attempt", "pool")}
        assert fields == {"job_id": job.id, "task": "send", "key": key, "attempt": attempt, "pool": "mail"}
    retry = records[0]
    assert retry.exc_info is None
    assert retry.getMessage() == (
        f"chronowheel: job {job.id} of task 'send' failed (attempt 1 of 3): ConnectionError: smtp said 421; "
        "retrying in 1.000s"
    )
    death = records[-1]
    assert death.exc_info is not None
    assert isinstance(death.exc_info[1], ConnectionError)
    assert "moved to the dead letters" in death.getMessage()


@pytest.mark.parametrize("event", ["started", "succeeded"])
async def test_a_slow_async_hook_holds_no_worker(event: Literal["started", "succeeded"]) -> None:
    """An async hook runs as a task of its own: a one-worker pool starts its next job on time meanwhile."""
    clock = VirtualClock()
    engine = Engine(clock=clock)
    engine.add_pool("solo", concurrency=1)
    starts: list[float] = []
    hooked: list[float] = []

    @engine.task(name="noop", pool="solo")
    async def noop() -> None:
        starts.append(engine.time())

    async def slow(job: Job) -> None:
        await virtual_sleep(engine, 100)
        hooked.append(engine.time())

    engine.on(event, slow)
    async with stopping(engine):
        for delay in (1, 2, 3):
            await engine.schedule(noop, delay=delay)
        await clock.advance(3)
        assert starts == pytest.approx([1, 2, 3], abs=0.002)
        assert hooked == []
        await clock.advance(100)
        assert hooked == pytest.approx([101, 102, 103], abs=0.002)
