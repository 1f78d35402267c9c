"""A small job loop to count instructions under callgrind: the per-job cost of the pool path.

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python bench/callgrind_jobs.py --n 5000
    callgrind_annotate /tmp/cg.out | head -1     # "PROGRAM TOTALS" instructions

Run it twice, with ``--n 0`` as well: the difference over ``n`` is the instructions per job
(schedule_nowait, the driver's hand-out, a worker's attempt and its ack), free of start-up.
With ``--schedule-only`` the jobs are due an hour from now and the engine is left without
stopping it: the difference is ``schedule_nowait`` alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from chronowheel import Engine


async def jobs(n: int) -> None:
    engine = Engine()
    done = asyncio.Event()
    remaining = n

    @engine.task
    async def noop(x: int) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            done.set()

    async with engine:
        for x in range(n):
            engine.schedule_nowait(noop, args=(x,), delay=0)
        if n:
            await done.wait()


async def scheduled(n: int) -> None:
    engine = Engine()

    @engine.task
    async def noop(x: int) -> None:
        """Never due while this runs."""

    await engine.start()
    for x in range(1000):  # warm: the id pool, the specializing interpreter
        engine.schedule_nowait(noop, args=(x,), delay=3600.0)
    for x in range(n):
        engine.schedule_nowait(noop, args=(x,), delay=3600.0 + x % 3600)
    os._exit(0)  # no teardown: the runs differ by the schedules alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="jobs")
    parser.add_argument("--schedule-only", action="store_true", help="only schedule_nowait, jobs due in an hour")
    args = parser.parse_args()
    asyncio.run(scheduled(args.n) if args.schedule_only else jobs(args.n))


if __name__ == "__main__":
    main()
