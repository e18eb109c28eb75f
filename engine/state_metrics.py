"""Metrics of the pipeline's state, computed when Prometheus scrapes ``/metrics``.

The counters in engine/metrics.py say what happened; alerts also need what *is*: import jobs
per status and how long the oldest unfinished one has waited, folders waiting in incoming, free
space of the data folders and the worker's consumer lag. They are read from the database, the
file system and the broker (engine/status.py) at scrape time, cached for a few seconds so that
several scrapers or API workers do not multiply the work.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.config import Settings
from engine.db.models import ImportJob, JobStatus
from engine.db.session import session_scope
from engine.status import IN_FLIGHT, collect_health

CACHE_S = 5.0

#: Every metric this module exports (tests check that dashboards and alerts name only exported ones).
STATE_METRIC_NAMES = (
    "annostream_import_jobs",
    "annostream_import_job_oldest_in_flight_seconds",
    "annostream_incoming_folders",
    "annostream_folder_free_bytes",
    "annostream_folder_size_bytes",
    "annostream_consumer_lag",
    "annostream_broker_up",
    "annostream_database_up",
)


class StateCollector(Collector):
    def __init__(self, settings: Settings):
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        settings = self.settings
        health = collect_health(settings, max_count=100_000, idle_s=0.2)
        yield _gauge(
            "annostream_broker_up",
            "1 when the worker's consumer lag could be read from the broker.",
            [((), 0.0 if health.kafka_error else 1.0)],
        )
        yield _gauge(
            "annostream_database_up",
            "1 when the database answered and its schema is current.",
            [((), 0.0 if health.db_error else 1.0)],
        )
        lag = GaugeMetricFamily(
            "annostream_consumer_lag",
            "Events the worker has not processed yet, per topic (at least this many).",
            labels=["topic"],
        )
        per_topic: dict[str, int] = {}
        for item in health.lag:
            per_topic[item.topic] = per_topic.get(item.topic, 0) + item.lag
        for topic, value in sorted(per_topic.items()):
            lag.add_metric([topic], value)
        yield lag
        yield _gauge(
            "annostream_incoming_folders",
            "Analysis folders in ANALYSES_INCOMING, by state.",
            [
                (("ready",), float(len(health.incoming_ready))),
                (("waiting",), float(len(health.incoming_waiting))),
            ],
            labels=["state"],
        )
        if not health.db_error:
            yield from _job_metrics(settings.database_url)
        free = GaugeMetricFamily(
            "annostream_folder_free_bytes",
            "Free space on the file system of a data folder.",
            labels=["folder"],
        )
        size = GaugeMetricFamily(
            "annostream_folder_size_bytes", "Size of the file system of a data folder.", labels=["folder"]
        )
        for name, path in (
            ("data", settings.data_dir),
            ("incoming", settings.analyses_incoming),
            ("imported", settings.analyses_path),
            ("failed", settings.analyses_failed),
        ):
            try:
                usage = shutil.disk_usage(path)
            except OSError:
                continue
            free.add_metric([name], usage.free)
            size.add_metric([name], usage.total)
        yield free
        yield size


def _gauge(
    name: str,
    documentation: str,
    samples: list[tuple[tuple[str, ...], float]],
    labels: list[str] | None = None,
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels or [])
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def _job_metrics(url: str) -> Iterator[Metric]:
    now = dt.datetime.now(dt.UTC)
    with session_scope(url) as session:
        counts = dict(
            session.execute(sa.select(ImportJob.status, sa.func.count()).group_by(ImportJob.status)).all()
        )
        oldest = session.scalar(
            sa.select(sa.func.min(ImportJob.date_updated)).where(
                ImportJob.status.in_([status.value for status in IN_FLIGHT])
            )
        )
    yield _gauge(
        "annostream_import_jobs",
        "Import jobs per status.",
        [((status.value,), float(counts.get(status.value, 0))) for status in JobStatus],
        labels=["status"],
    )
    age = 0.0
    if oldest is not None:
        oldest = oldest.replace(tzinfo=dt.UTC) if oldest.tzinfo is None else oldest
        age = max(0.0, (now - oldest).total_seconds())
    yield _gauge(
        "annostream_import_job_oldest_in_flight_seconds",
        "Seconds since the oldest unfinished import job last moved (0: none in flight).",
        [((), age)],
    )


_lock = threading.Lock()
_cache: dict[str, tuple[float, bytes]] = {}


def render_state(settings: Settings) -> bytes:
    """The state metrics in the text exposition format (cached for CACHE_S)."""
    key = f"{settings.database_url}|{settings.kafka_bootstrap_servers}|{settings.topic_prefix}"
    with _lock:
        cached = _cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StateCollector(settings))
        body = generate_latest(registry)
        _cache[key] = (time.monotonic(), body)
        return body
