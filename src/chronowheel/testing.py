"""Test helpers for code that uses chronowheel: a clock that moves only when told.

Pass ``VirtualClock()`` as ``Engine(clock=...)``; ``await clock.advance(3600)``
then runs an hour of timers at once, each exactly on time (see the README).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable

__all__ = ["VirtualClock"]


class _Wakeup:
    __slots__ = ("callback", "seq", "when")

    def __init__(self, when: float, seq: int, callback: Callable[[], None] | None) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback

    def __lt__(self, other: _Wakeup) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        self.callback = None


class VirtualClock:
    """A deterministic clock for tests: time stands still until :meth:`advance`.

    ``advance`` walks time forward through every wake-up due on the way, in
    order, and after each lets the event loop run ``settle_rounds`` rounds so
    the engine and the jobs it started catch up, without any real sleep.
    Time passes for nothing else: ``engine.stop(grace=10)`` with jobs still
    running waits for ten virtual seconds, so advance the clock meanwhile or
    stop with ``grace=0``.
    """

    def __init__(self, start: float = 0.0, *, wall: float = 1_767_225_600.0, settle_rounds: int = 32) -> None:
        if not math.isfinite(start) or start < 0:
            raise ValueError(f"start must be a finite non-negative number, got {start!r}")
        if not math.isfinite(wall):
            raise ValueError(f"wall must be a finite number, got {wall!r}")
        if settle_rounds < 1:
            raise ValueError(f"settle_rounds must be at least 1, got {settle_rounds!r}")
        self._now = float(start)
        self._wall_offset = wall - start
        self._wakeups: list[_Wakeup] = []
        self._seq = itertools.count()
        self.settle_rounds = settle_rounds

    def time(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def call_at(self, when: float, callback: Callable[[], None]) -> _Wakeup:
        wakeup = _Wakeup(when, next(self._seq), callback)
        heapq.heappush(self._wakeups, wakeup)
        return wakeup

    async def advance(self, seconds: float) -> None:
        """Move time ``seconds`` forward, firing every wake-up due on the way."""
        if not seconds >= 0 or not math.isfinite(seconds):
            raise ValueError(f"seconds must be a finite non-negative number, got {seconds!r}")
        target = self._now + seconds
        await self.settle()
        while self._wakeups and self._wakeups[0].when <= target:
            wakeup = heapq.heappop(self._wakeups)
            if wakeup.callback is None:
                continue
            self._now = max(self._now, wakeup.when)
            wakeup.callback()
            await self.settle()
        self._now = target
        await self.settle()

    async def settle(self) -> None:
        """Let the event loop run until work started by a wake-up has caught up."""
        for _ in range(self.settle_rounds):
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"VirtualClock(time={self._now!r})"
