"""``annostream status`` against the real broker and PostgreSQL: lag figures from a consumer
group's committed offsets and what is readable after them; folders, failures, jobs in flight."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from engine.config import Settings
from engine.db.models import ImportJob
from engine.db.session import get_engine, session_scope
from engine.events import Topics
from engine.kafka import ensure_topics
from engine.metrics import render_metrics
from engine.status import LaneLagMonitor, collect_health, consumer_lag, drain_estimate, render
from tests.support.env import engine_env, engine_settings, prepare_database, subprocess_env

PRODUCED = {("ready", 0): 5, ("ready", 1): 3, ("annotated", 0): 2, ("annotated", 1): 0}
COMMITTED = {("ready", 0): 2, ("annotated", 0): 2}  # ready/1 and annotated/1: nothing committed


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, broker, topic_prefix: str) -> Settings:
    configured = engine_settings(
        tmp_path / "data",
        db_url=pg_url,
        bootstrap=broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        app_id=f"group-{uuid.uuid4().hex[:8]}",
    )
    prepare_database(pg_url, genepanel=False)
    yield configured
    get_engine.cache_clear()


def fill_topics(settings: Settings) -> Topics:
    topics = Topics.from_settings(settings)
    names = {"ready": topics.ready, "annotated": topics.annotated}
    bootstrap = settings.kafka_bootstrap_servers
    ensure_topics(bootstrap, names.values(), partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for (topic, partition), count in PRODUCED.items():
        for number in range(count):
            producer.send(names[topic], key=b"A", value=b"{}%d" % number, partition=partition).get(10)
    producer.close()
    group = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=settings.worker_name, enable_auto_commit=False
    )
    group.commit(
        {
            TopicPartition(names[topic], partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in COMMITTED.items()
        }
    )
    group.close()
    return topics


def test_lag_counts_what_is_readable_after_the_committed_offset(settings: Settings) -> None:
    topics = fill_topics(settings)
    lag = consumer_lag(
        settings.kafka_bootstrap_servers, settings.worker_name, [topics.ready, topics.annotated]
    )
    figures = {(item.topic, item.partition): (item.committed, item.lag, item.complete) for item in lag}
    assert figures == {
        (topics.ready, 0): (2, 3, True),
        (topics.ready, 1): (None, 3, True),
        (topics.annotated, 0): (2, 0, True),
        (topics.annotated, 1): (None, 0, True),
    }


def test_lag_counting_is_bounded(settings: Settings) -> None:
    topics = fill_topics(settings)
    lag = consumer_lag(settings.kafka_bootstrap_servers, settings.worker_name, [topics.ready], max_count=2)
    assert [(item.partition, item.shown, item.complete) for item in lag] == [
        (0, "≥2", False),
        (1, "≥2", False),
    ]


def test_missing_topics_and_unknown_group(settings: Settings) -> None:
    lag = consumer_lag(settings.kafka_bootstrap_servers, "nobody", [f"{settings.topic_prefix}nothing"])
    assert lag == []


def add_job(session, name: str, status: str, *, minutes_ago: float, message: str | None = None) -> None:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    session.add(
        ImportJob(
            analysis_name=name,
            event_id=str(uuid.uuid4()),
            status=status,
            stage="annotate",
            message=message,
            attempts=1,
            history=[],
            date_created=when,
            date_updated=when,
        )
    )


def test_health_report_and_cli(settings: Settings) -> None:
    fill_topics(settings)
    (settings.analyses_incoming / "Waiting-1").mkdir()
    (settings.analyses_incoming / "Ready-2").mkdir()
    (settings.analyses_incoming / "Ready-2" / "READY").touch()
    (settings.analyses_incoming / ".staging-3").mkdir()  # hidden: the watcher ignores it
    with session_scope(settings.database_url) as session:
        add_job(session, "Broken-1", "FAILED", minutes_ago=5, message="bad POS")
        add_job(session, "Broken-old", "FAILED", minutes_ago=90, message="too old to show")
        add_job(session, "Busy-1", "ANNOTATING", minutes_ago=1)
        add_job(session, "Busy-2", "ANNOTATING", minutes_ago=1)
        add_job(session, "Queued-1", "ANNOTATED", minutes_ago=1)
        add_job(session, "Done-1", "DONE", minutes_ago=1)

    health = collect_health(settings)

    assert health.ok
    assert (health.incoming_ready, health.incoming_waiting) == (["Ready-2"], ["Waiting-1"])
    assert [(f.analysis, f.message) for f in health.failures] == [("Broken-1", "bad POS")]
    assert health.in_flight == {"SUBMITTED": 0, "ANNOTATING": 2, "ANNOTATED": 1, "PERSISTING": 0}
    assert health.bundle is None and health.db_revision == health.db_head
    assert sum(item.lag for item in health.lag) == 6
    text = render(health)
    assert "total lag: 6" in text and "Broken-1" in text and "Broken-old" not in text
    # Per stage and lane, highest lane first; the normal lanes are the plain topics.
    lanes = {(item.stage, item.lane): item.lag for item in health.lanes}
    assert list(lanes)[:3] == [("annotate", "urgent"), ("annotate", "high"), ("annotate", "normal")]
    assert lanes[("annotate", "normal")] == 6 and lanes[("annotate", "urgent")] == 0
    assert lanes[("reannotate", "release")] == 0
    assert "annotate    normal           6" in text
    # 6 events not yet started + 3 jobs in flight; one finished import is not a pace yet.
    assert health.drain is not None and health.drain.waiting == 9 and health.drain.seconds is None
    assert "9 analyses waiting; no estimate yet" in text

    assert settings.kafka_bootstrap_servers is not None
    env = subprocess_env(
        engine_env(
            settings.data_dir,
            db_url=settings.database_url,
            bootstrap=settings.kafka_bootstrap_servers,
            topic_prefix=settings.topic_prefix,
            app_id=settings.worker_name,
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "engine", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] and sum(item["lag"] for item in document["lag"]) == 6
    assert document["in_flight"]["ANNOTATING"] == 2


def test_unreachable_broker_is_reported(settings: Settings) -> None:
    from engine.broker import free_port

    unreachable = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    health = collect_health(unreachable)
    assert not health.ok and "cannot reach Kafka" in (health.kafka_error or "")
    assert "unavailable" in render(health)


def test_drain_estimate_from_the_pace_of_recent_imports(settings: Settings) -> None:
    now = dt.datetime.now(dt.UTC)
    with session_scope(settings.database_url) as session:
        for minutes_ago in (6, 4, 2, 0, 30):  # one every 2 min; the one 30 min ago is outside the window
            add_job(session, f"Done-{minutes_ago}", "DONE", minutes_ago=minutes_ago)
        add_job(session, "Busy-1", "PERSISTING", minutes_ago=0)
    estimate = drain_estimate(settings.database_url, 9, now=now)
    assert estimate.waiting == 10 and estimate.finished == 4
    assert estimate.rate_per_min == pytest.approx(0.5, rel=0.01)
    assert estimate.seconds == pytest.approx(20 * 60, rel=0.01)
    assert "10 analyses waiting, ~20 min 00 s to drain at 0.5 analyses/min" in estimate.shown


def test_lane_lag_is_served_as_prometheus_gauges(settings: Settings) -> None:
    fill_topics(settings)
    monitor = LaneLagMonitor(settings)
    monitor.measure()
    assert monitor.error is None
    body, _content_type = render_metrics(monitor)
    text = body.decode()
    assert 'annostream_lane_waiting_events{lane="normal",stage="annotate"} 6.0' in text
    assert 'annostream_lane_waiting_events{lane="urgent",stage="persist"} 0.0' in text
    assert 'annostream_lane_waiting_events{lane="release",stage="reannotate"} 0.0' in text
    assert "annostream_lane_waiting_measured_timestamp_seconds" in text


def test_the_status_page_names_each_lane_by_its_stage() -> None:
    from api.web.pages import stage_label

    assert stage_label("analysis.ready") == "annotate"
    assert stage_label("analysis.ready.urgent") == "annotate · urgent lane"
    assert stage_label("analysis.annotated.high") == "persist · high lane"
    assert stage_label("reannotation.batch") == "reannotation.batch"
