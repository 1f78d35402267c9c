"""``ClusterHandle``: ``engine.cluster``, what only the database can answer, and the transactional ack.

Built by the engine over its :class:`.store.ClusterStore`; every call but
``stats`` and ``id`` is a round trip (or a wait) on the store's pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg

from .._errors import LeaseLost
from .._job import Job
from .._outcome import Outcome
from . import dependencies, sql
from .cancels import end_cancelled
from .holdings import job_of
from .queries import page
from .store import ClusterStore
from .writes import notify

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["ClusterHandle"]


class ClusterHandle:
    """``engine.cluster``: what only the database can answer, and the transactional ack."""

    def __init__(self, store: ClusterStore) -> None:
        self._store = store

    @property
    def id(self) -> str:
        """This engine's id in the cluster (``cw_engine``, ``cw_shard.owner``)."""
        return self._store.me

    def _pool(self) -> asyncpg.Pool:
        pool = self._store.pool
        if pool is None:
            raise RuntimeError("cluster: start the engine first; it connects in start()")
        return pool

    async def ended(self, job_id: str, timeout: float | None) -> tuple[Outcome | None, dict[str, Job]]:  # noqa: ASYNC109
        """For ``engine.result()``: the job's kept outcome, or its dead letter, once it ended anywhere.

        Returns ``(None, {})`` for a job the database does not know (or whose
        outcome expired); ``timeout`` runs on the engine's clock.
        """
        store = self._store
        host = store.holdings.host
        assert host is not None
        self._pool()
        expired: asyncio.Future[None] | None = None
        cancel = None
        if timeout is not None:
            expired = asyncio.get_running_loop().create_future()

            def expire() -> None:
                if expired is not None and not expired.done():
                    expired.set_exception(TimeoutError(f"job {job_id} did not end within {timeout:g}s"))

            cancel = host.after(timeout, expire)
        try:
            found = await store.ended(job_id, expired)
        finally:
            if cancel is not None:
                cancel()
        if found is None:
            return None, {}
        outcome, dead = found
        return outcome, {} if dead is None else {job_id: dead}

    async def jobs(
        self,
        *,
        state: str | None = None,
        task: str | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
        after: Job | None = None,
    ) -> list[Job]:
        """One page of the whole cluster's jobs, as :meth:`Engine.jobs` gives one engine's (``task``: its name).

        Pending, failed (waiting for a retry), running, dead and paused jobs,
        and finished ones (succeeded, cancelled) while their outcome is kept.
        """
        host = self._store.holdings.host
        assert host is not None
        return await page(
            self._pool(), host.wall, state=state, task=task, key_prefix=key_prefix, limit=limit, after=after
        )

    async def get(self, key: str) -> Job | None:
        """The pending (or running series') job with this key, anywhere in the cluster."""
        row = await self._pool().fetchrow(sql.GET_KEY, key)
        return None if row is None else job_of(row)

    async def cancel(self, key: str) -> bool:
        """Cancel the waiting job with this key, whichever engine holds it; True if there was one.

        This engine reports it (its ``"cancelled"`` hooks, its counts), and
        the children (``after=``) it takes with it, once the cancel committed.
        """
        store = self._store
        host = store.holdings.host
        assert host is not None
        async with self._pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql.CANCEL_KEY, key)
            notes: list[str] = []
            why = "engine.cluster.cancel() was called"
            cancelled = await end_cancelled(conn, rows, lambda row: why, store.flusher.expires(), notes)
            await notify(conn, store.listener.channel, notes)
        for job, reason in cancelled:  # committed: this engine reports what it cancelled
            host.cancelled(job, reason)
        return bool(rows)

    async def pause(self, key: str) -> bool:
        """Keep the waiting job with this key from firing, whichever engine holds it; True if there was one.

        The row is never claimed while paused; its owner drops its copy. A
        fixed-delay series whose run goes on is paused too: that run finishes,
        and its end stores the series paused. A child waiting for its parents
        (``after=``) still counts them off, then waits for its resume.
        """
        async with self._pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql.PAUSE_KEY, key)
            notes = [f"c{row['shard']}/{row['id']}" for row in rows if row["state"] == 4]  # the others have no copy
            await notify(conn, self._store.listener.channel, notes)
        return bool(rows)

    async def resume(self, key: str) -> bool:
        """Let the paused job with this key wait again, wherever it was paused; True if it was paused.

        A deadline that passed meanwhile is due now; a recurring job's misfire
        policy decides, when it fires, what its missed runs do. A series whose
        run goes on is timed from that run's end again; a child whose parents
        have not all succeeded waits for them again.
        """
        async with self._pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql.RESUME_KEY, key)
            notes = [f"n{row['shard']}/{row['id']}" for row in rows if row["state"] == 0]  # due: its owner files it
            await notify(conn, self._store.listener.channel, notes)
        return bool(rows)

    async def reschedule(self, key: str, *, delay: float | None = None, at: datetime | None = None) -> bool:
        """Move the waiting job with this key, whichever engine holds it; True if there was one."""
        from .._limits import check_when

        host = self._store.holdings.host
        assert host is not None
        due = host.wall() + check_when(delay, at, host.wall)
        async with self._pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql.MOVE_KEY, key, due)
            await notify(conn, self._store.listener.channel, [f"m{row['shard']}/{row['id']}" for row in rows])
        return bool(rows)

    def stats(self) -> dict[str, Any]:
        """``engine.stats()["cluster"]``: owned shards, takeovers, refused claims, re-runs, round-trip times."""
        return self._store.stats()

    async def count(self) -> int:
        """Jobs waiting or running in the whole cluster (dead letters not counted)."""
        return int(await self._pool().fetchval(sql.COUNT))

    @contextlib.asynccontextmanager
    async def transaction(self, job: Job) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a transaction whose commit acknowledges ``job``, fenced (effectively-once).

        If this engine no longer holds the job's claim when the block ends,
        everything the block wrote rolls back and :class:`LeaseLost` is raised.
        """
        store = self._store
        fence = job.fence  # the attempt's own: a run from before a lease lost and retaken holds an older one
        if fence is None or job.id not in store.holdings.fences:
            raise ValueError(f"job: {job.id} is not running under a claim of this engine")
        async with self._pool().acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                yield conn
                acked = await conn.fetchrow(sql.ACK_ONE, store.me, job.id, fence)
                if acked is None:
                    raise LeaseLost(f"job {job.id}: its claim (fence {fence}) is no longer this engine's")
                if acked["waited"]:
                    released, _ = await dependencies.follow(conn, {job.id: "succeeded"}, None)  # none cancelled
                    await notify(conn, store.listener.channel, released)
            except BaseException:
                await transaction.rollback()
                raise
            await transaction.commit()
        store.holdings.fences.pop(
            job.id, None
        )  # acknowledged under the current claim: the engine's own ack writes nothing
        store.holdings.acked[job.id] = fence  # ... but its outcome, once the task returns
