"""The engine's side of its journal away from the hot path: rebuilding jobs at start, snapshotting while running.

The per-change records (a job's state, a move, an ack or a cancel) are
written by the engine where the change happens; these two are the bulk
operations, each over every live job.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

import orjson

from ._errors import UnknownTask
from ._job import Job
from ._journal_records import job_from_record
from ._limits import MAX_AHEAD

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["compact", "restore"]

logger = logging.getLogger("chronowheel")

SNAPSHOT_CHUNK: Final = 2048  # jobs encoded per loop turn while a snapshot is written


async def compact(engine: Engine) -> None:
    """Snapshot the live jobs and start a new log, a chunk per loop turn: timers keep firing.

    The snapshot is taken after the new log begins, so every change made
    while it is written is in the new log too; records set state outright,
    so replaying such a change over the snapshot is harmless.
    """
    journal = engine._journal
    assert journal is not None
    try:
        await journal.rotate()
        jobs = list(engine._durable.values())
        count = 0
        for start in range(0, len(jobs), SNAPSHOT_CHUNK):
            chunk = jobs[start : start + SNAPSHOT_CHUNK]
            payloads = [engine._encode(job, new=False) for job in chunk if engine._durable.get(job.id) is job]
            await journal.add_to_snapshot(payloads)
            count += len(payloads)
            await asyncio.sleep(0)
        parked = [orjson.dumps(record) for record in engine._parked.values()]
        await journal.add_to_snapshot(parked)
        await journal.finish_snapshot(count + len(parked))
    except asyncio.CancelledError:
        journal.abandon_snapshot()
        raise
    except OSError:
        return  # the journal has failed and logged it; every durable call raises from now on
    finally:
        engine._compaction = None


def restore(engine: Engine, live: dict[str, dict[str, Any]]) -> None:
    """Put the journal's live jobs back: in the wheel, in the dead letters, or parked."""
    unknown = sorted({record["task"] for record in live.values()} - engine._tasks.keys())
    if unknown and engine._unknown_tasks == "error":
        raise UnknownTask(
            f"journal: it holds jobs of tasks that are not registered: {', '.join(map(repr, unknown))};"
            " register them before start(), or pass Engine(unknown_tasks='park')"
        )
    jobs: dict[str, Job] = {}
    parents: dict[str, str] = {}  # run id -> its series' id
    for job_id in list(live):
        record = live.pop(job_id)  # freed as it goes: each job reuses the memory of a record before it
        if record["task"] not in engine._tasks:
            engine._parked[job_id] = record
            continue
        job = jobs[job_id] = job_from_record(record)
        job._engine = engine
        if "parent" in record:
            parents[job_id] = record["parent"]
    engine._durable.update(jobs)
    for job_id, parent_id in parents.items():  # a run of a recurring job finds its series again
        parent = jobs.get(parent_id)
        if parent is not None and parent._series is not None:
            jobs[job_id]._parent = parent
            parent._series.active += 1
    now = engine._clock.wall()
    for job in jobs.values():
        series = job._series
        if job.state == "dead":
            engine._dead[job.id] = job
        elif job.state == "running":  # a fixed-delay series waiting for its run to end
            assert series is not None
            if not series.active:  # the run ended, its next time did not make it to the log
                engine._refile(job, series.recurrence.next_after(now, series.anchor))
            elif job.key is not None:  # its run goes on: the key stays taken, as before the restart
                engine._keyed.setdefault(job.key, job)
        else:
            deadline = job._due_wall  # overdue jobs are due now; recurring ones apply their misfire policy
            # A record's deadline is within TIME_MAX; one further out than the wheel reaches from now (only
            # a hand-made record, or a clock set back by ages) fires at the wheel's farthest, 1e12 s out.
            engine._set_due(job, min(max(0.0, deadline - now), MAX_AHEAD))
            job._due_wall = deadline
            engine._place(job)
    if engine._parked:
        logger.warning(
            "chronowheel: journal: parked %d jobs of tasks that are not registered: %s",
            len(engine._parked),
            ", ".join(unknown),
        )
