"""A small job loop to count instructions under callgrind: the per-job cost of the pool path.

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python bench/callgrind_jobs.py --n 5000
    callgrind_annotate /tmp/cg.out | head -1     # "PROGRAM TOTALS" instructions

Run it twice, with ``--n 0`` as well: the difference over ``n`` is the instructions per job
(schedule_nowait, the driver's hand-out, a worker's attempt and its ack), free of start-up.
"""

from __future__ import annotations

import argparse
import asyncio

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="jobs")
    asyncio.run(jobs(parser.parse_args().n))


if __name__ == "__main__":
    main()
