"""An operator's hand on jobs: pause and resume, and removing dead letters."""

from __future__ import annotations

from ._job import Job
from ._limits import MAX_AHEAD
from ._placement import Placement
from ._registry import Registry
from ._ticks import Ticks

__all__ = ["Control"]


class Control:
    """Pauses and resumes waiting jobs, and discards dead ones (``dead``: the dead letters, by id)."""

    def __init__(self, ticks: Ticks, registry: Registry, placement: Placement, dead: dict[str, Job]) -> None:
        self._wall = ticks.wall
        self._registry = registry
        self._placement = placement
        self._dead = dead

    def pause(self, job: Job) -> bool:
        """Take a waiting job out of its wheel, keeping its key and deadline; False if it is not waiting.

        A series between runs (``fixed="delay"``, its run going on) is paused
        too: the run finishes, its next run is timed from that end as usual,
        and the series waits there, paused, until resumed. So is
        a job waiting for its parents (``after=``, in no wheel): it still
        counts them off, and once they all succeeded it waits for its resume.
        """
        if job._after is not None:
            if job.state != "pending":
                return False
        elif job.state in ("pending", "failed"):
            if not self._registry.pool_of(job).wheel.cancel(job._timer):
                return False  # it fired: queued or running
        elif not (job.state == "running" and job._series is not None):
            return False
        job.state = "paused"
        job._timer = None
        self._placement.record(job)
        return True

    def resume(self, job: Job) -> bool:
        """File a paused job again at its deadline (past: due now; a series' misfire policy decides it).

        A job whose parents have not all succeeded goes back to waiting for
        them. False if it is not paused.
        """
        if job.state != "paused":
            return False
        series = job._series
        placement = self._placement
        if job._after is not None:
            job.state = "pending"  # held for its parents, as before the pause
            placement.record(job)
            return True
        if series is not None and series.after_finish and series.active:
            job.state = "running"  # its run goes on: the next is timed from that run's end
            placement.record(job)
            return True
        job.state = "failed" if job.attempt > 0 else "pending"  # a job waits with attempts made only for a retry
        deadline = job._due_wall
        placement.set_due(job, min(max(0.0, deadline - self._wall()), MAX_AHEAD))
        job._due_wall = deadline  # a series' run keeps its nominal instant; Recurring.fire plans what it missed
        placement.record(job)
        placement.place(job)
        return True

    def discard(self, job: Job) -> bool:
        """Remove a dead letter for good; False if the job is not one."""
        if self._dead.get(job.id) is not job:
            return False
        del self._dead[job.id]
        self._placement.gone(job, "discard")
        return True

    def purge(self, before: float | None) -> int:
        """Discard the dead letters whose last attempt was due before ``before`` (POSIX seconds; None: all)."""
        doomed = [job for job in self._dead.values() if before is None or job._due_wall < before]
        for job in doomed:
            self.discard(job)
        return len(doomed)
