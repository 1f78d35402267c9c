"""Bytes a finished job keeps in memory, with the default ``result_ttl`` and with ``result_ttl=0``.

    python bench/kept_memory.py              # in memory
    python bench/kept_memory.py --journal    # with a journal (fsync="never"), in a temporary directory

50,000 no-op jobs with one int argument run through the default pool; tracemalloc counts what is
still allocated once they all finished (after a full collection; with a journal, once the writer
wrote their records), per job.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import tracemalloc

from chronowheel import Engine


async def run(n: int, ttl: float | None, journal: str | None) -> float:
    if ttl is None:
        engine = Engine(journal=journal, fsync="never")  # fsync only matters with a journal
    else:
        engine = Engine(journal=journal, fsync="never", result_ttl=ttl)
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
        await engine.flush()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return (after - before) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journal", action="store_true", help="journal the jobs (in a temporary directory)")
    journaled = parser.parse_args().journal
    for ttl in (None, 0.0):
        with tempfile.TemporaryDirectory() as directory:
            journal = os.path.join(directory, "timers.log") if journaled else None
            kept = asyncio.run(run(50_000, ttl, journal))
        setting = "3600 (default)" if ttl is None else f"{ttl:g}"
        where = " (journaled)" if journaled else ""
        print(f"result_ttl={setting}{where}: {kept:.0f} B kept per finished job")


if __name__ == "__main__":
    main()
