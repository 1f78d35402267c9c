"""chronowheel against asyncio's ``call_later`` (stock and uvloop), side by side.

For each N, every contender runs in a fresh child process (so RSS is its own)
and measures, with N timers resident, delays uniform in 1 s .. 1 h:

* insert      N ``call_later`` calls (chronowheel also: ``TimerWheel.add`` and
              ``TimerWheel.reschedule`` alone, the data structure without a handle)
* cancel      N/2 cancels of random handles
* reschedule  N/2 touches of random handles (chronowheel: ``handle.reschedule``;
              asyncio has no such call, so ``cancel`` + ``call_later``)

The random handles and new delays are gathered into lists before the clock
starts, so the timed loops pay for the timer structures' own memory access,
not for the benchmark's.
* fire        N timers all due, fired through the driver / the loop
* RSS         bytes per resident timer (RSS growth over the insert / N)

The chronowheel child also measures the idle cost: process CPU time used over
five seconds of wall time while the engine holds N timers due in 60 to 120
minutes, as a share of one core.

    python bench/bench_timers.py                 # N = 100k and 1M
    python bench/bench_timers.py --n 100000      # one size
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

IDLE_SECONDS = 5.0
CONTENDERS = ["chronowheel-native", "chronowheel-pure", "asyncio", "uvloop"]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def noop() -> None:
    pass


class Timed:
    """Seconds spent in a block, measured on ``perf_counter``."""

    def __enter__(self) -> Timed:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


async def measure_chronowheel(n: int, delays: list[float], picks: list[int]) -> dict[str, float]:
    from chronowheel import WHEEL, Engine, TimerWheel

    result: dict[str, Any] = {"wheel": WHEEL}
    wheel = TimerWheel()
    ticks = [int(delay * 1000) for delay in delays]
    with Timed() as t:
        wheel_handles = [wheel.add(tick, noop) for tick in ticks]
    result["wheel_add"] = t.seconds
    touches = [(wheel_handles[i], ticks[i] + 60_000) for i in picks]
    with Timed() as t:
        for handle, tick in touches:
            wheel.reschedule(handle, tick)
    result["wheel_reschedule"] = t.seconds
    del wheel, ticks, wheel_handles, touches
    gc.collect()
    async with Engine() as engine:
        base = rss_bytes()
        with Timed() as t:
            handles = [engine.call_later(delay, noop) for delay in delays]
        result["insert"] = t.seconds
        gc.collect()
        result["rss_per_timer"] = (rss_bytes() - base) / n
        picked = [handles[i] for i in picks]
        later = [delays[i] + 60.0 for i in picks]
        with Timed() as t:
            for handle, delay in zip(picked, later, strict=True):
                handle.reschedule(delay)
        result["reschedule"] = t.seconds
        with Timed() as t:
            for handle in picked:
                handle.cancel()
        result["cancel"] = t.seconds

    async with Engine() as engine:
        result["fire"] = await fire_all(n, lambda: engine.call_later)

    async with Engine() as engine:
        for delay in delays:
            engine.call_later(3600.0 + delay / 60.0, noop)  # all due in the hour after next
        await asyncio.sleep(0)
        cpu = time.process_time()
        wall = time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        result["idle_cpu_share"] = (time.process_time() - cpu) / (time.monotonic() - wall)
    return result


async def measure_asyncio(n: int, delays: list[float], picks: list[int]) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    result: dict[str, Any] = {}
    base = rss_bytes()
    with Timed() as t:
        handles = [loop.call_later(delay, noop) for delay in delays]
    result["insert"] = t.seconds
    gc.collect()
    result["rss_per_timer"] = (rss_bytes() - base) / n
    picked = [handles[i] for i in picks]
    later = [delays[i] + 60.0 for i in picks]
    moved = []
    with Timed() as t:
        for handle, delay in zip(picked, later, strict=True):
            handle.cancel()
            moved.append(loop.call_later(delay, noop))
    result["reschedule"] = t.seconds
    with Timed() as t:
        for handle in moved:
            handle.cancel()
    result["cancel"] = t.seconds
    del handles, picked, moved
    result["fire"] = await fire_all(n, lambda: loop.call_later)
    return result


async def fire_all(n: int, call_later: Callable[[], Callable[..., Any]]) -> float:
    """Seconds from the end of scheduling n timers (all overdue by then) to the last firing."""
    schedule = call_later()
    done = asyncio.get_running_loop().create_future()
    remaining = n

    def count() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            done.set_result(time.perf_counter())

    for i in range(n):
        schedule(i * 1e-7, count)
    start = time.perf_counter()
    finished: float = await done
    return finished - start


def child(contender: str, n: int) -> None:
    rng = random.Random(42)
    delays = [rng.uniform(1.0, 3600.0) for _ in range(n)]
    picks = rng.sample(range(n), n // 2)
    if contender.startswith("chronowheel"):
        result = asyncio.run(measure_chronowheel(n, delays, picks))
    elif contender == "uvloop":
        import uvloop

        result = uvloop.run(measure_asyncio(n, delays, picks))
    else:
        result = asyncio.run(measure_asyncio(n, delays, picks))
    print(json.dumps(result))


def run_child(contender: str, n: int) -> dict[str, Any] | None:
    env = dict(os.environ)
    if contender == "chronowheel-pure":
        env["CHRONOWHEEL_NO_EXTENSIONS"] = "1"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", contender, "--n", str(n)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"  {contender}: failed\n{proc.stderr}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if contender == "chronowheel-native" and result.get("wheel") != "native":
        print("  chronowheel-native: the native wheel is not built; skipped", flush=True)
        return None
    return result


def report(n: int, results: dict[str, dict[str, Any]]) -> None:
    half = n // 2
    rows: list[tuple[str, str, Callable[[dict[str, Any]], float]]] = [
        ("insert", "insert ns/op", lambda r: r["insert"] / n * 1e9),
        ("cancel", "cancel ns/op", lambda r: r["cancel"] / half * 1e9),
        ("reschedule", "reschedule ns/op", lambda r: r["reschedule"] / half * 1e9),
        ("fire", "fire ns/timer", lambda r: r["fire"] / n * 1e9),
        ("rss", "RSS bytes/timer", lambda r: r["rss_per_timer"]),
    ]
    names = list(results)
    print(f"\nN = {n:,} resident timers (delays 1 s .. 1 h); lower is better")
    print(f"{'':18}" + "".join(f"{name:>20}" for name in names))
    for _, label, value in rows:
        print(f"{label:18}" + "".join(f"{value(results[name]):>20,.0f}" for name in names))
    for ours in (name for name in names if name.startswith("chronowheel")):
        for theirs in ("asyncio", "uvloop"):
            if theirs not in results:
                continue
            ratios = ", ".join(f"{key} {value(results[theirs]) / value(results[ours]):.2f}x" for key, _, value in rows)
            print(f"ratio {theirs}/{ours}: {ratios}  (>1: {ours} better)")
    for ours in (name for name in names if name.startswith("chronowheel")):
        add = results[ours]["wheel_add"] / n * 1e9
        touch = results[ours]["wheel_reschedule"] / half * 1e9
        print(f"{ours}: the wheel alone (no handle object): add {add:,.0f} ns/op, reschedule {touch:,.0f} ns/op")
        for theirs in ("asyncio", "uvloop"):
            if theirs in results:
                insert = results[theirs]["insert"] / n * 1e9 / add
                moved = results[theirs]["reschedule"] / half * 1e9 / touch
                first = f"{theirs} call_later / wheel.add = {insert:.2f}x"
                print(f"  {first}; cancel+call_later / wheel.reschedule = {moved:.2f}x")
    for ours in (name for name in names if name.startswith("chronowheel")):
        share = results[ours]["idle_cpu_share"]
        print(
            f"idle {ours}: {share * 100:.3f}% of one core over {IDLE_SECONDS:.0f} s holding {n:,} timers due in 1-2 h"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="resident timers (repeatable)")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.n or [100_000, 1_000_000]
    if args.child:
        child(args.child, sizes[0])
        return
    for n in sizes:
        results: dict[str, dict[str, Any]] = {}
        for contender in CONTENDERS:
            print(f"N={n:,}: running {contender} ...", flush=True)
            result = run_child(contender, n)
            if result is not None:
                results[contender] = result
        report(n, results)


if __name__ == "__main__":
    main()
