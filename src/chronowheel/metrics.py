"""Prometheus metrics for an engine: ``register(engine)`` (``pip install 'chronowheel[prometheus]'``).

A custom collector reads :meth:`Engine.stats` at scrape time, so the engine
pays nothing per job for being exported: what it counts, it counts anyway
(``_stats``), and what is not scraped is never formatted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError("chronowheel.metrics needs prometheus_client: pip install 'chronowheel[prometheus]'") from exc

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["EngineCollector", "register"]

_OUTCOMES: Final = ("started", "succeeded", "failed", "retried", "dead", "cancelled")
_POOL_GAUGES: Final = (
    ("concurrency", "Workers in the pool."),
    ("pending", "Jobs waiting in the pool's wheel for their deadline (or, when due, for room)."),
    ("queued", "Due jobs in the pool's ready queue."),
    ("running", "Jobs running now."),
    ("dead", "Jobs in the dead letters."),
)


def _buckets(histogram: Mapping[str, Any]) -> list[tuple[str, float]]:
    """``Histogram.report()`` as Prometheus buckets: cumulative, ending with ``+Inf``."""
    bounds = [*histogram["bounds"], math.inf]
    total, buckets = 0, []
    for bound, count in zip(bounds, histogram["counts"], strict=True):
        total += count
        buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), float(total)))
    return buckets


class EngineCollector(Collector):
    """The metrics of one engine, read from ``engine.stats()`` whenever the registry is collected."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        stats = self._engine.stats()
        tasks: dict[str, dict[str, Any]] = stats["tasks"]
        for outcome in _OUTCOMES:
            counter = CounterMetricFamily(
                f"chronowheel_jobs_{outcome}", f"Jobs {outcome}, by pool and task.", labels=("pool", "task")
            )
            for task, figures in tasks.items():
                counter.add_metric((figures["pool"], task), figures[outcome])
            yield counter
        for name, key, doc in (
            ("chronowheel_job_lateness_seconds", "lateness", "Seconds from a job's deadline to the start of its run."),
            ("chronowheel_job_duration_seconds", "duration", "Seconds a job's attempt ran."),
        ):
            histogram = HistogramMetricFamily(name, doc, labels=("pool", "task"))
            for task, figures in tasks.items():
                histogram.add_metric((figures["pool"], task), _buckets(figures[key]), figures[key]["sum"])
            yield histogram
        for key, doc in _POOL_GAUGES:
            gauge = GaugeMetricFamily(f"chronowheel_pool_{key}", doc, labels=("pool",))
            for pool, figures in stats["pools"].items():
                gauge.add_metric((pool,), figures[key])
            yield gauge
        yield GaugeMetricFamily("chronowheel_timers_resident", "Volatile timers waiting.", value=stats["timers"])
        yield CounterMetricFamily(
            "chronowheel_fired", "Timers and jobs fired by the driver (volatile timers included).", value=stats["fired"]
        )
        yield CounterMetricFamily("chronowheel_runs_skipped", "Recurring runs skipped.", value=stats["skipped"])
        journal = stats.get("journal")
        if journal is not None:
            for name, key, doc in (
                ("chronowheel_journal_fsync_seconds", "fsync_seconds", "Seconds each fsync of the journal's log took."),
                ("chronowheel_journal_records_per_fsync", "records_per_fsync", "Records each log fsync made durable."),
            ):
                histogram = HistogramMetricFamily(name, doc)
                histogram.add_metric((), _buckets(journal[key]), journal[key]["sum"])
                yield histogram
            yield GaugeMetricFamily(
                "chronowheel_journal_log_records", "Records in the current log.", value=journal["log_records"]
            )
        yield from _cluster(stats.get("cluster"))


def _cluster(cluster: Mapping[str, Any] | None) -> Iterator[Metric]:
    """``stats()["cluster"]``'s numbers, each a gauge ``chronowheel_cluster_<key>`` (nested keys joined by ``_``)."""
    if cluster is None:
        return
    stack: list[tuple[str, Mapping[str, Any]]] = [("chronowheel_cluster", cluster)]
    while stack:
        prefix, mapping = stack.pop()
        for key, value in mapping.items():
            name = f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', str(key))}"
            if isinstance(value, Mapping):
                stack.append((name, value))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                yield GaugeMetricFamily(name, f"Cluster figure {key!r}.", value=value)


def register(engine: Engine, registry: CollectorRegistry | None = None) -> EngineCollector:
    """Export ``engine``'s metrics from ``registry`` (default: prometheus_client's global one); returns the collector.

    ``registry.unregister(collector)`` stops it. Serve them as usual, e.g.
    ``prometheus_client.start_http_server(9100)`` or ``chronowheel worker --metrics``.
    """
    collector = EngineCollector(engine)
    (REGISTRY if registry is None else registry).register(collector)
    return collector
