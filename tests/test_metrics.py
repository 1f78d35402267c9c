"""chronowheel.metrics: the exporter scraped over real HTTP, its text format parsed back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from chronowheel import Engine, Retry
from chronowheel._histogram import JOB_SECONDS, Histogram
from chronowheel.metrics import EngineCollector, register
from chronowheel.testing import VirtualClock
from helpers import virtual_sleep

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def exporter() -> Iterator[tuple[CollectorRegistry, str]]:
    """One real exporter on 127.0.0.1 for the module (its shutdown polls for half a second): registry and URL."""
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield registry, f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def export(exporter: tuple[CollectorRegistry, str]) -> Iterator[Callable[[Engine], None]]:
    """Register an engine on the exporter, for this test only."""
    registry, _ = exporter
    collectors: list[EngineCollector] = []
    yield lambda engine: collectors.append(register(engine, registry))
    for collector in collectors:
        registry.unregister(collector)


@pytest.fixture
def scrape(exporter: tuple[CollectorRegistry, str]) -> Callable[[], Awaitable[Samples]]:
    """GET /metrics over HTTP and parse the text format: every sample by (name, labels)."""
    _, url = exporter

    def get() -> Samples:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    async def fetch() -> Samples:
        return await asyncio.to_thread(get)

    return fetch


def at(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


@pytest.mark.parametrize("store", ["memory", "journal"])
async def test_scraped_figures_per_pool_and_task(
    store: str, tmp_path: Path, export: Callable[[Engine], None], scrape: Callable[[], Awaitable[Samples]]
) -> None:
    clock = VirtualClock()
    engine = Engine(clock=clock, journal=str(tmp_path / "j.log") if store == "journal" else None)
    engine.add_pool("one", concurrency=1)
    export(engine)

    @engine.task(pool="one")
    async def slow() -> None:
        await virtual_sleep(engine, 0.3)

    @engine.task(retry=Retry(2, backoff=1.0, jitter=False))
    async def broken() -> None:
        raise RuntimeError("no")

    @engine.task
    async def later() -> None:
        pass

    async with engine:
        for _ in range(3):  # due together, one worker: 0 s, 0.3 s and 0.6 s late
            await engine.schedule(slow, delay=1)
        await engine.schedule(broken, delay=1)
        await engine.schedule(later, delay=50, key="x")
        await engine.schedule(later, delay=60)
        engine.cancel("x")
        for delay in (100, 200):
            engine.call_later(delay, lambda: None)
        await clock.advance(1.7)  # the third slow job is running now (1.6 s to 1.9 s)
        mid = await scrape()
        await clock.advance(10)
        end = await scrape()
        await engine.flush()
        journaled = await scrape()

    slow_labels = {"pool": "one", "task": slow.__module__ + ":" + slow.__qualname__}
    broken_labels = {"pool": "default", "task": broken.__module__ + ":" + broken.__qualname__}
    later_labels = {"pool": "default", "task": later.__module__ + ":" + later.__qualname__}
    assert at(mid, "chronowheel_pool_running", pool="one") == 1
    assert at(mid, "chronowheel_jobs_started_total", **slow_labels) == 3
    assert at(mid, "chronowheel_jobs_succeeded_total", **slow_labels) == 2
    assert at(end, "chronowheel_jobs_succeeded_total", **slow_labels) == 3
    assert at(end, "chronowheel_pool_running", pool="one") == 0
    assert at(end, "chronowheel_jobs_started_total", **broken_labels) == 2
    assert at(end, "chronowheel_jobs_failed_total", **broken_labels) == 2
    assert at(end, "chronowheel_jobs_retried_total", **broken_labels) == 1
    assert at(end, "chronowheel_jobs_dead_total", **broken_labels) == 1
    assert at(end, "chronowheel_pool_dead", pool="default") == 1
    assert at(end, "chronowheel_jobs_cancelled_total", **later_labels) == 1
    assert at(end, "chronowheel_pool_pending", pool="default") == 1  # the later job due at 60 s
    assert at(end, "chronowheel_pool_concurrency", pool="one") == 1
    assert at(end, "chronowheel_timers_resident") == 2
    # Lateness 0, 0.3, 0.6 s: one in the 1 ms bucket, two more by 0.5 s, all three by 1 s.
    lateness = "chronowheel_job_lateness_seconds"
    assert at(end, lateness + "_bucket", le="0.001", **slow_labels) == 1
    assert at(end, lateness + "_bucket", le="0.25", **slow_labels) == 1
    assert at(end, lateness + "_bucket", le="0.5", **slow_labels) == 2
    assert at(end, lateness + "_bucket", le="1.0", **slow_labels) == 3
    assert at(end, lateness + "_count", **slow_labels) == 3
    assert at(end, lateness + "_sum", **slow_labels) == pytest.approx(0.9, abs=0.01)
    duration = "chronowheel_job_duration_seconds"
    assert at(end, duration + "_bucket", le="0.25", **slow_labels) == 0
    assert at(end, duration + "_bucket", le="0.5", **slow_labels) == 3
    assert at(end, duration + "_sum", **slow_labels) == pytest.approx(0.9, abs=0.01)
    fsyncs = {name: value for (name, _), value in journaled.items() if name.startswith("chronowheel_journal_")}
    if store == "memory":
        assert fsyncs == {}
    else:
        assert fsyncs["chronowheel_journal_fsync_seconds_count"] >= 1
        # Every record appended so far was fsynced by the flush: records per fsync add up to them.
        assert fsyncs["chronowheel_journal_records_per_fsync_sum"] >= 6
        assert fsyncs["chronowheel_journal_log_records"] >= 6


@pytest.mark.parametrize(
    ("value", "bucket"),
    [
        (0.0, 0),
        (0.001, 0),
        (0.0011, 1),
        (0.25, 7),
        (0.3, 8),
        (1.0, 9),
        (3600.0, len(JOB_SECONDS) - 1),
        (3601.0, len(JOB_SECONDS)),
    ],
)
def test_histogram_bucket_is_the_first_bound_at_or_above(value: float, bucket: int) -> None:
    histogram = Histogram(JOB_SECONDS)
    histogram.observe(value)
    assert histogram.counts.index(1) == bucket
    assert histogram.report()["sum"] == value


async def test_cluster_figures_become_gauges(
    export: Callable[[Engine], None], scrape: Callable[[], Awaitable[Samples]]
) -> None:
    engine = Engine(clock=VirtualClock())
    stats = engine.stats
    cluster = {"shards_owned": 12, "leases": {"lost": 3}, "role": "worker", "lag-seconds": 0.5, "leader": True}
    engine.stats = lambda: {**stats(), "cluster": cluster}  # type: ignore[method-assign]
    export(engine)
    samples = await scrape()
    figures = {name: value for (name, _), value in samples.items() if name.startswith("chronowheel_cluster_")}
    assert figures == {
        "chronowheel_cluster_shards_owned": 12,
        "chronowheel_cluster_leases_lost": 3,
        "chronowheel_cluster_lag_seconds": 0.5,
    }


def test_missing_extra_names_it() -> None:
    code = "import sys; sys.modules['prometheus_client'] = None; import chronowheel.metrics"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert result.returncode == 1
    assert "pip install 'chronowheel[prometheus]'" in result.stderr
