"""The work ledger (transactional outbox) and parked events, on PostgreSQL and SQLite: every
work-starting event is recorded, finished work is marked, silent unfinished work is published
again by the reconciler, and parked events can be listed, retried and dropped (API, /metrics,
CLI)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from engine import ledger
from engine.config import Settings
from engine.db.models import ImportJob, LedgerEntry, ParkedEvent
from engine.db.session import session_scope
from engine.ledger import Message, WorkEvent
from engine.parked import drop_parked, retry_parked
from engine.pipeline import Pipeline, StageGuard
from engine.timeutil import utcnow
from tests.test_guard import folder_for, import_through_guard, no_sleep, ready_bytes


def test_an_import_is_recorded_and_finished_in_the_ledger(settings: Settings) -> None:
    raw = ready_bytes(settings, folder_for(settings, "Ledger-1"))
    import_through_guard(settings, Pipeline(settings), raw)
    with session_scope(settings.database_url) as session:
        entry = session.scalars(sa.select(LedgerEntry)).one()
        assert (entry.event_id, entry.schema, entry.analysis, entry.state) == (
            orjson.loads(raw)["event_id"],
            "analysis.ready",
            "Ledger-1",
            "DONE",
        )
        assert orjson.loads(entry.value)["folder"] == "Ledger-1"
    published: list[Message] = []
    assert ledger.reconcile(settings, published.extend, silent_for_s=0) == 0 and published == []


def test_silent_unfinished_work_is_published_again(settings: Settings) -> None:
    old, fresh = (
        WorkEvent(
            event_id=f"e-{n}",
            schema="reanalysis.requested",
            topic="t.reanalysis.requested",
            key="A",
            value=orjson.dumps({"event_id": f"e-{n}"}),
            analysis="A",
        )
        for n in (1, 2)
    )
    published: list[Message] = []
    ledger.record_then_publish(settings, [old, fresh], published.extend)
    assert [message[2] for message in published] == [old.value, fresh.value]
    with session_scope(settings.database_url) as session:
        ledger.record(session, old)  # recording twice is one entry
        session.get(LedgerEntry, "e-1").date_progress = utcnow() - dt.timedelta(hours=1)

    again: list[Message] = []
    assert ledger.reconcile(settings, again.extend) == 1  # default: silent for 300 s
    assert again == [("t.reanalysis.requested", "A", old.value)]
    with session_scope(settings.database_url) as session:
        assert session.get(LedgerEntry, "e-1").publish_count == 1
        ledger.finish(session, "e-2", ledger.LedgerState.DONE)
    assert ledger.reconcile(settings, again.extend, silent_for_s=0) == 1  # e-1 only: e-2 is done


def park_one(settings: Settings, folder_name: str) -> bytes:
    raw = ready_bytes(settings, folder_for(settings, folder_name))
    StageGuard(settings, sleep=no_sleep).park(
        "annotate", "t.analysis.ready", folder_name, raw, "ANALYSES_FAILED not writable"
    )
    return raw


def test_parked_events_are_listed_retried_and_dropped(settings: Settings) -> None:
    kept = park_one(settings, "Parked-1")
    dropped = park_one(settings, "Parked-2")
    with session_scope(settings.database_url) as session:  # the job the dropped event started
        session.add(
            ImportJob(
                event_id=orjson.loads(dropped)["event_id"],
                analysis_name="Parked-2",
                status="ANNOTATING",
                attempts=1,
                history=[],
            )
        )

    with TestClient(create_app(Settings(DB_URL=settings.database_url, KAFKA_BOOTSTRAP_SERVERS=""))) as client:
        listed = client.get("/api/v1/parked").json()
        assert [item["analysis"] for item in listed] == ["Parked-1", "Parked-2"]
        assert listed[0]["reason"] == "ANALYSES_FAILED not writable" and listed[0]["size"] == len(kept)
        assert "annostream_parked_events 2" in client.get("/metrics").text

    from engine.status import collect_health, render

    health = collect_health(settings.model_copy(update={"kafka_bootstrap_servers": None}))
    assert [parked["analysis"] for parked in health.parked] == ["Parked-1", "Parked-2"]
    assert "Parked events: 2" in render(health)

    cli = subprocess.run(
        [sys.executable, "-m", "engine", "parked", "list"],
        capture_output=True,
        text=True,
        env={"DB_URL": settings.database_url, "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert "Parked-1" in cli.stdout and "ANALYSES_FAILED not writable" in cli.stdout

    with session_scope(settings.database_url) as session:
        ids = [parked.id for parked in session.scalars(sa.select(ParkedEvent).order_by(ParkedEvent.id))]
        published: list[Message] = []
        assert retry_parked(session, [ids[0]], published.extend) == 1
        assert published == [("t.analysis.ready", "Parked-1", kept)]
        assert drop_parked(session, [ids[1]]) == 1
    with session_scope(settings.database_url) as session:
        assert session.scalars(sa.select(ParkedEvent)).all() == []
        job = session.scalars(sa.select(ImportJob).where(ImportJob.analysis_name == "Parked-2")).one()
        assert job.status == "CANCELLED" and "dropped by an operator" in job.message
