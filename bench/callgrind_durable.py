"""Durable schedules from many callers, for instruction counts under callgrind (wall time is noisy here).

``durable``: ``--callers`` asyncio tasks loop ``await engine.schedule(...)`` on a
journaled engine (``--fsync``, default ``interval``) until ``--n`` schedules are
acknowledged in all. ``bare``: the ceiling, what asyncio itself costs for the
same shape: as many tasks, each looping ``await`` on a plain future that one
callback per loop turn resolves with the rest of its batch (no engine at all).
Run each with ``--n 0`` too: the difference over ``n`` is the cost per schedule.
``--separate-threads=yes`` splits the loop thread from the journal's writer:

    for n in 0 20000; do valgrind --tool=callgrind --separate-threads=yes \\
        --callgrind-out-file=/tmp/cgd.$n.%p .venv/bin/python bench/callgrind_durable.py durable --n $n; done
    callgrind_annotate /tmp/cgd.20000.<pid>-01 | head -20   # -01: the loop thread, -02: the writer

Exits right after the last acknowledgement (no teardown), so the runs differ
by the schedules alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from typing import Any

from chronowheel import Engine


def noop(*args: Any) -> None:
    """The task every job names; none is due while this runs."""


async def durable(n: int, callers: int, fsync: str) -> None:
    path = os.path.join(tempfile.mkdtemp(), "timers.log")
    engine = Engine(journal=path, fsync=fsync)  # type: ignore[arg-type]
    engine.task("bench:noop")(noop)
    await engine.start()
    for sequence in range(1000):  # warm: the id pool, the writer thread, the specializing interpreter
        await engine.schedule(noop, args=[-1, sequence], delay=3600.0 + sequence)
    left = n

    async def caller(index: int) -> None:
        nonlocal left
        sequence = 0
        while left > 0:
            left -= 1
            await engine.schedule(noop, args=[index, sequence], delay=3600.0 + (sequence * 7919 + index) % 3600)
            sequence += 1

    await asyncio.gather(*(caller(index) for index in range(callers)))
    os._exit(0)


async def bare(n: int, callers: int) -> None:
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[int]] = []
    resolving = False

    def resolve() -> None:
        nonlocal waiting, resolving
        resolving = False
        batch, waiting = waiting, []
        for future in batch:
            future.set_result(0)

    def wait() -> asyncio.Future[int]:
        nonlocal resolving
        future: asyncio.Future[int] = asyncio.Future(loop=loop)
        waiting.append(future)
        if not resolving:
            resolving = True
            loop.call_soon(resolve)
        return future

    left = n

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await wait()

    await asyncio.gather(*(caller() for _ in range(callers)))
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["durable", "bare"])
    parser.add_argument("--n", type=int, default=20_000, help="schedules (or awaits) in all")
    parser.add_argument("--callers", type=int, default=1000, help="concurrent callers")
    parser.add_argument("--fsync", choices=["always", "interval", "never"], default="interval")
    args = parser.parse_args()
    if args.kind == "durable":
        asyncio.run(durable(args.n, args.callers, args.fsync))
    else:
        asyncio.run(bare(args.n, args.callers))


if __name__ == "__main__":
    main()
