"""Recurring dispatch: a series came due (misfire plan, overlap), a run starts, a run finished, the series refiled."""

from __future__ import annotations

import random
from collections.abc import Callable

from ._job import Job, new_job_id
from ._limits import MAX_DELAY, check_seconds
from ._placement import Placement
from ._pool import Pool
from ._recurrence import Cron, Every, check_misfire, check_overlap, jittered, plan_misfire
from ._registry import Registry
from ._series import Series
from ._stats import Stats
from ._ticks import Ticks
from ._timers import Timers

__all__ = ["Recurring"]


class Recurring:
    """Builds series at schedule time and keeps them running.

    ``owner`` is the engine its runs belong to (``Job._engine``: what
    ``cancel()`` and ``reschedule()`` check); ``rng`` draws their jitter.
    """

    def __init__(
        self,
        ticks: Ticks,
        timers: Timers,
        registry: Registry,
        placement: Placement,
        stats: Stats,
        rng: random.Random,
        owner: object,
    ) -> None:
        self._ticks = ticks
        self._timers = timers
        self._registry = registry
        self._placement = placement
        self._stats = stats
        self.rng = rng
        self._owner = owner
        # A run's id from its series and nominal time: a shared store's, so that one period is one row.
        self.run_id: Callable[[Job, float], str] | None = None

    def series_of(
        self,
        every: Every | None,
        cron: Cron | None,
        first_in: float | None,
        overlap: str,
        misfire: str,
        misfire_grace: float,
    ) -> Series:
        """The series for ``every=`` / ``cron=`` (one of them given), its first run ``first_in`` seconds from now.

        ``first_in`` None: the first run is the recurrence's next one.
        """
        if every is not None and cron is not None:
            raise ValueError("pass at most one of every= and cron=")
        if every is not None and not isinstance(every, Every):
            raise TypeError(f"every must be an Every, got {type(every).__name__}")
        if cron is not None and not isinstance(cron, Cron):
            raise TypeError(f"cron must be a Cron, got {type(cron).__name__}")
        recurrence: Every | Cron = every if every is not None else cron  # type: ignore[assignment]
        argument = "every" if every is not None else "cron"
        rate = self._ticks.rate
        if isinstance(recurrence, Every) and recurrence.seconds * rate < 1:
            raise ValueError(
                f"every: a period of {recurrence.seconds!r}s is shorter than this engine's tick ({1 / rate:g}s)"
            )
        if recurrence.jitter > MAX_DELAY:  # Every checks its own; a Cron's is checked here
            raise ValueError(f"{argument}: jitter must be at most {MAX_DELAY:g}s, got {recurrence.jitter!r}")
        check_overlap(overlap)
        check_misfire(misfire)
        grace = check_seconds("misfire_grace", misfire_grace)
        now = self._ticks.wall()
        first = recurrence.next_after(now, now) if first_in is None else now + first_in
        return Series(recurrence, first, first, misfire, grace, overlap)

    def due(self, nominal: float, series: Series) -> tuple[float, float]:
        """Seconds from now to a run's deadline, and the deadline: its nominal time plus the jitter drawn."""
        deadline = jittered(nominal, series.recurrence.jitter, self.rng)
        return max(0.0, deadline - self._ticks.wall()), deadline

    def fire(self, job: Job, pool: Pool) -> None:
        """A recurring job came due: start its run(s) per the misfire policy, file the next."""
        series = job._series
        assert series is not None
        now = self._ticks.wall()
        next_run = series.recurrence.next_after(series.nominal, series.anchor)
        if next_run > now and now - series.nominal <= series.grace + series.recurrence.jitter:
            # On time, the usual case (also for a run that reschedule moved off the grid).
            fire = [series.nominal]
        else:
            fire, next_run = plan_misfire(
                series.recurrence,
                series.nominal,
                now,
                anchor=series.anchor,
                misfire=series.misfire,
                misfire_grace=series.grace,
            )
        # Catch-up runs of one plan do not overlap each other; only a run
        # still going from before makes the overlap policy apply.
        overlapping = series.active > 0
        for nominal in fire:
            self._start_run(job, pool, nominal, overlapping)
        if series.after_finish and series.active:
            job.state = "running"  # the next run is timed from this one's end
            self._placement.record(job, own=True)
        else:
            self.refile(job, next_run)

    def _start_run(self, job: Job, pool: Pool, nominal: float, overlapping: bool) -> None:
        series = job._series
        assert series is not None
        if overlapping and series.overlap != "allow":
            if series.overlap == "queue" and series.waiting is None:
                series.waiting = nominal
            else:
                self._stats.counts["skipped"] += 1
            return
        run_id = new_job_id() if self.run_id is None else self.run_id(job, nominal)
        run = Job(run_id, None, job.task, job.args, job.kwargs, job.priority, nominal, self._ticks.current())
        run._engine = self._owner
        run._parent = job
        series.active += 1
        placement = self._placement
        placement.record(run, own=True)
        placement.keep(run)  # indexed from now on, queued or running: what jobs() and result() look up
        pool.put_nowait(run)
        self._stats.counts["fired"] += 1

    def run_finished(self, job: Job) -> None:
        """A run of a recurring job is over: start the queued one, or time the next from now."""
        series = job._series
        assert series is not None
        series.active -= 1
        if job.state == "paused" and series.after_finish and not series.active and not self._timers.closed:
            # Paused while its run went on: its next run is timed from this end all the same, and kept paused
            # there (a shared store's claim of the series ends with this record).
            series.nominal = series.recurrence.next_after(self._ticks.wall(), series.anchor)
            self._placement.set_due(job, *self.due(series.nominal, series))
            self._placement.record(job, own=True)
        if job.state in ("cancelled", "paused") or self._timers.closed:
            return  # a paused series files its next run when resumed
        if series.waiting is not None:
            nominal, series.waiting = series.waiting, None
            self._start_run(job, self._registry.pool_of(job), nominal, overlapping=False)
        elif series.after_finish and job.state == "running":
            self.refile(job, series.recurrence.next_after(self._ticks.wall(), series.anchor))

    def refile(self, job: Job, nominal: float) -> None:
        """File the series at its next run, ``nominal`` plus a fresh jitter."""
        series = job._series
        assert series is not None
        series.nominal = nominal
        job.state = "pending"
        self._placement.file(job, *self.due(nominal, series), own=True)
