"""The journal as a :class:`chronowheel._store.Store`: the live set, the records, and when to compact."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Final, Literal

import orjson

from .._errors import UnknownTask
from .._job import Job
from .._outcome import Outcome
from .._store import Claim, Gone
from . import records
from .format import MAX_PAYLOAD
from .records import JSON_ONLY, encode_done, encode_job, encode_jobs, job_from_record, outcome_from_record, plain
from .replay import JobReplay
from .writer import FsyncPolicy, Journal

__all__ = ["JournalStore"]

logger = logging.getLogger("chronowheel")

SNAPSHOT_SLICE: Final = 0.0005  # seconds of encoding per loop turn while a snapshot is written
_SLICE_STEP: Final = 64  # jobs encoded (a jobs chunk of them) between two reads of the clock that measures the slice


def _own_size(payload: bytes) -> bytes:
    """A copy of ``payload`` in a block of its own size, to keep for ``result_ttl``.

    The bytes orjson returns keep the buffer they were written in: 4 KiB for
    a ``done`` record of 150 bytes (orjson 3.13, by tracemalloc), held for
    as long as the outcome is kept.
    """
    return bytes(memoryview(payload))


def _encode_slice(jobs: list[Job], start: int, live: dict[str, Job], until: float) -> tuple[list[bytes], int]:
    """The snapshot records of the jobs from ``start`` still live, until ``until`` (``perf_counter``); where it ended.

    A step's usual jobs go in one ``jobs`` chunk (:func:`.records.encode_jobs`,
    cut where another job comes so the order stays the journal's), the rest
    as their own records; the clock is read after each step's encoding, so a
    slice ends within a step of ``until`` however big the args are. (A chunk
    of 64 jobs reads about as fast as one of 4,096: 1.90 against 1.80 µs a job.)
    """
    payloads: list[bytes] = []
    while True:  # a step at least per slice, however short the slice
        chunk: list[Job] = []
        for job in jobs[start : start + _SLICE_STEP]:
            if live.get(job.id) is not job:
                continue
            if plain(job):
                chunk.append(job)
                continue
            if chunk:
                payloads += _chunk(chunk)
                chunk = []
            payloads.append(encode_job(job, new=False))
        if chunk:
            payloads += _chunk(chunk)
        start += _SLICE_STEP
        if start >= len(jobs) or time.perf_counter() >= until:
            return payloads, start


def _chunk(jobs: list[Job]) -> list[bytes]:
    """One ``jobs`` chunk of ``jobs``; or a record each, if the chunk would be larger than a record may be."""
    payload = encode_jobs(jobs)
    return [payload] if len(payload) <= MAX_PAYLOAD else [encode_job(job, new=False) for job in jobs]


class JournalStore:
    """An append-only journal of job changes, compacted into a snapshot when the log outgrows the live set.

    ``live`` holds every journaled job not yet acknowledged or cancelled (a
    snapshot writes them out), ``done`` the ``done`` records of finished jobs
    whose outcome is kept (a snapshot writes those not expired by ``wall``);
    ``journal`` is the writer.
    """

    claim: Claim | None = None  # one engine per journal (the lock): every due job is this engine's
    compact_factor = 4.0  # compact when the log holds this many records per live job...
    compact_min = 10_000  # ...and more than this many records

    def __init__(
        self,
        path: str,
        fsync: FsyncPolicy,
        interval: float,
        *,
        on_corrupt: Literal["error", "truncate"],
        unknown_tasks: Literal["error", "park"],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal = Journal(path, fsync, interval)
        # Weighed once a hand-over (a loop turn), the records the native path appends included.
        journal.on_grown = self._consider_compaction
        self.live: dict[str, Job] = {}
        self.done: dict[str, tuple[float, bytes]] = {}  # job id -> its outcome's expiry and done record
        self._wall = wall
        self.compaction: asyncio.Task[None] | None = None
        self._parked: dict[str, dict[str, Any]] = {}  # records of jobs whose task is not registered
        self._truncate = on_corrupt == "truncate"
        self._park = unknown_tasks == "park"
        self._open = False  # restored and not closing: compaction may start

    # -- start and stop -------------------------------------------------------------

    async def restore(self, tasks: Collection[str]) -> list[Job]:
        # Engine.start keeps the collector off until the jobs are filed (see there): it would walk them again and again.
        replay = JobReplay(tasks)  # the jobs are built as the records are read, in the thread
        await asyncio.to_thread(self.journal.recover, truncate_corrupt=self._truncate, replay=replay)
        try:
            jobs = self._rebuild(replay)
        except BaseException:
            await self.journal.close()
            raise
        del replay
        self.journal.open(asyncio.get_running_loop())
        self._open = True
        return jobs

    def _rebuild(self, replay: JobReplay) -> list[Job]:
        """The live jobs, runs linked to their series; outcomes kept apart; records of unknown tasks parked."""
        live, done, parked = replay.live, self.done, self._parked
        others = [job_id for job_id, entry in live.items() if not isinstance(entry, Job)] if replay.kept else []
        for job_id in others:
            record = live.pop(job_id)  # the few that are not jobs: out of the live set, which keeps its order
            assert isinstance(record, dict)
            if record["t"] == "done":  # a finished job's outcome: its task need not be registered
                done[job_id] = (record["exp"], _own_size(orjson.dumps(record)))
            else:
                parked[job_id] = record
        jobs: dict[str, Job] = live  # type: ignore[assignment]  # only jobs are left in it
        self.live = jobs  # adopted, not copied: a million inserts fewer
        if parked and not self._park:
            unknown = sorted({record["task"] for record in parked.values()})
            parked.clear()
            raise UnknownTask(
                f"journal: it holds jobs of tasks that are not registered: {', '.join(map(repr, unknown))};"
                " register them before start(), or pass Engine(unknown_tasks='park')"
            )
        for job_id, (run, parent_id) in replay.parents.items():  # a run of a recurring job finds its series again
            parent = jobs.get(parent_id)
            if jobs.get(job_id) is run and parent is not None and parent._series is not None:
                run._parent = parent
                parent._series.active += 1
        if parked:
            logger.warning(
                "chronowheel: journal: parked %d jobs of tasks that are not registered: %s",
                len(parked),
                ", ".join(sorted({record["task"] for record in parked.values()})),
            )
        return list(jobs.values())

    async def close(self) -> None:
        self._open = False
        if self.compaction is not None:
            self.compaction.cancel()
            await asyncio.gather(self.compaction, return_exceptions=True)
        await self.journal.close()

    # -- changes --------------------------------------------------------------------

    def check(self, job: Job, if_exists: str = "error") -> bytes:
        """The new job's record: args JSON cannot hold as themselves raise here (see ``encode_job``)."""
        return encode_job(job, new=True)

    def new_records(self) -> tuple[JournalStore, Journal, Any, int, int]:
        """What the native ``schedule_nowait`` and ``schedule`` need to record a new job as :meth:`check` and
        :meth:`recorded` (and :meth:`commit`) do, with no Python frame.

        This store (its ``live`` set, read at each call: recovery replaces it), its journal (its
        :meth:`~Journal.outbox`, and ``_failure``: a failed journal's calls take the method, which raises),
        orjson's ``dumps`` and the option it encodes with, and the largest new record (read now: a test may
        lower it). The native path takes only args it knows come back as themselves; every other call, and a
        record orjson refuses or that is too large, goes to :meth:`check`.
        """
        return self, self.journal, orjson.dumps, JSON_ONLY, records.NEW_RECORD_MAX

    def recorded(self, job: Job, token: object = None) -> None:
        self.live[job.id] = job
        self.journal.append(token if token.__class__ is bytes else encode_job(job, new=False))

    def moved(self, job: Job) -> None:
        if job.id in self.live:
            self.journal.append(orjson.dumps({"t": "move", "id": job.id, "due": job._due_wall}))

    def gone(self, job: Job, why: Gone, kept: Outcome | None = None) -> None:
        if self.live.pop(job.id, None) is None:
            return
        if kept is None:  # a discarded dead letter is gone as a cancelled job is
            self.journal.append(orjson.dumps({"t": "cancel" if why == "discard" else why, "id": job.id}))
            return
        payload = encode_done(kept)
        self.done[job.id] = (kept.expires, _own_size(payload))
        self.journal.append(payload)

    def outcomes(self) -> list[Outcome]:
        return [outcome_from_record(orjson.loads(payload)) for _, payload in self.done.values()]

    def commit(self, job: Job) -> Awaitable[Job]:
        return self.journal.durable(job)

    async def flush(self) -> None:
        await self.journal.sync()

    def parked(self) -> list[Job]:
        jobs = [job_from_record(record) for record in self._parked.values()]
        for job in jobs:
            job.state = "parked"
        return jobs

    def _consider_compaction(self) -> None:
        """Start a compaction if the log holds more than ``compact_factor`` records per live job (and kept outcome)."""
        if (
            self.compaction is None
            and self._open
            and self.journal.log_records
            > self.compact_factor * max(len(self.live) + len(self._parked) + len(self.done), self.compact_min)
        ):
            self.compaction = asyncio.create_task(self._compact(), name="chronowheel journal compaction")

    async def _compact(self) -> None:
        """Snapshot the live jobs and start a new log, a slice of time per loop turn: timers keep firing.

        The snapshot is taken after the new log begins, so every change made
        while it is written is in the new log too; records set state outright,
        so replaying such a change over the snapshot is harmless. Each loop
        turn encodes for ``SNAPSHOT_SLICE`` seconds (a count of jobs would
        take as long as their args are big), and the writer thread frames
        what one slice encoded: neither holds the GIL for long.
        """
        journal = self.journal
        try:
            await journal.rotate()
            live = self.live
            jobs = list(live.values())
            count = start = 0
            while start < len(jobs):
                payloads, start = _encode_slice(jobs, start, live, time.perf_counter() + SNAPSHOT_SLICE)
                await journal.add_to_snapshot(payloads)
                count += len(payloads)
                await asyncio.sleep(0)
            parked = [orjson.dumps(record) for record in self._parked.values()]
            now = self._wall()
            for job_id in [job_id for job_id, (expires, _) in self.done.items() if expires <= now]:
                del self.done[job_id]
            parked += [payload for _, payload in self.done.values()]
            await journal.add_to_snapshot(parked)
            await journal.finish_snapshot(count + len(parked))
        except asyncio.CancelledError:
            journal.abandon_snapshot()
            raise
        except OSError:
            return  # the journal has failed and logged it; every durable call raises from now on
        finally:
            self.compaction = None
