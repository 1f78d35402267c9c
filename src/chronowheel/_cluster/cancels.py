"""Rows a transaction takes out of the cluster for good (a cancel by key, a key taken over): they end cancelled.

One way for both: each job's outcome is kept (unless ``result_ttl=0``), its
owner told to drop its copy, its children (``after=``) cancelled for it; and
every job so ended is returned with its reason, for the engine whose write
it was to report once that write has committed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from .._job import Job
from .._journal.records import encode_done
from .._outcome import Outcome
from . import dependencies
from .holdings import job_of
from .writes import keep

__all__ = ["end_cancelled"]


async def end_cancelled(
    conn: asyncpg.Connection,
    rows: list[Mapping[str, Any]],
    why: Callable[[Mapping[str, Any]], str],
    expires: float | None,
    notes: list[str],
) -> list[tuple[Job, str]]:
    """End the jobs of these ``cw_job`` rows cancelled, each for ``why(row)``; returns them and their children.

    ``expires``: when their kept outcomes expire (None keeps none).
    """
    cancelled: list[tuple[Job, str]] = []
    kept: dict[tuple[str, int | None], tuple[int, float, bytes]] = {}
    for row in rows:
        job = job_of(row)
        job.state = "cancelled"
        reason = why(row)
        cancelled.append((job, reason))
        notes.append(f"c{row['shard']}/{row['id']}")
        if expires is not None:  # kept as a cancellation's outcome: result() raises JobCancelled
            kept[job.id, None] = (row["shard"], expires, encode_done(Outcome(job, None, expires, reason=reason)))
    await keep(conn, kept, set(), notes)
    waited = {row["id"]: "cancelled" for row in rows if row["waited"]}
    if waited:
        followed, children = await dependencies.follow(conn, waited, expires)
        notes += followed
        cancelled += children
    return cancelled
