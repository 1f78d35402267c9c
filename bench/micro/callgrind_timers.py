"""Instruction counts of the volatile-timer hot paths, under ``valgrind --tool=callgrind``.

Wall time on a shared machine is noise; instruction counts are not. Each phase
runs in its own process and does everything the phase before it did, plus its
own ``N`` operations, so the difference of two runs' totals, divided by ``N``,
is the cost of one operation (interpreter start-up and the engine's set-up
cancel out):

    python bench/micro/callgrind_timers.py --n 50000        # runs every phase under callgrind, prints the table

* ``insert``      ``engine.call_later`` on the system clock, delays 1 s .. 1 h
* ``reschedule``  ``handle.reschedule`` to a later deadline, on every handle
* ``cancel``      ``handle.cancel``, on every handle
* ``fire``        ``call_later`` of timers already due, then all fired through the driver (the ``insert``
                  of due timers is subtracted too)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile

PHASES = {"base": None, "insert": "base", "reschedule": "insert", "cancel": "insert", "due": "base", "fire": "due"}


def noop() -> None:
    pass


async def run(phase: str, n: int) -> None:
    from chronowheel import Engine

    rng = random.Random(42)
    delays = [rng.uniform(1.0, 3600.0) for _ in range(n)]
    later = [delay + 60.0 for delay in delays]
    async with Engine() as engine:
        await asyncio.sleep(0)
        if phase in ("insert", "reschedule", "cancel"):
            call_later = engine.call_later
            handles = [call_later(delay, noop) for delay in delays]
            if phase == "reschedule":
                for handle, delay in zip(handles, later, strict=True):
                    handle.reschedule(delay)
            elif phase == "cancel":
                for handle in handles:
                    handle.cancel()
        elif phase in ("due", "fire"):
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            call_later = engine.call_later
            [call_later(0.0, noop) for _ in range(n - 1)]
            call_later(0.0, done.set_result, None)
            if phase == "fire":
                await done
        await engine.stop(grace=0)


def instructions(phase: str, n: int) -> int:
    """Total instructions (Ir) of one phase's process under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__, phase, str(n)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        with open(out) as data:
            match = re.search(r"^summary:\s+(\d+)", data.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no summary line in the callgrind output of phase {phase}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", nargs="?", choices=PHASES, help="run one phase (no callgrind)")
    parser.add_argument("n", nargs="?", type=int)
    parser.add_argument("--n", dest="count", type=int, default=50_000, help="operations per phase")
    args = parser.parse_args()
    if args.phase is not None:
        asyncio.run(run(args.phase, args.n or args.count))
        return
    totals = {phase: instructions(phase, args.count) for phase in PHASES}
    from chronowheel import WHEEL

    print(f"instructions per operation (callgrind, N = {args.count:,}, wheel {WHEEL})")
    for phase, before in PHASES.items():
        if before is not None and phase != "due":
            print(f"  {phase:12} {(totals[phase] - totals[before]) / args.count:10,.0f}")


if __name__ == "__main__":
    main()
