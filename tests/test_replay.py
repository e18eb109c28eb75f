"""``annostream replay``: a time window of past events is re-published with the exact key and
bytes; re-driving finished work through the pipeline changes nothing. Real broker and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from kafka import KafkaProducer

from engine.db.models import Allele, Analysis, Genotype, ImportJob
from engine.db.session import get_engine, session_scope
from engine.errors import InputError
from engine.events import build_ready_event, encode
from engine.kafka import ensure_topics
from engine.pipeline import Pipeline
from engine.replay import REPLAYED_FROM, parse_moment, republish, select
from tests.support.env import engine_settings, prepare_database, subprocess_env
from tests.support.events import read_topic

DATA = Path(__file__).parent / "data"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
# (key, hours ago) of the events published with explicit timestamps
HISTORY = [("A", 5), ("B", 3), ("A", 2), ("C", 2), ("B", 1)]


@pytest.fixture
def topic(broker, topic_prefix: str) -> str:
    name = f"{topic_prefix}analysis.ready"
    ensure_topics(broker.bootstrap_servers, [name], partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    for number, (key, hours) in enumerate(HISTORY):
        stamp = int((NOW - dt.timedelta(hours=hours)).timestamp() * 1000)
        producer.send(
            name, key=key.encode(), value=json.dumps({"event_id": f"e{number}"}).encode(), timestamp_ms=stamp
        ).get(10)
    producer.close()
    return name


def test_window_and_key_select_exactly_those_messages(broker, topic: str) -> None:
    window = select(
        broker.bootstrap_servers,
        topic,
        since=NOW - dt.timedelta(hours=3, minutes=30),
        until=NOW - dt.timedelta(minutes=90),
    )
    assert sorted(item.event_id for item in window) == ["e1", "e2", "e3"]
    only_a = select(broker.bootstrap_servers, topic, since=NOW - dt.timedelta(hours=6), analysis="A")
    assert sorted(item.event_id for item in only_a) == ["e0", "e2"]
    assert select(broker.bootstrap_servers, topic, since=NOW) == []


def test_republish_writes_the_same_key_and_bytes(broker, topic: str) -> None:
    chosen = select(
        broker.bootstrap_servers,
        topic,
        since=NOW - dt.timedelta(hours=2, minutes=30),
        until=NOW - dt.timedelta(minutes=90),
    )
    assert republish(broker.bootstrap_servers, chosen) == 2

    records = read_topic(broker.bootstrap_servers, topic, expect=len(HISTORY) + 2, settle_s=1.0)
    assert len(records) == len(HISTORY) + 2
    replayed = [record for record in records if any(name == REPLAYED_FROM for name, _ in record.headers)]
    assert sorted((r.key, r.value) for r in replayed) == sorted((c.key, c.value) for c in chosen)
    origins = {dict(r.headers)[REPLAYED_FROM].decode() for r in replayed}
    assert origins == {f"{c.topic}/{c.partition}/{c.offset}" for c in chosen}


def test_cli_dry_run_lists_and_publishes_nothing(broker, topic: str, topic_prefix: str) -> None:
    env = subprocess_env(
        {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "ANNOSTREAM_TOPIC_PREFIX": topic_prefix}
    )
    since = (NOW - dt.timedelta(hours=2, minutes=30)).isoformat()
    result = subprocess.run(
        [sys.executable, "-m", "engine", "replay", "--since", since, "--analysis", "A", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "key='A'" in lines[0] and "event_id=e2" in lines[0]
    assert "1 message(s) would be replayed" in lines[1]
    assert len(read_topic(broker.bootstrap_servers, topic, expect=len(HISTORY), settle_s=1.0)) == len(HISTORY)

    bad = subprocess.run(
        [sys.executable, "-m", "engine", "replay", "--since", "yesterday-ish"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "--since 'yesterday-ish' is not a date/time" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "engine", "replay", "--since", "1h", "--topic", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_parse_moment() -> None:
    assert parse_moment("2h", now=NOW) == NOW - dt.timedelta(hours=2)
    assert parse_moment("2024-05-02T09:00:00") == dt.datetime(2024, 5, 2, 9, tzinfo=dt.UTC)
    assert parse_moment("2024-05-02T11:00:00+02:00") == dt.datetime(2024, 5, 2, 9, tzinfo=dt.UTC)
    with pytest.raises(InputError, match="not a date/time"):
        parse_moment("soon")


def table_counts(url: str) -> dict[str, int]:
    with session_scope(url) as session:
        return {
            model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
            for model in (Analysis, Allele, Genotype, ImportJob)
        }


def test_replaying_the_same_events_twice_changes_nothing(
    tmp_path: Path, pg_url: str, broker, topic_prefix: str
) -> None:
    settings = engine_settings(
        tmp_path / "data", db_url=pg_url, bootstrap=broker.bootstrap_servers, topic_prefix=topic_prefix
    )
    prepare_database(pg_url)
    folder = settings.analyses_incoming / "Replay-001"
    shutil.copytree(DATA / "analyses" / "TestAnalysis-001", folder)
    (folder / "READY").unlink(missing_ok=True)
    (folder / "TestAnalysis-001.analysis").write_text(
        json.dumps({"params": {"genepanel": "HBOC_v1.0.0"}, "name": "Replay-001", "priority": "1"})
    )
    ready = settings.topic("analysis.ready")
    ensure_topics(broker.bootstrap_servers, [ready])
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    event = build_ready_event(folder, settings.analyses_incoming, producer="test", analysis="Replay-001")
    producer.send(ready, key=b"Replay-001", value=encode(event)).get(10)
    producer.close()

    pipeline = Pipeline(settings)

    def drive(raw: bytes) -> list[str]:
        published = pipeline.annotate(raw)
        if published[0].topic.endswith("analysis.annotated"):
            published = pipeline.persist(published[0].value)
        return [message.topic.removeprefix(topic_prefix) for message in published]

    original = read_topic(broker.bootstrap_servers, ready, expect=1)
    assert drive(original[0].value)[0] == "analysis.imported"
    after_import = table_counts(pg_url)
    assert after_import["analysis"] == 1 and after_import["genotype"] > 0

    for _ in range(2):
        chosen = select(broker.bootstrap_servers, ready, since=started, analysis="Replay-001")
        republish(broker.bootstrap_servers, chosen)
    records = read_topic(broker.bootstrap_servers, ready, expect=4, settle_s=1.0)
    assert len(records) == 4  # the original, once replayed, then both of those replayed
    for record in records[1:]:
        assert record.value == original[0].value
        assert drive(record.value) == ["analysis.imported", "analysis.status"]
    assert table_counts(pg_url) == after_import
    with session_scope(pg_url) as session:
        assert session.scalars(sa.select(ImportJob.status)).all() == ["DONE"]
    get_engine.cache_clear()
