"""N ``schedule_nowait`` calls, for instruction counts under callgrind (wall time is noisy on a shared machine).

Exits right after the last call (no teardown), so two runs, N = 0 and N = 100k,
differ by the calls alone:

    for n in 0 100000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/job_instructions.py memory $n 2>&1 | grep Collected; done

``memory``: an in-memory engine; ``durable``: a journal (``fsync="never"``) in a
temporary directory. ``NOGC=1`` turns the cyclic GC off.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
from typing import Any

from chronowheel import Engine


def noop(*args: Any) -> None:
    """The task every job names; none is due while this runs."""


async def main(kind: str, n: int) -> None:
    path = None if kind == "memory" else os.path.join(tempfile.mkdtemp(), "timers.log")
    engine = Engine() if path is None else Engine(journal=path, fsync="never")
    engine.task("bench:noop")(noop)
    await engine.start()
    for sequence in range(1000):  # warm: the id pool, the writer thread, the specializing interpreter
        engine.schedule_nowait(noop, args=[sequence], delay=3600.0 + sequence)
    await engine.flush()
    for sequence in range(n):
        engine.schedule_nowait(noop, args=[sequence], delay=3600.0 + (sequence * 7919) % 3600)
        if sequence % 1024 == 1023:
            await asyncio.sleep(0)
    await engine.flush()
    os._exit(0)


if __name__ == "__main__":
    if os.environ.get("NOGC"):
        gc.disable()
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
