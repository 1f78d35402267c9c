"""Cluster mode on PostgreSQL: fires/s with 1, 2, 4 engines, takeover after SIGKILL, the claim's lateness.

    .venv/bin/python bench/bench_cluster.py [--jobs N] [--engines 1 2 4] [--lease S] [--dsn DSN]

Without ``--dsn`` it starts a private server (Unix socket, fsync off: the store's CPU, not the disk's
latency, is what the throughput rows measure) and stops it at the end. Each engine is a process of its
own. Rows:

* store-bound: trivial tasks; fires/s from the first due time to the last acknowledgement, and CPU
  seconds per 1,000 fires of the database (every postgres process) and of the engines (their children's
  rusage). On a 2-core machine this is flat by construction: the database is the ceiling.
* distribution-bound: tasks that await 50 ms, pool concurrency 50 (about 1,000 fires/s per engine).
* takeover: two engines, one killed with SIGKILL; seconds until the survivor owns every shard.
* lateness: the engine's own firing lateness p50/p99 at a light load (500 jobs/s): the claim's share.
* the claim's share of lateness: one engine process schedules and runs the same jobs at the same rate
  (500 jobs/s), once with a journal (no claim: a due job goes straight to its pool) and once in cluster mode
  (a due job starts only after its claim's commit); the difference of the lateness percentiles is the claim's.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import asyncpg

from chronowheel import Cluster, Engine

SHARDS = 256  # the Cluster default; with 64, rendezvous hashing splits them unevenly over 4 engines (3.04x, not 3.76x)


def start_server() -> tuple[str, str, list[str]]:
    bin_dir = os.path.dirname(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1])
    root = tempfile.mkdtemp(prefix="chronowheel-bench-pg-")
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(root, "data")
    initdb = [os.path.join(bin_dir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]
    subprocess.run([*prefix, *initdb], check=True, capture_output=True)
    options = f"-c listen_addresses='' -k {root} -c fsync=off -c synchronous_commit=off -c max_connections=200"
    start = [os.path.join(bin_dir, "pg_ctl"), "-D", data, "-l", os.path.join(root, "log"), "-w", "-o", options]
    subprocess.run([*prefix, *start, "start"], check=True, capture_output=True)
    return f"postgresql://postgres@/postgres?host={root}", root, [*prefix, os.path.join(bin_dir, "pg_ctl"), "-D", data]


def postgres_cpu() -> float:
    """CPU seconds (user + system) of every postgres process on the machine."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)
            if "(postgres" not in fields[0]:
                continue
            parts = fields[1].split()
            total += int(parts[11]) + int(parts[12])
        except (OSError, IndexError):
            continue
    return total / tick


async def child(dsn: str, lease: float, sleep: float, concurrency: int) -> None:
    """An engine process: runs ``work`` jobs until SIGTERM, then prints its stats as JSON."""
    engine = Engine(cluster=Cluster(dsn, shards=SHARDS, lease=lease))
    engine.add_pool("work", concurrency=concurrency)

    @engine.task(name="work", pool="work")
    async def work() -> None:
        if sleep:
            await asyncio.sleep(sleep)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with engine:
        print("ready", flush=True)
        await stop.wait()
        stats = engine.stats()
    print(json.dumps({"lateness": stats["lateness"], "cluster": stats["cluster"]}), flush=True)


async def spawn(dsn: str, lease: float, sleep: float = 0.0, concurrency: int = 10) -> asyncio.subprocess.Process:
    argv = [sys.executable, __file__, "--child", dsn, str(lease), str(sleep), str(concurrency)]
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    await process.stdout.readline()
    return process


async def fresh(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await conn.execute(  # every table of the store, whatever its schema version made
        "DO $$ DECLARE t text; BEGIN FOR t IN SELECT tablename FROM pg_tables"
        " WHERE schemaname = current_schema() AND tablename LIKE 'cw\\_%' LOOP"
        " EXECUTE format('DROP TABLE %I CASCADE', t); END LOOP; END $$"
    )
    return conn


async def run_load(
    dsn: str, engines: int, jobs: int, spread: float, sleep: float, concurrency: int
) -> dict[str, float]:
    conn = await fresh(dsn)
    producer = Engine(cluster=Cluster(dsn, shards=SHARDS, lease=10.0, role="client"))
    producer.task(name="work")(lambda: None)
    children = []
    async with producer:
        children = [await spawn(dsn, 10.0, sleep, concurrency) for _ in range(engines)]
        await asyncio.sleep(4.0)  # the joiners take their rendezvous shares (a lease round of 2.5 s)
        first = 2.0 + jobs / 50_000  # the inserts go in before the first job is due
        base = time.time()
        for n in range(jobs):
            producer.schedule_nowait("work", delay=first + spread * n / jobs)
        await producer.flush()
        cpu0, rusage0 = postgres_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
        while await conn.fetchval("SELECT count(*) FROM cw_job") > 0:  # noqa: ASYNC110  polls the database
            await asyncio.sleep(0.05)
        done = time.time()
        db_cpu = postgres_cpu() - cpu0
    lateness = []
    for process in children:
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        out = await process.stdout.read()
        await process.wait()
        lateness.append(json.loads(out.decode().strip().splitlines()[-1])["lateness"]["p99"])
    rusage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (rusage1.ru_utime + rusage1.ru_stime) - (rusage0.ru_utime + rusage0.ru_stime)
    await conn.close()
    drain = done - (base + first)
    return {
        "fires_per_s": jobs / drain,
        "db_cpu_ms_per_1k": 1e6 * db_cpu / jobs,
        "client_cpu_ms_per_1k": 1e6 * client_cpu / jobs,
        "lateness_p99_ms": 1e3 * max(lateness),
        "drain_s": drain,
    }


async def paced(where: str, jobs: int, spread: float) -> None:
    """An engine process that schedules ``jobs`` due evenly over ``spread`` seconds, runs them, prints lateness.

    ``where`` is a journal path (``journal:PATH``) or a DSN: the same engine and jobs with and without the claim.
    """
    journal = where.removeprefix("journal:") if where.startswith("journal:") else None
    engine = Engine(journal=journal) if journal else Engine(cluster=Cluster(where, shards=SHARDS, lease=10.0))
    done = asyncio.Event()
    count = 0

    @engine.task(name="work")
    def work() -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    async with engine:
        for n in range(jobs):  # written in one batch, long before the first is due
            engine.schedule_nowait("work", delay=2.0 + spread * n / jobs)
        await engine.flush()
        await done.wait()
        lateness = engine.stats()["lateness"]
    print(json.dumps(lateness), flush=True)


async def claim_share(dsn: str, jobs: int, spread: float) -> dict[str, dict[str, float]]:
    """Lateness p50/p99 (ms) of one engine at ``jobs / spread`` jobs/s: with a journal, then in cluster mode."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, where in (("journal", f"journal:{tmp}/j"), ("cluster", dsn)):
            if mode == "cluster":
                await (await fresh(dsn)).close()
            argv = [sys.executable, __file__, "--paced", where, str(jobs), str(spread)]
            process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
            stdout, _ = await process.communicate()
            lateness = json.loads(stdout.decode().strip().splitlines()[-1])
            out[mode] = {p: 1e3 * lateness[p] for p in ("p50", "p99")}
    return out


async def claim_rows(dsn: str) -> None:
    share = await claim_share(dsn, 2500, 5.0)
    journal, cluster = share["journal"], share["cluster"]
    print(
        f"the claim's share of lateness at 500 jobs/s, one engine: p50 {cluster['p50'] - journal['p50']:+.1f} ms,"
        f" p99 {cluster['p99'] - journal['p99']:+.1f} ms (cluster p50/p99 {cluster['p50']:.1f}/{cluster['p99']:.1f}"
        f" ms, journal {journal['p50']:.1f}/{journal['p99']:.1f} ms; load average {os.getloadavg()[0]:.1f})"
    )


async def takeover(dsn: str, lease: float) -> float:
    conn = await fresh(dsn)
    survivor = await spawn(dsn, lease)
    victim = await spawn(dsn, lease)
    await asyncio.sleep(lease)  # the shares settle
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    killed = time.monotonic()
    owners = "SELECT count(DISTINCT owner) FROM cw_shard WHERE expires_at > now()"
    while await conn.fetchval(owners) != 1:  # noqa: ASYNC110  polls the database
        await asyncio.sleep(0.02)
    took = time.monotonic() - killed
    survivor.send_signal(signal.SIGTERM)
    assert survivor.stdout is not None
    await survivor.stdout.read()
    await survivor.wait()
    await conn.close()
    return took


async def main(args: argparse.Namespace, dsn: str) -> None:
    print(f"load average before: {os.getloadavg()}")
    if args.only == "claim":
        await claim_rows(dsn)
        print(f"load average after: {os.getloadavg()}")
        return
    for engines in args.engines:
        row = await run_load(dsn, engines, args.jobs, 0.0, 0.0, 10)
        print(
            f"store-bound  engines={engines}: {row['fires_per_s']:,.0f} fires/s (all due at once, drained in"
            f" {row['drain_s']:.2f} s); db CPU {row['db_cpu_ms_per_1k']:.0f} ms/1k fires, engines' CPU"
            f" {row['client_cpu_ms_per_1k']:.0f} ms/1k fires"
        )
    for engines in args.engines:
        jobs = 1000 * engines * 5
        row = await run_load(dsn, engines, jobs, 0.0, 0.05, 50)
        print(f"distribution-bound engines={engines}: {row['fires_per_s']:,.0f} fires/s (tasks await 50 ms)")
    row = await run_load(dsn, 1, 2500, 5.0, 0.0, 10)
    print(f"lateness at 500 jobs/s, one engine: p99 {row['lateness_p99_ms']:.1f} ms (tick 1 ms)")
    await claim_rows(dsn)
    print(f"takeover after SIGKILL, lease {args.lease:g} s: {await takeover(dsn, args.lease):.2f} s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        dsn, lease, sleep, concurrency = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
        asyncio.run(child(dsn, lease, sleep, concurrency))
        sys.exit(0)
    if sys.argv[1:2] == ["--paced"]:
        asyncio.run(paced(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--engines", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--dsn")
    parser.add_argument("--only", choices=["claim"], help="run only this row (claim: the claim's share of lateness)")
    args = parser.parse_args()
    root = None
    stop: list[str] = []
    if args.dsn is None:
        dsn, root, stop = start_server()
    else:
        dsn = args.dsn
    try:
        asyncio.run(main(args, dsn))
    finally:
        if root is not None:
            subprocess.run([*stop, "-m", "immediate", "stop"], capture_output=True, check=False)
            shutil.rmtree(root, ignore_errors=True)
