"""A worker engine in a process of its own, for the cluster fault test (tests/test_cluster_faults.py).

``python tests/cluster_child.py DSN LEASE STATS_PATH [ENGINE_ID]``: prints its engine id once started, runs
``work`` jobs (each records its run in the ``runs`` table) and ``tick`` series runs, and on SIGTERM stops and
writes its ``stats()["cluster"]`` to STATS_PATH as JSON. ``ENGINE_ID`` replaces the engine's own id (its host,
pid and a random part), as a worker restarted under a fixed name would have: tests/test_cluster_rebalance.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from pathlib import Path

import asyncpg

from chronowheel import Cluster, Engine
from chronowheel._cluster.store import ClusterStore


async def main(dsn: str, lease: float, stats_path: str, engine_id: str | None) -> None:
    engine = Engine(cluster=Cluster(dsn, shards=32, lease=lease))
    if engine_id is not None:
        store = engine._store
        assert isinstance(store, ClusterStore)
        store.ownership.me = engine_id
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)

    @engine.task(name="work")
    async def work(n: int) -> None:
        await asyncio.sleep(random.uniform(0, 0.05))  # in flight for a while: a fault can catch it
        assert engine.cluster is not None
        await pool.execute("INSERT INTO runs (n, engine) VALUES ($1, $2)", n, engine.cluster.id)

    @engine.task(name="tick")
    async def tick() -> None:
        pass

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with engine:
        assert engine.cluster is not None
        print(engine.cluster.id, flush=True)
        await stop.wait()
    await pool.close()
    await asyncio.to_thread(Path(stats_path).write_text, json.dumps(engine.stats()["cluster"]))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None))
