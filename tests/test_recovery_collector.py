"""The collector at a journaled start: off while the jobs come back, one collection once they are filed.

``Engine.start`` turns the cyclic collector off for the recovery (it would
walk the new jobs again and again) and collects once at the end, after the
driver's start has hidden the waiting jobs in the native pools' wheels: that
collection walks none of them. A start that fails leaves the collector on,
and one that found it off leaves it off.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from chronowheel import WHEEL, Engine, UnknownTask
from chronowheel.testing import VirtualClock


def engine_on(path: str, tasks: tuple[str, ...] = ("send",)) -> Engine:
    engine = Engine(journal=path, clock=VirtualClock(wall=1_767_225_600.0), fsync="never")
    for name in tasks:
        engine.task(name=name)(lambda *args: None)
    return engine


async def write_jobs(path: str, pending: int, paused: int) -> None:
    engine = engine_on(path)
    await engine.start()
    for number in range(pending + paused):
        job = engine.schedule_nowait("send", args=(number,), delay=60.0 + number, key=f"k{number}")
        if number >= pending:
            assert engine.pause(job)
    await engine.stop()


@contextmanager
def collections_seen(engine: Engine) -> Iterator[list[tuple[int, int]]]:
    """Each full collection while inside: how many of the engine's waiting and paused jobs it found tracked."""
    seen: list[tuple[int, int]] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            jobs = list(engine._registry.jobs.values())
            seen.append(
                (
                    sum(gc.is_tracked(job) for job in jobs if job.state != "paused"),
                    sum(gc.is_tracked(job) for job in jobs if job.state == "paused"),
                )
            )

    gc.callbacks.append(watch)
    try:
        yield seen
    finally:
        gc.callbacks.remove(watch)


@pytest.mark.parametrize(("pending", "paused"), [(0, 0), (50, 0), (40, 10)], ids=["empty", "waiting", "some-paused"])
async def test_the_one_collection_at_start_walks_no_waiting_job(tmp_path: Any, pending: int, paused: int) -> None:
    path = os.path.join(tmp_path, "timers.log")
    await write_jobs(path, pending, paused)
    engine = engine_on(path)
    with collections_seen(engine) as seen:
        await engine.start()
    try:
        assert gc.isenabled()
        assert len(engine._registry.jobs) == pending + paused
        # The native pools' wheels hide their waiting jobs; the pure wheel hides nothing; paused jobs wait in no wheel.
        assert seen == [(0 if WHEEL == "native" else pending, paused)]
    finally:
        await engine.stop()


@pytest.mark.parametrize("collecting", [True, False], ids=["collector-on", "collector-off"])
@pytest.mark.parametrize("outcome", ["started", "unknown-task"])
async def test_start_leaves_the_collector_as_it_found_it(tmp_path: Any, collecting: bool, outcome: str) -> None:
    path = os.path.join(tmp_path, "timers.log")
    await write_jobs(path, 3, 0)
    engine = engine_on(path, ("send",) if outcome == "started" else ("other",))
    if not collecting:
        gc.disable()
    try:
        if outcome == "started":
            await engine.start()
            await engine.stop()
        else:
            with pytest.raises(UnknownTask, match="'send'"):
                await engine.start()
        assert gc.isenabled() is collecting
    finally:
        gc.enable()
