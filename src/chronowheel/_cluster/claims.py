"""The fenced claim of a flush's due jobs, and the local guard that decides, once it commits, which start.

One statement claims every firing's jobs since the last flush (each pool's,
each turn's), each under the token it was claimed with: its shard rows are
locked once, in shard order, as every statement that locks more than one
does (see :mod:`.sql`).
"""

from __future__ import annotations

from typing import Final

import asyncpg

from .._job import Job
from . import sql, writes
from .batch import HandOut
from .holdings import Holdings
from .listener import Listener
from .writes import audit

__all__ = ["DUE_TOLERANCE", "claim", "start_guarded"]

DUE_TOLERANCE: Final = 0.05  # seconds: a job the wheel fired this close to its row's due is due


async def claim(
    conn: asyncpg.Connection,
    holdings: Holdings,
    listener: Listener,
    groups: list[tuple[list[tuple[Job, int, int]], HandOut]],
) -> list[tuple[list[Job], HandOut]]:
    """The fenced claim of every pool's due jobs, in one statement; returns each pool's claimed jobs.

    Forgets the shards the database says are lost: those refused under
    the token this engine still holds for them (a token it has since
    replaced refuses only the jobs claimed under it).
    """
    assert holdings.host is not None
    claims = [entry for group, _ in groups for entry in group]
    pairs = sorted({(shard, token) for _, shard, token in claims})
    row = await conn.fetchrow(
        sql.CLAIM,
        holdings.ownership.me,
        [shard for shard, _ in pairs],
        [token for _, token in pairs],
        [job.id for job, _, _ in claims],
        holdings.host.wall() + DUE_TOLERANCE,
        [shard for _, shard, _ in claims],
        [token for _, _, token in claims],
    )
    assert row is not None
    refused = set(pairs) - set(zip(row["shards"], row["tokens"], strict=True))
    won = set(zip(row["ids"], row["fences"], strict=True))
    holdings.counts["reruns"] += row["reruns"]
    held = holdings.ownership.held
    lost = {shard for shard, token in refused if shard in held and held[shard].token == token}
    claimed: list[tuple[list[Job], HandOut]] = []
    missed = []
    for group, hand_out in groups:
        started = []
        for job, shard, token in group:
            if (job.id, token) in won:
                won.discard((job.id, token))  # two copies of one job (a notification raced a refill): one starts
                job._fence = token
                holdings.fences[job.id] = (token, shard)
                started.append(job)
                continue
            if (shard, token) in refused:
                holdings.counts["refused_claims"] += 1
            elif job.id not in holdings.fences:
                missed.append(job.id)  # reloaded below, and indexed again if its row is still there
            if job.id not in holdings.fences:  # not a second copy of a job this engine holds a claim on
                holdings.host.let_go(job)
        claimed.append((started, hand_out))
    if lost:
        holdings.lose(lost)
    if missed:  # cancelled, claimed elsewhere, or moved by a change whose notification this engine missed:
        listener.spawn(listener.load_ids(missed))  # a moved row comes back with its new due
    if writes.AUDIT:
        await audit(
            conn,
            "claim",
            holdings.ownership.me,
            [(job.id, holdings.fences[job.id][1], job._fence) for jobs, _ in claimed for job in jobs],
        )
    return claimed


def start_guarded(holdings: Holdings, claimed: list[tuple[list[Job], HandOut]]) -> None:
    """Hand each pool its claimed jobs, once their claim has committed, that the local guard still lets start.

    A claim that took long may have outlived the lease. Such a job is not
    started; it stays claimed: the next owner's orphan sweep gives it back,
    or, if the next renew keeps the shard here, this engine's next lease
    round does (``Leases._unstrand``).
    """
    assert holdings.host is not None
    now = holdings.monotonic()
    for jobs, hand_out in claimed:
        ready = []
        for job in jobs:
            if holdings.ownership.token(holdings.fences[job.id][1], now) == job._fence:
                ready.append(job)
            else:
                holdings.counts["guarded"] += 1
                token, shard = holdings.fences.pop(job.id)
                holdings.stranded[job.id] = (shard, token)
                holdings.host.let_go(job)
        if ready:
            hand_out(ready)
