"""Shared test helpers: event loop runners and a clock that counts its alarms."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from chronowheel import Engine, Job
from chronowheel._journal.store import JournalStore
from chronowheel.testing import VirtualClock

Runner = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


def run_on(backend: str) -> Runner:
    def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if backend == "uvloop":
            import uvloop

            uvloop.run(main())
        else:
            asyncio.run(main())

    return run


class CountingClock(VirtualClock):
    """A virtual clock that counts how often the engine set an alarm on it."""

    def __init__(self) -> None:
        super().__init__()
        self.alarms = 0

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        self.alarms += 1
        return super().call_at(when, callback)


@contextlib.asynccontextmanager
async def stopping(engine: Engine) -> AsyncIterator[Engine]:
    """``async with engine``, but stopped with no grace: a failed assertion inside does not wait on virtual time."""
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop(grace=0)


async def virtual_sleep(engine: Engine, seconds: float) -> None:
    """Sleep on the engine's clock: how a test job takes time without real waiting."""
    done = asyncio.Event()
    engine.call_later(seconds, done.set)
    await done.wait()


def journal_store(engine: Engine) -> JournalStore:
    """A journaled engine's store, for tests that look at its live set or its writer."""
    store = engine._store
    assert isinstance(store, JournalStore)
    return store


async def join_threads(clock: VirtualClock, *jobs: Job) -> None:
    """Wait for the threads of these sync jobs to end, then let the loop take in their outcomes.

    Each thread is joined from a helper thread, so the test waits on the thread itself rather than
    polling in real time; a job's thread hands its outcome to the loop before it ends, so the
    ``settle()`` after the join sees it. It goes round again for a thread started while settling
    (the next attempt, or the next job of the pool).
    """
    names = {f"chronowheel job {job.id}" for job in jobs}
    for _ in range(20):
        alive = [thread for thread in threading.enumerate() if thread.name in names]
        for thread in alive:
            await asyncio.to_thread(thread.join, 10)
            assert not thread.is_alive(), f"{thread.name} did not end"
        await clock.settle()
        if not alive:
            return
    raise AssertionError("the jobs kept starting threads")


async def until(condition: Callable[[], Awaitable[Any] | Any], seconds: float = 15.0) -> Any:
    """Poll ``condition`` (real time: leases and round trips are real) until it is truthy; return its value."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def fill_the_disk(monkeypatch: Any) -> None:
    """From now on, every write of a journal's writer thread fails as on a full disk (ENOSPC); other threads write."""
    real_write = os.write

    def full_disk(fd: int, data: Any) -> int:
        if threading.current_thread().name.startswith("chronowheel journal"):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
