"""``Batch``: what one loop turn changed, taken whole by a flush (sans-IO)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from .._job import Job

__all__ = ["Batch", "HandOut"]

HandOut = Callable[[list[Job]], None]
_K = TypeVar("_K")  # a job's id, or its id and fence


class Batch:
    """One loop turn's changes, taken whole by a flush."""

    __slots__ = (
        "acks",
        "cancels",
        "claims",
        "kept",
        "moves",
        "new",
        "pauses",
        "pauses_claimed",
        "puts",
        "resumes",
        "resumes_claimed",
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
        # Series paused, or resumed, while their run goes on (still claimed), by (id, the claim's fence).
        self.pauses_claimed: dict[tuple[str, int], Job] = {}
        self.resumes_claimed: dict[tuple[str, int], Job] = {}
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
            or self.pauses_claimed
            or self.resumes_claimed
        )

    def take_back(self, failed: Batch) -> None:
        """A failed flush's changes that were reported made (cancels, moves, outcomes): into this batch.

        New rows are not: their ``schedule()`` callers got the error. Claims
        are not: their jobs wait in the database for the rescan.
        """
        self.cancels |= failed.cancels
        self.moves = {**failed.moves, **self.moves}
        self.acks = {**failed.acks, **self.acks}
        self.settles = {**failed.settles, **self.settles}
        self.runs = {**failed.runs, **self.runs}
        self.puts = {**failed.puts, **self.puts}
        self.kept = {**failed.kept, **self.kept}
        # A pause undone by a later resume (or the reverse) is not sent: the later one stands.
        self.pauses, self.resumes = _later(failed.pauses, self.pauses, failed.resumes, self.resumes)
        self.pauses_claimed, self.resumes_claimed = _later(
            failed.pauses_claimed, self.pauses_claimed, failed.resumes_claimed, self.resumes_claimed
        )


def _later(
    paused: dict[_K, Job], pausing: dict[_K, Job], resumed: dict[_K, Job], resuming: dict[_K, Job]
) -> tuple[dict[_K, Job], dict[_K, Job]]:
    """A failed batch's pauses and resumes joined with the next batch's, the next one's winning per job."""
    return (
        {**{key: job for key, job in paused.items() if key not in resuming}, **pausing},
        {**{key: job for key, job in resumed.items() if key not in pausing}, **resuming},
    )
