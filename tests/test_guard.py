"""The error model at the stage boundary (engine/pipeline/guard.py), on PostgreSQL and SQLite:
infrastructure errors are retried and never fail an event, a bug fails it after a bounded number
of attempts (also across worker crashes), and an event whose failure cannot be recorded is parked
with its bytes while the next event proceeds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import sqlalchemy as sa

from engine.config import Settings
from engine.db.models import EventAttempt, ImportJob, ParkedEvent
from engine.db.session import session_scope
from engine.errors import (
    BrokerUnavailable,
    ConfigError,
    DatabaseUnavailable,
    EventRejected,
    InputError,
    StorageError,
    is_retriable,
)
from engine.events import build_ready_event, encode
from engine.pipeline import Outgoing, Pipeline, StageGuard, StageHandler
from engine.pipeline.guard import event_key

DATA = Path(__file__).parent / "data"
TEST_ANALYSIS = DATA / "analyses" / "TestAnalysis-001"


def no_sleep(_seconds: float) -> None:
    pass


def folder_for(settings: Settings, name: str) -> Path:
    folder = settings.analyses_incoming / name
    shutil.copytree(TEST_ANALYSIS, folder)
    (folder / "READY").unlink(missing_ok=True)
    (folder / "TestAnalysis-001.analysis").write_text(
        json.dumps({"params": {"genepanel": "HBOC_v1.0.0"}, "name": name, "priority": "1"})
    )
    return folder


def ready_bytes(settings: Settings, folder: Path) -> bytes:
    event = build_ready_event(folder, settings.analyses_incoming, producer="test", analysis=folder.name)
    return encode(event)


def import_through_guard(settings: Settings, pipeline: Pipeline, raw: bytes) -> list[Outgoing]:
    guard = StageGuard(settings, sleep=no_sleep)
    annotate = StageHandler("annotate", "t.analysis.ready", pipeline.annotate, pipeline.fail_annotate)
    persist = StageHandler("persist", "t.analysis.annotated", pipeline.persist, pipeline.fail_persist)
    out = [m for m in guard.run(annotate, raw) if m.topic != "t.analysis.status"]
    if len(out) == 1 and out[0].topic == "t.analysis.annotated":
        out = [m for m in guard.run(persist, out[0].value) if m.topic != "t.analysis.status"]
    return out


def test_retriable_classification() -> None:
    assert is_retriable(DatabaseUnavailable("down")) and is_retriable(BrokerUnavailable("down"))
    assert is_retriable(StorageError("full")) and is_retriable(ConnectionRefusedError())
    assert is_retriable(OSError(28, "No space left on device"))
    assert is_retriable(sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")))
    assert not is_retriable(InputError("bad", file="x.vcf", line=3))
    assert not is_retriable(EventRejected("field folder: absolute"))
    assert not is_retriable(ConfigError("PORT: not a number"))
    assert not is_retriable(KeyError("bug"))
    assert not is_retriable(FileNotFoundError(2, "gone"))


def test_infrastructure_errors_are_retried_not_failed(settings: Settings) -> None:
    calls: list[int] = []

    def work(raw: bytes) -> list[Outgoing]:
        calls.append(1)
        if len(calls) < 4:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
        return [Outgoing("t.out", "k", raw)]

    def fail(raw: bytes, error: InputError) -> list[Outgoing]:
        raise AssertionError(f"an outage must not fail the event: {error}")

    out = StageGuard(settings, sleep=no_sleep).run(
        StageHandler("s", "t.in", work, fail), b'{"event_id": "e1"}'
    )
    assert [m.value for m in out] == [b'{"event_id": "e1"}'] and len(calls) == 4
    with session_scope(settings.database_url) as session:
        assert session.scalars(sa.select(EventAttempt)).all() == []  # finished: nothing kept


def test_a_bug_fails_the_event_after_bounded_attempts(settings: Settings) -> None:
    calls: list[int] = []
    failures: list[InputError] = []

    def work(raw: bytes) -> list[Outgoing]:
        calls.append(1)
        raise KeyError("a bug")

    def fail(raw: bytes, error: InputError) -> list[Outgoing]:
        failures.append(error)
        return [Outgoing("t.failed", "k", b"dead")]

    out = StageGuard(settings, sleep=no_sleep).run(
        StageHandler("s", "t.in", work, fail), b'{"event_id": "e2"}'
    )
    assert len(calls) == settings.max_attempts == 5
    assert [m.value for m in out] == [b"dead"]
    assert len(failures) == 1 and "internal error (KeyError)" in failures[0].message


def test_attempts_survive_worker_crashes(settings: Settings) -> None:
    """A worker killed mid-event leaves its attempt counted; the next start past the bound fails it."""
    with session_scope(settings.database_url) as session:
        session.add(EventAttempt(stage="s", event_key="e3", attempts=settings.max_attempts))
    failures: list[InputError] = []

    def work(raw: bytes) -> list[Outgoing]:
        raise AssertionError("must not run again")

    def fail(raw: bytes, error: InputError) -> list[Outgoing]:
        failures.append(error)
        return []

    StageGuard(settings, sleep=no_sleep).run(StageHandler("s", "t.in", work, fail), b'{"event_id": "e3"}')
    assert len(failures) == 1 and "gave up after 5 attempts" in failures[0].message
    assert "killed" in failures[0].message


def test_a_failure_that_cannot_be_recorded_is_parked(settings: Settings) -> None:
    def work(raw: bytes) -> list[Outgoing]:
        raise ValueError("a bug")

    def fail(raw: bytes, error: InputError) -> list[Outgoing]:
        raise PermissionError(13, "Permission denied", "/data/failed")

    raw = orjson.dumps({"event_id": "e4", "analysis": "A-1"})
    out = StageGuard(settings, sleep=no_sleep).run(StageHandler("s", "t.in", work, fail), raw, "A-1")
    assert out == []
    with session_scope(settings.database_url) as session:
        parked = session.scalars(sa.select(ParkedEvent)).one()
        assert (parked.stage, parked.topic, parked.key, parked.value) == ("s", "t.in", "A-1", raw)
        assert parked.event_id == "e4" and parked.analysis == "A-1"
        assert "ValueError" in parked.reason and "Permission denied" in parked.reason
        assert session.scalars(sa.select(EventAttempt)).all() == []


def test_event_key_of_garbage_is_a_digest() -> None:
    assert event_key(b"\xff\xfe garbage").startswith("sha256:")
    assert event_key(b'{"event_id": "abc"}') == "abc"


def test_poison_events_never_stall_the_next_analysis(settings: Settings) -> None:
    """Unwritable ANALYSES_FAILED and garbage bytes: parked or dead-lettered, the next one imports."""
    pipeline = Pipeline(settings)
    # ANALYSES_FAILED is a file: creating or moving into it fails, even for root.
    shutil.rmtree(settings.analyses_failed)
    settings.analyses_failed.write_text("not a folder")
    bad = folder_for(settings, "Bad-1")
    (bad / "TestAnalysis-001.analysis").write_text('{"name": "Bad-1",\n "params": }')

    assert import_through_guard(settings, pipeline, ready_bytes(settings, bad)) == []
    with session_scope(settings.database_url) as session:
        parked = session.scalars(sa.select(ParkedEvent)).one()
        assert parked.analysis == "Bad-1" and "JSON" in parked.reason and "failed" in parked.reason
        assert (
            session.scalars(sa.select(ImportJob.status).where(ImportJob.analysis_name == "Bad-1")).one()
            == "FAILED"
        )

    garbage = import_through_guard(settings, pipeline, b"\x00\xffnot json at all")
    assert [m.topic for m in garbage] == ["t.analysis.failed"]

    good = folder_for(settings, "Good-1")
    out = import_through_guard(settings, pipeline, ready_bytes(settings, good))
    assert [m.topic for m in out] == ["t.analysis.imported"]
    assert (settings.analyses_path / "Good-1").is_dir()


def test_a_move_failing_after_the_commit_keeps_the_import(settings: Settings) -> None:
    pipeline = Pipeline(settings)
    shutil.rmtree(settings.analyses_path)
    settings.analyses_path.write_text("not a folder")  # ANALYSES_PATH unusable
    folder = folder_for(settings, "Moved-1")
    raw = ready_bytes(settings, folder)

    out = import_through_guard(settings, pipeline, raw)
    assert [m.topic for m in out] == ["t.analysis.imported"]  # announced although the move failed
    assert folder.is_dir() and not any(settings.analyses_failed.iterdir())
    with session_scope(settings.database_url) as session:
        assert session.scalars(sa.select(ImportJob.status)).one() == "DONE"

    settings.analyses_path.unlink()  # repaired: the next delivery moves the folder
    again = import_through_guard(settings, pipeline, raw)
    assert [m.topic for m in again] == ["t.analysis.imported"]
    assert not folder.exists() and (settings.analyses_path / "Moved-1").is_dir()
