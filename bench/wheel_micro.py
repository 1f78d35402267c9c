"""The bare wheels, pure and native, side by side: per-operation cost and memory.

With N timers resident (deadlines uniform in 1,000 .. 3,600,000 ticks), each
wheel is measured in a fresh child process (so one cannot warm or fragment the
heap for the other):

* add         N ``add`` calls, handles kept
* reschedule  N/2 moves to a later deadline (+1 .. +60,000 ticks): the lazy path
* cancel      N/2 cancels of other random timers
* advance     the N/2 left fired by ``advance`` in steps of 1,000 ticks
* bytes       per resident timer, traced by ``tracemalloc`` (every allocator
              domain: the native slab is ``PyMem_Raw*``) over N adds with a
              shared payload and the handles dropped; the pure wheel keeps its
              handles as dict keys, so they count for it and not for the
              native one. RSS growth over the same adds is shown alongside.

    PYTHONPATH=src python bench/wheel_micro.py            # N = 1,000,000
    PYTHONPATH=src python bench/wheel_micro.py --n 100000
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from typing import Any

WHEELS = ("pure", "native")
LOW, HIGH = 1_000, 3_600_000
STEP = 1_000


def wheel_class(name: str) -> Any:
    module = "chronowheel._wheel" if name == "pure" else "chronowheel._cwheel"
    return importlib.import_module(module).TimerWheel


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def progress(name: str, message: str) -> None:
    print(f"  [{name}] {message}", file=sys.stderr, flush=True)


def measure_speed(name: str, n: int) -> dict[str, float]:
    """ns per operation for add, lazy reschedule and cancel; timers fired per second."""
    cls = wheel_class(name)
    rng = random.Random(42)
    deadlines = [rng.randint(LOW, HIGH) for _ in range(n)]
    order = rng.sample(range(n), n)
    moved, cancelled = order[: n // 2], order[n // 2 :]
    later = [deadlines[i] + rng.randint(1, 60_000) for i in moved]  # the lazy path
    payload = object()
    wheel = cls()
    handles: list[Any] = [None] * n
    result: dict[str, float] = {}
    gc.collect()

    start = time.perf_counter_ns()
    for i, deadline in enumerate(deadlines):
        handles[i] = wheel.add(deadline, payload)
    result["add"] = (time.perf_counter_ns() - start) / n
    progress(name, f"add        {result['add']:8.1f} ns/op")

    # Arguments lined up in call order beforehand: a random walk over the
    # handles list would time the harness's cache misses, not the wheel's.
    to_move = [handles[i] for i in moved]
    to_cancel = [handles[i] for i in cancelled]
    del handles
    gc.collect()

    start = time.perf_counter_ns()
    for handle, deadline in zip(to_move, later, strict=True):
        wheel.reschedule(handle, deadline)
    result["reschedule"] = (time.perf_counter_ns() - start) / len(moved)
    progress(name, f"reschedule {result['reschedule']:8.1f} ns/op")

    start = time.perf_counter_ns()
    for handle in to_cancel:
        wheel.cancel(handle)
    result["cancel"] = (time.perf_counter_ns() - start) / len(cancelled)
    progress(name, f"cancel     {result['cancel']:8.1f} ns/op")

    left = len(wheel)
    fired = 0
    start = time.perf_counter_ns()
    for now in range(0, HIGH + 60_000 + STEP, STEP):
        fired += len(wheel.advance(now))
    seconds = (time.perf_counter_ns() - start) / 1e9
    if fired != left or len(wheel):
        raise AssertionError(f"{name}: fired {fired} of {left}, {len(wheel)} left")
    result["advance"] = seconds / fired * 1e9
    result["fire_rate"] = fired / seconds
    progress(name, f"advance    {result['advance']:8.1f} ns/timer ({result['fire_rate']:,.0f} fired/s)")
    return result


def measure_memory(name: str, n: int) -> dict[str, float]:
    """Bytes per resident timer: traced by tracemalloc, and RSS growth (separate runs)."""
    cls = wheel_class(name)
    rng = random.Random(42)
    deadlines = [rng.randint(LOW, HIGH) for _ in range(n)]
    payload = object()
    gc.collect()

    base = rss_bytes()
    wheel = cls()
    for deadline in deadlines:
        wheel.add(deadline, payload)
    gc.collect()
    rss = (rss_bytes() - base) / n
    del wheel
    gc.collect()
    progress(name, f"RSS growth {rss:8.1f} bytes/timer")

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    wheel = cls()
    for deadline in deadlines:
        wheel.add(deadline, payload)
    gc.collect()
    traced = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    progress(name, f"traced     {traced:8.1f} bytes/timer")
    return {"traced_bytes": traced, "rss_bytes": rss}


def child(name: str, n: int, what: str) -> None:
    result = measure_speed(name, n) if what == "speed" else measure_memory(name, n)
    print(json.dumps(result))


def run_child(name: str, n: int, what: str) -> dict[str, float] | None:
    print(f"{name}: measuring {what} with N = {n:,} ...", flush=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, "--what", what, "--n", str(n)],
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stdout.write("".join(line + "\n" for line in proc.stderr.splitlines() if line.startswith("  [")))
    if proc.returncode != 0:
        print(f"{name}: failed\n{proc.stderr}", file=sys.stderr)
        return None
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def report(n: int, results: dict[str, dict[str, float]]) -> None:
    rows = [
        ("add", "add ns/op"),
        ("reschedule", "reschedule (later) ns/op"),
        ("cancel", "cancel ns/op"),
        ("advance", "advance ns/timer fired"),
        ("fire_rate", "fired per second"),
        ("traced_bytes", "bytes/timer (tracemalloc)"),
        ("rss_bytes", "bytes/timer (RSS growth)"),
    ]
    print(f"\nN = {n:,} resident timers, deadlines {LOW:,} .. {HIGH:,} ticks")
    print(f"{'':28}{'pure':>14}{'native':>14}{'native/pure':>14}")
    for key, label in rows:
        pure = results.get("pure", {}).get(key)
        native = results.get("native", {}).get(key)
        cells = [f"{value:>14,.1f}" if value is not None else f"{'-':>14}" for value in (pure, native)]
        ratio = f"{native / pure:>14.3f}" if pure and native else f"{'-':>14}"
        print(f"{label:28}{cells[0]}{cells[1]}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--child", choices=WHEELS)
    parser.add_argument("--what", choices=("speed", "memory"), default="speed")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.what)
        return
    results: dict[str, dict[str, float]] = {}
    for name in WHEELS:
        try:
            wheel_class(name)
        except ImportError:
            print(f"{name}: not importable (build it: python setup.py build_ext --inplace); skipped")
            continue
        for what in ("speed", "memory"):
            measured = run_child(name, args.n, what)
            if measured is not None:
                results.setdefault(name, {}).update(measured)
    report(args.n, results)


if __name__ == "__main__":
    main()
