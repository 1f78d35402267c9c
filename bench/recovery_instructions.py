"""``start()`` on a journal of N pending jobs, for instruction counts under callgrind (wall time is noisy here).

Build the journals once (outside callgrind), then count ``start()`` on each;
it exits right after ``start()`` (no teardown), so the difference over N is
the instructions per recovered job (read, frame and CRC, decode, schema,
``Job``, refill):

    .venv/bin/python bench/recovery_instructions.py build /tmp/rec0 0
    .venv/bin/python bench/recovery_instructions.py build /tmp/rec20k 20000

(``build DIR N snapshot`` compacts them into a snapshot: what ``start()`` reads after a compaction.)
    for dir in /tmp/rec0 /tmp/rec20k; do valgrind --tool=callgrind --dump-instr=no \\
        --callgrind-out-file=$dir.cg .venv/bin/python bench/recovery_instructions.py start $dir; done
    callgrind_annotate /tmp/rec20k.cg | head -30

``start`` leaves the journal as it found it (the lock aside), so it can be run again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from typing import Any

from chronowheel import Engine

TASK = "bench:noop"


def noop(*args: Any) -> None:
    """The task every job names; none is due while this runs."""


def engine_on(directory: str) -> Engine:
    engine = Engine(journal=os.path.join(directory, "timers.log"), fsync="never")
    engine.task(TASK)(noop)
    return engine


async def build(directory: str, n: int, snapshot: bool) -> None:
    """A log of ``n`` pending one-shot jobs due in 1 to 2 hours, as ``bench_journal.py`` builds it.

    ``snapshot``: then compacted, so they are in the snapshot and the log holds one more.
    """
    shutil.rmtree(directory, ignore_errors=True)
    engine = engine_on(directory)
    await engine.start()
    for sequence in range(n):
        engine.schedule_nowait(noop, args=[sequence], delay=3600.0 + (sequence * 7919) % 3600)
        if sequence % 1024 == 1023:
            await asyncio.sleep(0)
    if snapshot:
        store: Any = engine._store
        store.compact_factor, store.compact_min = 0.0, 1  # the next hand-over starts a compaction
        engine.schedule_nowait(noop, args=[n], delay=3600.0)
        await asyncio.sleep(0)  # the turn's hand-over weighs the log: the compaction starts
        await store.compaction
    await engine.stop()


async def start(directory: str) -> None:
    await engine_on(directory).start()
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        asyncio.run(build(sys.argv[2], int(sys.argv[3]), sys.argv[4:] == ["snapshot"]))
    else:
        asyncio.run(start(sys.argv[2]))
