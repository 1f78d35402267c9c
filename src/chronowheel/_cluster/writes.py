"""The writes every part of the store makes inside its own transaction: notifications, kept outcomes, the audit.

The flush, the lease rounds and the handle's direct calls each end their
transaction with the same statements, so they live below all three.
"""

from __future__ import annotations

import os
from typing import Any, Final

import asyncpg

from . import sql

__all__ = ["AUDIT", "NOTIFY_MAX", "audit", "keep", "notify"]

NOTIFY_MAX: Final = 7900  # bytes of one notification's payload (PostgreSQL's limit is 8000)
AUDIT: Final = os.environ.get("CHRONOWHEEL_CLUSTER_AUDIT") == "1"  # the fault tests' audit trail


async def keep(
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


async def audit(conn: asyncpg.Connection, kind: str, me: str, rows: list[Any]) -> None:
    """Audit rows ``(id, shard, token)`` (the fault tests'), in the transaction of what they record."""
    if rows:
        ids, shards, tokens = (list(column) for column in zip(*rows, strict=True))
        await conn.execute(sql.AUDIT, kind, me, shards, tokens, ids)


async def notify(conn: asyncpg.Connection, channel: str, notes: list[str]) -> None:
    """One notification per ``NOTIFY_MAX`` bytes of ``kind shard/id`` entries, delivered at commit."""
    chunk: list[str] = []
    size = 0
    for note in notes:
        if size + len(note) + 1 > NOTIFY_MAX:
            await conn.execute(sql.NOTIFY, channel, " ".join(chunk))
            chunk, size = [], 0
        chunk.append(note)
        size += len(note) + 1
    if chunk:
        await conn.execute(sql.NOTIFY, channel, " ".join(chunk))
