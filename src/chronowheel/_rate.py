"""Rate limits: ``Rate(limit, per=seconds)`` and the sliding-window limiter a pool's dispatch asks: sans-IO.

A sliding window of the last ``limit`` start ticks, not a token bucket or
GCRA: those bound the average rate, and let up to twice ``limit`` through in
one window (a full bucket, then its refill). The window holds exactly: no
``per`` seconds ever see more than ``limit`` starts.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

from ._limits import check_int, check_seconds

__all__ = ["Limiter", "Rate"]

MAX_LIMIT: Final = 1_000_000
"""The most starts one window counts: the limiter keeps one tick per start in the window."""


class Rate:
    """At most ``limit`` job starts per ``per`` seconds, for :meth:`Engine.add_pool`'s ``rate``."""

    __slots__ = ("limit", "per")

    def __init__(self, limit: int, per: float = 1.0) -> None:
        check_int("limit", limit)
        if limit > MAX_LIMIT:
            raise ValueError(f"limit must be an int from 1 to {MAX_LIMIT}, got {limit!r}")
        self.limit: Final = limit
        self.per: Final = check_seconds("per", per, positive=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rate) and (self.limit, self.per) == (other.limit, other.per)

    def __hash__(self) -> int:
        return hash((self.limit, self.per))

    def __repr__(self) -> str:
        return f"Rate({self.limit}, per={self.per:g})"


class Limiter:
    """How many starts a :class:`Rate` allows at a tick, on a wheel running at ``rate`` ticks a second.

    The window is ``ceil(per * rate)`` ticks: rounding up never lets a
    window shorter than ``per`` seconds hold ``limit + 1`` starts.
    """

    __slots__ = ("_starts", "_window", "limit")

    def __init__(self, rate: Rate, ticks_per_second: float) -> None:
        self.limit = rate.limit
        self._window = max(1, math.ceil(rate.per * ticks_per_second))
        self._starts: deque[int] = deque()  # the ticks of the starts still in the window, oldest first

    def room(self, now: int) -> int:
        """How many jobs may start at tick ``now``; forgets the starts that have left the window."""
        starts = self._starts
        horizon = now - self._window
        while starts and starts[0] <= horizon:
            starts.popleft()
        return max(0, self.limit - len(starts))  # a catch-up plan of a recurring job may have overfilled it

    def took(self, now: int, count: int) -> None:
        """``count`` jobs started at tick ``now``: what :meth:`room` allowed, or more for a recurring job's catch-up."""
        self._starts.extend([now] * count)

    def free_at(self) -> int:
        """The first tick at which another job may start (past ticks: now)."""
        starts = self._starts
        if len(starts) < self.limit:
            return 0
        return starts[0] + self._window
