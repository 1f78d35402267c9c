"""What the dashboard shows, as plain values: the same dicts feed the HTML pages and the JSON API."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ._history import History, Point

if TYPE_CHECKING:
    from .._job import Job

__all__ = ["job_view", "next_runs", "overview", "sparkline"]

_NEXT_RUNS: Final = 3


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def next_runs(job: Job, count: int = _NEXT_RUNS) -> list[str]:
    """A recurring job's next nominal runs from its deadline on (jitter aside), as ISO-8601 UTC."""
    recurrence = job.recurrence
    if recurrence is None:
        return []
    first = job.deadline.timestamp()
    runs, at = [first], first
    for _ in range(count - 1):
        at = recurrence.next_after(at, first)
        runs.append(at)
    return [_iso(datetime.fromtimestamp(run, UTC)) for run in runs]


def job_view(job: Job) -> dict[str, Any]:
    """A job as plain values; ``args``/``kwargs`` as they are (the JSON API shows what JSON cannot hold by repr)."""
    error = job.error
    return {
        "id": job.id,
        "key": job.key,
        "task": job.task,
        "state": job.state,
        "attempt": job.attempt,
        "priority": job.priority,
        "deadline": _iso(job.deadline),
        "args": list(job.args),
        "kwargs": dict(job.kwargs),
        "recurrence": None if job.recurrence is None else repr(job.recurrence),
        "next_runs": next_runs(job),
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "traceback": job.traceback,
    }


def _number(value: float | None) -> float | None:
    """JSON has no infinity: past the last bucket (an hour late) shows as null, like no data."""
    return None if value is None or math.isinf(value) else value


def _point(point: Point) -> dict[str, Any]:
    return {"at": point.at, "p50": _number(point.p50), "p99": _number(point.p99), "per_minute": point.per_minute}


def overview(stats: Mapping[str, Any], history: History) -> dict[str, Any]:
    """Per pool: its figures now, and lateness p50/p99 and outcomes per minute over the sampled intervals."""
    pools = {}
    for name, figures in stats["pools"].items():
        points = [_point(point) for point in history.points(name)]
        pools[name] = {**figures, "history": points, "last": points[-1] if points else None}
    totals = {key: stats[key] for key in ("pending", "queued", "running", "dead", "timers", "fired")}
    return {"totals": totals, "lateness": stats["lateness"], "pools": pools}


def sparkline(points: list[dict[str, Any]], key: str, width: int = 240, height: int = 40) -> str:
    """An SVG polyline's ``points`` for one series (seconds), scaled to the box; empty without two values."""
    values = [(i, point[key]) for i, point in enumerate(points) if point[key] is not None]
    if len(values) < 2:
        return ""
    top = max(value for _, value in values) or 1.0
    step = width / max(1, len(points) - 1)
    return " ".join(f"{i * step:.1f},{height - value / top * (height - 2) - 1:.1f}" for i, value in values)
