"""A recurring job's schedule and the bookkeeping of its runs."""

from __future__ import annotations

from ._recurrence import Cron, Every

__all__ = ["Series"]


class Series:
    """How a recurring job repeats, and how its runs are going.

    A series is one job in one wheel slot: each time it comes due, the engine
    starts a run (a one-shot job of its own, with its own retries) and files
    the series again at its next nominal time, computed lazily. With
    ``fixed="delay"`` the next time is only known once the run finishes.
    """

    __slots__ = ("active", "anchor", "grace", "misfire", "nominal", "overlap", "recurrence", "waiting")

    def __init__(
        self, recurrence: Every | Cron, anchor: float, nominal: float, misfire: str, grace: float, overlap: str
    ) -> None:
        self.recurrence = recurrence
        self.anchor = anchor  # first nominal run: the grid of a fixed-rate series
        self.nominal = nominal  # the next run's nominal time, POSIX seconds, before jitter
        self.misfire = misfire
        self.grace = grace
        self.overlap = overlap
        self.active = 0  # runs started and not yet finished (retries included)
        self.waiting: float | None = None  # with overlap="queue": the one run held back

    @property
    def after_finish(self) -> bool:
        """True when the next run is timed from the end of the last one."""
        return isinstance(self.recurrence, Every) and self.recurrence.fixed == "delay"

    def __repr__(self) -> str:
        return f"<Series {self.recurrence!r} overlap={self.overlap} misfire={self.misfire} active={self.active}>"
