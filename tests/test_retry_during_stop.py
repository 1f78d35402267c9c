"""A retry journaled while the engine stops: the job failed in ``stop()``'s grace period.

The engine takes no more work by then, so the retry is not filed in the wheel; a journaled engine keeps it
in the journal instead, and the next start recovers it and runs it at its retry deadline. An in-memory
engine has nowhere to keep it: the job goes to the dead letters, not silently lost.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chronowheel import Engine, Job, Retry
from chronowheel.testing import VirtualClock

BACKOFF = 30.0
TICK = 0.001
WALL = 1_767_225_600.0


class Failing:
    """An engine whose task fails its first attempt during ``stop()``: by raising, or by timing out."""

    def __init__(self, journal: str | None, how: str) -> None:
        self.clock = VirtualClock(wall=WALL)
        self.engine = Engine(journal=journal, clock=self.clock)
        self.how = how
        self.release = asyncio.Event()
        self.attempts: list[float] = []

        @self.engine.task(name="flaky", retry=Retry(3, backoff=BACKOFF, jitter=False), timeout=2.0)
        async def flaky(n: int) -> None:
            self.attempts.append(self.clock.wall())
            if how == "raises":
                await self.release.wait()
                raise RuntimeError(f"attempt {len(self.attempts)} of job {n} failed")
            await asyncio.Event().wait()  # until the timeout cancels it

    async def fail_while_stopping(self) -> tuple[Job, float]:
        """Start the job, stop the engine with grace, fail the job in the grace period; the wall time it failed."""
        await self.engine.start()
        job = await self.engine.schedule("flaky", args=(7,), delay=1, key="k")
        await self.clock.advance(1)
        assert job.state == "running"
        stopping = asyncio.create_task(self.engine.stop(grace=5))
        await self.clock.advance(0)
        assert not stopping.done()  # in its grace period: the job is still running
        if self.how == "raises":
            self.release.set()
            await self.clock.advance(0)
            failed_at = WALL + 1
        else:
            await self.clock.advance(2)  # the job's 2 s timeout fires inside the 5 s grace
            failed_at = WALL + 3
        await stopping  # the job is done: stop returns without waiting out the grace
        assert self.clock.wall() == failed_at
        assert self.attempts == [WALL + 1]
        return job, failed_at


HOW = ["raises", "times-out"]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("downtime", [10.0, 3600.0], ids=["back-before-the-retry", "back-after-it"])
async def test_the_retry_is_recovered_after_a_restart_and_runs(
    tmp_path: Path, how: str, downtime: float, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chronowheel")  # a retry is logged at INFO
    path = str(tmp_path / "timers.log")
    first = Failing(path, how)
    job, failed_at = await first.fail_while_stopping()
    assert job.state == "failed"
    assert job.attempt == 1
    assert first.engine.dead_letters() == []
    assert any("retrying in 30.000s" in record.getMessage() for record in caplog.records)
    retry_at = failed_at + BACKOFF

    clock = VirtualClock(wall=first.clock.wall() + downtime)
    engine = Engine(journal=path, clock=clock)
    ran: list[tuple[int, float]] = []

    @engine.task(name="flaky", retry=Retry(3, backoff=BACKOFF, jitter=False))
    async def flaky(n: int) -> None:
        ran.append((n, clock.wall()))

    async with engine:
        recovered = engine.get("k")
        assert recovered is not None
        assert recovered.id == job.id
        assert recovered.attempt == 1
        assert recovered.deadline.timestamp() == pytest.approx(retry_at, abs=1e-6)
        if clock.wall() < retry_at:  # back before the retry deadline: it runs then, not early
            await clock.advance(retry_at - clock.wall() - 0.01)
            assert ran == []
            await clock.advance(0.01 + TICK)
            assert [n for n, _ in ran] == [7]
            assert ran[0][1] == pytest.approx(retry_at, abs=TICK)
        else:  # overdue: it runs as the engine starts
            await clock.advance(0)
            assert ran == [(7, failed_at + downtime)]
        assert recovered.state == "succeeded"
        assert recovered.attempt == 2
        assert engine.get("k") is None
        assert engine.dead_letters() == []

    # Acknowledged: a third engine on the journal finds nothing to run.
    again = Engine(journal=path, clock=VirtualClock(wall=clock.wall() + 60))
    again.task(name="flaky")(flaky)
    async with again:
        assert again.get("k") is None
        assert len(again) == 0
    assert len(ran) == 1


@pytest.mark.parametrize("how", HOW)
async def test_without_a_journal_the_failed_job_goes_to_the_dead_letters(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="chronowheel")
    failing = Failing(None, how)
    job, _ = await failing.fail_while_stopping()
    assert job.state == "dead"
    assert job.attempt == 1
    assert failing.engine.dead_letters() == [job]
    assert job.error is not None
    assert any("moved to the dead letters" in record.getMessage() for record in caplog.records)
    assert job.deadline == datetime.fromtimestamp(WALL, UTC) + timedelta(seconds=1)
