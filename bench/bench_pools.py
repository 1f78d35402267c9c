"""No-op async jobs through one pool, against one ``asyncio.create_task`` per job.

For each concurrency (1, 10, 100), N jobs due at once go through the wheel, the
ready queue and the workers; the time from scheduling the first to finishing
the last gives jobs/s and µs per job. The baseline spawns one task per job, the
way code without a pool would.

    python bench/bench_pools.py            # N = 100k
    python bench/bench_pools.py --n 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time

from chronowheel import WHEEL, Engine


async def through_pool(n: int, concurrency: int) -> float:
    engine = Engine()
    engine.add_pool("bench", concurrency=concurrency)
    finished = asyncio.Event()
    remaining = n

    @engine.task(pool="bench")
    async def noop() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            finished.set()

    async with engine:
        start = time.perf_counter()
        for _ in range(n):
            engine.schedule_nowait(noop, delay=0)
        await finished.wait()
        return time.perf_counter() - start


async def task_per_job(n: int) -> float:
    async def noop() -> None:
        pass

    start = time.perf_counter()
    tasks = [asyncio.create_task(noop()) for _ in range(n)]
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="jobs per run")
    n = parser.parse_args().n
    print(f"{n:,} no-op async jobs, {WHEEL} wheel, stock asyncio", flush=True)
    baseline = asyncio.run(task_per_job(n))
    print(f"{'create_task per job':24}{n / baseline:>12,.0f} jobs/s{baseline / n * 1e6:>10.2f} µs/job", flush=True)
    for concurrency in (1, 10, 100):
        took = asyncio.run(through_pool(n, concurrency))
        ratio = took / baseline
        print(
            f"{f'pool concurrency={concurrency}':24}{n / took:>12,.0f} jobs/s{took / n * 1e6:>10.2f} µs/job"
            f"   {ratio:.2f}x the time of create_task per job",
            flush=True,
        )


if __name__ == "__main__":
    main()
