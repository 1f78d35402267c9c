"""A short tour of chronowheel on the real clock: timers, jobs, keys, cancel, reschedule, and the operator's
surface: a result, a chain, a query, a pause and resume, a rate-limited pool.

Run with ``make demo``. Takes about four seconds.
"""

from __future__ import annotations

import asyncio
import random
import time

import chronowheel
from chronowheel import Engine, Rate

N_TIMERS = 200_000
SPREAD = 2.0  # seconds over which the timers fall due, starting 1 s from now


async def main() -> None:
    engine = Engine()
    lateness: list[float] = []
    started = time.monotonic()

    def expire(due: float) -> None:
        lateness.append(time.monotonic() - due)

    @engine.task
    async def remind(user: str) -> None:
        print(f"  {time.monotonic() - started:5.2f}s  job: remind {user}")

    @engine.task
    async def count_unread(user: str) -> int:
        return len(user) * 7

    @engine.task
    async def digest() -> str:
        return "digest sent"

    # At most 5 starts in any second, however many are due: the rest wait in the pool's wheel, not in a worker.
    engine.add_pool("api", concurrency=4, rate=Rate(5, per=1.0))
    api_starts: list[float] = []

    @engine.task(pool="api")
    async def call_api(n: int) -> None:
        api_starts.append(time.monotonic())

    async with engine:
        print(f"chronowheel {chronowheel.__version__}, {chronowheel.WHEEL} wheel")
        t0 = time.perf_counter()
        handles = []
        for _ in range(N_TIMERS):
            delay = random.uniform(1.0, 1.0 + SPREAD)
            handles.append(engine.call_later(delay, expire, time.monotonic() + delay))
        print(f"scheduled {N_TIMERS:,} volatile timers in {time.perf_counter() - t0:.3f}s")
        cancelled = sum(handle.cancel() for handle in handles[::10])
        print(f"cancelled {cancelled:,} of them")

        await engine.schedule(remind, args=("ada",), delay=0.5, key="remind:ada")
        await engine.schedule(remind, args=("bob",), delay=0.2, key="remind:bob")
        engine.reschedule("remind:bob", delay=1.0)
        await engine.schedule(remind, args=("eve",), delay=0.3, key="remind:eve")
        engine.cancel("remind:eve")

        unread = await engine.schedule(count_unread, args=("ada",), delay=0.1)
        sent = await engine.schedule(digest, after=unread)  # a chain: runs once count_unread succeeded
        await engine.schedule(remind, args=("zoe",), delay=0.4, key="remind:zoe")
        engine.pause("remind:zoe")
        page = engine.jobs(key_prefix="remind:", limit=10)
        print("query remind:* by deadline:", [(job.key, job.state) for job in page])
        print(f"result: {await engine.result(unread, timeout=5)} unread; then {await engine.result(sent, timeout=5)}")
        engine.resume("remind:zoe")  # filed again: it fires at its deadline (at once, had that passed)
        for n in range(12):
            engine.schedule_nowait(call_api, args=(n,), delay=0.0)  # 12 due at once, to a pool of 5 a second
        print(f"pending: {len(engine):,}; waiting {SPREAD + 1.2:.1f}s for them to fire")
        await asyncio.sleep(SPREAD + 1.2)

    lateness.sort()
    fired = len(lateness)
    print(f"fired {fired:,} timers (expected {N_TIMERS - cancelled:,}); none early: {lateness[0] >= 0}")
    for label, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        print(f"  lateness {label}: {lateness[min(fired - 1, int(q * fired))] * 1000:.2f} ms")
    offsets = " ".join(f"{start - api_starts[0]:.1f}" for start in api_starts)
    print(f"rate-limited pool (5 a second): {len(api_starts)} calls due at once started at +{offsets} s")
    stats = engine.stats()
    print("stats:", {key: value for key, value in stats.items() if isinstance(value, int)})


if __name__ == "__main__":
    asyncio.run(main())
