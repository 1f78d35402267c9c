"""Fixed-bucket histograms: one ``bisect`` and two additions per observation, read whole at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Final

__all__ = ["FSYNC_RECORDS", "FSYNC_SECONDS", "Histogram", "JOB_SECONDS"]

# Upper bounds, in the Prometheus sense (a bucket counts the values at most its bound).
JOB_SECONDS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                      300.0, 900.0, 1800.0, 3600.0)  # fmt: skip
FSYNC_SECONDS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
FSYNC_RECORDS: Final = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)


class Histogram:
    """Counts per bucket (the last one past every bound) and the sum of what was observed."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def report(self) -> dict[str, Any]:
        """``{"bounds", "counts", "sum"}``: ``counts`` per bucket, not cumulative; one more than ``bounds``."""
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum}
