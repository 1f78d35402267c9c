"""The overview's figures over time: per pool, lateness percentiles and outcome rates between samples.

Sans-IO: :meth:`History.sample` takes a time and an ``Engine.stats()``
mapping; the dashboard feeds it from a volatile timer of the engine's own
(one every ``interval`` seconds, armed by the first request) and on each
overview request.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["History", "Point", "quantile"]

_OUTCOMES: Final = ("started", "succeeded", "failed", "dead")


@dataclass(frozen=True)
class _Sample:
    at: float
    lateness: dict[str, list[int]]  # pool -> lateness counts per bucket, summed over its tasks
    counts: dict[str, dict[str, int]]  # pool -> outcome -> count so far


@dataclass(frozen=True)
class Point:
    """One interval between two samples, for one pool: when it ended, p50/p99 lateness, outcomes per minute."""

    at: float
    p50: float | None
    p99: float | None
    per_minute: dict[str, float]


def quantile(bounds: list[float], counts: list[int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile; ``inf`` past the last bound; None if empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for bound, count in zip([*bounds, math.inf], counts, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return math.inf  # pragma: no cover - the loop ends at the last bucket, where seen == total


class History:
    """The last ``keep`` samples, at least ``interval`` seconds apart."""

    def __init__(self, interval: float = 5.0, keep: int = 120) -> None:
        self.interval = interval
        self._samples: deque[_Sample] = deque(maxlen=keep)
        self.bounds: list[float] = []

    def sample(self, now: float, stats: Mapping[str, Any]) -> None:
        if self._samples and now - self._samples[-1].at < self.interval:
            return
        lateness: dict[str, list[int]] = {}
        counts: dict[str, dict[str, int]] = {pool: dict.fromkeys(_OUTCOMES, 0) for pool in stats["pools"]}
        for figures in stats["tasks"].values():
            pool = figures["pool"]
            histogram = figures["lateness"]
            self.bounds = histogram["bounds"]
            into = lateness.setdefault(pool, [0] * len(histogram["counts"]))
            for i, count in enumerate(histogram["counts"]):
                into[i] += count
            totals = counts.setdefault(pool, dict.fromkeys(_OUTCOMES, 0))
            for outcome in _OUTCOMES:
                totals[outcome] += figures[outcome]
        self._samples.append(_Sample(now, lateness, counts))

    def points(self, pool: str) -> list[Point]:
        """Each interval's figures for ``pool``, oldest first."""
        points = []
        samples = list(self._samples)
        for before, after in itertools.pairwise(samples):
            then = before.lateness.get(pool)
            now = after.lateness.get(pool)
            late = None if now is None else [n - (then[i] if then else 0) for i, n in enumerate(now)]
            minutes = (after.at - before.at) / 60
            old, new = before.counts.get(pool, {}), after.counts.get(pool, {})
            rates = {key: (new.get(key, 0) - old.get(key, 0)) / minutes for key in _OUTCOMES}
            points.append(
                Point(
                    after.at,
                    None if late is None else quantile(self.bounds, late, 0.5),
                    None if late is None else quantile(self.bounds, late, 0.99),
                    rates,
                )
            )
        return points
