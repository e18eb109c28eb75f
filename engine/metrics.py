"""Prometheus metrics: the one home for every metric the worker, producers and API export.

The services run as separate processes (worker, watcher, gunicorn workers), so when
``PROMETHEUS_MULTIPROC_DIR`` is set every process writes its samples to files in that folder and
:func:`render_metrics` merges them (prometheus-client's multiprocess mode). ``annostream up``
sets it to ``<data_dir>/metrics`` and empties the folder at start, because files left by a
previous run would otherwise be added to the new run's counters. The variable must be set
before this module is first imported (prometheus-client picks its value store at that moment);
without it each process only sees its own metrics, which is right for a single process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from engine.errors import is_retriable

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Annotating a whole analysis can take minutes; persisting a big one tens of seconds.
_STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

EVENTS_CONSUMED = Counter("annostream_events_consumed", "Events consumed from Kafka, per topic.", ["topic"])
EVENTS_PRODUCED = Counter("annostream_events_produced", "Events published to Kafka, per topic.", ["topic"])
STAGE_DURATION = Histogram(
    "annostream_stage_duration_seconds",
    "Time one pipeline stage took for one event (stage: annotate, persist, ...).",
    ["stage"],
    buckets=_STAGE_BUCKETS,
)
STAGE_FAILURES = Counter(
    "annostream_stage_failures", "Events a pipeline stage could not process, per stage.", ["stage"]
)
LANE_WAIT = Histogram(
    "annostream_lane_wait_seconds",
    "Time an event waited in the worker for higher priority lanes (lane: urgent, high, normal, release).",
    ["lane"],
    buckets=_STAGE_BUCKETS,
)
STAGE_RETRIES = Counter(
    "annostream_stage_retries",
    "Infrastructure errors (database, broker, file system) a stage retried, per stage; not failures.",
    ["stage"],
)
EVENTS_PARKED = Counter(
    "annostream_events_parked",
    "Events parked in the database because even recording their failure failed, per stage.",
    ["stage"],
)
WATCHER_DEAD_LETTERS_UNSENT = Counter(
    "annostream_watcher_dead_letters_unsent",
    "Dead letters the watcher could not publish (broker unavailable); each is logged.",
)
LEDGER_REPUBLISHED = Counter(
    "annostream_ledger_republished",
    "Work events the reconciler published again (recorded in the ledger, not finished, silent).",
    ["schema"],
)
VARIANTS_IMPORTED = Counter("annostream_variants_imported", "Variants (alleles) persisted.")
ANALYSES_IMPORTED = Counter("annostream_analyses_imported", "Analyses persisted.")
REANNOTATION_BATCHES = Counter(
    "annostream_reannotation_batches",
    "Reannotation batches handled, per outcome (done, failed, skipped).",
    ["outcome"],
)
ALLELES_REANNOTATED = Counter(
    "annostream_alleles_reannotated", "Alleles re-annotated by reannotation batches and reanalyses."
)
REANALYSES = Counter("annostream_reanalyses", "Reanalysis requests handled, per outcome.", ["outcome"])
WATCHER_FOLDERS_SEEN = Counter("annostream_watcher_folders_seen", "Ready analysis folders the watcher found.")
API_REQUESTS = Counter(
    "annostream_api_requests", "HTTP requests served by the read API.", ["method", "route", "status"]
)
API_REQUEST_DURATION = Histogram(
    "annostream_api_request_duration_seconds",
    "Time the read API took to answer a request.",
    ["method", "route"],
    buckets=_REQUEST_BUCKETS,
)
# Set by every worker on a timer and per event: "worker down" is this timestamp going stale. "max" keeps the
# newest beat of all worker processes (a dead one's file lingers but stops advancing).
WORKER_HEARTBEAT = Gauge(
    "annostream_worker_heartbeat_timestamp_seconds",
    "Unix time of a worker's latest heartbeat.",
    multiprocess_mode="max",
)


@contextmanager
def observe_stage(stage: str) -> Iterator[None]:
    """Time a stage into STAGE_DURATION; an exception escaping it counts as a STAGE_FAILURES,
    unless it is infrastructure trouble (retried, counted in STAGE_RETRIES by the caller)."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as error:
        if not is_retriable(error):
            STAGE_FAILURES.labels(stage=stage).inc()
        raise
    finally:
        STAGE_DURATION.labels(stage=stage).observe(time.perf_counter() - started)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render_metrics(*extra: Collector) -> tuple[bytes, str]:
    """The text exposition (body, content type) of all processes' metrics, plus ``extra``
    collectors of the serving process (e.g. the lane lag of engine.status)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Merged(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Merged(Collector):
    """The process's default registry as one collector (so extras can be served beside it)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def mark_process_dead(pid: int) -> None:
    """Forget a dead process's live gauges (gunicorn's ``child_exit`` hook calls this)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
