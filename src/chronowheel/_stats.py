"""What an engine counts: jobs by outcome, in all and per task, and how late and how long they ran."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ._histogram import JOB_SECONDS, Histogram

if TYPE_CHECKING:
    from ._job import Job
    from ._pool import Pool

__all__ = ["Stats", "TaskFigures"]

_LATENESS_SAMPLES: Final = 4096


class TaskFigures:
    """One task's outcome counts, and histograms of its lateness (deadline to start) and run time, in seconds.

    Bumped once per attempt (at its start and at its end), never per volatile timer.
    """

    __slots__ = ("counts", "duration", "lateness")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("started", "succeeded", "failed", "retried", "dead", "cancelled"), 0)
        self.lateness = Histogram(JOB_SECONDS)
        self.duration = Histogram(JOB_SECONDS)


class Stats:
    """Counters (``counts``) the engine parts bump, the last lateness samples, and ``tasks``' figures by name."""

    __slots__ = ("counts", "lateness", "tasks")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("fired", "succeeded", "failed", "retried", "cancelled", "skipped"), 0)
        self.lateness: deque[float] = deque(maxlen=_LATENESS_SAMPLES)
        # A defaultdict: the lookup at a job's start is one C call, no Python frame.
        self.tasks: defaultdict[str, TaskFigures] = defaultdict(TaskFigures)

    def report(
        self,
        pools: Iterable[Pool],
        dead: Iterable[Job],
        pool_of: Mapping[str, str],
        timers: int,
        journal: Callable[[], dict[str, Any]] | None,
    ) -> dict[str, Any]:
        """``Engine.stats()``: the totals, lateness percentiles (p50, p90, p99), and the figures per pool and task.

        ``pool_of`` maps each task to its pool's name; ``timers`` is the
        number of resident volatile timers; ``journal`` reads the journal's
        fsync figures, when there is one.
        """
        pools = list(pools)
        dead_by_task = Counter(job.task for job in dead)
        dead_by_pool: Counter[str] = Counter()
        for task, n in dead_by_task.items():
            dead_by_pool[pool_of.get(task, "default")] += n
        samples = sorted(self.lateness)

        def percentile(p: float) -> float:
            return samples[min(len(samples) - 1, int(p * len(samples)))] if samples else 0.0

        report = {
            "pending": sum(len(pool.wheel) for pool in pools) + timers,
            "queued": sum(pool.queued for pool in pools),
            "running": sum(pool.running for pool in pools),
            **self.counts,
            "dead": dead_by_task.total(),
            "lateness": {"p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99)},
            "timers": timers,
            "pools": {
                pool.name: {
                    "concurrency": pool.concurrency,
                    "max_queued": pool.max_queued,
                    "pending": len(pool.wheel),
                    "queued": pool.queued,
                    "running": pool.running,
                    "dead": dead_by_pool[pool.name],
                }
                for pool in pools
            },
            "tasks": {
                task: {
                    "pool": pool_of.get(task, "default"),
                    **figures.counts,
                    "dead_now": dead_by_task[task],
                    "lateness": figures.lateness.report(),
                    "duration": figures.duration.report(),
                }
                for task, figures in self.tasks.items()
            },
        }
        if journal is not None:
            report["journal"] = journal()
        return report
