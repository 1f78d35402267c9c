"""``stop(grace=0)`` while another ``stop()`` waits out its grace period ends that period at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chronowheel import Engine
from chronowheel.testing import VirtualClock
from helpers import virtual_sleep


@pytest.mark.parametrize("store", ["memory", "journal"])
@pytest.mark.parametrize(("second", "cut"), [(0.0, True), (5.0, False)], ids=["grace-0", "grace-5"])
async def test_a_second_stop_with_grace_0_cancels_the_running_jobs_now(
    tmp_path: Path, store: str, second: float, cut: bool
) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock, journal=str(tmp_path / "j.log") if store == "journal" else None)
    finished: list[int] = []

    @engine.task
    async def slow(i: int) -> None:
        await virtual_sleep(engine, 30)
        finished.append(i)

    await engine.start()
    for i in range(2):
        await engine.schedule(slow, args=(i,), delay=0)
    await clock.advance(1)  # both running
    first = asyncio.ensure_future(engine.stop(grace=60))
    await clock.advance(1)
    assert not first.done()
    await engine.stop(grace=second)  # returns at once either way: the first stop carries on
    await clock.settle()
    if cut:
        # The virtual clock stands still: the first stop ends only because its grace was cut short (the
        # journal's close runs on its writer thread, so it is awaited with a real-time guard, not settled).
        await asyncio.wait_for(first, timeout=30)
        assert clock.time() == 2
        assert finished == []
    else:
        assert not first.done()  # any other grace leaves the first stop's period as it was
        await clock.advance(40)
        assert finished == [0, 1]
    await first
