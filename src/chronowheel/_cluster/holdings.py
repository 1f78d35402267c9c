"""``Holdings``: what one engine holds of the cluster, in its memory (sans-IO, times passed in or read from a seam).

Its shards' leases (:class:`.ownership.Ownership`), the jobs of those shards
in its wheel, the claims of the jobs it runs (each under the fence it was
claimed by), and the jobs its local guard stopped. Every part of the store
(the flush, the lease rounds, the listener) reads and changes this one view;
none of it talks to the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

import orjson

from .._job import Job
from .._journal.records import job_from_record
from .config import Cluster
from .dependencies import WAITING, WAITING_PAUSED
from .host import Host
from .ownership import Ownership, shard_of

__all__ = ["PAUSED", "Holdings", "job_of"]

PAUSED: Final = frozenset((4, 6, WAITING_PAUSED))  # cw_job.state: paused waiting, paused while claimed, and held


class Holdings:
    """One engine's view of its share of the cluster: leases, resident jobs, claims, and their counts."""

    def __init__(self, me: str, config: Cluster) -> None:
        self.config = config
        self.ownership = Ownership(me, config.shards, config.lease)
        self.host: Host | None = None
        self.monotonic: Callable[[], float] = time.monotonic  # the leases' local clock (a seam for tests)
        # This engine's current claim of each claimed job (running; a series between runs) -> its fence, shard. An
        # attempt carries its own fence (job._fence): a run from before a lease lost and retaken holds an older one.
        self.fences: dict[str, tuple[int, int]] = {}
        self.resident: dict[str, tuple[Job, int]] = {}  # jobs of held shards in the wheel -> their shard
        self.paused: set[str] = set()  # jobs this engine paused (kept in its memory): their resume is a row change
        self.acked: dict[str, int] = {}  # acknowledged in the task's own transaction -> under that fence
        self.stranded: dict[str, tuple[int, int]] = {}  # claimed, then stopped by the guard -> shard, token
        self.rescan: set[int] = set()  # held shards with jobs the guard took out of the wheel
        self.refilled = 0.0  # when the last lease round reloaded every held shard (0: reload at the next)
        self.counts = dict.fromkeys(
            ("takeovers", "refused_claims", "guarded", "reruns", "stale_writes", "server_changes"), 0
        )

    def shard(self, job: Job) -> int:
        if job._parent is not None:
            return self.shard(job._parent)  # a run stays with its series
        return shard_of(job.key if job.key is not None else job.id, self.config.shards)

    def releasable(self, shards: set[int]) -> set[int]:
        """Shards to hand over now: those with no job of theirs running here (graceful: no re-runs)."""
        return shards - {shard for _, shard in self.fences.values()}

    def lose(self, shards: Collection[int], *, already: bool = False) -> None:
        """Shards no longer held: their jobs leave the wheel (the new owner has them)."""
        assert self.host is not None
        if not already:
            self.ownership.drop(shards)
        lost = set(shards)
        for job_id, (job, shard) in list(self.resident.items()):
            if shard in lost:
                del self.resident[job_id]
                self.host.drop(job)

    def new_residents(self, rows: list[Mapping[str, Any]]) -> list[Job]:
        """Jobs from rows, without those already in the wheel; runs linked to their series."""
        jobs = []
        for row in rows:
            if row["id"] in self.resident:
                continue
            job = job_of(row)
            self.resident[job.id] = (job, row["shard"])
            self.paused.discard(job.id)  # waiting again (resumed elsewhere): its next records are not a resume
            jobs.append(job)
        for job in jobs:
            parent = job._parent
            if parent is not None:
                entry = self.resident.get(parent.id)
                if entry is not None and entry[0]._series is not None:
                    job._parent = entry[0]
                    entry[0]._series.active += 1
                else:
                    job._parent = None  # its series is not here: the run stands alone
        return jobs


def job_of(row: Mapping[str, Any]) -> Job:
    """The job a ``cw_job`` row holds: its record, with the row's due and state (dead, paused) over the record's."""
    record = orjson.loads(row["record"])
    record["due"] = row["due"]  # the row's due is the truth: a move changes it, not the record
    job = job_from_record(record)
    state = row["state"]
    if state == 3:
        job.state = "dead"
    elif state in PAUSED:
        job.state = "paused"
    if state not in (WAITING, WAITING_PAUSED):
        job._after = None  # its parents all succeeded (the record keeps the list it was scheduled with)
    parent = record.get("parent")
    if parent is not None:
        placeholder = Job(parent, None, job.task, (), {}, 0, 0.0, 0)
        job._parent = placeholder  # resolved by new_residents
    return job
