"""Every import job transition is also an analysis.status event (keyed by analysis name, on a
compacted topic), published after the stage's database commit. Real stages, no faust."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import sqlalchemy as sa
from kafka import KafkaAdminClient

from engine.config import Settings
from engine.db.models import ImportJob
from engine.db.session import session_scope
from engine.events import StatusEvent, build_ready_event, decode, encode, topic_config
from engine.kafka import ensure_topics
from engine.pipeline import Outgoing, Pipeline

DATA = Path(__file__).parent / "data"
TEST_ANALYSIS = DATA / "analyses" / "TestAnalysis-001"


def make_folder(settings: Settings, name: str, *, broken: bool = False) -> Path:
    folder = settings.analyses_incoming / name
    shutil.copytree(TEST_ANALYSIS, folder)
    (folder / "READY").unlink(missing_ok=True)
    panel = "NOPE_v9.9.9" if broken else "HBOC_v1.0.0"
    (folder / "TestAnalysis-001.analysis").write_text(
        json.dumps({"params": {"genepanel": panel}, "name": name, "priority": "1"})
    )
    return folder


def statuses(messages: list[Outgoing], settings: Settings) -> list[StatusEvent]:
    found = []
    for message in messages:
        if message.topic != "t.analysis.status":
            continue
        event = decode(message.value, incoming=settings.analyses_incoming)
        assert isinstance(event, StatusEvent) and message.key == event.analysis
        found.append(event)
    return found


def topics(messages: list[Outgoing]) -> list[str]:
    return [message.topic for message in messages]


def test_each_transition_is_published_after_the_stage(settings: Settings) -> None:
    pipeline = Pipeline(settings)
    ready = build_ready_event(
        make_folder(settings, "Status-001"), settings.analyses_incoming, producer="test"
    )

    annotated = pipeline.annotate(encode(ready))
    assert topics(annotated) == ["t.analysis.annotated"] + ["t.analysis.status"] * 3
    persisted = pipeline.persist(annotated[0].value)
    assert topics(persisted) == ["t.analysis.imported"] + ["t.analysis.status"] * 2

    published = statuses(annotated, settings) + statuses(persisted, settings)
    assert [(s.status, s.stage) for s in published] == [
        ("SUBMITTED", None),
        ("ANNOTATING", "annotate"),
        ("ANNOTATED", "annotate"),
        ("PERSISTING", "persist"),
        ("DONE", "persist"),
    ]
    with session_scope(settings.database_url) as session:
        job = session.scalars(sa.select(ImportJob)).one()
        history = [(entry["status"], entry["at"]) for entry in job.history]
        assert {s.job_id for s in published} == {job.id}
    assert {(s.analysis, s.ready_event_id) for s in published} == {("Status-001", ready.event_id)}
    # Same moments as the job's history, in the events' UTC "Z" format.
    assert [(s.status, s.at) for s in published] == [
        (status, at.replace("+00:00", "Z")) for status, at in history
    ]
    assert published[-1].message.startswith("imported ") and published[-1].attempts == 2


def test_failure_is_published_with_its_message(settings: Settings) -> None:
    pipeline = Pipeline(settings)
    ready = build_ready_event(
        make_folder(settings, "Status-002", broken=True), settings.analyses_incoming, producer="test"
    )
    annotated = pipeline.annotate(encode(ready))
    assert topics(annotated)[0] == "t.analysis.annotated"
    published = pipeline.persist(annotated[0].value)
    assert topics(published)[0] == "t.analysis.failed"
    last = statuses(published, settings)[-1]
    assert (last.status, last.stage) == ("FAILED", "persist")
    assert "NOPE_v9.9.9" in (last.message or "")


def test_replay_of_finished_work_announces_the_current_status_once(settings: Settings) -> None:
    pipeline = Pipeline(settings)
    ready = encode(
        build_ready_event(make_folder(settings, "Status-003"), settings.analyses_incoming, producer="test")
    )
    pipeline.persist(pipeline.annotate(ready)[0].value)

    again = pipeline.annotate(ready)

    assert topics(again) == ["t.analysis.imported", "t.analysis.status"]
    assert [(s.status, s.stage) for s in statuses(again, settings)] == [("DONE", "persist")]


def test_invalid_event_has_no_status(settings: Settings) -> None:
    published = Pipeline(settings).annotate(b'{"schema": "analysis.ready", "version": 1}')
    assert topics(published) == ["t.analysis.failed"]


def test_status_topic_is_created_compacted(broker, topic_prefix: str) -> None:
    assert topic_config(f"{topic_prefix}analysis.status") == {"cleanup.policy": "compact"}
    assert topic_config(f"{topic_prefix}analysis.ready") == {}
    names = [f"{topic_prefix}analysis.status", f"{topic_prefix}analysis.ready"]
    ensure_topics(broker.bootstrap_servers, names)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        assert set(names) <= set(admin.list_topics())
    finally:
        admin.close()


def test_status_event_round_trips_through_the_schema(settings: Settings) -> None:
    from engine.events import status_event

    event = status_event(
        {"status": "DONE", "stage": "persist", "message": None, "at": "2024-05-02T09:13:44.120518+00:00"},
        analysis="A-1",
        ready_event_id="2f6d1c8e-52c1-4d35-9c57-0d1f1b0b6a1e",
        job_id=7,
        attempts=1,
        producer="test",
    )
    decoded = decode(encode(event), incoming=settings.analyses_incoming)
    assert decoded == event and orjson.loads(encode(event))["at"] == "2024-05-02T09:13:44.120518Z"
