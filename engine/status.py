"""Pipeline health for operators (``annostream status``): consumer lag, waiting folders, recent
failures, jobs in flight, the active annotation bundle and the database revision.

Lag is what the worker's consumer group has not processed yet: the records actually readable
after each partition's committed offset. They are counted by reading (a group-less consumer,
assign + seek) rather than from end offsets, which the embedded broker reports wrongly and
which over-count compacted topics.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import KafkaError
from prometheus_client.core import GaugeMetricFamily, Metric

from engine.bundles import active_bundle
from engine.config import Settings
from engine.db import migrate
from engine.db.models import ImportJob, JobStatus
from engine.db.session import session_scope
from engine.errors import BrokerUnavailable
from engine.events import Topics
from engine.events.topics import LANE_NAMES, NORMAL, RELEASE
from engine.folders import READY_FILE
from engine.kafka import open_reader, poll_until_idle, topic_partitions
from engine.ledger import counts as ledger_counts
from engine.parked import list_parked
from engine.timeutil import utcnow

IN_FLIGHT = (JobStatus.SUBMITTED, JobStatus.ANNOTATING, JobStatus.ANNOTATED, JobStatus.PERSISTING)
FAILURE_WINDOW = dt.timedelta(hours=1)
DEFAULT_MAX_COUNT = 10_000


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # next offset the group will read; None = nothing committed yet
    lag: int  # records readable after ``committed``
    complete: bool = True  # False: counting stopped at the bound, the lag is at least ``lag``

    @property
    def shown(self) -> str:
        return str(self.lag) if self.complete else f"≥{self.lag}"


@dataclass(frozen=True)
class LaneLag:
    """Events waiting for one stage in one priority lane (summed over partitions)."""

    stage: str  # annotate, persist, reanalyse, reannotate
    lane: str  # urgent, high, normal, release
    lag: int
    complete: bool = True

    @property
    def shown(self) -> str:
        return str(self.lag) if self.complete else f"≥{self.lag}"


@dataclass(frozen=True)
class DrainEstimate:
    """How long the waiting analyses take at the pace of the last ``window_s`` seconds."""

    waiting: int  # analyses waiting to be annotated, plus import jobs in flight
    finished: int  # imports that finished in the window
    rate_per_min: float | None  # None: too few finished imports to tell
    seconds: float | None
    window_s: float

    @property
    def shown(self) -> str:
        if self.waiting == 0:
            return "nothing waiting"
        if self.seconds is None:
            return (
                f"{self.waiting} analyses waiting; no estimate yet (fewer than 2 imports finished "
                f"in the last {self.window_s / 60:.0f} min)"
            )
        return (
            f"{self.waiting} analyses waiting, ~{_duration(self.seconds)} to drain at "
            f"{self.rate_per_min:.1f} analyses/min (last {self.window_s / 60:.0f} min)"
        )


def _duration(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minute:02d} min"
    return f"{minute} min {second:02d} s" if minute else f"{second} s"


@dataclass(frozen=True)
class Failure:
    analysis: str
    stage: str | None
    message: str | None
    at: dt.datetime


@dataclass
class Health:
    group: str
    lag: list[PartitionLag] = field(default_factory=list)
    lanes: list[LaneLag] = field(default_factory=list)
    drain: DrainEstimate | None = None
    kafka_error: str | None = None
    incoming_ready: list[str] = field(default_factory=list)
    incoming_waiting: list[str] = field(default_factory=list)  # no READY marker yet
    failures: list[Failure] = field(default_factory=list)  # in the last hour, newest first
    in_flight: dict[str, int] = field(default_factory=dict)
    bundle: str | None = None
    db_revision: str | None = None
    db_head: str | None = None
    db_error: str | None = None
    parked: list[dict[str, Any]] = field(default_factory=list)  # events parked (see engine.parked)
    ledger: dict[str, int] = field(default_factory=dict)  # work ledger entries per state

    @property
    def ok(self) -> bool:
        """The parts could be inspected (lag, failures etc. are for the operator to judge)."""
        return self.kafka_error is None and self.db_error is None and self.db_revision == self.db_head

    def to_dict(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        for failure in document["failures"]:
            failure["at"] = failure["at"].isoformat()
        document["ok"] = self.ok
        return document


# --- consumer lag -------------------------------------------------------------------------------


def committed_offsets(
    bootstrap: str, group: str, partitions: list[TopicPartition], *, timeout_s: float = 10.0
) -> dict[TopicPartition, int | None]:
    """The group's committed offset per partition (None where it has committed nothing)."""
    if not partitions:
        return {}
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="annostream-status",
            request_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as error:
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {error}") from None
    try:
        found = admin.list_group_offsets({group: partitions}).get(group, {})
    except KafkaError as error:
        raise BrokerUnavailable(f"cannot read the offsets of consumer group {group!r}: {error}") from None
    finally:
        admin.close()
    offsets: dict[TopicPartition, int | None] = {}
    for partition in partitions:
        entry = found.get(partition)
        offsets[partition] = entry.offset if entry is not None and entry.offset >= 0 else None
    return offsets


def count_after(
    bootstrap: str,
    starts: Mapping[TopicPartition, int | None],
    *,
    max_count: int = DEFAULT_MAX_COUNT,
    idle_s: float = 1.0,
    timeout_s: float = 30.0,
) -> dict[TopicPartition, tuple[int, bool]]:
    """Records readable from each start offset (None = the beginning): (count, complete).

    A partition stops being read once it reaches ``max_count`` (complete=False); so does every
    partition still being read when ``timeout_s`` runs out.
    """
    counts = {partition: 0 for partition in starts}
    bounded: set[TopicPartition] = set()
    reader = open_reader(bootstrap)
    try:
        reader.assign(list(starts))
        for partition, offset in starts.items():
            if offset is None:
                reader.seek_to_beginning(partition)
            else:
                reader.seek(partition, offset)
        started = time.monotonic()
        for partition, records in poll_until_idle(reader, idle_s=idle_s, timeout_s=timeout_s):
            counts[partition] = min(max_count, counts[partition] + len(records))
            if counts[partition] >= max_count:
                bounded.add(partition)
                reader.pause(partition)
        if time.monotonic() - started >= timeout_s:
            bounded.update(partition for partition in starts if partition not in bounded)
    finally:
        reader.close()
    return {partition: (count, partition not in bounded) for partition, count in counts.items()}


def consumer_lag(
    bootstrap: str,
    group: str,
    topics: list[str],
    *,
    max_count: int = DEFAULT_MAX_COUNT,
    idle_s: float = 1.0,
    timeout_s: float = 30.0,
) -> list[PartitionLag]:
    """Lag of ``group`` on every partition of ``topics`` (topics that do not exist are skipped)."""
    reader = open_reader(bootstrap)
    try:
        partitions = [tp for topic in topics for tp in topic_partitions(reader, topic)]
    finally:
        reader.close()
    committed = committed_offsets(bootstrap, group, partitions)
    counted = count_after(bootstrap, committed, max_count=max_count, idle_s=idle_s, timeout_s=timeout_s)
    return [PartitionLag(tp.topic, tp.partition, committed[tp], *counted[tp]) for tp in partitions]


# --- folders and jobs ---------------------------------------------------------------------------


def incoming_folders(incoming: Path) -> tuple[list[str], list[str]]:
    """(folders with READY, folders without) in ANALYSES_INCOMING, as the watcher sees them."""
    ready: list[str] = []
    waiting: list[str] = []
    if not incoming.is_dir():
        return ready, waiting
    for folder in sorted(incoming.iterdir()):
        if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir():
            continue
        (ready if (folder / READY_FILE).is_file() else waiting).append(folder.name)
    return ready, waiting


def recent_failures(url: str, *, window: dt.timedelta = FAILURE_WINDOW, limit: int = 20) -> list[Failure]:
    since = utcnow() - window
    query = (
        sa.select(ImportJob)
        .where(ImportJob.status == JobStatus.FAILED.value, ImportJob.date_updated >= since)
        .order_by(ImportJob.date_updated.desc())
        .limit(limit)
    )
    with session_scope(url) as session:
        return [
            Failure(job.analysis_name, job.stage, job.message, _as_utc(job.date_updated))
            for job in session.scalars(query)
        ]


def _as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; the engine only ever stores UTC.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def jobs_in_flight(url: str) -> dict[str, int]:
    query = (
        sa.select(ImportJob.status, sa.func.count())
        .where(ImportJob.status.in_([status.value for status in IN_FLIGHT]))
        .group_by(ImportJob.status)
    )
    with session_scope(url) as session:
        counts = {str(status): int(count) for status, count in session.execute(query)}
    return {status.value: counts.get(status.value, 0) for status in IN_FLIGHT}


# --- the whole report ---------------------------------------------------------------------------


def collect_health(settings: Settings, *, max_count: int = DEFAULT_MAX_COUNT, idle_s: float = 1.0) -> Health:
    """Everything ``annostream status`` shows; unreachable parts are reported, not raised."""
    health = Health(group=settings.worker_name)
    health.incoming_ready, health.incoming_waiting = incoming_folders(settings.analyses_incoming)
    _add_lag(health, settings, max_count=max_count, idle_s=idle_s)
    _add_database(health, settings.database_url)
    return health


def stage_lanes(settings: Settings) -> dict[str, tuple[str, str]]:
    """Every topic the worker consumes -> (stage, lane name), highest lane first per stage."""
    topics = Topics.from_settings(settings)
    found: dict[str, tuple[str, str]] = {}
    for stage, lanes in (("annotate", topics.ready_lanes()), ("persist", topics.annotated_lanes())):
        for lane in sorted(lanes, reverse=True):
            found[lanes[lane]] = (stage, LANE_NAMES[lane])
    found[topics.reanalysis] = ("reanalyse", LANE_NAMES[NORMAL])
    found[topics.reannotation] = ("reannotate", LANE_NAMES[RELEASE])
    return found


def lane_lag(lag: list[PartitionLag], lanes: dict[str, tuple[str, str]]) -> list[LaneLag]:
    """Partition lag summed per (stage, lane), in ``lanes`` order."""
    totals: dict[str, tuple[int, bool]] = {}
    for item in lag:
        count, complete = totals.get(item.topic, (0, True))
        totals[item.topic] = (count + item.lag, complete and item.complete)
    return [LaneLag(stage, lane, *totals.get(topic, (0, True))) for topic, (stage, lane) in lanes.items()]


def measure_lanes(
    settings: Settings, *, max_count: int = DEFAULT_MAX_COUNT, idle_s: float = 1.0
) -> tuple[list[PartitionLag], list[LaneLag]]:
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        raise BrokerUnavailable(
            "KAFKA_BOOTSTRAP_SERVERS is not set (the broker of `annostream up` is embedded)"
        )
    lanes = stage_lanes(settings)
    lag = consumer_lag(bootstrap, settings.worker_name, list(lanes), max_count=max_count, idle_s=idle_s)
    return lag, lane_lag(lag, lanes)


def _add_lag(health: Health, settings: Settings, *, max_count: int, idle_s: float) -> None:
    if not settings.kafka_bootstrap_servers:
        from engine.runtime import no_broker_message

        health.kafka_error = no_broker_message(settings, "status")
        return
    try:
        health.lag, health.lanes = measure_lanes(settings, max_count=max_count, idle_s=idle_s)
    except (BrokerUnavailable, KafkaError) as error:
        health.kafka_error = str(error)


DRAIN_WINDOW = dt.timedelta(minutes=15)


def drain_estimate(
    url: str, waiting_to_start: int, *, window: dt.timedelta = DRAIN_WINDOW, now: dt.datetime | None = None
) -> DrainEstimate:
    """Time to drain: the analyses waiting (events not yet taken by the annotate stage plus import
    jobs in flight) divided by the pace of recent imports (finished in ``window``), which already
    reflects how many workers there are and how big the analyses have been."""
    now = now or dt.datetime.now(dt.UTC)
    with session_scope(url) as session:
        in_flight = (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(ImportJob)
                .where(ImportJob.status.in_([status.value for status in IN_FLIGHT]))
            )
            or 0
        )
        finished = [
            _as_utc(moment)
            for moment in session.scalars(
                sa.select(ImportJob.date_updated).where(
                    ImportJob.status == JobStatus.DONE.value, ImportJob.date_updated >= now - window
                )
            )
        ]
    waiting = waiting_to_start + int(in_flight)
    if len(finished) < 2 or max(finished) <= min(finished):
        return DrainEstimate(waiting, len(finished), None, None, window.total_seconds())
    # n finished imports span n-1 intervals between the first and the last of them.
    rate = (len(finished) - 1) / (max(finished) - min(finished)).total_seconds()
    return DrainEstimate(waiting, len(finished), rate * 60, waiting / rate, window.total_seconds())


def _add_database(health: Health, url: str) -> None:
    try:
        health.db_head = migrate.head()
        health.db_revision = migrate.current(url)
        if health.db_revision != health.db_head:
            health.db_error = f"database is at {health.db_revision or '<empty>'}, not {health.db_head}"
            return
        health.failures = recent_failures(url)
        health.in_flight = jobs_in_flight(url)
        if health.kafka_error is None:
            waiting = sum(item.lag for item in health.lanes if item.stage == "annotate")
            health.drain = drain_estimate(url, waiting)
        with session_scope(url) as session:
            bundle = active_bundle(session)
            health.parked = [
                {
                    "id": p.id,
                    "stage": p.stage,
                    "analysis": p.analysis,
                    "reason": p.reason,
                    "parked": p.date_parked.isoformat(),
                }
                for p in list_parked(session)
            ]
            health.ledger = ledger_counts(session)
        health.bundle = bundle.version if bundle else None
    except sa.exc.SQLAlchemyError as error:
        health.db_error = f"cannot read the database: {type(error).__name__}: {error}".splitlines()[0]


def render(health: Health) -> str:
    """A readable report (the table ``annostream status`` prints)."""
    lines = [f"Consumer lag (group {health.group})"]
    if health.kafka_error:
        lines.append(f"  unavailable: {health.kafka_error}")
    elif not health.lag:
        lines.append("  no topics yet")
    else:
        width = max(len(item.topic) for item in health.lag)
        lines.append(f"  {'topic':<{width}}  partition  committed        lag")
        for item in health.lag:
            committed = "-" if item.committed is None else str(item.committed)
            lines.append(f"  {item.topic:<{width}}  {item.partition:>9}  {committed:>9}  {item.shown:>9}")
        total = sum(item.lag for item in health.lag)
        exact = all(item.complete for item in health.lag)
        lines.append(f"  total lag: {'' if exact else '≥'}{total}")
        lines.append("")
        lines.append("Waiting per stage and priority lane (drained highest first)")
        lines.append(f"  {'stage':<11} {'lane':<8} {'waiting':>9}")
        lines.extend(f"  {item.stage:<11} {item.lane:<8} {item.shown:>9}" for item in health.lanes)
    if health.drain is not None:
        lines.append(f"Estimated time to drain: {health.drain.shown}")
    lines.append("")
    ready, waiting = len(health.incoming_ready), len(health.incoming_waiting)
    lines.append(f"Incoming: {ready} ready, {waiting} without READY")
    lines.extend(f"  ready:   {name}" for name in health.incoming_ready[:10])
    lines.extend(f"  waiting: {name}" for name in health.incoming_waiting[:10])
    lines.append("")
    if health.db_error:
        lines.append(f"Database: {health.db_error}")
    else:
        lines.append(f"Database: revision {health.db_revision} (up to date)")
        lines.append(
            "Jobs in flight: " + ", ".join(f"{status} {count}" for status, count in health.in_flight.items())
        )
        lines.append(f"Failures in the last hour: {len(health.failures)}")
        for failure in health.failures[:10]:
            when = failure.at.astimezone(dt.UTC).strftime("%H:%M:%SZ")
            lines.append(f"  {when}  {failure.analysis}  [{failure.stage}]  {(failure.message or '')[:100]}")
        lines.append(f"Annotation bundle: {health.bundle or 'none active (annotation from the VCF only)'}")
        lines.append(
            "Work ledger: "
            + (", ".join(f"{state} {count}" for state, count in sorted(health.ledger.items())) or "empty")
        )
        lines.append(
            f"Parked events: {len(health.parked)}"
            + (" (see 'annostream parked list')" if health.parked else "")
        )
        for parked in health.parked[:10]:
            lines.append(
                f"  {parked['id']}  {parked['analysis'] or '-'}  [{parked['stage']}]  "
                f"{parked['reason'][:100]}"
            )
    return "\n".join(lines)


# --- lane lag for /metrics -------------------------------------------------------------------------


class LaneLagMonitor:
    """Measures the waiting events per stage and lane every ``interval_s`` in a background thread
    and serves the latest figures as Prometheus gauges (``annostream_lane_waiting_events``).

    Measuring reads the topics (see the module docstring), which takes about a second, so a
    scrape never waits for it: it gets the figures of the last round (none before the first).
    """

    def __init__(self, settings: Settings, *, interval_s: float = 15.0) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.lanes: list[LaneLag] = []
        self.error: str | None = None
        self.measured_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="lane-lag", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> LaneLagMonitor:
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()
        return self

    def measure(self) -> None:
        try:
            _lag, lanes = measure_lanes(self.settings, max_count=DEFAULT_MAX_COUNT, idle_s=0.5)
        except (BrokerUnavailable, KafkaError) as error:
            self.error = str(error)
            return
        self.lanes, self.error, self.measured_at = lanes, None, time.time()

    def _run(self) -> None:
        while True:
            self.measure()
            time.sleep(self.interval_s)

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "annostream_lane_waiting_events",
            "Events waiting in Kafka for a worker stage, per priority lane "
            "(read after the consumer group's committed offsets).",
            labels=["stage", "lane"],
        )
        for item in self.lanes:
            waiting.add_metric([item.stage, item.lane], item.lag)
        yield waiting
        if self.measured_at is not None:
            yield GaugeMetricFamily(
                "annostream_lane_waiting_measured_timestamp_seconds",
                "When the lane figures were measured (Unix time).",
                value=self.measured_at,
            )


_monitors: dict[str, LaneLagMonitor] = {}


def lane_lag_monitor(settings: Settings) -> LaneLagMonitor | None:
    """The process's running monitor for ``settings`` (None without a broker to read)."""
    if not settings.kafka_bootstrap_servers:
        return None
    key = f"{settings.kafka_bootstrap_servers}|{settings.worker_name}|{settings.topic_prefix}"
    if key not in _monitors:
        _monitors[key] = LaneLagMonitor(settings)
    return _monitors[key].start()
