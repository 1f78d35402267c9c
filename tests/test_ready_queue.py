"""A pool's ready queue (a heap, and a line of idle workers): order, wake-ups, cancelled workers, drain()."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronowheel._job import Job
from chronowheel._pool import Pool


def job(name: str, priority: int = 0, due_tick: int = 0) -> Job:
    return Job(name, None, "t", (), {}, priority, 0.0, due_tick)


async def settle() -> None:
    """Let every ready callback run (workers waking, taking, finishing a job that does not await)."""
    for _ in range(10):
        await asyncio.sleep(0)


def pool_running(concurrency: int, ran: list[str]) -> Pool:
    async def run(job: Job) -> None:
        ran.append(job.id)

    pool = Pool("p", concurrency, None, on_room=lambda: None)
    pool.start(run)
    return pool


JOBS = st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 5)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(jobs=JOBS, concurrency=st.integers(1, 3))
def test_the_workers_take_jobs_by_priority_then_due_tick_then_arrival(
    jobs: list[tuple[int, int]], concurrency: int
) -> None:
    async def main() -> list[str]:
        ran: list[str] = []
        pool = pool_running(concurrency, ran)
        await settle()  # every worker idle, waiting
        for n, (priority, due_tick) in enumerate(jobs):
            pool.put_nowait(job(str(n), priority, due_tick))
        await settle()
        pool.close()
        await asyncio.gather(*pool.workers, return_exceptions=True)
        return ran

    ran = asyncio.run(main())
    expected = sorted(range(len(jobs)), key=lambda n: (-jobs[n][0], jobs[n][1], n))
    assert ran == [str(n) for n in expected]


CANCELLED = [("idle", 0), ("idle", 1), ("woken", 0)]


@pytest.mark.parametrize(
    ("when", "cancelled"),
    CANCELLED,
    ids=["the first idle worker", "the second idle worker", "the worker the put woke, before it ran"],
)
async def test_a_cancelled_worker_leaves_its_job_to_another(when: str, cancelled: int) -> None:
    ran: list[str] = []
    pool = pool_running(2, ran)
    await settle()
    worker = pool.workers[cancelled]
    if when == "idle":
        worker.cancel()
        await settle()
        pool.put_nowait(job("a"))
    else:  # the put wakes the first idle worker; cancelled before it runs, it passes the wake-up on
        pool.put_nowait(job("a"))
        worker.cancel()
    await settle()
    assert ran == ["a"]
    assert worker.cancelled()
    assert pool.queued == 0
    pool.close()
    await asyncio.gather(*pool.workers, return_exceptions=True)


@pytest.mark.parametrize("count", [0, 1, 5], ids=["none", "one", "five"])
async def test_drain_returns_the_queued_jobs_in_the_order_they_would_have_run(count: int) -> None:
    pool = Pool("p", 1, None, on_room=lambda: None)  # not started: nothing takes them
    priorities = itertools.cycle([0, 2, 1])
    jobs = [job(str(n), next(priorities), due_tick=10 - n) for n in range(count)]
    for each in jobs:
        pool.put_nowait(each)
    assert pool.queued == count
    expected = sorted(jobs, key=lambda each: (-each.priority, each._due_tick))
    assert pool.drain() == expected
    assert pool.queued == 0
