"""chronowheel's volatile timers against asyncio's ``call_later`` (stock and uvloop), side by side.

For each N, every contender runs in a fresh child process (so RSS is its own)
and measures, with N timers resident, delays uniform in 1 s .. 1 h:

* insert      N ``call_later`` calls (chronowheel also: ``TimerWheel.add`` and
              ``TimerWheel.reschedule`` alone, the data structure without a handle)
* reschedule  touches of random handles (chronowheel: ``handle.reschedule`` to a later deadline;
              asyncio has no such call, so ``cancel`` + ``call_later``)
* cancel      cancels of other random handles, never touched: the same kind of handle for everyone
              (what ``call_later`` returned); asyncio's cost of dropping them from its heap comes later
              (at its next loop iteration) and is not counted here
* gc          one full ``gc.collect()`` with the N timers resident and their handles kept in a list
              (the median of three); the list alone costs the collector one pointer read per handle,
              so the child also times a collection just before the inserts, with the list of N delays
              alive, the floor any caller's list of N objects costs (``gc floor``): the difference is
              the contender's own share; again with the handles kept as a service keeps them, each
              by its key in a dict (``gc, by key``: a dict holding only objects the collector does not
              track is not tracked itself, so that figure is what the timers and handles cost, with
              no list to walk); and again once the handles are dropped (the cancelled ones gone): the
              timers' own cost
* fire        min(N, 1M) timers all due, fired on a clean loop (and a fresh engine): through the
              driver for chronowheel, by the loop for asyncio
* RSS         bytes per resident timer (RSS growth over the insert / N), the kept handle included

The touches and cancels are ``min(N / 2, 500k)`` each, the random handles and
new delays gathered into lists before the clock starts, so the timed loops pay
for the timer structures' own memory access, not for the benchmark's. The
chronowheel child also measures the idle cost: process CPU time over five
seconds of wall time while an engine holds min(N, 1M) timers due in 1 to 2 h.

The spread section (``--spread``, 1M by default) files that many timers due
uniformly within one second on the real clock, each due time fixed in advance
(filed with the collector paused, then one full collection, before the window),
and reports the drain time (from the first due time to the last firing) and
the lateness of each firing (p50, p99, max). "filed early by" is how long
before the window the last timer was filed: negative means filing overran
into the window (a loaded machine), and the figures are not worth much.

    python bench/bench_timers.py                     # N = 100k and 1M, then the spread of 1M
    python bench/bench_timers.py --n 10000000        # one size (a few minutes)
    python bench/bench_timers.py --n 100000 --spread 0 --only chronowheel-native

:func:`run` runs one contender at one N in a child process and returns its
figures; :func:`measure` and :func:`spread` are what the child runs. None of
them prints: :func:`main` does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["CONTENDERS", "measure", "run", "spread"]

IDLE_SECONDS = 5.0
MAX_TOUCHES = 500_000
MAX_FIRE = 1_000_000
CONTENDERS = ["chronowheel-native", "chronowheel-pure", "asyncio", "uvloop"]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def noop() -> None:
    pass


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


class Timed:
    """Seconds spent in a block, measured on ``perf_counter``."""

    def __enter__(self) -> Timed:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def gc_pause() -> float:
    """The median of three full collections, in seconds."""
    pauses = []
    for _ in range(3):
        with Timed() as t:
            gc.collect()
        pauses.append(t.seconds)
    return statistics.median(pauses)


def gc_keyed(handles: list[Any]) -> tuple[float, list[Any]]:
    """``gc_pause()`` with the handles kept as a service keeps them, each by its key in a dict; the list back.

    The handles leave the caller's list for the dict and come back in the same order.
    """
    keyed = dict(enumerate(handles))
    handles.clear()
    pause = gc_pause()
    handles.extend(keyed.values())
    return pause, handles


def workload(n: int) -> tuple[list[float], array[int], array[int]]:
    """N delays, and two disjoint random samples of indices: the touched and the cancelled.

    The samples are arrays, which the collector does not walk: the ``gc`` figures see the
    contender's timers and the caller's list of handles, not the benchmark's inputs.
    """
    rng = random.Random(42)
    delays = [rng.uniform(1.0, 3600.0) for _ in range(n)]
    picks = rng.sample(range(n), 2 * min(n // 2, MAX_TOUCHES))
    half = len(picks) // 2
    return delays, array("q", picks[:half]), array("q", picks[half:])


def run_loop(contender: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``main()`` on a fresh event loop of the contender's kind (uvloop for uvloop, asyncio otherwise)."""
    if contender == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


async def resident_chronowheel(n: int, result: dict[str, Any]) -> None:
    from chronowheel import WHEEL, Engine, TimerWheel

    result["wheel"] = WHEEL
    delays, touched, cancelled = workload(n)
    wheel = TimerWheel()
    ticks = [int(delay * 1000) for delay in delays]
    with Timed() as t:
        wheel_handles = [wheel.add(tick, noop) for tick in ticks]
    result["wheel_add"] = t.seconds / n
    touches = [(wheel_handles[i], ticks[i] + 60_000) for i in touched]
    with Timed() as t:
        for wheel_handle, tick in touches:
            wheel.reschedule(wheel_handle, tick)
    result["wheel_reschedule"] = t.seconds / len(touches)
    del wheel, ticks, wheel_handles, touches
    gc.collect()
    async with Engine() as engine:
        await asyncio.sleep(0)  # the driver runs
        moved_to = array("d", (delays[i] + 60.0 for i in touched))
        result["gc_floor"] = gc_pause()  # the list of N delays: what any caller's list of N objects costs
        base = rss_bytes()
        call_later = engine.call_later
        with Timed() as t:
            handles = [call_later(delay, noop) for delay in delays]
        result["insert"] = t.seconds / n
        gc.collect()
        result["rss_per_timer"] = (rss_bytes() - base) / n
        del delays  # the collection below walks what a caller keeps: its handles, not the bench's inputs
        result["gc"] = gc_pause()
        result["gc_keyed"], handles = gc_keyed(handles)
        later = list(moved_to)  # the timed loop below reads ready-made floats
        moved = [handles[i] for i in touched]
        with Timed() as t:
            for handle, delay in zip(moved, later, strict=True):
                handle.reschedule(delay)
        result["reschedule"] = t.seconds / len(moved)
        dropped = [handles[i] for i in cancelled]
        with Timed() as t:
            for handle in dropped:
                handle.cancel()
        result["cancel"] = t.seconds / len(dropped)
        del handles, moved, dropped, later, touched, cancelled
        result["gc_unkept"] = gc_pause()
        await engine.stop(grace=0)


async def fire_chronowheel(n: int) -> float:
    from chronowheel import Engine

    async with Engine() as engine:
        return await fire_all(n, engine.call_later) / n


async def idle_chronowheel(n: int) -> float:
    from chronowheel import Engine

    async with Engine() as engine:
        for i in range(n):
            engine.call_later(3600.0 + i / n * 3600.0, noop)  # all due in the hour after next
        await asyncio.sleep(0)
        cpu = time.process_time()
        wall = time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        return (time.process_time() - cpu) / (time.monotonic() - wall)


async def resident_asyncio(n: int, result: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    delays, touched, cancelled = workload(n)
    moved_to = array("d", (delays[i] + 60.0 for i in touched))
    result["gc_floor"] = gc_pause()  # the list of N delays: what any caller's list of N objects costs
    base = rss_bytes()
    call_later = loop.call_later
    with Timed() as t:
        handles = [call_later(delay, noop) for delay in delays]
    result["insert"] = t.seconds / n
    gc.collect()
    result["rss_per_timer"] = (rss_bytes() - base) / n
    del delays  # the collection below walks what a caller keeps: its handles, not the bench's inputs
    result["gc"] = gc_pause()
    result["gc_keyed"], handles = gc_keyed(handles)
    later = list(moved_to)  # the timed loop below reads ready-made floats
    picked = [handles[i] for i in touched]
    moved = []
    with Timed() as t:
        for handle, delay in zip(picked, later, strict=True):
            handle.cancel()
            moved.append(call_later(delay, noop))
    result["reschedule"] = t.seconds / len(picked)
    dropped = [handles[i] for i in cancelled]
    with Timed() as t:
        for handle in dropped:
            handle.cancel()
    result["cancel"] = t.seconds / len(dropped)
    del picked, dropped, later, touched, cancelled
    handles.clear()  # the loop's heap keeps them, and the moved ones
    moved.clear()
    result["gc_unkept"] = gc_pause()


async def fire_asyncio(n: int) -> float:
    return await fire_all(n, asyncio.get_running_loop().call_later) / n


async def fire_all(n: int, call_later: Callable[..., Any]) -> float:
    """Seconds from the end of scheduling n timers (all overdue by then) to the last firing."""
    done = asyncio.get_running_loop().create_future()
    remaining = n

    def count() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            done.set_result(None)

    for i in range(n):
        call_later(i * 1e-7, count)
    start = time.perf_counter()
    await done
    return time.perf_counter() - start


def measure(contender: str, n: int) -> dict[str, Any]:
    """One contender's figures at N resident timers, in this process: seconds per operation, bytes, shares.

    Keys: ``insert``, ``reschedule``, ``cancel``, ``fire`` (seconds per timer),
    ``gc`` (seconds), ``rss_per_timer`` (bytes); chronowheel adds ``wheel``,
    ``wheel_add``, ``wheel_reschedule`` and ``idle_cpu_share``.
    """
    result: dict[str, Any] = {"n": n}
    fired = min(n, MAX_FIRE)
    if contender.startswith("chronowheel"):
        run_loop(contender, lambda: resident_chronowheel(n, result))
        gc.collect()
        result["fire"] = run_loop(contender, lambda: fire_chronowheel(fired))
        result["idle_cpu_share"] = run_loop(contender, lambda: idle_chronowheel(fired))
    else:
        run_loop(contender, lambda: resident_asyncio(n, result))
        gc.collect()
        result["fire"] = run_loop(contender, lambda: fire_asyncio(fired))
    return result


async def spread_async(contender: str, n: int) -> dict[str, Any]:
    """N timers due uniformly within one second, each at a due time fixed before the first is filed."""
    monotonic = time.monotonic
    lateness: list[float] = []
    last = [0.0]
    record = lateness.append
    drained = asyncio.Event()

    def fired(due: float) -> None:
        now = monotonic()
        record(now - due)
        last[0] = now
        if len(lateness) == n:
            drained.set()

    rng = random.Random(7)
    offsets = sorted(rng.random() for _ in range(n))
    engine: Any = None
    if contender.startswith("chronowheel"):
        from chronowheel import Engine

        engine = Engine()
        await engine.start()
        call_later: Callable[..., Any] = engine.call_later
    else:
        call_later = asyncio.get_running_loop().call_later
    # Filing is set-up, not measured: with the collector paused (it would walk every pending callback's
    # arguments tuple again and again), its time estimated from the first 1% in the same shape, so that
    # every timer is filed, and one full collection done, before the window opens.
    gc.disable()
    probe = max(1, n // 100)
    start = monotonic()
    far = [call_later(max(0.0, 3600.0 - monotonic()), fired, 0.0) for _ in range(probe)]
    margin = 2.0 + 4 * (monotonic() - start) * n / probe
    for handle in far:
        handle.cancel()
    first = monotonic() + margin
    for offset in offsets:
        due = first + offset
        call_later(max(0.0, due - monotonic()), fired, due)  # filed late (a loaded machine): late from the start
    gc.enable()
    gc.collect()
    filed = monotonic()
    await drained.wait()
    if engine is not None:
        await engine.stop(grace=0)
    lateness.sort()
    return {
        "n": n,
        "filed_early_by": first - filed,
        "drain": last[0] - first,
        "p50": lateness[n // 2],
        "p99": lateness[min(n - 1, n * 99 // 100)],
        "max": lateness[-1],
    }


def spread(contender: str, n: int) -> dict[str, Any]:
    """The spread section for one contender, in this process: drain seconds and lateness percentiles."""
    result: dict[str, Any] = run_loop(contender, lambda: spread_async(contender, n))
    return result


def run(contender: str, n: int, section: str = "timers") -> dict[str, Any]:
    """:func:`measure` (``section="timers"``) or :func:`spread` of one contender in a fresh child process.

    Raises ``RuntimeError`` with the child's stderr if it fails, and if the
    native contender runs without the native wheel built.
    """
    env = dict(os.environ)
    if contender == "chronowheel-pure":
        env["CHRONOWHEEL_NO_EXTENSIONS"] = "1"
    argv = [sys.executable, __file__, "--child", contender, "--section", section, "--n", str(n)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{contender} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if contender == "chronowheel-native" and section == "timers" and result.get("wheel") != "native":
        raise RuntimeError("chronowheel-native: the native wheel is not built")
    return result


ROWS: list[tuple[str, str, Callable[[dict[str, Any]], float]]] = [
    ("insert", "insert ns/op", lambda r: r["insert"] * 1e9),
    ("cancel", "cancel ns/op", lambda r: r["cancel"] * 1e9),
    ("reschedule", "reschedule ns/op", lambda r: r["reschedule"] * 1e9),
    ("fire", "fire ns/timer", lambda r: r["fire"] * 1e9),
    ("rss", "RSS bytes/timer", lambda r: r["rss_per_timer"]),
    ("gc", "gc.collect ms", lambda r: r["gc"] * 1e3),
    ("gc_keyed", "gc, by key ms", lambda r: r["gc_keyed"] * 1e3),
    ("gc_unkept", "gc, none kept ms", lambda r: r["gc_unkept"] * 1e3),
]
# Not in the ratio lines: a share near zero makes a ratio of noise.
FLOOR_ROWS: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
    ("gc floor ms", lambda r: r["gc_floor"] * 1e3),
    ("gc over floor ms", lambda r: (r["gc"] - r["gc_floor"]) * 1e3),
]


def report(n: int, results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    print(f"\nN = {n:,} resident timers (delays 1 s .. 1 h); lower is better; {load()}")
    print(f"{'':18}" + "".join(f"{name:>20}" for name in names))
    for _, label, value in ROWS:
        print(f"{label:18}" + "".join(f"{value(results[name]):>20,.1f}" for name in names))
    for label, value in FLOOR_ROWS:
        print(f"{label:18}" + "".join(f"{value(results[name]):>20,.1f}" for name in names))
    for ours in (name for name in names if name.startswith("chronowheel")):
        for theirs in ("asyncio", "uvloop"):
            if theirs not in results:
                continue
            ratios = ", ".join(f"{key} {value(results[theirs]) / value(results[ours]):.2f}x" for key, _, value in ROWS)
            print(f"ratio {theirs}/{ours}: {ratios}  (>1: {ours} better)")
        if "asyncio" in results:
            ours_ = results[ours]
            touch = results["asyncio"]["reschedule"] / ours_["reschedule"]
            rate = 1 / ours_["fire"] / 1e6
            print(f"{ours}: reschedule vs asyncio cancel + call_later {touch:.1f}x; fires {rate:.2f}M callbacks/s")
    for ours in (name for name in names if name.startswith("chronowheel")):
        add = results[ours]["wheel_add"] * 1e9
        touch = results[ours]["wheel_reschedule"] * 1e9
        print(f"{ours}: the wheel alone (no handle object): add {add:,.0f} ns/op, reschedule {touch:,.0f} ns/op")
        for theirs in ("asyncio", "uvloop"):
            if theirs in results:
                insert = results[theirs]["insert"] * 1e9 / add
                moved = results[theirs]["reschedule"] * 1e9 / touch
                first = f"{theirs} call_later / wheel.add = {insert:.2f}x"
                print(f"  {first}; cancel+call_later / wheel.reschedule = {moved:.2f}x")
    for ours in (name for name in names if name.startswith("chronowheel")):
        share = results[ours]["idle_cpu_share"]
        held = min(n, MAX_FIRE)
        over = f"{IDLE_SECONDS:.0f} s holding {held:,} timers due in 1-2 h"
        print(f"idle {ours}: {share * 100:.3f}% of one core over {over}")


def report_spread(n: int, results: dict[str, dict[str, Any]]) -> None:
    print(f"\nspread: {n:,} timers due uniformly within 1 s on the real clock; {load()}")
    print(f"{'':18}" + "".join(f"{name:>20}" for name in results))
    rows = [("filed_early_by", "filed early by s"), ("drain", "drain s")]
    rows += [("p50", "p50 late ms"), ("p99", "p99 late ms"), ("max", "max late ms")]
    for key, label in rows:
        scale = 1e3 if key in ("p50", "p99", "max") else 1.0
        print(f"{label:18}" + "".join(f"{results[name][key] * scale:>20,.3f}" for name in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="resident timers (repeatable)")
    parser.add_argument("--spread", type=int, default=1_000_000, help="timers in the spread section (0: skip it)")
    parser.add_argument("--only", choices=CONTENDERS, action="append", help="run only these contenders")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--section", choices=["timers", "spread"], default="timers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.n or [100_000, 1_000_000]
    if args.child:
        figures = measure(args.child, sizes[0]) if args.section == "timers" else spread(args.child, sizes[0])
        print(json.dumps(figures))
        return
    contenders = args.only or CONTENDERS
    print(load(), flush=True)
    for n in sizes:
        results: dict[str, dict[str, Any]] = {}
        for contender in contenders:
            print(f"N={n:,}: running {contender} ...", flush=True)
            try:
                results[contender] = run(contender, n)
            except RuntimeError as exc:
                print(f"  {exc}", file=sys.stderr)
        report(n, results)
    if args.spread:
        spreads: dict[str, dict[str, Any]] = {}
        for contender in contenders:
            print(f"spread {args.spread:,}: running {contender} ...", flush=True)
            try:
                spreads[contender] = run(contender, args.spread, "spread")
            except RuntimeError as exc:
                print(f"  {exc}", file=sys.stderr)
        report_spread(args.spread, spreads)


if __name__ == "__main__":
    main()
