"""``schedule(after=...)`` in cluster mode: a child's parents kept in ``cw_after``, followed in the database.

A child is written in the waiting-for-parents state (5), which no claim,
load or refill takes, with one ``cw_after`` row per parent still to succeed;
each parent's row is marked ``waited``, so that the statements that end jobs
(the fenced ack and settle, the cancels) say which of their jobs have
children, and a flush with none pays nothing more. In the transaction that
ends a parent, a success strikes it off and makes every child left with no
parent waiting (0), its owner notified; a dead or cancelled end cancels the
children, with the reason kept as their outcome, and so on down the chain;
the engine whose write ended the parent reports them (its ``"cancelled"``
hooks and counts), once that write has committed.
A child paused while it waits (7) is counted off the same way, and left
paused (4) once it has no parent left.

Parents must exist when the child is written (checked in the database, in
the transaction that writes it), so no cycle can be made. The parent rows
are locked by that check: an end that races it waits for its commit, and
then finds the new child's edges. A child's edges are struck off under the
child row's lock, so two parents that end at once on two engines do not both
leave the child waiting for the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

import orjson

from .._journal.records import encode_done, job_from_record
from .._outcome import Outcome
from . import sql

if TYPE_CHECKING:
    import asyncpg

    from .._job import Job

__all__ = ["WAITING", "WAITING_PAUSED", "admit", "follow", "generations", "hold"]

WAITING: Final = 5  # cw_job.state of a child whose parents have not all succeeded
WAITING_PAUSED: Final = 7  # ... and paused meanwhile: when they have, it stays paused (4)

# A child's parents still to succeed: (parent id, its task).
Parents = list[tuple[str, str]]


def generations(children: list[Job]) -> list[list[Job]]:
    """New children in the order they can be checked: each after the new children it follows (one flush's)."""
    left = {job.id: job for job in children}
    ordered = []
    while left:
        ready = [job for job in left.values() if not any(parent in left for parent in job._after or ())]
        if not ready:  # cannot happen: a parent existed when its child was scheduled
            ready = list(left.values())
        ordered.append(ready)
        for job in ready:
            del left[job.id]
    return ordered


async def admit(
    conn: asyncpg.Connection, children: list[Job], wall: float
) -> tuple[dict[str, ValueError], dict[str, Parents]]:
    """Check new children's parents: the refused (why), and the parents each admitted child still waits for.

    As in one engine: a parent unfinished (waiting, running, paused, itself a
    child) is waited for; a succeeded one whose outcome is kept counts as
    done; one that ended dead or cancelled, a recurring one, or an unknown id
    is a ``ValueError``.
    """
    ids = sorted({parent for job in children for parent in job._after or ()})  # locked in id order: no deadlock
    rows = {row["id"]: row for row in await conn.fetch(sql.WAIT_FOR, ids)}
    missing = [parent for parent in ids if parent not in rows]
    ended = {row["id"]: row["state"] for row in await conn.fetch(sql.ENDED, missing, wall)} if missing else {}
    refused: dict[str, ValueError] = {}
    waiting: dict[str, Parents] = {}
    for job in children:
        outstanding: Parents = []
        for parent in job._after or ():
            row = rows.get(parent)
            if row is not None:
                if row["recurring"]:
                    refused[job.id] = ValueError(
                        f"after: job {parent} is recurring; a job can only follow one-shot jobs"
                    )
                elif row["state"] == 3:
                    refused[job.id] = ValueError(
                        f"after: job {parent} already ended dead; a job after it could never run"
                    )
                else:
                    outstanding.append((parent, row["task"]))
                    continue
                break
            how = ended.get(parent)
            if how == "succeeded":
                continue
            if how is not None:
                refused[job.id] = ValueError(f"after: job {parent} already ended {how}; a job after it could never run")
            else:
                refused[job.id] = ValueError(
                    f"after: no job {parent} in the cluster (unknown, or finished more than result_ttl ago)"
                )
            break
        else:
            waiting[job.id] = outstanding
    return refused, waiting


async def hold(
    conn: asyncpg.Connection, written: Iterable[Job], waiting: dict[str, Parents], shard: Callable[[Job], int]
) -> list[str]:
    """Written children: those with parents to wait for are held (state 5); the rest are due: notes for owners."""
    edges: list[tuple[str, str, str]] = []
    notes = []
    for job in written:
        parents = waiting[job.id]
        if parents:
            edges += ((job.id, parent, task) for parent, task in parents)
        else:
            notes.append(f"n{shard(job)}/{job.id}")  # every parent already succeeded: due by its own deadline
    if edges:
        await conn.execute(sql.HOLD, *map(list, zip(*edges, strict=True)))
    return notes


async def follow(
    conn: asyncpg.Connection, ended: dict[str, str], expires: float | None
) -> tuple[list[str], list[tuple[Job, str]]]:
    """Parents that ended in this transaction (id -> succeeded, dead, cancelled): release or cancel their children.

    Returns the notifications to send (children due now to their owners,
    cancelled ones to their result waiters), and the children cancelled,
    each with its reason, for the engine to report once the transaction has
    committed. ``expires``: when a cancelled child's kept outcome expires
    (None: ``result_ttl=0`` keeps none).
    """
    notes: list[str] = []
    cancelled: list[tuple[Job, str]] = []
    succeeded = [parent for parent, how in ended.items() if how == "succeeded"]
    if succeeded:
        children = [row["id"] for row in await conn.fetch(sql.STRIKE_OFF, succeeded)]
        if children:
            rows = await conn.fetch(sql.RELEASE_CHILDREN, children)
            notes += (f"n{row['shard']}/{row['id']}" for row in rows if row["state"] == 0)  # not a paused one
    failed = {parent: how for parent, how in ended.items() if how != "succeeded"}
    while failed:  # one level of the chain at a time: the children cancelled are the next level's parents
        rows = await conn.fetch(sql.CANCEL_CHILDREN, list(failed))
        kept = []
        for row in rows:
            notes += (f"c{row['shard']}/{row['id']}", f"d{row['shard']}")
            job = job_from_record(orjson.loads(row["record"]))
            job.state = "cancelled"
            why = f"parent job {row['parent']} of task {row['task']!r} ended {failed[row['parent']]}"
            cancelled.append((job, why))
            if expires is not None:
                kept.append((row["id"], row["shard"], expires, encode_done(Outcome(job, None, expires, reason=why))))
        if kept:
            await conn.execute(sql.KEEP, *map(list, zip(*kept, strict=True)))
        failed = {row["id"]: "cancelled" for row in rows}
    return notes, cancelled
