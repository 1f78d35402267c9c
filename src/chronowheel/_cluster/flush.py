"""``Flusher``: a loop turn's changes written in one transaction, and what their commit tells the engine.

Everything an engine changes in a loop turn (new rows, cancels, moves,
pauses, fenced outcomes of claimed jobs, and the claim of the jobs the
driver found due) is a :class:`.batch.Batch`; one flush writes it in one
transaction, so a turn costs a handful of statements whatever the number of
jobs. Claimed jobs go to their pool only once the claim has committed, and
only while the local guard still holds their lease. A failed flush commits
nothing: its awaited ``schedule()`` callers get the error, and what it
reported done (cancels, moves, outcomes) goes out with the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Collection
from typing import Any, Final

import asyncpg
import orjson

from .._errors import DuplicateKey
from .._job import Job
from .._journal.records import encode_job
from . import dependencies, sql, writes
from .batch import Batch, HandOut
from .cancels import end_cancelled
from .claims import claim, start_guarded
from .holdings import Holdings, job_of
from .listener import Listener
from .writes import audit, keep, notify

__all__ = ["Flusher"]

logger = logging.getLogger("chronowheel")

RETRY: Final = 0.25  # seconds between a failed flush and the next try of the changes it carried
_STATE: Final = {"pending": 0, "failed": 0, "running": 1, "dead": 3, "paused": 4}


class Flusher:
    """The batch of this loop turn, and the task that writes it (one at a time, the next turn's batch waiting).

    ``listener`` loads again the rows a claim missed (moved, or cancelled).
    """

    def __init__(self, holdings: Holdings, listener: Listener) -> None:
        self._holdings = holdings
        self._ownership = holdings.ownership
        self._config = holdings.config
        self._listener = listener
        self.pool: asyncpg.Pool | None = None  # set by the store once connected
        self.batch = Batch()
        self._writing: Batch | None = None  # the batch of the flush under way
        self.task: asyncio.Task[None] | None = None
        self.closing = False  # at close a failed flush is given up, not tried again
        self._outcomes: dict[str, Job | BaseException] = {}  # of new rows and redrives, for their waiters
        self._cancelled: list[tuple[Job, str]] = []  # jobs this flush cancelled (children, replaced): told at commit
        self.round_trips: deque[float] = deque(maxlen=1024)

    def kick(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._flush_all(), name="chronowheel cluster flush")

    async def drain(self) -> None:
        """Wait until no flush is under way (one that ends with changes queued starts the next itself)."""
        while self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    def unwritten(self) -> set[int]:
        """The shards of claims and fenced outcomes not committed yet: none is handed over before they are.

        A hand-over gives back its shards' claimed rows: one whose run ended
        here but whose ack is still on its way would run again elsewhere.
        """
        shards: set[int] = set()
        for batch in (self.batch, self._writing):
            if batch is not None:
                shards.update(shard for claims, _ in batch.claims for _, shard, _ in claims)
                shards.update(batch.acks.values())
                shards.update(map(self._holdings.shard, (*batch.settles.values(), *batch.runs.values())))
        return shards

    async def _flush_all(self) -> None:
        try:
            while True:
                await asyncio.sleep(0)  # the rest of this turn's changes join the batch
                batch, self.batch = self.batch, Batch()
                if not batch and not batch.waiters:
                    return
                self._writing = batch
                written = await self._flush(batch)
                self._writing = None
                if not written:
                    await asyncio.sleep(RETRY)
        finally:
            self.task = self._writing = None
            if self.batch or self.batch.waiters:
                self.kick()

    async def _flush(self, batch: Batch) -> bool:
        """Write one batch in one transaction; False if it failed (what it promised goes out with the next)."""
        assert self.pool is not None
        assert self._holdings.host is not None
        started = time.perf_counter()
        claimed: list[tuple[list[Job], HandOut]] = []
        notes: list[str] = []
        ended: dict[str, str] = {}  # jobs with children (after=) this flush ended -> how
        self._cancelled.clear()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
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
                if batch.pauses_claimed or batch.resumes_claimed:  # before the settles: a run's end finds them
                    await self._pause_claimed(conn, batch.pauses_claimed, batch.resumes_claimed)
                if batch.settles:
                    await self._settle(conn, batch.settles, notes, ended)
                if batch.acks:
                    ids, fences = zip(*batch.acks, strict=True)
                    acked = await conn.fetch(
                        sql.ACK, self._ownership.me, list(ids), list(fences), list(batch.acks.values())
                    )
                    self._holdings.counts["stale_writes"] += len(batch.acks) - len(acked)
                    if writes.AUDIT:
                        await audit(
                            conn, "ack", self._ownership.me, [(row["id"], row["shard"], row["fence"]) for row in acked]
                        )
                    let_through = {(row["id"], row["fence"]) for row in acked}
                    ended.update((row["id"], "succeeded") for row in acked if row["waited"])
                else:
                    let_through = set()
                if batch.kept:
                    await keep(conn, batch.kept, let_through, notes)
                if batch.moves:
                    rows = await conn.fetch(sql.MOVE, list(batch.moves), list(batch.moves.values()))
                    notes += (f"m{row['shard']}/{row['id']}" for row in rows)
                if batch.pauses or batch.resumes:
                    await self._pause(conn, batch.pauses, batch.resumes, notes)
                if ended:
                    await self._follow(conn, ended, notes)
                if batch.claims:
                    claimed = await claim(conn, self._holdings, self._listener, batch.claims)
                await notify(conn, self._listener.channel, notes)
        except Exception as exc:
            logger.error("chronowheel: cluster store: a write of %d waiting callers failed", len(batch.waiters))
            for job, future in batch.waiters:
                if not future.done():
                    outcome = self._outcomes.pop(job.id, None)
                    future.set_exception(outcome if isinstance(outcome, BaseException) else exc)
            for claims, _ in batch.claims:  # not claimed: they wait in the database; the refill brings them back
                for job, _, _ in claims:
                    self._holdings.fences.pop(job.id, None)
            if not self.closing:
                self.batch.take_back(batch)
            self._holdings.refilled = 0.0
            return False
        self.round_trips.append(time.perf_counter() - started)
        for job, why in self._cancelled:
            self._holdings.host.cancelled(job, why)
        self._cancelled.clear()
        self._after_insert(batch.new)
        start_guarded(self._holdings, claimed)
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

    def _rows(self, jobs: Collection[Job], records: list[bytes] | None = None) -> list[Any]:
        """The six arrays of new rows: id, shard, key, due, series, record."""
        return [
            [job.id for job in jobs],
            [self._holdings.shard(job) for job in jobs],
            [job.key for job in jobs],
            [job._due_wall for job in jobs],
            [job._series is not None for job in jobs],
            records if records is not None else [encode_job(job, new=False) for job in jobs],
        ]

    async def _follow(self, conn: asyncpg.Connection, ended: dict[str, str], notes: list[str]) -> None:
        """Release or cancel the children of jobs this flush ended (the cancelled are reported once it commits)."""
        followed, cancelled = await dependencies.follow(conn, ended, self.expires())
        notes += followed
        self._cancelled += cancelled

    def expires(self) -> float | None:
        """When an outcome kept now expires; None with ``result_ttl=0``, which keeps none."""
        host = self._holdings.host
        assert host is not None
        return host.wall() + host.ttl if host.ttl else None

    async def _insert(self, conn: asyncpg.Connection, new: dict[str, tuple[Job, bytes, str]], notes: list[str]) -> None:
        """Write new jobs, then the children (``after=``) among them, each once the parents it follows are written."""
        children = [entry[0] for entry in new.values() if entry[0]._after is not None]
        if not children:
            await self._write(conn, new, notes)
            return
        await self._write(conn, {key: entry for key, entry in new.items() if entry[0]._after is None}, notes, new)
        assert self._holdings.host is not None
        for generation in dependencies.generations(children):
            refused, waiting = await dependencies.admit(conn, generation, self._holdings.host.wall())
            for job_id, error in refused.items():
                new.pop(job_id)
                self._outcomes[job_id] = error
            rows = {job.id: new[job.id] for job in generation if job.id in new}
            await self._write(conn, rows, notes, new)
            written = [job for job in generation if job.id in new]
            notes += await dependencies.hold(conn, written, waiting, self._holdings.shard)

    async def _write(
        self,
        conn: asyncpg.Connection,
        new: dict[str, tuple[Job, bytes, str]],
        notes: list[str],
        batch: dict[str, tuple[Job, bytes, str]] | None = None,
    ) -> None:
        """Write new jobs; a key taken cluster-wide is :class:`DuplicateKey` (``"error"``) or the kept job.

        A job not written leaves ``new`` (and the ``batch`` it is part of). A
        job taken over (``"replace"``) ends cancelled for its children, as the
        replace of one engine's own job does.
        """
        for mode in ("error", "keep", "replace"):
            entries = [entry for entry in new.values() if entry[2] == mode]
            if not entries:
                continue
            jobs = [job for job, _, _ in entries]
            taken = []
            if mode == "replace":  # locked: no child joins the old job before its row is the new one's
                taken = await conn.fetch(sql.TAKEN, [job.key for job in jobs])
            statement = sql.INSERT_REPLACE if mode == "replace" else sql.INSERT
            written = {row["id"] for row in await conn.fetch(statement, *self._rows(jobs, [r for _, r, _ in entries]))}
            if taken:
                await self._replaced(conn, taken, {job.key: job.id for job in jobs if job.id in written}, notes)
            horizon = self._holdings.host.wall() + self._config.horizon if self._holdings.host is not None else 0.0
            now = self._holdings.monotonic()
            for job in jobs:
                if job.id not in written:
                    new.pop(job.id)
                    if batch is not None:
                        batch.pop(job.id)
                    self._outcomes[job.id] = await self._taken(conn, job, mode)
                elif job._due_wall <= horizon and self._ownership.token(self._holdings.shard(job), now) is None:
                    notes.append(f"n{self._holdings.shard(job)}/{job.id}")  # its owner is another engine: tell it

    async def _replaced(
        self, conn: asyncpg.Connection, taken: list[Any], by: dict[str | None, str], notes: list[str]
    ) -> None:
        """Jobs whose keys new ones took (``"replace"``) end cancelled, as the replace of one engine's own job does."""
        ended = [row for row in taken if row["key"] in by and row["id"] != by[row["key"]] and row["state"] != 3]
        if ended:
            why = lambda row: f"replaced by job {by[row['key']]} (if_exists='replace')"  # noqa: E731
            self._cancelled += await end_cancelled(conn, ended, why, self.expires(), notes)

    async def _taken(self, conn: asyncpg.Connection, job: Job, mode: str) -> Job | BaseException:
        assert self._holdings.host is not None
        if job._after is None:  # a child (after=) was never in the wheel
            self._holdings.host.drop(job)
        row = await conn.fetchrow(sql.KEPT, job.key) if mode == "keep" else None
        if row is None:
            return DuplicateKey(f"key: a job with key {job.key!r} is already pending in the cluster")
        return job_of(row)

    def _after_insert(self, new: dict[str, tuple[Job, bytes, str]]) -> None:
        """New jobs stay in this engine's wheel only if they are in its shards' near future."""
        assert self._holdings.host is not None
        now = self._holdings.monotonic()
        horizon = self._holdings.host.wall() + self._config.horizon
        for job, _, _ in new.values():
            if job.state != "pending" or job._after is not None:
                continue  # cancelled or fired meanwhile; a child (after=), in no wheel: its release loads it
            shard = self._holdings.shard(job)
            if self._ownership.token(shard, now) is not None and job._due_wall <= horizon:
                self._holdings.resident[job.id] = (job, shard)
            else:
                self._holdings.host.drop(job)

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
            self._ownership.me,
            [run.id for run in jobs],
            [self._holdings.shard(run) for run in jobs],
            [run._due_wall for run in jobs],
            [run._fence for run in jobs],
            [encode_job(run, new=False) for run in jobs],
        )

    async def _pause(
        self, conn: asyncpg.Connection, pauses: dict[str, Job], resumes: dict[str, Job], notes: list[str]
    ) -> None:
        """Pause waiting (or held) rows, then resume paused ones; a job whose row said no is not this engine's to hold.

        A child held for its parents is in no wheel: resumed, it is held
        again, or, its parents done, filed by its owner (told, as any other).
        """
        host = self._holdings.host
        assert host is not None
        if pauses:
            rows = await conn.fetch(sql.PAUSE, list(pauses))
            notes += (f"c{row['shard']}/{row['id']}" for row in rows if row["state"] == 4)  # an owner drops its copy
            paused = {row["id"] for row in rows}
            for job_id, job in pauses.items():
                if job_id not in paused:  # claimed, cancelled or paused elsewhere meanwhile
                    self._holdings.paused.discard(job_id)
                    host.let_go(job)
        if resumes:
            rows = {row["id"]: row for row in await conn.fetch(sql.RESUME, list(resumes))}
            now = self._holdings.monotonic()
            horizon = host.wall() + self._config.horizon
            for job_id, job in resumes.items():
                row = rows.get(job_id)
                if row is not None and row["state"] != 0:
                    continue  # a child held for its parents again: in no engine's wheel
                if (
                    row is not None
                    and job._timer is not None
                    and self._ownership.token(row["shard"], now) is not None
                    and row["due"] <= horizon
                ):
                    self._holdings.resident[job_id] = (job, row["shard"])
                    continue
                # Not this engine's to fire (any more), not within its horizon, or a child (in no wheel).
                if job._timer is None:
                    host.let_go(job)
                else:
                    host.drop(job)
                if row is not None:
                    notes.append(f"n{row['shard']}/{job_id}")  # its owner files it

    async def _pause_claimed(
        self, conn: asyncpg.Connection, pauses: dict[tuple[str, int], Job], resumes: dict[tuple[str, int], Job]
    ) -> None:
        """Series paused (or resumed) while their run goes on: still claimed, fenced; their run's end settles them."""
        for statement, jobs in ((sql.PAUSE_CLAIMED, pauses), (sql.RESUME_CLAIMED, resumes)):
            if jobs:
                ids, fences = zip(*jobs, strict=True)
                shards = [self._holdings.shard(job) for job in jobs.values()]
                await conn.execute(statement, self._ownership.me, list(ids), shards, list(fences))

    async def _settle(
        self, conn: asyncpg.Connection, settles: dict[tuple[str, int], Job], notes: list[str], ended: dict[str, str]
    ) -> None:
        jobs = list(settles.values())
        rows = await conn.fetch(
            sql.SETTLE,
            self._ownership.me,
            [job.id for job in jobs],
            [fence for _, fence in settles],
            [_STATE[job.state] for job in jobs],
            [job._due_wall for job in jobs],
            [_record(job) for job in jobs],
            [self._holdings.shard(job) for job in jobs],
        )
        written = {(row["id"], row["fence"]): row["state"] for row in rows}  # -> the row's state now
        dead = (row["id"] for row in rows if row["waited"] and settles[row["id"], row["fence"]].state == "dead")
        ended.update((job_id, "dead") for job_id in dead)
        self._holdings.counts["stale_writes"] += len(settles) - len(written)
        host = self._holdings.host
        assert host is not None
        horizon = host.wall() + self._config.horizon
        for (job_id, fence), job in settles.items():
            stored = written.get((job_id, fence))
            if stored is None:
                if job.state in ("pending", "failed"):
                    host.drop(job)  # a stale run's retry: the row is another claim's (or engine's) now
                elif job.state == "paused":
                    self._holdings.paused.discard(job_id)
                    host.let_go(job)
            elif stored == 4 and job.state != "paused":  # paused cluster-wide while its run went on: kept so
                host.drop(job)
            elif stored == 0 and job.state == "paused":  # resumed cluster-wide while its run went on: waiting
                self._holdings.paused.discard(job_id)
                host.let_go(job)
                notes.append(f"n{self._holdings.shard(job)}/{job_id}")  # its owner (this engine, likely) files it
            elif job.state in ("pending", "failed") and job._due_wall <= horizon:
                self._holdings.resident[job.id] = (job, self._holdings.shard(job))
            elif job.state == "dead":
                notes.append(f"d{self._holdings.shard(job)}")  # whoever waits for its result learns it failed


def _record(job: Job) -> bytes:
    """A settled job's record; a paused one's in the state it waits in again once resumed, as a paused row keeps it."""
    record = encode_job(job, new=False)
    if job.state != "paused":
        return record
    decoded = orjson.loads(record)
    decoded["state"] = "failed" if job.attempt > 0 else "pending"
    return orjson.dumps(decoded)
