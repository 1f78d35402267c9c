"""An engine for ``chronowheel worker``: mail jobs arriving all the time, some bouncing into the dead letters.

    chronowheel worker examples.worker_app:engine --web 127.0.0.1:8080 --metrics 127.0.0.1:9100

then open http://127.0.0.1:8080/ (the dashboard) and http://127.0.0.1:9100/metrics; SIGTERM (or Ctrl-C)
stops it within the grace period.
"""

from __future__ import annotations

import asyncio
import random

from chronowheel import Cron, Engine, Every, Retry

engine = Engine()
engine.add_pool("mail", concurrency=4)
engine.add_pool("reports", concurrency=1)


@engine.task(pool="mail", retry=Retry(3, backoff=0.5, max_backoff=2.0))
async def send(to: str) -> None:
    """Takes 50 to 400 ms; one address in ten bounces (and, after its retries, lands in the dead letters)."""
    await asyncio.sleep(random.uniform(0.05, 0.4))
    if to.startswith("bounce"):
        raise ConnectionRefusedError(f"smtp: {to} refused")


@engine.task(pool="reports")
async def report() -> None:
    await asyncio.sleep(1.0)


@engine.task
async def arrivals() -> None:
    """Every second, a burst of mail due within the next few seconds."""
    for _ in range(random.randint(5, 15)):
        who = "bounce" if random.random() < 0.1 else "user"
        engine.schedule_nowait(send, args=(f"{who}{random.randrange(10_000)}@example.com",), delay=random.uniform(0, 5))


engine.schedule_nowait(arrivals, every=Every(1.0), key="arrivals")
engine.schedule_nowait(report, every=Every(30.0), key="report")
engine.schedule_nowait(report, cron=Cron("0 9 * * 1-5", tz="Europe/Berlin"), key="daily-report")
