"""Finished jobs' outcomes in the database, and the callers of ``engine.result()`` waiting for one.

The ack of a success (and a cancellation) writes the job's ``done`` record,
the journal's, into ``cw_result`` in the flush's transaction, until it
expires ``result_ttl`` later; a dead job's error stays in its own row. Every
flush that ends jobs notifies their shards (``d<shard>``), so a waiter looks
again only when a job of its shard ended, with a poll as the safety net for a
notification lost. Owners purge expired outcomes in their lease rounds, a
bounded batch at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import asyncpg
import orjson

from .._job import Job
from .._journal.records import job_from_record, outcome_from_record
from .._outcome import Outcome
from . import sql

__all__ = ["Ended", "Finished", "PURGE_MAX"]

POLL: Final = 1.0  # seconds (real time) between looks while no notification comes: the safety net
PURGE_MAX: Final = 1000  # expired outcomes deleted per lease round

# An end found: its outcome (a success, a cancellation), or its dead letter (the job, with its error).
Ended = tuple[Outcome | None, Job | None]


class Finished:
    """The waiters of one engine, by the shard of the job they wait for; woken by ``d<shard>`` notifications."""

    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Future[None]]] = {}
        self._heard = 0  # notifications so far: one that came while a look was on its way means look again

    def heard(self, shard: int) -> None:
        """A flush ended jobs of ``shard``: its waiters look again."""
        self._heard += 1
        for future in self._waiters.pop(shard, ()):
            if not future.done():
                future.set_result(None)

    async def wait(
        self,
        pool: asyncpg.Pool,
        job_id: str,
        wall: Callable[[], float],
        expired: asyncio.Future[None] | None,
    ) -> Ended | None:
        """Wait for ``job_id`` to end; None if the database knows no such job (or its outcome expired).

        ``expired`` is the caller's timeout, on the engine's clock: done first,
        it raises what it holds (a ``TimeoutError``).
        """
        while True:
            heard = self._heard
            row = await pool.fetchrow(sql.LOOK, job_id, wall())
            assert row is not None  # one row, always: the LEFT JOINs of one
            if row["done"] is not None:
                return outcome_from_record(orjson.loads(row["done"])), None
            if row["state"] is None:
                return None
            if row["state"] == 3:
                dead = job_from_record(orjson.loads(row["dead"]))
                dead.state = "dead"
                return None, dead
            if self._heard != heard:
                continue  # the end may have been notified while the look was on its way, to no waiter yet
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._waiters.setdefault(row["shard"], set())
            waiters.add(future)
            waiting = {future} if expired is None else {future, expired}
            try:
                await asyncio.wait(waiting, timeout=POLL, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiters.discard(future)
                if not waiters and self._waiters.get(row["shard"]) is waiters:
                    del self._waiters[row["shard"]]
            if expired is not None and expired.done():
                expired.result()
