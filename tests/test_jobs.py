"""Import-job repository on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from engine.db import migrate
from engine.db.models import ImportJob, JobStatus
from engine.db.session import session_scope
from engine.errors import JobTransitionError
from engine.jobs import find_done_job, get_or_create_job, record_attempt, transition


@pytest.fixture
def url(db_url: str) -> str:
    migrate.upgrade(db_url)
    return db_url


def test_same_event_gives_same_job(url: str) -> None:
    with session_scope(url) as session:
        first = get_or_create_job(session, event_id="ev-1", analysis_name="A", fingerprint="f1")
    with session_scope(url) as session:
        again = get_or_create_job(session, event_id="ev-1", analysis_name="A", fingerprint="f1")
        other = get_or_create_job(session, event_id="ev-2", analysis_name="A", fingerprint="f1")
        assert again.id == first.id
        assert other.id != first.id
        assert again.status == JobStatus.SUBMITTED
        assert [h["status"] for h in again.history] == ["SUBMITTED"]
    with session_scope(url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ImportJob)) == 2


def test_transitions_are_persisted_in_history(url: str) -> None:
    with session_scope(url) as session:
        job = get_or_create_job(session, event_id="ev-1", analysis_name="A", fingerprint="f1")
        record_attempt(session, job)
        transition(session, job, JobStatus.ANNOTATING, stage="annotate")
        transition(session, job, JobStatus.FAILED, stage="annotate", message="vcfanno crashed")
        record_attempt(session, job)
        transition(session, job, JobStatus.ANNOTATED, stage="annotate")
        job_id = job.id
    with session_scope(url) as session:
        stored = session.get(ImportJob, job_id)
        assert stored is not None
        assert stored.status == "ANNOTATED" and stored.attempts == 2
        assert [h["status"] for h in stored.history] == ["SUBMITTED", "ANNOTATING", "FAILED", "ANNOTATED"]
        assert stored.history[2] == {**stored.history[2], "stage": "annotate", "message": "vcfanno crashed"}
        stamps = [dt.datetime.fromisoformat(h["at"]) for h in stored.history]
        assert all(s.utcoffset() == dt.timedelta(0) for s in stamps)
        assert stamps == sorted(stamps)


def test_terminal_status_is_final_unless_reanalysis(url: str) -> None:
    with session_scope(url) as session:
        job = get_or_create_job(session, event_id="ev-1", analysis_name="A", fingerprint="f1")
        transition(session, job, JobStatus.DONE, stage="persist")
        with pytest.raises(JobTransitionError, match=r"DONE.*PERSISTING.*reanalysis"):
            transition(session, job, JobStatus.PERSISTING)
        assert job.status == "DONE"
        transition(session, job, JobStatus.ANNOTATING, stage="reanalysis", reanalysis=True)
        assert job.status == "ANNOTATING"
        cancelled = get_or_create_job(session, event_id="ev-2", analysis_name="B", fingerprint="f2")
        transition(session, cancelled, JobStatus.CANCELLED)
        with pytest.raises(JobTransitionError):
            transition(session, cancelled, JobStatus.SUBMITTED)


def test_find_done_job_matches_name_and_fingerprint(url: str) -> None:
    with session_scope(url) as session:
        job = get_or_create_job(session, event_id="ev-1", analysis_name="A", fingerprint="f1")
        assert find_done_job(session, analysis_name="A", fingerprint="f1") is None
        transition(session, job, JobStatus.DONE)
        failed = get_or_create_job(session, event_id="ev-2", analysis_name="A", fingerprint="f2")
        transition(session, failed, JobStatus.FAILED, message="bad VCF")
    with session_scope(url) as session:
        found = find_done_job(session, analysis_name="A", fingerprint="f1")
        assert found is not None and found.event_id == "ev-1"
        assert find_done_job(session, analysis_name="A", fingerprint="f2") is None
        assert find_done_job(session, analysis_name="B", fingerprint="f1") is None


def test_a_second_worker_gets_the_job_the_first_committed(url: str) -> None:
    from engine.db.session import session_factory

    make = session_factory(url)
    winner, loser = make(), make()
    try:
        # Two workers with their own sessions; the second opened its transaction before the first committed.
        assert loser.scalars(sa.select(ImportJob)).first() is None
        won = get_or_create_job(winner, event_id="ev-race", analysis_name="A", fingerprint="f")
        winner.commit()
        lost = get_or_create_job(loser, event_id="ev-race", analysis_name="A", fingerprint="f")
        assert lost.id == won.id
        loser.commit()
    finally:
        winner.close()
        loser.close()
