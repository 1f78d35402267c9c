"""``Listener``: LISTEN/NOTIFY on the cluster's channel, and the loads of rows by id that notes (and misses) start.

Notes are ``kind shard/id`` words (``n`` new, ``m`` moved, ``c`` cancelled or
paused), ``d<shard>`` (jobs of a shard ended: waiters of results look again)
and ``r`` (shards were released: take those this engine wins). A worker
loads what its held shards gain within the horizon and drops what they lose;
a client listens only for its waiters of results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg

from . import sql
from .holdings import Holdings
from .results import Finished

__all__ = ["Listener"]


class Listener:
    """The listening connection, the notes it hears, and the fetches they start (awaited or cancelled at close).

    ``connected`` checks a new connection's view of the server; ``released``
    runs a lease round when another engine released shards.
    """

    def __init__(
        self,
        holdings: Holdings,
        finished: Finished,
        *,
        worker: bool,
        connected: Callable[[asyncpg.Connection], Awaitable[None]],
        released: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self._holdings = holdings
        self._finished = finished
        self._worker = worker
        self._connected = connected
        self._released = released
        self.dsn = holdings.config.dsn
        self.pool: asyncpg.Pool | None = None  # set by the store once connected
        self.channel = "cw"  # set by the store once connected: "cw_" and its schema
        self.connection: asyncpg.Connection | None = None
        self.fetches: set[asyncio.Task[None]] = set()
        self.closing = False
        self._listening = asyncio.Lock()

    async def connect(self) -> None:
        self.connection = await asyncpg.connect(self.dsn)
        await self._connected(self.connection)
        await self.connection.add_listener(self.channel, self._heard)

    async def ensure(self) -> None:
        """Listen from now on, if not yet (a client, at its first wait for a result)."""
        if self.connection is None:
            async with self._listening:
                if self.connection is None:
                    await self.connect()

    async def cancel_fetches(self) -> None:
        for task in list(self.fetches):
            task.cancel()
        await asyncio.gather(*self.fetches, return_exceptions=True)

    async def disconnect(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    def _heard(self, conn: object, pid: int, channel: str, payload: str) -> None:
        """A notification: new or moved jobs to load, cancelled ones to drop, released shards to take."""
        if self.closing:
            return
        holdings = self._holdings
        now = holdings.monotonic()
        load: list[str] = []
        for note in payload.split():
            if note == "r":
                if self._worker:  # a client listens only for its waiters of results
                    self.spawn(self._released())
                continue
            if note[0] == "d":
                self._finished.heard(int(note[1:]))
                continue
            shard, _, job_id = note[1:].partition("/")
            if holdings.ownership.token(int(shard), now) is None:
                continue
            kind = note[0]
            if kind == "n" and job_id in holdings.resident:
                continue  # held already
            entry = holdings.resident.pop(job_id, None)
            if entry is not None and holdings.host is not None:
                holdings.host.drop(entry[0])  # cancelled, or moved: the row's new due comes with the reload
            if kind != "c":
                load.append(job_id)
        if load:
            self.spawn(self.load_ids(load))

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.fetches.add(task)
        task.add_done_callback(self.fetches.discard)

    async def load_ids(self, ids: list[str]) -> None:
        """File the rows of these ids that are due within the horizon (and not in the wheel already)."""
        host = self._holdings.host
        assert self.pool is not None
        assert host is not None
        rows = await self.pool.fetch(sql.LOAD_IDS, ids)
        horizon = host.wall() + self._holdings.config.horizon
        host.load(self._holdings.new_residents([row for row in rows if row["due"] <= horizon]))
