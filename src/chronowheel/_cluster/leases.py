"""``Leases``: the lease rounds that keep this engine's shards, move it towards its share, and refill its wheel.

Every quarter of the lease (jittered), one round: heartbeat, the server's
identity, one fenced renew of all held shards (those missing from the
answer are lost), hand-overs of shards another live engine wins (only once
no job of theirs runs here, and no claim or outcome of theirs is still
being written), acquisitions of those this engine wins, the orphan sweep of
rows claimed under older tokens, the jobs the local guard stranded, the
purge of expired outcomes, and the horizon refill every ``horizon / 2``.
The lease side never waits for a job row: what it would wait for is skipped
and swept at a later round (docs/cluster.md, "Locks").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import asyncpg

from .._job import Job
from . import sql, writes
from .flush import Flusher
from .holdings import Holdings
from .listener import Listener
from .results import PURGE_MAX

__all__ = ["Leases"]

logger = logging.getLogger("chronowheel")


class Leases:
    """One engine's lease rounds (a worker's: a client holds no shard), and its view of the server's identity."""

    def __init__(self, holdings: Holdings, listener: Listener, flusher: Flusher) -> None:
        self._holdings = holdings
        self._flusher = flusher
        self._ownership = holdings.ownership
        self._config = holdings.config
        self._listener = listener
        self.pool: asyncpg.Pool | None = None  # set by the store once connected
        self.task: asyncio.Task[None] | None = None  # the rounds, every quarter of the lease
        self._round = asyncio.Lock()
        self._server: str | None = None  # the server's identity (sql.IDENTITY), once known
        self._reclaim = False  # the server changed: take back the shards this id still owns there
        self._unswept: set[int] = set()  # won shards whose orphan sweep skipped rows locked at the time

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def take_released(self) -> None:
        """Another engine released shards: a round now takes those this engine wins."""
        assert self._holdings.host is not None
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            self._holdings.host.load(await self.tend_once())

    async def tend(self) -> None:
        """Every quarter of the lease (jittered): keep the leases, move towards this engine's share, refill."""
        assert self._holdings.host is not None
        while True:
            await asyncio.sleep(self._config.lease / 4 * random.uniform(0.8, 1.0))
            try:
                if self._listener.connection is None or self._listener.connection.is_closed():
                    await self._listener.connect()
                    self._holdings.refilled = 0.0  # notifications may have been lost meanwhile: rescan
                self._holdings.host.load(await self.tend_once())
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                logger.warning("chronowheel: cluster store: lease round failed (%s); retrying", exc)

    async def tend_once(self) -> list[Job]:
        """One lease round; returns the jobs to file: the near future of shards won, or of all at a refill."""
        async with self._round:  # a notified hand-over and the periodic round do not interleave
            return await self._lease_round()

    async def _lease_round(self) -> list[Job]:
        assert self.pool is not None
        assert self._holdings.host is not None
        lease = self._config.lease
        async with self.pool.acquire() as conn:
            await conn.execute(sql.HEARTBEAT, self._ownership.me, self._config.shards)
            self.check_server(await conn.fetchval(sql.IDENTITY))
            if self._ownership.held:
                await conn.execute(sql.PURGE, list(self._ownership.held), self._holdings.host.wall(), PURGE_MAX)
            live = [row["id"] for row in await conn.fetch(sql.LIVE_ENGINES, lease)]
            if self._ownership.held:
                sent = self._holdings.monotonic()
                kept = await conn.fetch(sql.RENEW, self._ownership.me, lease, *self._ownership.pairs())
                lost = self._ownership.renewed([row["shard"] for row in kept], sent)
                if lost:
                    self._holdings.lose(lost, already=True)
            release = self._holdings.releasable(self._ownership.to_release(live)) - self._flusher.unwritten()
            if release:
                await self.release(release, conn)
            wanted = list(self._ownership.wanted(live) - set(self._ownership.held))
            won: list[tuple[int, int]] = []
            if wanted:
                sent = self._holdings.monotonic()
                rows = await conn.fetch(sql.ACQUIRE, self._ownership.me, wanted, lease, self._reclaim)
                self._reclaim = False
                won = [(row["shard"], row["token"]) for row in rows]
                self._holdings.counts["takeovers"] += sum(
                    row["previous"] not in (None, self._ownership.me) for row in rows
                )
            held = self._ownership.held
            await self._sweep(conn, [*won, *((shard, held[shard].token) for shard in self._unswept if shard in held)])
            if won:
                self._ownership.acquired(won, sent)  # its jobs may be claimed once the sweep has given them back
                if writes.AUDIT:
                    await writes.audit(
                        conn, "acquire", self._ownership.me, [(None, shard, token) for shard, token in won]
                    )
            await self._unstrand(conn)
            refill = self._holdings.monotonic() - self._holdings.refilled >= self._config.horizon / 2
            rescan, self._holdings.rescan = self._holdings.rescan & set(self._ownership.held), set()
            shards = list(self._ownership.held) if refill else list({shard for shard, _ in won} | rescan)
            if refill:
                self._holdings.refilled = self._holdings.monotonic()
            if not shards:
                return []
            rows = await conn.fetch(sql.LOAD, shards, self._holdings.host.wall() + self._config.horizon)
            if won:
                rows += await conn.fetch(sql.LOAD_DEAD, [shard for shard, _ in won])
        return self._holdings.new_residents(rows)

    async def _sweep(self, conn: asyncpg.Connection, pairs: list[tuple[int, int]]) -> None:
        """Give back the rows claimed under older tokens of these ``(shard, token)``s; those skipped: next round."""
        if not pairs:
            self._unswept = set()
            return
        left = await conn.fetchval(sql.SWEEP_ORPHANS, *map(list, zip(*pairs, strict=True)))
        self._unswept = set(left)

    async def _unstrand(self, conn: asyncpg.Connection) -> None:
        """Rows this engine claimed and the guard kept from starting, in shards it still holds: waiting again.

        Fenced by the token they were claimed under: if the shard moved on
        meanwhile, the new owner's sweep has them. The claim count is taken
        back (they never ran: not re-runs when claimed again).
        """
        if not self._holdings.stranded:
            return
        held = self._ownership.held
        mine = [
            (job_id, shard, token)
            for job_id, (shard, token) in self._holdings.stranded.items()
            if shard in held and held[shard].token == token
        ]
        self._holdings.stranded = {}
        if mine:
            await conn.execute(sql.UNCLAIM_IDS, *map(list, zip(*mine, strict=True)))
            self._holdings.rescan |= {shard for _, shard, _ in mine}

    def check_server(self, identity: str) -> None:
        """A connection's view of the server's identity: on a change, every lease is dropped and re-acquired.

        A server that restarted, failed over to an asynchronous replica or was
        restored may have gone back in time and may reissue a token this
        engine holds; claims under it are not made. In-flight jobs' fenced
        outcomes still go out (they match nothing if the token was reissued).
        """
        if self._server is None or identity == self._server:
            self._server = identity
            return
        logger.warning(
            "chronowheel: cluster store: the database server changed (%s, was %s): dropping %d shards to acquire"
            " them again under new tokens",
            identity,
            self._server,
            len(self._ownership.held),
        )
        self._server = identity
        self._holdings.counts["server_changes"] += 1
        self._unswept = set()
        if self._ownership.held:
            self._holdings.lose(set(self._ownership.held))
        self._reclaim = True
        self._holdings.refilled = 0.0

    async def connected(self, conn: asyncpg.Connection) -> None:
        """Every new connection of the pool (a reconnect after a restart, too) checks the server's identity."""
        if self._server is not None:  # None: at start, before the schema (and its cw_meta) exists
            self.check_server(await conn.fetchval(sql.IDENTITY))

    async def release(self, shards: set[int], conn: asyncpg.Connection | None = None) -> None:
        """Hand shards back: stop firing them here, give back their claimed rows, end their leases now."""
        if not shards:
            return
        assert self.pool is not None
        pairs = [(shard, self._ownership.held[shard].token) for shard in shards if shard in self._ownership.held]
        self._holdings.lose(shards)
        if not pairs:
            return
        arrays = list(map(list, zip(*pairs, strict=True)))
        if conn is None:
            async with self.pool.acquire() as own:
                await self._hand_over(own, arrays)
        else:
            await self._hand_over(conn, arrays)

    async def _hand_over(self, conn: asyncpg.Connection, arrays: list[list[int]]) -> None:
        async with conn.transaction():
            await conn.execute(sql.UNCLAIM, *arrays)
            await conn.execute(sql.RELEASE, self._ownership.me, *arrays)
            await conn.execute(sql.NOTIFY, self._listener.channel, "r")
