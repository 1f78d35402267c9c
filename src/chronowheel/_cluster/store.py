"""``ClusterStore``: the :class:`~chronowheel._store.Store` of cluster mode, on PostgreSQL through asyncpg.

The database is the source of truth; the engine's wheel is a cache of the
near future (``horizon``) of the shards this engine owns. This module takes
the engine's changes into the loop turn's batch (synchronously, as the
``Store`` protocol asks) and wires the parts that do the rest:
:class:`.holdings.Holdings` (what this engine holds, sans-IO),
:class:`.flush.Flusher` (a turn's batch in one transaction, the fenced
claim among it), :class:`.leases.Leases` (the lease rounds) and
:class:`.listener.Listener` (LISTEN/NOTIFY). A due job starts only once its
claim, fenced by its shard's token and an unexpired lease on the database's
clock, has committed, and only while the local guard (:mod:`.ownership`)
still holds its lease.

Owners hear of new near-future jobs in their shards by NOTIFY; a periodic
refill (every ``horizon / 2``) is the safety net for a notification lost.
A cancelled or moved job whose notification was lost still cannot run: the
claim finds no row, or one not due yet, and the engine drops its copy.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Collection
from typing import Any

import asyncpg

from .._job import Job
from .._journal.records import encode_done, encode_job
from .._outcome import Outcome
from .._store import Claim, Gone
from . import sql
from .batch import HandOut
from .config import Cluster
from .flush import Flusher
from .holdings import Holdings
from .host import Host
from .leases import Leases
from .listener import Listener
from .results import Ended, Finished
from .schema import upgrade

__all__ = ["ClusterStore"]


def _engine_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class ClusterStore:
    """Cluster mode's store: one engine's view of a PostgreSQL database shared by many engines.

    ``claim`` is what the driver hands due jobs to (see :class:`~chronowheel._store.Store`).
    """

    def __init__(self, config: Cluster) -> None:
        self.config = config
        self.worker = config.role == "worker"
        self.holdings = Holdings(_engine_id(), config)
        self.ownership = self.holdings.ownership
        self.claim: Claim | None = self._claim
        self.pool: asyncpg.Pool | None = None
        self.finished = Finished()
        self.listener = Listener(
            self.holdings, self.finished, worker=self.worker, connected=self._connected, released=self._released
        )
        self.flusher = Flusher(self.holdings, self.listener)
        self.leases = Leases(self.holdings, self.listener, self.flusher)

    @property
    def me(self) -> str:
        """This engine's id in the cluster (``cw_engine``, ``cw_shard.owner``)."""
        return self.ownership.me

    def attach(self, host: Host) -> None:
        self.holdings.host = host

    # The listener is built before the lease rounds it calls back into (they reconnect it): through these two.
    async def _connected(self, conn: asyncpg.Connection) -> None:
        await self.leases.connected(conn)

    async def _released(self) -> None:
        await self.leases.take_released()

    # -- start and stop -------------------------------------------------------------

    async def restore(self, tasks: Collection[str]) -> list[Job]:
        """Connect, bring the schema up to date, take this engine's shards and return their near future."""
        # A paused owner's open transaction would hold its shard rows' locks, and so keep every other engine
        # from acquiring them (they skip locked rows) for as long as the pause: the server ends it instead.
        settings = {"idle_in_transaction_session_timeout": str(int(self.config.lease * 500))}
        pool = await asyncpg.create_pool(
            self.config.dsn, min_size=1, max_size=4, server_settings=settings, init=self.leases.connected
        )
        self.pool = self.flusher.pool = self.leases.pool = self.listener.pool = pool
        try:
            async with pool.acquire() as conn:
                await upgrade(conn, self.config.shards)
                channel = "cw_" + await conn.fetchval("SELECT current_schema()")
                self.listener.channel = channel  # the flusher and the leases notify on it too
                self.leases.check_server(await conn.fetchval(sql.IDENTITY))  # the first: known from now on
            if not self.worker:
                return []
            await self.listener.connect()
            jobs = await self.leases.tend_once()
        except BaseException:
            await self.listener.disconnect()
            await pool.close()
            raise
        self.leases.task = asyncio.create_task(self.leases.tend(), name="chronowheel cluster leases")
        return jobs

    async def close(self) -> None:
        """Write out what is pending, hand every shard back (jobs claimed and not finished wait again), let go."""
        self.flusher.closing = self.listener.closing = True
        await self.leases.stop()
        await self.listener.cancel_fetches()
        try:
            await self.flusher.drain()
            if self.worker and self.pool is not None:
                await self.leases.release(set(self.ownership.held))
                await self.pool.execute(sql.FORGET_ENGINE, self.me)
        finally:
            await self.listener.disconnect()
            if self.pool is not None:
                await self.pool.close()

    # -- changes (synchronous: queued for this turn's flush) -------------------------

    def check(self, job: Job, if_exists: str = "error") -> tuple[bytes, str]:
        """The new job's record (args JSON cannot hold raise here), and what a taken key does."""
        return encode_job(job, new=True), if_exists

    def recorded(self, job: Job, token: object = None) -> None:
        batch = self.flusher.batch
        holdings = self.holdings
        if isinstance(token, tuple):
            batch.new[job.id] = (job, token[0], token[1])
        elif job.state == "paused":
            self._paused(job)
        elif job.id in holdings.paused:
            self._resumed(job)
        elif job.id in holdings.fences or (job.fence is not None and job.state in ("failed", "dead")):
            # An attempt's outcome (a retry, a dead letter, a series between or at its next run), fenced by the
            # token that attempt was claimed under: a stale run's outcome matches nothing.
            claimed = holdings.fences.get(job.id)
            fence = job.fence
            if fence is None:  # a copy never claimed itself: the engine's claim of the job it stands for
                assert claimed is not None
                fence = claimed[0]
            if claimed is not None and claimed[0] == fence and job.state != "running":
                del holdings.fences[job.id]  # no longer claimed
            batch.settles[job.id, fence] = job
        elif job._parent is not None and job.id not in batch.runs and job.attempt == 0:
            # A new run of a series, starting now: claimed under its shard's token from the start, so that
            # its ack (it may finish before this turn's flush) is fenced like any other.
            shard = holdings.shard(job)
            token = holdings.ownership.token(shard, holdings.monotonic())
            if token is not None:  # None: the shard is lost; its new owner makes this run, once (the period's id)
                job._fence = token
                holdings.fences[job.id] = (token, shard)
                batch.runs[job.id] = job
        else:
            batch.puts[job.id] = job  # a redrive, a series refiled at restore
        self.flusher.kick()

    def _paused(self, job: Job) -> None:
        """A job this engine paused: its waiting (or held) row, or a series' claimed one (its run going on, or over)."""
        batch = self.flusher.batch
        holdings = self.holdings
        holdings.paused.add(job.id)
        claimed = holdings.fences.get(job.id)
        if claimed is None:
            holdings.resident.pop(job.id, None)
            batch.resumes.pop(job.id, None)
            batch.pauses[job.id] = job
            return
        series = job._series
        assert series is not None  # only a series between runs is paused while claimed
        key = (job.id, claimed[0] if job.fence is None else job.fence)
        if series.active:  # claimed still, and paused so: its run's end stores it paused, not due
            if batch.resumes_claimed.pop(key, None) is None:
                batch.pauses_claimed[key] = job
        else:  # its run is over (the engine says so): no longer claimed, kept paused at its next run
            del holdings.fences[job.id]
            batch.settles[key] = job

    def _resumed(self, job: Job) -> None:
        """A job this engine paused, resumed: waiting again (in the wheel), held for its parents, or its run goes on."""
        batch = self.flusher.batch
        holdings = self.holdings
        holdings.paused.discard(job.id)
        claimed = holdings.fences.get(job.id)
        if claimed is not None:  # a series whose run goes on (running again): its run's end files the next run
            key = (job.id, claimed[0] if job.fence is None else job.fence)
            if batch.pauses_claimed.pop(key, None) is None:
                batch.resumes_claimed[key] = job
        elif batch.pauses.pop(job.id, None) is None:
            batch.resumes[job.id] = job
        elif job._after is None:  # paused and resumed within one turn: the row never changed; the job is in the wheel
            holdings.resident[job.id] = (job, holdings.shard(job))

    def moved(self, job: Job) -> None:
        if job.id not in self.flusher.batch.new:  # a new row takes its due when it is written
            self.flusher.batch.moves[job.id] = job._due_wall
            self.flusher.kick()

    def gone(self, job: Job, why: Gone, kept: Outcome | None = None) -> None:
        batch = self.flusher.batch
        holdings = self.holdings
        holdings.resident.pop(job.id, None)
        fence = job.fence
        shard = None
        if why == "ack":
            claimed = holdings.fences.get(job.id)
            if claimed is not None and fence is not None:
                if claimed[0] == fence:
                    del holdings.fences[job.id]
                shard = claimed[1]
                batch.acks[job.id, fence] = shard  # a stale run's ack, under its own older token, matches nothing
            elif fence is not None and holdings.acked.get(job.id) == fence:
                del holdings.acked[job.id]  # acknowledged already, in the task's own transaction
                fence = None  # its outcome is kept as it is
            else:
                kept = None  # not claimed here: nothing acknowledged, nothing to keep
        else:
            fence = None
            holdings.fences.pop(job.id, None)  # a series cancelled while its run goes on: its claim ends with it
            holdings.paused.discard(job.id)
            if batch.new.pop(job.id, None) is None:  # cancelled before it was written: nothing to delete
                batch.cancels.add(job.id)
        if kept is not None:
            if shard is None:
                shard = holdings.shard(job)
            batch.kept[job.id, fence] = (shard, kept.expires, encode_done(kept))  # sets kept.unkept
        self.flusher.kick()

    def outcomes(self) -> list[Outcome]:
        return []  # kept in the database, read by result() there (results.py)

    async def ended(self, job_id: str, expired: asyncio.Future[None] | None) -> Ended | None:
        """Wait for the job's end anywhere in the cluster: see :meth:`.results.Finished.wait`."""
        assert self.pool is not None
        assert self.holdings.host is not None
        await self.flusher.drain()  # this engine's own acks first
        await self.listener.ensure()  # a client listens from its first wait on
        return await self.finished.wait(self.pool, job_id, self.holdings.host.wall, expired)

    def _claim(self, jobs: list[Job], hand_out: HandOut) -> None:
        """Due jobs, out of the wheel: claim the ones of shards still held; ``hand_out`` gets the claimed."""
        holdings = self.holdings
        assert holdings.host is not None
        now = holdings.monotonic()
        claiming = []
        for job in jobs:
            entry = holdings.resident.pop(job.id, None)
            shard = entry[1] if entry is not None else holdings.shard(job)
            token = holdings.ownership.token(shard, now)
            if token is not None:
                claiming.append((job, shard, token))
            else:
                if shard in holdings.ownership.held:
                    holdings.counts["guarded"] += 1  # held, but past the local guard: not claimed, not started
                    holdings.rescan.add(shard)  # if the next renew keeps the shard, its round files the job again
                holdings.host.let_go(job)
        if claiming:
            self.flusher.batch.claims.append((claiming, hand_out))
            self.flusher.kick()

    async def commit(self, job: Job) -> Job:
        """Wait for the flush that writes ``job``; returns it, or the job kept under its key (``"keep"``)."""
        if self.flusher.task is None and not self.flusher.batch:
            return job
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self.flusher.batch.waiters.append((job, future))
        self.flusher.kick()
        return await future

    async def flush(self) -> None:
        await self.flusher.drain()

    def parked(self) -> list[Job]:
        return []  # cluster mode parks nothing: a job of an unknown task waits in the database

    def stats(self) -> dict[str, Any]:
        samples = sorted(self.flusher.round_trips)

        def percentile(p: float) -> float:
            return samples[min(len(samples) - 1, int(p * len(samples)))] if samples else 0.0

        return {
            "engine": self.me,
            "role": self.config.role,
            "owned_shards": len(self.ownership.held),
            **self.holdings.counts,
            "round_trip": {"p50": percentile(0.5), "p99": percentile(0.99)},
        }
