"""The durability journal: durable schedule throughput, recovery time, compaction.

Every figure comes from a fresh child process (so RSS, fsync counts and the
page cache state are its own); journals go to a temporary directory under
``--dir`` (default: the system temp dir; the output names its device and
filesystem, and warns if fsync is free there, as on tmpfs).

0. job path    ``schedule_nowait`` in memory, µs per call, against a bare
               ``loop.call_later`` in the same child: ``--n`` of each made in
               batches of 100k (the wheel and the loop's heap growing), the
               median batch reported, with the cyclic GC on as in a service.
1. throughput  schedules/s and the latency of each awaited ``engine.schedule``
               under ``fsync="always" | "interval" | "never"``, with 1 caller
               and with ``--callers`` concurrent callers (asyncio tasks, each
               looping ``await engine.schedule(...)``), for ``--seconds`` each;
               ``os.fsync`` is wrapped in the child to count calls, so records
               per fsync shows group commit. For reference: the in-memory
               engine (``journal=None``), and ``schedule_nowait`` in a loop
               plus one final ``flush()`` on the durable engine.
2. recovery    a journal of ``--n`` pending jobs is built (``schedule_nowait``
               in a loop + ``flush``), then a fresh child times ``await
               engine.start()`` (read + replay, then refill the wheel) and
               reports its RSS; from the page cache (warm) and after dropping
               the journal's pages with ``posix_fadvise(DONTNEED)`` (cold).
3. compaction  with the ``--n`` jobs live, a compaction is forced (by lowering
               ``JournalStore.compact_factor`` and ``compact_min``) and timed end
               to end, while an engine ``call_later`` chain every millisecond
               measures how late timers fire and one caller keeps awaiting
               durable schedules; then recovery is timed again, from the
               snapshot the compaction wrote.

All jobs are due 1 to 2 hours out: nothing fires during the benchmark.

    python bench/bench_journal.py                        # N = 1M, 3 s per throughput row, stock asyncio
    python bench/bench_journal.py --loop both            # asyncio and uvloop, side by side
    python bench/bench_journal.py --n 100000 --seconds 1 --section throughput
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from typing import Any

POLICIES = ("always", "interval", "never")
LOOPS = ("asyncio", "uvloop")
SECTIONS = ("jobpath", "throughput", "recovery")
BATCH = 100_000  # calls per timed batch in the job path section
TASK = "bench:noop"
PROBE_INTERVAL = 0.001  # seconds between the compaction probe's timers
SETTLE_SECONDS = 0.5  # probe and durable caller running before the baseline window...
BASELINE_SECONDS = 1.0  # ...which ends when the compaction is forced
LOG_NAME = "timers.log"

clock = time.perf_counter


def noop(*args: Any) -> None:
    """The task every benchmark job names; nothing is ever due, so it never runs."""


def delay_for(sequence: int) -> float:
    """1 to 2 hours, spread over the range."""
    return 3600.0 + (sequence * 7919) % 3600


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def disk_read_bytes() -> int:
    """Bytes this process caused to be read from storage (not the page cache)."""
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


def file_size(path: str | None) -> int:
    return os.path.getsize(path) if path is not None and os.path.exists(path) else 0


def percentile(samples: list[float], p: float) -> float:
    """``samples`` sorted; 0 when empty."""
    return samples[min(len(samples) - 1, int(p * len(samples)))] if samples else 0.0


def latency_summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "mean": sum(ordered) / len(ordered) if ordered else 0.0,
        "p50": percentile(ordered, 0.50),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else 0.0,
    }


class FsyncCounter:
    """Replaces ``os.fsync`` in this process: calls and seconds spent, from any thread."""

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self._real = os.fsync
        self._lock = threading.Lock()
        os.fsync = self

    def __call__(self, fd: Any) -> None:
        start = clock()
        try:
            self._real(fd)
        finally:
            took = clock() - start
            with self._lock:
                self.calls += 1
                self.seconds += took

    def read(self) -> tuple[int, float]:
        with self._lock:
            return self.calls, self.seconds


class MethodTimer:
    """Wraps a method of a class to add up the seconds spent in it (any thread)."""

    def __init__(self, cls: type, name: str) -> None:
        self.calls = 0
        self.seconds = 0.0
        original = getattr(cls, name, None)
        if original is None:  # the internals changed: report nothing rather than fail
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return original(*args, **kwargs)
            finally:
                self.calls += 1
                self.seconds += clock() - start

        setattr(cls, name, timed)


def make_engine(path: str | None, policy: str) -> Any:
    from chronowheel import Engine

    engine = Engine() if path is None else Engine(journal=path, fsync=policy)  # type: ignore[arg-type]
    engine.task(TASK)(noop)
    return engine


def run_on(loop: str, coroutine: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    if loop == "uvloop":
        import uvloop

        result: dict[str, Any] = uvloop.run(coroutine)
        return result
    return asyncio.run(coroutine)


# -- children ---------------------------------------------------------------------------


async def child_throughput(policy: str, callers: int, mode: str, seconds: float, directory: str) -> dict[str, Any]:
    fsyncs = FsyncCounter()
    path = None if policy == "memory" else os.path.join(directory, LOG_NAME)
    engine = make_engine(path, policy)
    await engine.start()
    for sequence in range(100):  # warm up: the writer thread running, the file being appended to
        await engine.schedule(noop, args=[-1, sequence], delay=delay_for(sequence))
    await engine.flush()
    size_before = file_size(path)
    calls_before, fsync_seconds_before = fsyncs.read()
    latencies: list[float] = []
    count = 0
    flush_seconds = 0.0
    start = clock()
    deadline = start + seconds
    if mode == "await":

        async def caller(index: int) -> None:
            sequence = 0
            while (begin := clock()) < deadline:
                await engine.schedule(noop, args=[index, sequence], delay=delay_for(sequence + index))
                latencies.append(clock() - begin)
                sequence += 1

        await asyncio.gather(*(caller(index) for index in range(callers)))
        count = len(latencies)
    else:
        while clock() < deadline:
            for _ in range(1024):
                engine.schedule_nowait(noop, args=[0, count], delay=delay_for(count))
                count += 1
            await asyncio.sleep(0)  # a program that keeps its loop responsive
        flushing = clock()
        await engine.flush()
        flush_seconds = clock() - flushing
    elapsed = clock() - start
    calls, fsync_seconds = fsyncs.read()
    size_after = file_size(path)
    stopping = clock()
    await engine.stop()
    return {
        "count": count,
        "seconds": elapsed,
        "latency": latency_summary(latencies),
        "flush_seconds": flush_seconds,
        "fsyncs": calls - calls_before,
        "fsync_seconds": fsync_seconds - fsync_seconds_before,
        "bytes": size_after - size_before,
        "stop_seconds": clock() - stopping,
    }


async def child_jobpath(n: int) -> dict[str, Any]:
    """Median µs per in-memory ``schedule_nowait`` and per ``loop.call_later``, ``n`` of each, in batches."""
    engine = make_engine(None, "memory")
    await engine.start()
    loop = asyncio.get_running_loop()

    def batches(call: Any) -> list[float]:
        times = []
        for done in range(0, n, BATCH):
            size = min(BATCH, n - done)
            start = clock()
            call(done, size)
            times.append((clock() - start) / size)
        return sorted(times)

    def schedule(done: int, size: int) -> None:
        for sequence in range(done, done + size):
            engine.schedule_nowait(noop, args=[sequence], delay=delay_for(sequence))

    handles: list[Any] = []

    def call_later(done: int, size: int) -> None:
        add = handles.append
        for sequence in range(done, done + size):
            add(loop.call_later(delay_for(sequence), noop, sequence))

    jobs = batches(schedule)
    stock = batches(call_later)
    for handle in handles:
        handle.cancel()
    await engine.stop(grace=0)
    return {"schedule_nowait": jobs[len(jobs) // 2], "call_later": stock[len(stock) // 2], "n": n}


async def child_build(n: int, path: str) -> dict[str, Any]:
    fsyncs = FsyncCounter()
    engine = make_engine(path, "always")
    await engine.start()
    gc.collect()
    base = rss_bytes()
    start = clock()
    step = max(1, n // 10)
    for sequence in range(n):
        engine.schedule_nowait(noop, args=[sequence], delay=delay_for(sequence))
        if sequence % 1024 == 1023:
            await asyncio.sleep(0)
        if sequence % step == step - 1:
            print(f"    built {sequence + 1:,} / {n:,} ({clock() - start:.1f} s)", file=sys.stderr, flush=True)
    scheduled = clock() - start
    await engine.flush()
    flushed = clock() - start
    rss = rss_bytes()
    await engine.stop()
    return {
        "schedule_seconds": scheduled,
        "flush_seconds": flushed - scheduled,
        "seconds": flushed,
        "bytes": file_size(path),
        "rss_growth": rss - base,
        "fsyncs": fsyncs.read()[0],
    }


async def child_recover(path: str) -> dict[str, Any]:
    from chronowheel._journal.writer import Journal

    reading = MethodTimer(Journal, "recover")
    engine = make_engine(path, "always")
    gc.collect()
    base = rss_bytes()
    read_before = disk_read_bytes()
    start = clock()
    await engine.start()
    took = clock() - start
    await asyncio.sleep(0.01)  # the finished to_thread future holds the decoded records until the next turn
    gc.collect()
    rss = rss_bytes()
    pending = len(engine)
    read = disk_read_bytes() - read_before
    await engine.stop()
    return {
        "seconds": took,
        "read_seconds": reading.seconds,
        "pending": pending,
        "rss": rss,
        "rss_growth": rss - base,
        "peak_rss": peak_rss_bytes(),
        "disk_read": read,
    }


async def child_compact(path: str) -> dict[str, Any]:
    from chronowheel._journal.store import JournalStore
    from chronowheel._journal.writer import Journal

    fsyncs = FsyncCounter()
    rotating = MethodTimer(Journal, "_do_rotate")
    writing = MethodTimer(Journal, "_do_snapshot")
    sealing = MethodTimer(Journal, "_do_seal")
    engine = make_engine(path, "always")
    start = clock()
    await engine.start()
    recovery = clock() - start
    live = len(engine)

    probes: list[tuple[float, float]] = []  # (fired at, seconds late)
    schedules: list[tuple[float, float]] = []  # (began at, seconds to durable)
    running = True

    def probe(due: float) -> None:
        now = clock()
        probes.append((now, now - due))
        if running:
            engine.call_later(PROBE_INTERVAL, probe, now + PROBE_INTERVAL)

    added: list[Any] = []  # the caller's jobs, cancelled at the end: the journal keeps the same live set

    async def caller() -> None:
        sequence = 0
        while running:
            begin = clock()
            added.append(await engine.schedule(noop, args=[-2, sequence], delay=delay_for(sequence)))
            schedules.append((begin, clock() - begin))
            sequence += 1

    engine.call_later(PROBE_INTERVAL, probe, clock() + PROBE_INTERVAL)
    calling = asyncio.create_task(caller())
    await asyncio.sleep(SETTLE_SECONDS + BASELINE_SECONDS)

    factor, minimum = JournalStore.compact_factor, JournalStore.compact_min
    JournalStore.compact_factor, JournalStore.compact_min = 0.0, 0  # the next record appended starts a compaction
    calls_before = fsyncs.read()[0]
    triggered = clock()
    engine.cancel(engine.schedule_nowait(noop, args=[-3], delay=delay_for(0)))
    await asyncio.sleep(0)  # the turn's hand-over weighs the log (Journal.on_grown): the compaction starts
    store = engine._store
    assert isinstance(store, JournalStore)
    compaction: asyncio.Task[None] | None = store.compaction
    JournalStore.compact_factor, JournalStore.compact_min = factor, minimum
    if compaction is None:
        raise RuntimeError("forcing a compaction did not start one; the trigger (Journal.on_grown) changed?")
    await compaction
    finished = clock()
    compact_fsyncs = fsyncs.read()[0] - calls_before
    await asyncio.sleep(0.2)
    running = False
    await calling
    for job in added:
        engine.cancel(job)
    await engine.stop()

    def window(samples: list[tuple[float, float]], low: float, high: float) -> list[float]:
        return [value for at, value in samples if low <= at < high]

    def gaps(low: float, high: float) -> float:
        times = [at for at, _ in probes if low <= at < high]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    before = (triggered - BASELINE_SECONDS, triggered)
    during = (triggered, finished)
    return {
        "recovery_seconds": recovery,
        "live": live,
        "seconds": finished - triggered,
        "rotate_seconds": rotating.seconds,
        "snapshot_write_seconds": writing.seconds,
        "seal_seconds": sealing.seconds,
        "fsyncs": compact_fsyncs,
        "snapshot_bytes": file_size(path + ".snapshot"),
        "probe": {
            name: {
                "count": len(window(probes, *span)),
                "per_second": len(window(probes, *span)) / (span[1] - span[0]),
                "late": latency_summary(window(probes, *span)),
                "max_gap": gaps(*span),
            }
            for name, span in (("before", before), ("during", during))
        },
        "schedule": {
            name: {"count": len(window(schedules, *span)), "latency": latency_summary(window(schedules, *span))}
            for name, span in (("before", before), ("during", during))
        },
    }


def child(args: argparse.Namespace) -> None:
    coroutine: Coroutine[Any, Any, dict[str, Any]]
    if args.child == "jobpath":
        coroutine = child_jobpath(args.n)
    elif args.child == "throughput":
        coroutine = child_throughput(args.policy, args.callers, args.mode, args.seconds, args.path)
    elif args.child == "build":
        coroutine = child_build(args.n, args.path)
    elif args.child == "recover":
        coroutine = child_recover(args.path)
    else:
        coroutine = child_compact(args.path)
    result = run_on(args.loop, coroutine)
    print(json.dumps(result))


# -- the parent ---------------------------------------------------------------------------

commands: list[str] = []


def run_child(label: str, arguments: list[str]) -> dict[str, Any] | None:
    command = [sys.executable, __file__, *arguments]
    commands.append(shlex.join(["python", os.path.relpath(__file__), *arguments]))
    print(f"  {label} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # stderr: progress, passed on
    if proc.returncode != 0:
        print(f"  {label}: failed (exit {proc.returncode})", file=sys.stderr, flush=True)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def filesystem_of(path: str) -> tuple[str, str, str]:
    """(device, mount point, filesystem type) of the mount holding ``path``."""
    path = os.path.realpath(path)
    best = ("?", "/", "?")
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            device, mount, fstype = line.split()[:3]
            mount = mount.replace("\\040", " ")
            inside = path == mount or path.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[1]):
                best = (device, mount, fstype)
    return best


def drop_cache(directory: str) -> None:
    """Evict the journal's (clean, fsynced) pages from the page cache: the next read comes from the disk."""
    for name in os.listdir(directory):
        fd = os.open(os.path.join(directory, name), os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg()) + " (1, 5, 15 min)"


def journal_files(directory: str) -> str:
    sizes = [
        f"{name} {os.path.getsize(os.path.join(directory, name)) / 1e6:,.1f} MB"
        for name in sorted(os.listdir(directory))
        if not name.endswith(".lock")
    ]
    return ", ".join(sizes)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def mb(size: float) -> str:
    return f"{size / 1e6:,.1f} MB"


def jobpath_section(args: argparse.Namespace, loops: list[str]) -> None:
    results = []
    for loop in loops:
        result = run_child(f"job path, {loop}", ["--child", "jobpath", "--loop", loop, "--n", str(args.n)])
        if result is not None:
            results.append((loop, result))
    print(f"\n0. Job path: schedule_nowait in memory vs a bare loop.call_later, {args.n:,} of each, GC on")
    print(f"   load average {load_average()}; median of the {BATCH:,}-call batches")
    header = f"{'loop':8} {'schedule_nowait µs':>18} {'loop.call_later µs':>18} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for loop, result in results:
        jobs, stock = result["schedule_nowait"], result["call_later"]
        print(f"{loop:8} {jobs * 1e6:>18.2f} {stock * 1e6:>18.2f} {jobs / stock:>5.2f}x")


def throughput_section(args: argparse.Namespace, loops: list[str], root: str) -> None:
    rows: list[tuple[str, str, int, str]] = []  # (loop, policy, callers, mode)
    for loop in loops:
        rows.append((loop, "memory", 1, "await"))
        rows.append((loop, "memory", 1, "nowait"))
        for policy in POLICIES:
            rows.append((loop, policy, 1, "await"))
            rows.append((loop, policy, args.callers, "await"))
        for policy in POLICIES:
            rows.append((loop, policy, 1, "nowait"))
    results: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    print(f"\n1. throughput: {args.seconds:g} s per row ({len(rows)} rows) ...", file=sys.stderr, flush=True)
    for number, row in enumerate(rows, 1):
        loop, policy, callers, mode = row
        directory = os.path.join(root, f"throughput-{loop}-{policy}-{callers}-{mode}")
        label = f"[{number}/{len(rows)}] {loop} {policy} callers={callers} {mode}"
        arguments = ["--child", "throughput", "--loop", loop, "--policy", policy, "--callers", str(callers)]
        arguments += ["--mode", mode, "--seconds", str(args.seconds), "--path", directory]
        result = run_child(label, arguments)
        shutil.rmtree(directory, ignore_errors=True)
        if result is not None:
            results[row] = result

    print(f"\n1. Durable schedule throughput ({args.seconds:g} s per row; jobs due in 1-2 h, nothing fires)")
    print(f"   load average {load_average()}")
    print("   await: each caller loops `await engine.schedule(...)`; latency is per awaited call.")
    print("   nowait: `schedule_nowait` in a loop (yielding every 1024), then one `await engine.flush()`;")
    print("           the rate includes the flush.")
    header = (
        f"{'loop':8} {'engine':16} {'callers':>7} {'mode':>6} {'sched/s':>10} {'mean µs':>9} {'p50 µs':>9}"
        f" {'p99 µs':>9} {'max µs':>9} {'fsyncs':>7} {'rec/fsync':>9} {'µs/fsync':>8} {'B/rec':>6}"
    )
    print(header)
    print("-" * len(header))
    for row, result in results.items():
        loop, policy, callers, mode = row
        per_second = result["count"] / result["seconds"]
        latency = result["latency"]
        engine = "journal=None" if policy == "memory" else f"fsync={policy}"
        if mode == "await":
            stats = f"{us(latency['mean']):>9} {us(latency['p50']):>9} {us(latency['p99']):>9} {us(latency['max']):>9}"
        else:
            stats = f"{'flush ' + ms(result['flush_seconds']) + ' ms':>39}" if policy != "memory" else f"{'':>39}"
        fsyncs = result["fsyncs"]
        if policy == "memory":
            tail = f"{'':>7} {'':>9} {'':>8} {'':>6}"
        else:
            per = f"{result['count'] / fsyncs:,.1f}" if fsyncs else "-"
            each = us(result["fsync_seconds"] / fsyncs) if fsyncs else "-"
            tail = f"{fsyncs:>7,} {per:>9} {each:>8} {result['bytes'] / max(1, result['count']):>6.0f}"
        print(f"{loop:8} {engine:16} {callers:>7} {mode:>6} {per_second:>10,.0f} {stats} {tail}")

    def rate(loop: str, policy: str, callers: int, mode: str) -> float | None:
        result = results.get((loop, policy, callers, mode))
        return result["count"] / result["seconds"] if result else None

    many = args.callers
    for loop in loops:
        print(f"{loop}:")
        always_1, always_many = rate(loop, "always", 1, "await"), rate(loop, "always", many, "await")
        memory, memory_nowait = rate(loop, "memory", 1, "await"), rate(loop, "memory", 1, "nowait")
        if always_1 and always_many:
            result = results[(loop, "always", many, "await")]
            per = result["count"] / max(1, result["fsyncs"])
            print(
                f"  group commit: fsync=always with {many} callers does {always_many / always_1:.1f}x the schedules/s"
                f" of 1 caller, {per:,.1f} records per fsync"
            )
        for policy in POLICIES:
            one, lots = rate(loop, policy, 1, "await"), rate(loop, policy, many, "await")
            nowait = rate(loop, policy, 1, "nowait")
            parts = []
            if memory and one:
                parts.append(f"1 caller {memory / one:.1f}x")
            if memory and lots:
                parts.append(f"{many} callers {memory / lots:.1f}x")
            if memory_nowait and nowait:
                parts.append(f"nowait+flush {memory_nowait / nowait:.1f}x")
            if parts:
                print(f"  in-memory / fsync={policy} (schedules/s; >1: the journal's cost): {', '.join(parts)}")
    if len(loops) == 2:
        print("uvloop / asyncio (schedules/s; >1: uvloop faster):")
        for row in results:
            if row[0] != "asyncio":
                continue
            other = ("uvloop", *row[1:])
            if other in results:
                ratio = (rate(*other) or 0) / (rate(*row) or 1)
                print(f"  {row[1]:>8} callers={row[2]:<5} {row[3]:6}  {ratio:.2f}x")


def decoder() -> str:
    """Which frame walk, record check and replay recovery runs: the native twins, or the Python loops."""
    from chronowheel._journal import native

    return "pure" if native.walk is None else "native"


def recovery_section(args: argparse.Namespace, loops: list[str], root: str) -> None:
    n = args.n
    directory = os.path.join(root, "recovery")
    path = os.path.join(directory, LOG_NAME)
    print(f"\n2. recovery: building a journal of {n:,} jobs ...", file=sys.stderr, flush=True)
    build = run_child("build", ["--child", "build", "--loop", loops[0], "--n", str(n), "--path", path])
    if build is None:
        return
    built_files = journal_files(directory)
    recoveries: list[tuple[str, str, dict[str, Any]]] = []  # (journal state, loop, result)
    compactions: list[tuple[str, dict[str, Any]]] = []

    def recover(state: str) -> None:
        for loop in loops:
            for cache in ("warm", "cold"):
                if cache == "cold":
                    drop_cache(directory)
                label = f"recover from the {state}, {loop}, {cache} page cache"
                result = run_child(label, ["--child", "recover", "--loop", loop, "--path", path])
                if result is not None:
                    recoveries.append((f"{state}, {cache}", loop, result))

    recover("log")
    for loop in loops:
        result = run_child(f"compaction, {loop}", ["--child", "compact", "--loop", loop, "--path", path])
        if result is not None:
            compactions.append((loop, result))
    compacted_files = journal_files(directory)
    if compactions:
        recover("snapshot")

    print(f"\n2. Recovery of N = {n:,} pending durable timers; load average {load_average()}")
    print(
        f"   build (loop {loops[0]}): {n:,} schedule_nowait in {build['schedule_seconds']:.2f} s"
        f" ({n / build['schedule_seconds']:,.0f}/s) + flush {ms(build['flush_seconds'])} ms"
        f" = {n / build['seconds']:,.0f} durable jobs/s; {build['fsyncs']:,} fsyncs;"
        f" RSS growth {build['rss_growth'] / n:,.0f} B/job"
    )
    print(f"   journal after build: {built_files} ({build['bytes'] / n:,.0f} B/job)")
    print(f"   journal after compaction: {compacted_files}")
    print("   start() = read + replay the files (in a thread) + refill the wheel (on the loop); fresh child each.")
    print(f"   decoder: {decoder()} (chronowheel._journal.native; CHRONOWHEEL_NO_EXTENSIONS=1 for the pure one)")
    header = (
        f"{'journal, page cache':22} {'loop':8} {'start() s':>9} {'read s':>7} {'refill s':>8} {'jobs/s':>10}"
        f" {'pending':>10} {'RSS after':>10} {'RSS growth':>10} {'B/job':>6} {'peak RSS':>10} {'disk read':>10}"
    )
    print(header)
    print("-" * len(header))
    for state, loop, result in recoveries:
        refill = result["seconds"] - result["read_seconds"]
        print(
            f"{state:22} {loop:8} {result['seconds']:>9.2f} {result['read_seconds']:>7.2f} {refill:>8.2f}"
            f" {result['pending'] / result['seconds']:>10,.0f} {result['pending']:>10,} {mb(result['rss']):>10}"
            f" {mb(result['rss_growth']):>10} {result['rss_growth'] / max(1, result['pending']):>6,.0f}"
            f" {mb(result['peak_rss']):>10} {mb(result['disk_read']):>10}"
        )

    if not compactions:
        return
    print(f"\n3. Compaction with {n:,} live jobs, fsync=always")
    print("   forced by setting Journal.compact_factor = compact_min = 0 for one append (a schedule + cancel)")
    print(
        f"   while it runs: an engine.call_later chain every {PROBE_INTERVAL * 1e3:g} ms (lateness = fired - due;"
        " the 1 ms tick alone makes up to ~1 ms) and 1 caller awaiting engine.schedule in a loop;"
    )
    print(
        f"   'before' is the {BASELINE_SECONDS:g} s just before the compaction was triggered; the caller's jobs are"
        " cancelled at the end, so the snapshot recovery below has the same live set."
    )
    for loop, result in compactions:
        print(
            f"   {loop}: recovery first {result['recovery_seconds']:.2f} s; compaction end to end"
            f" {result['seconds']:.2f} s (writer thread: rotate {ms(result['rotate_seconds'])} ms, snapshot writes"
            f" {ms(result['snapshot_write_seconds'])} ms, seal = fsync + rename {ms(result['seal_seconds'])} ms);"
            f" snapshot {mb(result['snapshot_bytes'])}; {result['fsyncs']} fsyncs"
        )
    header = (
        f"{'loop':8} {'window':7} {'timers':>7} {'timers/s':>8} {'p50 late ms':>11} {'p99 late ms':>11}"
        f" {'max late ms':>11} {'max gap ms':>10} {'schedules':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for loop, result in compactions:
        for name in ("before", "during"):
            probe, schedule = result["probe"][name], result["schedule"][name]
            late, latency = probe["late"], schedule["latency"]
            print(
                f"{loop:8} {name:7} {probe['count']:>7,} {probe['per_second']:>8,.0f} {ms(late['p50']):>11}"
                f" {ms(late['p99']):>11} {ms(late['max']):>11} {ms(probe['max_gap']):>10} {schedule['count']:>9,}"
                f" {ms(latency['p50']):>7} {ms(latency['p99']):>7} {ms(latency['max']):>8}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="pending jobs for recovery and compaction")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each throughput row")
    parser.add_argument("--callers", type=int, default=1000, help="concurrent callers (besides 1)")
    parser.add_argument("--loop", choices=[*LOOPS, "both"], default="asyncio", help="event loop (default asyncio)")
    parser.add_argument(
        "--section", choices=SECTIONS, action="append", help="run only this part (repeatable; default: all)"
    )
    parser.add_argument("--dir", help="where the temporary journal directory goes (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the journals (the directory is printed)")
    parser.add_argument(
        "--child", choices=["jobpath", "throughput", "build", "recover", "compact"], help=argparse.SUPPRESS
    )
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["await", "nowait"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from chronowheel import WHEEL

    loops = list(LOOPS) if args.loop == "both" else [args.loop]
    sections = args.section or list(SECTIONS)
    root = tempfile.mkdtemp(prefix="bench_journal-", dir=args.dir)
    device, mount, fstype = filesystem_of(root)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    same = os.stat(root).st_dev == os.stat(repo).st_dev
    print(f"command: {shlex.join(['python', os.path.relpath(__file__), *sys.argv[1:]])}")
    print(
        f"python {sys.version.split()[0]}, {WHEEL} wheel, loop {' and '.join(loops)}, {os.cpu_count()} CPUs,"
        f" orjson {__import__('orjson').__version__}"
    )
    print(
        f"journals in {root}: {device} mounted on {mount} ({fstype}),"
        f" {'the same' if same else 'NOT the same'} filesystem as the repository"
    )
    print(f"load average at start: {load_average()}")
    if os.getloadavg()[0] > 0.5:
        print("WARNING: the machine is busy (load average > 0.5): expect noisy figures", flush=True)
    if fstype in ("tmpfs", "ramfs", "overlay"):
        print(f"WARNING: {fstype}: fsync costs little or nothing here; pass --dir on a real disk", flush=True)
    try:
        if "jobpath" in sections:
            jobpath_section(args, loops)
        if "throughput" in sections:
            throughput_section(args, loops, root)
        if "recovery" in sections:
            recovery_section(args, loops, root)
    finally:
        if args.keep:
            print(f"\njournals kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average at the end: {load_average()}")
    print("commands run (each a fresh child process):")
    for command in commands:
        print(f"  {command}")


if __name__ == "__main__":
    main()
