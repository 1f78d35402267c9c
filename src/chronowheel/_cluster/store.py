"""``ClusterStore``: the :class:`~chronowheel._store.Store` of cluster mode, on PostgreSQL through asyncpg.

The database is the source of truth; the engine's wheel is a cache of the
near future (``horizon``) of the shards this engine owns. Changes made in a
loop turn go out together in one transaction (:meth:`_flush`): new rows,
cancels, moves, fenced outcomes of claimed jobs, and the claim of the jobs
the driver found due, so a turn costs a handful of statements whatever the
number of jobs. A due job starts only once its claim, fenced by its shard's
token and an unexpired lease on the database's clock, has committed, and
only while the local guard (:mod:`.ownership`) still holds its lease.

Owners hear of new near-future jobs in their shards by NOTIFY; a periodic
refill (every ``horizon / 2``) is the safety net for a notification lost.
A cancelled or moved job whose notification was lost still cannot run: the
claim finds no row, or one not due yet, and the engine drops its copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import asyncpg
import orjson

from .._errors import DuplicateKey, LeaseLost
from .._job import Job
from .._journal.records import encode_done, encode_job, job_from_record
from .._outcome import Outcome
from .._store import Claim, Gone
from . import dependencies, sql
from .config import Cluster
from .ownership import Ownership, shard_of
from .queries import page
from .results import PURGE_MAX, Ended, Finished
from .schema import upgrade

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["ClusterHandle", "ClusterStore", "Host"]

logger = logging.getLogger("chronowheel")

DUE_TOLERANCE: Final = 0.05  # seconds: a job the wheel fired this close to its row's due is due
NOTIFY_MAX: Final = 7900  # bytes of one notification's payload (PostgreSQL's limit is 8000)
RETRY: Final = 0.25  # seconds between a failed flush and the next try of the changes it carried
_STATE: Final = {"pending": 0, "failed": 0, "running": 1, "dead": 3}
_AUDIT: Final = os.environ.get("CHRONOWHEEL_CLUSTER_AUDIT") == "1"  # the fault tests' audit trail

HandOut = Callable[[list[Job]], None]


@dataclass(frozen=True, slots=True)
class Host:
    """What the store needs of its engine: its wall clock, and its wheel, changed without telling the store.

    ``load`` files jobs read from the database (overdue ones at once, dead
    ones into the dead letters); ``drop`` takes a job out of the wheel, as it
    is not this engine's to fire (any more); ``let_go`` forgets a job the
    wheel already handed out whose claim this engine did not win; ``after``
    calls back in so many seconds of the engine's clock, and returns what
    cancels that; ``ttl`` is the engine's ``result_ttl``.
    """

    wall: Callable[[], float]
    load: Callable[[list[Job]], None]
    drop: Callable[[Job], None]
    let_go: Callable[[Job], None]
    after: Callable[[float, Callable[[], None]], Callable[[], object]]
    ttl: float


def _engine_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class _Batch:
    """One loop turn's changes, taken whole by a flush."""

    __slots__ = (
        "acks",
        "cancels",
        "claims",
        "kept",
        "moves",
        "new",
        "pauses",
        "puts",
        "resumes",
        "runs",
        "settles",
        "waiters",
    )

    def __init__(self) -> None:
        self.new: dict[str, tuple[Job, bytes, str]] = {}  # id -> the job, its record, if_exists
        self.runs: dict[str, Job] = {}
        self.puts: dict[str, Job] = {}
        # Outcomes of attempts, by (id, the attempt's fence): a stale run and the current one of a job may end
        # in the same turn, and each is written under its own token.
        self.settles: dict[tuple[str, int], Job] = {}
        self.acks: dict[tuple[str, int], int] = {}  # -> the shard
        # Outcomes to keep, by (id, the acked attempt's fence; None: keep it whatever the ack found) -> the shard,
        # expiry and done record: an ack's only if the fence let the ack through.
        self.kept: dict[tuple[str, int | None], tuple[int, float, bytes]] = {}
        self.cancels: set[str] = set()
        self.moves: dict[str, float] = {}
        self.pauses: dict[str, Job] = {}  # waiting rows to pause (state 4: never claimed, never loaded)
        self.resumes: dict[str, Job] = {}  # paused rows waiting again
        self.claims: list[tuple[list[tuple[Job, int, int]], HandOut]] = []  # (job, shard, token)s and their pool
        self.waiters: list[tuple[Job, asyncio.Future[Job]]] = []

    def __bool__(self) -> bool:
        return bool(
            self.new
            or self.runs
            or self.puts
            or self.settles
            or self.acks
            or self.cancels
            or self.moves
            or self.claims
            or self.kept
            or self.pauses
            or self.resumes
        )


class ClusterStore:
    """Cluster mode's store: one engine's view of a PostgreSQL database shared by many engines.

    ``claim`` is what the driver hands due jobs to (see :class:`~chronowheel._store.Store`).
    """

    def __init__(self, config: Cluster) -> None:
        self.config = config
        self.me = _engine_id()
        self.worker = config.role == "worker"
        self.ownership = Ownership(self.me, config.shards, config.lease)
        self.claim: Claim | None = self._claim
        self._host: Host | None = None
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._channel = "cw"
        self._batch = _Batch()
        self._flusher: asyncio.Task[None] | None = None
        self._tender: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        # This engine's current claim of each claimed job (running; a series between runs) -> its fence, shard. An
        # attempt carries its own fence (job._fence): a run from before a lease lost and retaken holds an older one.
        self._fences: dict[str, tuple[int, int]] = {}
        self._resident: dict[str, tuple[Job, int]] = {}  # jobs of held shards in the wheel -> their shard
        self._outcomes: dict[str, Job | BaseException] = {}
        self._paused: set[str] = set()  # jobs this engine paused (kept in its memory): their resume is a row change
        self._acked: dict[str, int] = {}  # acknowledged in the task's own transaction -> under that fence
        self.finished = Finished()
        self._listening = asyncio.Lock()
        self._refilled = 0.0
        self._server: str | None = None  # the server's identity (sql.IDENTITY), once known
        self._reclaim = False  # the server changed: take back the shards this id still owns there
        self._unswept: set[int] = set()  # won shards whose orphan sweep skipped rows locked at the time
        self._stranded: dict[str, tuple[int, int]] = {}  # claimed, then stopped by the guard -> shard, token
        self._rescan: set[int] = set()  # held shards with jobs the guard took out of the wheel
        self._monotonic: Callable[[], float] = time.monotonic  # the leases' local clock (a seam for tests)
        self._closing = False
        self._round = asyncio.Lock()
        self.counts = dict.fromkeys(
            ("takeovers", "refused_claims", "guarded", "reruns", "stale_writes", "server_changes"), 0
        )
        self.round_trips: deque[float] = deque(maxlen=1024)
        self.handle = ClusterHandle(self)

    def attach(self, host: Host) -> None:
        self._host = host

    # -- start and stop -------------------------------------------------------------

    async def restore(self, tasks: Collection[str]) -> list[Job]:
        """Connect, bring the schema up to date, take this engine's shards and return their near future."""
        # A paused owner's open transaction would hold its shard rows' locks, and so keep every other engine
        # from acquiring them (they skip locked rows) for as long as the pause: the server ends it instead.
        settings = {"idle_in_transaction_session_timeout": str(int(self.config.lease * 500))}
        self._pool = await asyncpg.create_pool(
            self.config.dsn, min_size=1, max_size=4, server_settings=settings, init=self._connected
        )
        try:
            async with self._pool.acquire() as conn:
                await upgrade(conn, self.config.shards)
                self._channel = "cw_" + await conn.fetchval("SELECT current_schema()")
                self._server = await conn.fetchval(sql.IDENTITY)
            if not self.worker:
                return []
            await self._connect_listener()
            jobs = await self._tend_once()
        except BaseException:
            if self._listener is not None:
                await self._listener.close()
            await self._pool.close()
            raise
        self._tender = asyncio.create_task(self._tend(), name="chronowheel cluster leases")
        return jobs

    async def close(self) -> None:
        """Write out what is pending, hand every shard back (jobs claimed and not finished wait again), let go."""
        self._closing = True
        if self._tender is not None:
            self._tender.cancel()
            await asyncio.gather(self._tender, return_exceptions=True)
        for task in list(self._fetches):
            task.cancel()
        await asyncio.gather(*self._fetches, return_exceptions=True)
        try:
            await self._drain()
            if self.worker and self._pool is not None:
                await self._release(set(self.ownership.held))
                await self._pool.execute(sql.FORGET_ENGINE, self.me)
        finally:
            if self._listener is not None:
                await self._listener.close()
            if self._pool is not None:
                await self._pool.close()

    async def _drain(self) -> None:
        while self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    # -- changes (synchronous: queued for this turn's flush) -------------------------

    def check(self, job: Job, if_exists: str = "error") -> tuple[bytes, str]:
        """The new job's record (args JSON cannot hold raise here), and what a taken key does."""
        return encode_job(job, new=True), if_exists

    def recorded(self, job: Job, token: object = None) -> None:
        batch = self._batch
        if isinstance(token, tuple):
            batch.new[job.id] = (job, token[0], token[1])
        elif job.state == "paused" and job.id not in self._fences:
            self._resident.pop(job.id, None)
            self._paused.add(job.id)
            batch.resumes.pop(job.id, None)
            batch.pauses[job.id] = job
        elif job.id in self._paused:  # resumed: waiting again, filed in the wheel by the engine
            self._paused.discard(job.id)
            if batch.pauses.pop(job.id, None) is None:
                batch.resumes[job.id] = job
            else:  # paused and resumed within one turn: the row never changed
                self._resident[job.id] = (job, self._shard(job))
        elif job.id in self._fences or (job.fence is not None and job.state in ("failed", "dead")):
            # An attempt's outcome (a retry, a dead letter, a series between or at its next run), fenced by the
            # token that attempt was claimed under: a stale run's outcome matches nothing.
            claimed = self._fences.get(job.id)
            fence = job.fence
            if fence is None:  # a copy never claimed itself: the engine's claim of the job it stands for
                assert claimed is not None
                fence = claimed[0]
            if claimed is not None and claimed[0] == fence and job.state != "running":
                del self._fences[job.id]  # no longer claimed
            batch.settles[job.id, fence] = job
        elif job._parent is not None and job.id not in batch.runs and job.attempt == 0:
            # A new run of a series, starting now: claimed under its shard's token from the start, so that
            # its ack (it may finish before this turn's flush) is fenced like any other.
            shard = self._shard(job)
            token = self.ownership.token(shard, self._monotonic())
            if token is not None:  # None: the shard is lost; its new owner makes this run, once (the period's id)
                job._fence = token
                self._fences[job.id] = (token, shard)
                batch.runs[job.id] = job
        else:
            batch.puts[job.id] = job  # a redrive, a series refiled at restore
        self._kick()

    def moved(self, job: Job) -> None:
        if job.id not in self._batch.new:  # a new row takes its due when it is written
            self._batch.moves[job.id] = job._due_wall
            self._kick()

    def gone(self, job: Job, why: Gone, kept: Outcome | None = None) -> None:
        batch = self._batch
        self._resident.pop(job.id, None)
        fence = job.fence
        shard = None
        if why == "ack":
            claimed = self._fences.get(job.id)
            if claimed is not None and fence is not None:
                if claimed[0] == fence:
                    del self._fences[job.id]
                shard = claimed[1]
                batch.acks[job.id, fence] = shard  # a stale run's ack, under its own older token, matches nothing
            elif fence is not None and self._acked.get(job.id) == fence:
                del self._acked[job.id]  # acknowledged already, in the task's own transaction
                fence = None  # its outcome is kept as it is
            else:
                kept = None  # not claimed here: nothing acknowledged, nothing to keep
        else:
            fence = None
            if batch.new.pop(job.id, None) is None:  # cancelled before it was written: nothing to delete
                batch.cancels.add(job.id)
        if kept is not None:
            if shard is None:
                shard = self._shard(job)
            batch.kept[job.id, fence] = (shard, kept.expires, encode_done(kept))  # sets kept.unkept
        self._kick()

    def outcomes(self) -> list[Outcome]:
        return []  # kept in the database, read by result() there (results.py)

    async def ended(self, job_id: str, expired: asyncio.Future[None] | None) -> Ended | None:
        """Wait for the job's end anywhere in the cluster: see :meth:`.results.Finished.wait`."""
        assert self._pool is not None
        assert self._host is not None
        await self._drain()  # this engine's own acks first
        if self._listener is None:  # a client listens from its first wait on
            async with self._listening:
                if self._listener is None:
                    await self._connect_listener()
        return await self.finished.wait(self._pool, job_id, self._host.wall, expired)

    def _claim(self, jobs: list[Job], hand_out: HandOut) -> None:
        """Due jobs, out of the wheel: claim the ones of shards still held; ``hand_out`` gets the claimed."""
        assert self._host is not None
        now = self._monotonic()
        claiming = []
        for job in jobs:
            entry = self._resident.pop(job.id, None)
            shard = entry[1] if entry is not None else self._shard(job)
            token = self.ownership.token(shard, now)
            if token is not None:
                claiming.append((job, shard, token))
            else:
                if shard in self.ownership.held:
                    self.counts["guarded"] += 1  # held, but past the local guard: not claimed, not started
                    self._rescan.add(shard)  # if the next renew keeps the shard, its round files the job again
                self._host.let_go(job)
        if claiming:
            self._batch.claims.append((claiming, hand_out))
            self._kick()

    def _expires(self) -> float | None:
        """When an outcome kept now expires; None with ``result_ttl=0``, which keeps none."""
        assert self._host is not None
        return self._host.wall() + self._host.ttl if self._host.ttl else None

    def _shard(self, job: Job) -> int:
        if job._parent is not None:
            return self._shard(job._parent)  # a run stays with its series
        return shard_of(job.key if job.key is not None else job.id, self.config.shards)

    async def commit(self, job: Job) -> Job:
        """Wait for the flush that writes ``job``; returns it, or the job kept under its key (``"keep"``)."""
        if self._flusher is None and not self._batch:
            return job
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._batch.waiters.append((job, future))
        self._kick()
        return await future

    async def flush(self) -> None:
        await self._drain()

    def parked(self) -> list[Job]:
        return []  # cluster mode parks nothing: a job of an unknown task waits in the database

    # -- the flush: one transaction per loop turn ----------------------------------------

    def _kick(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all(), name="chronowheel cluster flush")

    async def _flush_all(self) -> None:
        try:
            while True:
                await asyncio.sleep(0)  # the rest of this turn's changes join the batch
                batch, self._batch = self._batch, _Batch()
                if not batch and not batch.waiters:
                    return
                if not await self._flush(batch):
                    await asyncio.sleep(RETRY)
        finally:
            self._flusher = None
            if self._batch or self._batch.waiters:
                self._kick()

    async def _flush(self, batch: _Batch) -> bool:
        """Write one batch in one transaction; False if it failed (what it promised goes out with the next)."""
        assert self._pool is not None
        assert self._host is not None
        started = time.perf_counter()
        claimed: list[tuple[list[Job], HandOut]] = []
        notes: list[str] = []
        ended: dict[str, str] = {}  # jobs with children (after=) this flush ended -> how
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if batch.cancels:
                    rows = await conn.fetch(sql.CANCEL, list(batch.cancels))
                    notes += (f"c{row['shard']}/{row['id']}" for row in rows)
                    ended.update((row["id"], "cancelled") for row in rows if row["waited"])
                if batch.new:
                    await self._insert(conn, batch.new, notes)
                if batch.runs:
                    await self._insert_runs(conn, batch.runs)
                if batch.puts:
                    await self._put(conn, batch.puts)
                if batch.settles:
                    await self._settle(conn, batch.settles, notes, ended)
                if batch.acks:
                    ids, fences = zip(*batch.acks, strict=True)
                    acked = await conn.fetch(sql.ACK, self.me, list(ids), list(fences), list(batch.acks.values()))
                    self.counts["stale_writes"] += len(batch.acks) - len(acked)
                    if _AUDIT:
                        await self._audit(conn, "ack", [(row["id"], row["shard"], row["fence"]) for row in acked])
                    let_through = {(row["id"], row["fence"]) for row in acked}
                    ended.update((row["id"], "succeeded") for row in acked if row["waited"])
                else:
                    let_through = set()
                if batch.kept:
                    await self._keep(conn, batch.kept, let_through, notes)
                if batch.moves:
                    rows = await conn.fetch(sql.MOVE, list(batch.moves), list(batch.moves.values()))
                    notes += (f"m{row['shard']}/{row['id']}" for row in rows)
                if batch.pauses or batch.resumes:
                    await self._pause(conn, batch.pauses, batch.resumes, notes)
                if ended:
                    notes += await dependencies.follow(conn, ended, self._expires())
                for claims, hand_out in batch.claims:
                    claimed.append((await self._claim_rows(conn, claims), hand_out))
                await self._notify(conn, notes)
        except Exception as exc:
            logger.error("chronowheel: cluster store: a write of %d waiting callers failed", len(batch.waiters))
            for job, future in batch.waiters:
                if not future.done():
                    outcome = self._outcomes.pop(job.id, None)
                    future.set_exception(outcome if isinstance(outcome, BaseException) else exc)
            for claims, _ in batch.claims:  # not claimed: they wait in the database; the refill brings them back
                for job, _, _ in claims:
                    self._fences.pop(job.id, None)
            if not self._closing:
                self._requeue(batch)
            self._refilled = 0.0
            return False
        self.round_trips.append(time.perf_counter() - started)
        self._after_insert(batch.new)
        now = self._monotonic()
        for jobs, hand_out in claimed:
            # The local guard, again: a claim that took long may have outlived the lease. Such a job is not
            # started; it stays claimed: the next owner's orphan sweep gives it back, or, if the next renew
            # keeps the shard here, this engine's next lease round does (``_unstrand``).
            ready = []
            for job in jobs:
                if self.ownership.token(self._fences[job.id][1], now) == job._fence:
                    ready.append(job)
                else:
                    self.counts["guarded"] += 1
                    token, shard = self._fences.pop(job.id)
                    self._stranded[job.id] = (shard, token)
                    self._host.let_go(job)
            if ready:
                hand_out(ready)
        for job, future in batch.waiters:
            outcome = self._outcomes.pop(job.id, job)
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        for outcome in self._outcomes.values():  # schedule_nowait() calls: nobody awaits them
            if isinstance(outcome, BaseException):
                logger.error("chronowheel: cluster store: a job scheduled without waiting was refused: %s", outcome)
        self._outcomes.clear()
        return True

    def _requeue(self, failed: _Batch) -> None:
        """A failed flush's changes that were reported made (cancels, moves, outcomes): into the next batch.

        New rows are not: their ``schedule()`` callers got the error. Claims
        are not: their jobs wait in the database for the rescan.
        """
        batch = self._batch
        batch.cancels |= failed.cancels
        batch.moves = {**failed.moves, **batch.moves}
        batch.acks = {**failed.acks, **batch.acks}
        batch.settles = {**failed.settles, **batch.settles}
        batch.runs = {**failed.runs, **batch.runs}
        batch.puts = {**failed.puts, **batch.puts}
        batch.kept = {**failed.kept, **batch.kept}
        batch.pauses = {**failed.pauses, **batch.pauses}
        batch.resumes = {**failed.resumes, **batch.resumes}

    def _rows(self, jobs: Collection[Job], records: list[bytes] | None = None) -> list[Any]:
        """The six arrays of new rows: id, shard, key, due, series, record."""
        return [
            [job.id for job in jobs],
            [self._shard(job) for job in jobs],
            [job.key for job in jobs],
            [job._due_wall for job in jobs],
            [job._series is not None for job in jobs],
            records if records is not None else [encode_job(job, new=False) for job in jobs],
        ]

    async def _insert(self, conn: asyncpg.Connection, new: dict[str, tuple[Job, bytes, str]], notes: list[str]) -> None:
        """Write new jobs, then the children (``after=``) among them, each once the parents it follows are written."""
        children = [entry[0] for entry in new.values() if entry[0]._after is not None]
        if not children:
            await self._write(conn, new, notes)
            return
        await self._write(conn, {key: entry for key, entry in new.items() if entry[0]._after is None}, notes, new)
        assert self._host is not None
        for generation in dependencies.generations(children):
            refused, waiting = await dependencies.admit(conn, generation, self._host.wall())
            for job_id, error in refused.items():
                new.pop(job_id)
                self._outcomes[job_id] = error
            rows = {job.id: new[job.id] for job in generation if job.id in new}
            await self._write(conn, rows, notes, new)
            written = [job for job in generation if job.id in new]
            notes += await dependencies.hold(conn, written, waiting, self._shard)

    async def _write(
        self,
        conn: asyncpg.Connection,
        new: dict[str, tuple[Job, bytes, str]],
        notes: list[str],
        batch: dict[str, tuple[Job, bytes, str]] | None = None,
    ) -> None:
        """Write new jobs; a key taken cluster-wide is :class:`DuplicateKey` (``"error"``) or the kept job.

        A job not written leaves ``new`` (and the ``batch`` it is part of).
        """
        for mode in ("error", "keep", "replace"):
            entries = [entry for entry in new.values() if entry[2] == mode]
            if not entries:
                continue
            jobs = [job for job, _, _ in entries]
            statement = sql.INSERT_REPLACE if mode == "replace" else sql.INSERT
            written = {row["id"] for row in await conn.fetch(statement, *self._rows(jobs, [r for _, r, _ in entries]))}
            horizon = self._host.wall() + self.config.horizon if self._host is not None else 0.0
            now = self._monotonic()
            for job in jobs:
                if job.id not in written:
                    new.pop(job.id)
                    if batch is not None:
                        batch.pop(job.id)
                    self._outcomes[job.id] = await self._taken(conn, job, mode)
                elif job._due_wall <= horizon and self.ownership.token(self._shard(job), now) is None:
                    notes.append(f"n{self._shard(job)}/{job.id}")  # its owner is another engine: tell it

    async def _taken(self, conn: asyncpg.Connection, job: Job, mode: str) -> Job | BaseException:
        assert self._host is not None
        if job._after is None:  # a child (after=) was never in the wheel
            self._host.drop(job)
        row = await conn.fetchrow(sql.KEPT, job.key) if mode == "keep" else None
        if row is None:
            return DuplicateKey(f"key: a job with key {job.key!r} is already pending in the cluster")
        return self._job_of(row)

    def _after_insert(self, new: dict[str, tuple[Job, bytes, str]]) -> None:
        """New jobs stay in this engine's wheel only if they are in its shards' near future."""
        assert self._host is not None
        now = self._monotonic()
        horizon = self._host.wall() + self.config.horizon
        for job, _, _ in new.values():
            if job.state != "pending" or job._after is not None:
                continue  # cancelled or fired meanwhile; a child (after=), in no wheel: its release loads it
            shard = self._shard(job)
            if self.ownership.token(shard, now) is not None and job._due_wall <= horizon:
                self._resident[job.id] = (job, shard)
            else:
                self._host.drop(job)

    async def _put(self, conn: asyncpg.Connection, puts: dict[str, Job]) -> None:
        """Whole rows written back unfenced (a redrive); a key taken meanwhile refuses the redrive alone."""
        try:
            async with conn.transaction():  # a savepoint
                await conn.fetch(sql.PUT, *self._rows(list(puts.values())))
        except asyncpg.UniqueViolationError:
            for job in puts.values():
                self._outcomes[job.id] = DuplicateKey(f"job: another job with key {job.key!r} is pending")

    async def _insert_runs(self, conn: asyncpg.Connection, runs: dict[str, Job]) -> None:
        jobs = list(runs.values())
        await conn.fetch(
            sql.INSERT_RUNS,
            self.me,
            [run.id for run in jobs],
            [self._shard(run) for run in jobs],
            [run._due_wall for run in jobs],
            [run._fence for run in jobs],
            [encode_job(run, new=False) for run in jobs],
        )

    async def _keep(
        self,
        conn: asyncpg.Connection,
        kept: dict[tuple[str, int | None], tuple[int, float, bytes]],
        acked: set[tuple[str, int]],
        notes: list[str],
    ) -> None:
        """Write the outcomes of the jobs this flush ended (an ack's only if the fence let it through)."""
        rows = [(key[0], *entry) for key, entry in kept.items() if key[1] is None or key in acked]
        if rows:
            await conn.execute(sql.KEEP, *map(list, zip(*rows, strict=True)))
            notes += (f"d{shard}" for shard in {shard for _, shard, _, _ in rows})

    async def _pause(
        self, conn: asyncpg.Connection, pauses: dict[str, Job], resumes: dict[str, Job], notes: list[str]
    ) -> None:
        """Pause waiting rows, then resume paused ones; a job whose row said no is not this engine's to hold."""
        assert self._host is not None
        if pauses:
            paused = {row["id"] for row in await conn.fetch(sql.PAUSE, list(pauses))}
            for job_id, job in pauses.items():
                if job_id not in paused:  # claimed, cancelled or paused elsewhere meanwhile
                    self._paused.discard(job_id)
                    self._host.let_go(job)
        if resumes:
            rows = {row["id"]: row for row in await conn.fetch(sql.RESUME, list(resumes))}
            now = time.monotonic()
            horizon = self._host.wall() + self.config.horizon
            for job_id, job in resumes.items():
                row = rows.get(job_id)
                if row is not None and self.ownership.token(row["shard"], now) is not None and row["due"] <= horizon:
                    self._resident[job_id] = (job, row["shard"])
                    continue
                self._host.drop(job)  # not this engine's to fire (any more), or not within its horizon
                if row is not None:
                    notes.append(f"n{row['shard']}/{job_id}")  # its owner files it

    async def _settle(
        self, conn: asyncpg.Connection, settles: dict[tuple[str, int], Job], notes: list[str], ended: dict[str, str]
    ) -> None:
        jobs = list(settles.values())
        rows = await conn.fetch(
            sql.SETTLE,
            self.me,
            [job.id for job in jobs],
            [fence for _, fence in settles],
            [_STATE[job.state] for job in jobs],
            [job._due_wall for job in jobs],
            [encode_job(job, new=False) for job in jobs],
            [self._shard(job) for job in jobs],
        )
        written = {(row["id"], row["fence"]) for row in rows}
        dead = (row["id"] for row in rows if row["waited"] and settles[row["id"], row["fence"]].state == "dead")
        ended.update((job_id, "dead") for job_id in dead)
        self.counts["stale_writes"] += len(settles) - len(written)
        assert self._host is not None
        horizon = self._host.wall() + self.config.horizon
        for (job_id, fence), job in settles.items():
            if (job_id, fence) not in written:
                if job.state in ("pending", "failed"):
                    self._host.drop(job)  # a stale run's retry: the row is another claim's (or engine's) now
            elif job.state in ("pending", "failed") and job._due_wall <= horizon:
                self._resident[job.id] = (job, self._shard(job))
            elif job.state == "dead":
                notes.append(f"d{self._shard(job)}")  # whoever waits for its result learns it failed

    async def _claim_rows(self, conn: asyncpg.Connection, claims: list[tuple[Job, int, int]]) -> list[Job]:
        """The fenced claim; returns the jobs claimed, and forgets the shards the database says are lost."""
        assert self._host is not None
        pairs = {shard: token for _, shard, token in claims}
        row = await conn.fetchrow(
            sql.CLAIM,
            self.me,
            list(pairs),
            list(pairs.values()),
            [job.id for job, _, _ in claims],
            self._host.wall() + DUE_TOLERANCE,
            [shard for _, shard, _ in claims],
        )
        assert row is not None
        held, ids = set(row["shards"]), set(row["ids"])
        self.counts["reruns"] += row["reruns"]
        lost = set(pairs) - held
        claimed = []
        missed = []
        for job, shard, token in claims:
            if job.id in ids:
                ids.discard(job.id)  # two copies of one job (a notification raced a refill): one starts
                job._fence = token
                self._fences[job.id] = (token, shard)
                claimed.append(job)
            else:
                if shard in lost:
                    self.counts["refused_claims"] += 1
                elif job.id not in self._fences:
                    missed.append(job.id)  # reloaded below, and indexed again if its row is still there
                if job.id not in self._fences:  # not a second copy of a job this engine holds a claim on
                    self._host.let_go(job)
        if lost:
            self._lose(lost)
        if missed:  # cancelled, claimed elsewhere, or moved by a change whose notification this engine missed:
            self._spawn(self._load_ids(missed))  # a moved row comes back with its new due
        if _AUDIT:
            await self._audit(conn, "claim", [(job.id, self._fences[job.id][1], job._fence) for job in claimed])
        return claimed

    async def _audit(self, conn: asyncpg.Connection, kind: str, rows: list[Any]) -> None:
        """Audit rows ``(id, shard, token)`` (the fault tests'), in the transaction of what they record."""
        if rows:
            ids, shards, tokens = (list(column) for column in zip(*rows, strict=True))
            await conn.execute(sql.AUDIT, kind, self.me, shards, tokens, ids)

    async def _notify(self, conn: asyncpg.Connection, notes: list[str]) -> None:
        """One notification per ``NOTIFY_MAX`` bytes of ``kind shard/id`` entries, delivered at commit."""
        chunk: list[str] = []
        size = 0
        for note in notes:
            if size + len(note) + 1 > NOTIFY_MAX:
                await conn.execute(sql.NOTIFY, self._channel, " ".join(chunk))
                chunk, size = [], 0
            chunk.append(note)
            size += len(note) + 1
        if chunk:
            await conn.execute(sql.NOTIFY, self._channel, " ".join(chunk))

    # -- ownership: heartbeat, renew, release, acquire, refill ------------------------------

    async def _tend(self) -> None:
        """Every quarter of the lease (jittered): keep the leases, move towards this engine's share, refill."""
        assert self._host is not None
        while True:
            await asyncio.sleep(self.config.lease / 4 * random.uniform(0.8, 1.0))
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._connect_listener()
                    self._refilled = 0.0  # notifications may have been lost meanwhile: rescan
                self._host.load(await self._tend_once())
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                logger.warning("chronowheel: cluster store: lease round failed (%s); retrying", exc)

    async def _tend_once(self) -> list[Job]:
        """One lease round; returns the jobs to file: the near future of shards won, or of all at a refill."""
        async with self._round:  # a notified hand-over and the periodic round do not interleave
            return await self._lease_round()

    async def _lease_round(self) -> list[Job]:
        assert self._pool is not None
        assert self._host is not None
        lease = self.config.lease
        async with self._pool.acquire() as conn:
            await conn.execute(sql.HEARTBEAT, self.me, self.config.shards)
            self._check_server(await conn.fetchval(sql.IDENTITY))
            if self.ownership.held:
                await conn.execute(sql.PURGE, list(self.ownership.held), self._host.wall(), PURGE_MAX)
            live = [row["id"] for row in await conn.fetch(sql.LIVE_ENGINES, lease)]
            if self.ownership.held:
                sent = self._monotonic()
                kept = await conn.fetch(sql.RENEW, self.me, lease, *self.ownership.pairs())
                lost = self.ownership.renewed([row["shard"] for row in kept], sent)
                if lost:
                    self._lose(lost, already=True)
            release = self._releasable(self.ownership.to_release(live))
            if release:
                await self._release(release, conn)
            wanted = list(self.ownership.wanted(live) - set(self.ownership.held))
            won: list[tuple[int, int]] = []
            if wanted:
                sent = self._monotonic()
                rows = await conn.fetch(sql.ACQUIRE, self.me, wanted, lease, self._reclaim)
                self._reclaim = False
                won = [(row["shard"], row["token"]) for row in rows]
                self.counts["takeovers"] += sum(row["previous"] not in (None, self.me) for row in rows)
            held = self.ownership.held
            await self._sweep(conn, [*won, *((shard, held[shard].token) for shard in self._unswept if shard in held)])
            if won:
                self.ownership.acquired(won, sent)  # its jobs may be claimed once the sweep has given them back
                if _AUDIT:
                    await self._audit(conn, "acquire", [(None, shard, token) for shard, token in won])
            await self._unstrand(conn)
            refill = self._monotonic() - self._refilled >= self.config.horizon / 2
            rescan, self._rescan = self._rescan & set(self.ownership.held), set()
            shards = list(self.ownership.held) if refill else list({shard for shard, _ in won} | rescan)
            if refill:
                self._refilled = self._monotonic()
            if not shards:
                return []
            rows = await conn.fetch(sql.LOAD, shards, self._host.wall() + self.config.horizon)
            if won:
                rows += await conn.fetch(sql.LOAD_DEAD, [shard for shard, _ in won])
        return self._new_residents(rows)

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
        if not self._stranded:
            return
        held = self.ownership.held
        mine = [
            (job_id, shard, token)
            for job_id, (shard, token) in self._stranded.items()
            if shard in held and held[shard].token == token
        ]
        self._stranded = {}
        if mine:
            await conn.execute(sql.UNCLAIM_IDS, *map(list, zip(*mine, strict=True)))
            self._rescan |= {shard for _, shard, _ in mine}

    def _check_server(self, identity: str) -> None:
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
            len(self.ownership.held),
        )
        self._server = identity
        self.counts["server_changes"] += 1
        self._unswept = set()
        if self.ownership.held:
            self._lose(set(self.ownership.held))
        self._reclaim = True
        self._refilled = 0.0

    async def _connected(self, conn: asyncpg.Connection) -> None:
        """Every new connection of the pool (a reconnect after a restart, too) checks the server's identity."""
        if self._server is not None:  # None: at start, before the schema (and its cw_meta) exists
            self._check_server(await conn.fetchval(sql.IDENTITY))

    def _releasable(self, shards: set[int]) -> set[int]:
        """Shards to hand over now: those with no job of theirs running here (graceful: no re-runs)."""
        return shards - {shard for _, shard in self._fences.values()}

    async def _release(self, shards: set[int], conn: asyncpg.Connection | None = None) -> None:
        """Hand shards back: stop firing them here, give back their claimed rows, end their leases now."""
        if not shards:
            return
        assert self._pool is not None
        pairs = [(shard, self.ownership.held[shard].token) for shard in shards if shard in self.ownership.held]
        self._lose(shards)
        if not pairs:
            return
        arrays = list(map(list, zip(*pairs, strict=True)))
        if conn is None:
            async with self._pool.acquire() as own:
                await self._hand_over(own, arrays)
        else:
            await self._hand_over(conn, arrays)

    async def _hand_over(self, conn: asyncpg.Connection, arrays: list[list[int]]) -> None:
        async with conn.transaction():
            await conn.execute(sql.UNCLAIM, *arrays)
            await conn.execute(sql.RELEASE, self.me, *arrays)
            await conn.execute(sql.NOTIFY, self._channel, "r")

    def _lose(self, shards: Collection[int], *, already: bool = False) -> None:
        """Shards no longer held: their jobs leave the wheel (the new owner has them)."""
        assert self._host is not None
        if not already:
            self.ownership.drop(shards)
        lost = set(shards)
        for job_id, (job, shard) in list(self._resident.items()):
            if shard in lost:
                del self._resident[job_id]
                self._host.drop(job)

    def _new_residents(self, rows: list[asyncpg.Record]) -> list[Job]:
        """Jobs from rows, without those already in the wheel; runs linked to their series."""
        jobs = []
        for row in rows:
            if row["id"] in self._resident:
                continue
            job = self._job_of(row)
            self._resident[job.id] = (job, row["shard"])
            jobs.append(job)
        for job in jobs:
            parent = job._parent
            if parent is not None:
                entry = self._resident.get(parent.id)
                if entry is not None and entry[0]._series is not None:
                    job._parent = entry[0]
                    entry[0]._series.active += 1
                else:
                    job._parent = None  # its series is not here: the run stands alone
        return jobs

    def _job_of(self, row: asyncpg.Record) -> Job:
        record = orjson.loads(row["record"])
        record["due"] = row["due"]  # the row's due is the truth: a move changes it, not the record
        job = job_from_record(record)
        if row["state"] == 3:
            job.state = "dead"
        elif row["state"] == 4:
            job.state = "paused"
        if row["state"] != dependencies.WAITING:
            job._after = None  # its parents all succeeded (the record keeps the list it was scheduled with)
        parent = record.get("parent")
        if parent is not None:
            placeholder = Job(parent, None, job.task, (), {}, 0, 0.0, 0)
            job._parent = placeholder  # resolved by _new_residents
        return job

    # -- notifications --------------------------------------------------------------------

    async def _connect_listener(self) -> None:
        self._listener = await asyncpg.connect(self.config.dsn)
        await self._connected(self._listener)
        await self._listener.add_listener(self._channel, self._heard)

    def _heard(self, conn: object, pid: int, channel: str, payload: str) -> None:
        """A notification: new or moved jobs to load, cancelled ones to drop, released shards to take."""
        if self._closing:
            return
        now = self._monotonic()
        load: list[str] = []
        for note in payload.split():
            if note == "r":
                if self.worker:  # a client listens only for its waiters of results
                    self._spawn(self._take_released())
                continue
            if note[0] == "d":
                self.finished.heard(int(note[1:]))
                continue
            shard, _, job_id = note[1:].partition("/")
            if self.ownership.token(int(shard), now) is None:
                continue
            kind = note[0]
            if kind == "n" and job_id in self._resident:
                continue  # held already
            entry = self._resident.pop(job_id, None)
            if entry is not None and self._host is not None:
                self._host.drop(entry[0])  # cancelled, or moved: the row's new due comes with the reload
            if kind != "c":
                load.append(job_id)
        if load:
            self._spawn(self._load_ids(load))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _load_ids(self, ids: list[str]) -> None:
        assert self._pool is not None
        assert self._host is not None
        rows = await self._pool.fetch(sql.LOAD_IDS, ids)
        horizon = self._host.wall() + self.config.horizon
        self._host.load(self._new_residents([row for row in rows if row["due"] <= horizon]))

    async def _take_released(self) -> None:
        assert self._host is not None
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            self._host.load(await self._tend_once())

    # -- reads and the transactional ack ----------------------------------------------------

    def stats(self) -> dict[str, Any]:
        samples = sorted(self.round_trips)

        def percentile(p: float) -> float:
            return samples[min(len(samples) - 1, int(p * len(samples)))] if samples else 0.0

        return {
            "engine": self.me,
            "role": self.config.role,
            "owned_shards": len(self.ownership.held),
            **self.counts,
            "round_trip": {"p50": percentile(0.5), "p99": percentile(0.99)},
        }


class ClusterHandle:
    """``engine.cluster``: what only the database can answer, and the transactional ack."""

    def __init__(self, store: ClusterStore) -> None:
        self._store = store

    @property
    def id(self) -> str:
        """This engine's id in the cluster (``cw_engine``, ``cw_shard.owner``)."""
        return self._store.me

    def _pool(self) -> asyncpg.Pool:
        pool = self._store._pool
        if pool is None:
            raise RuntimeError("cluster: start the engine first; it connects in start()")
        return pool

    async def ended(self, job_id: str, timeout: float | None) -> tuple[Outcome | None, dict[str, Job]]:  # noqa: ASYNC109
        """For ``engine.result()``: the job's kept outcome, or its dead letter, once it ended anywhere.

        Returns ``(None, {})`` for a job the database does not know (or whose
        outcome expired); ``timeout`` runs on the engine's clock.
        """
        store = self._store
        host = store._host
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
        host = self._store._host
        assert host is not None
        return await page(
            self._pool(), host.wall, state=state, task=task, key_prefix=key_prefix, limit=limit, after=after
        )

    async def get(self, key: str) -> Job | None:
        """The pending (or running series') job with this key, anywhere in the cluster."""
        row = await self._pool().fetchrow(sql.GET_KEY, key)
        return None if row is None else self._store._job_of(row)

    async def cancel(self, key: str) -> bool:
        """Cancel the waiting job with this key, whichever engine holds it; True if there was one."""
        store = self._store
        assert store._host is not None
        async with self._pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql.CANCEL_KEY, key)
            notes = [f"c{row['shard']}/{row['id']}" for row in rows]
            if rows and store._host.ttl:  # kept as a cancellation's outcome: result() raises JobCancelled
                expires = store._host.wall() + store._host.ttl
                kept: dict[tuple[str, int | None], tuple[int, float, bytes]] = {}
                for row in rows:
                    job = store._job_of(row)
                    job.state = "cancelled"
                    outcome = Outcome(job, None, expires, reason="engine.cluster.cancel() was called")
                    kept[job.id, None] = (row["shard"], expires, encode_done(outcome))
                await store._keep(conn, kept, set(), notes)
            ended = {row["id"]: "cancelled" for row in rows if row["waited"]}
            if ended:
                notes += await dependencies.follow(conn, ended, store._expires())
            await store._notify(conn, notes)
        return bool(rows)

    async def pause(self, key: str) -> bool:
        """Keep the waiting job with this key from firing, whichever engine holds it; True if there was one.

        The row is never claimed while paused; its owner drops its copy.
        """
        async with self._pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql.PAUSE_KEY, key)
            await self._store._notify(conn, [f"c{row['shard']}/{row['id']}" for row in rows])
        return bool(rows)

    async def resume(self, key: str) -> bool:
        """Let the paused job with this key wait again, wherever it was paused; True if it was paused.

        A deadline that passed meanwhile is due now; a recurring job's misfire
        policy decides, when it fires, what its missed runs do.
        """
        async with self._pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql.RESUME_KEY, key)
            await self._store._notify(conn, [f"n{row['shard']}/{row['id']}" for row in rows])
        return bool(rows)

    async def reschedule(self, key: str, *, delay: float | None = None, at: datetime | None = None) -> bool:
        """Move the waiting job with this key, whichever engine holds it; True if there was one."""
        from .._limits import check_when

        host = self._store._host
        assert host is not None
        due = host.wall() + check_when(delay, at, host.wall)
        async with self._pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql.MOVE_KEY, key, due)
            await self._store._notify(conn, [f"m{row['shard']}/{row['id']}" for row in rows])
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
        if fence is None or job.id not in store._fences:
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
                    await store._notify(conn, await dependencies.follow(conn, {job.id: "succeeded"}, None))
            except BaseException:
                await transaction.rollback()
                raise
            await transaction.commit()
        store._fences.pop(job.id, None)  # acknowledged under the current claim: the engine's own ack writes nothing
        store._acked[job.id] = fence  # ... but its outcome, once the task returns
