"""Bytes a finished job keeps in memory, with the default ``result_ttl`` and with ``result_ttl=0``.

    python bench/kept_memory.py

50,000 no-op jobs with one int argument run through the default pool; tracemalloc counts what is
still allocated once they all finished (after a full collection), per job.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from chronowheel import Engine


async def run(n: int, ttl: float | None) -> float:
    engine = Engine() if ttl is None else Engine(result_ttl=ttl)
    done = asyncio.Event()
    left = n

    @engine.task
    async def noop(x: int) -> None:
        nonlocal left
        left -= 1
        if left == 0:
            done.set()

    async with engine:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for x in range(n):
            engine.schedule_nowait(noop, args=(x,), delay=0)
        await done.wait()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return (after - before) / n


def main() -> None:
    for ttl in (None, 0.0):
        kept = asyncio.run(run(50_000, ttl))
        print(f"result_ttl={'3600 (default)' if ttl is None else f'{ttl:g}'}: {kept:.0f} B kept per finished job")


if __name__ == "__main__":
    main()
