"""What an engine counts: jobs by outcome, and a window of firing lateness samples."""

from __future__ import annotations

from collections import deque
from typing import Any, Final

__all__ = ["Stats"]

_LATENESS_SAMPLES: Final = 4096


class Stats:
    """Counters (``counts``) the engine parts bump, and the last lateness samples, in seconds."""

    __slots__ = ("counts", "lateness")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("fired", "succeeded", "failed", "retried", "cancelled", "skipped"), 0)
        self.lateness: deque[float] = deque(maxlen=_LATENESS_SAMPLES)

    def report(self, pending: int, queued: int, running: int, dead: int) -> dict[str, Any]:
        """``Engine.stats()``: the counts, and lateness percentiles (p50, p90, p99)."""
        samples = sorted(self.lateness)

        def percentile(p: float) -> float:
            return samples[min(len(samples) - 1, int(p * len(samples)))] if samples else 0.0

        return {
            "pending": pending,
            "queued": queued,
            "running": running,
            **self.counts,
            "dead": dead,
            "lateness": {"p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99)},
        }
