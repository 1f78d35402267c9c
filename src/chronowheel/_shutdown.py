"""``stop()``'s drain: the grace period, the cancellation, and what is said about jobs that did not finish."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Collection
from typing import Final

from ._clock import Clock
from ._job import Job
from ._placement import Placement
from ._pool import Pool

__all__ = ["CANCEL_WAIT", "drain", "report_unfinished"]

logger = logging.getLogger("chronowheel")

CANCEL_WAIT: Final = 1.0  # seconds stop() waits for cancelled jobs to end before it gives up on them


def _ids(jobs: list[Job]) -> str:
    return ", ".join(job.id for job in jobs[:10]) + (" ..." if len(jobs) > 10 else "")


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def drain(
    pools: list[Pool], grace: float, clock: Clock, placement: Placement, cut_short: asyncio.Future[None]
) -> tuple[list[Job], list[Job]]:
    """Close the pools, let running jobs finish for ``grace`` seconds (or until ``cut_short``), then cancel them.

    Returns the jobs that were queued and never started, and those that did
    not end within ``CANCEL_WAIT`` of their cancellation (given up on). The
    caller's own job, if ``stop()`` runs in one, is acknowledged: it is
    finishing.
    """
    for pool in pools:  # all at once, so no pool starts jobs during another's grace period
        pool.close()
    caller = asyncio.current_task()
    running: dict[asyncio.Task[None], Job] = {}
    for pool in pools:
        for worker, job in pool.running_jobs():
            if worker is caller:
                placement.gone(job, "ack", own=True)
            else:
                running[worker] = job
    await _wait(running, grace, clock, cut_short)
    for worker in running:
        worker.cancel()
    await _wait(running, CANCEL_WAIT, clock)
    idle = [worker for pool in pools for worker in pool.workers if worker not in running and worker is not caller]
    await asyncio.gather(*idle, return_exceptions=True)
    queued = [job for pool in pools for job in pool.drain()]
    return queued, [job for worker, job in running.items() if not worker.done()]


async def _wait(
    workers: Collection[asyncio.Task[None]], seconds: float, clock: Clock, cut_short: asyncio.Future[None] | None = None
) -> None:
    """Wait until the workers are done, or for ``seconds`` on the engine clock, or until ``cut_short`` is set."""
    busy = [worker for worker in workers if not worker.done()]
    if not busy or seconds == 0 or (cut_short is not None and cut_short.done()):
        return
    expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    alarm = clock.call_at(clock.time() + seconds, functools.partial(_settle, expired))
    finished = asyncio.gather(*busy, return_exceptions=True)
    try:
        waits = (finished, expired) if cut_short is None else (finished, expired, cut_short)
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        alarm.cancel()
        expired.cancel()


def report_unfinished(jobs: list[Job], abandoned: list[Job], *, durable: bool) -> None:
    """Jobs that were due but did not complete by the end of ``stop()``, and those it gave up on.

    A ``durable`` engine (with a store) has not acknowledged them, so they run
    again after a restart. An in-memory engine can only say they are lost. A
    job given up on did not end when cancelled: it runs on, and nothing it
    does is recorded any more.
    """
    if jobs and durable:
        logger.info(
            "chronowheel: %d due jobs did not complete before stop; they run again at the next start", len(jobs)
        )
    elif jobs:
        logger.warning(
            "chronowheel: %d due jobs did not complete before stop and are lost (in-memory engine): %s",
            len(jobs),
            _ids(jobs),
        )
    if abandoned:
        logger.error(
            "chronowheel: stop gave up on %d jobs that did not end within %gs of their cancellation "
            "(they run on, unrecorded%s): %s",
            len(abandoned),
            CANCEL_WAIT,
            "; they run again at the next start" if durable else "",
            _ids(abandoned),
        )
