"""Import jobs: one row per published event, with a status history a user can read.

A job is keyed by the event id, so a replayed event finds its job instead of making a new one;
the folder fingerprint lets a re-published folder with identical content be recognised as done.
All functions work inside the caller's transaction (they flush, never commit).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db.models import ImportJob, JobStatus
from engine.errors import JobTransitionError
from engine.timeutil import utcnow

TERMINAL_STATUSES = frozenset({JobStatus.DONE, JobStatus.CANCELLED})


def get_or_create_job(
    session: Session, *, event_id: str, analysis_name: str, fingerprint: str | None
) -> ImportJob:
    """The job for ``event_id``; created as SUBMITTED the first time the event is seen."""
    existing = _job_by_event(session, event_id)
    if existing is not None:
        return existing
    job = ImportJob(
        event_id=event_id,
        analysis_name=analysis_name,
        fingerprint=fingerprint,
        status=JobStatus.SUBMITTED.value,
        attempts=0,
        history=[],
    )
    _append_history(job, JobStatus.SUBMITTED, stage=None, message=None)
    try:
        # A savepoint, so losing a race with another worker does not abort the caller's transaction.
        with session.begin_nested():
            session.add(job)
    except sa.exc.IntegrityError:
        raced = _job_by_event(session, event_id)
        if raced is None:
            raise
        return raced
    return job


def transition(
    session: Session,
    job: ImportJob,
    status: JobStatus,
    *,
    stage: str | None = None,
    message: str | None = None,
    reanalysis: bool = False,
) -> None:
    """Move ``job`` to ``status`` and record it in the history.

    DONE and CANCELLED are final: leaving them raises :class:`JobTransitionError` unless
    ``reanalysis`` says the stored analysis is deliberately being processed again.
    """
    current = JobStatus(job.status)
    if current in TERMINAL_STATUSES and not reanalysis:
        raise JobTransitionError(
            f"import job {job.id} (event {job.event_id}, analysis {job.analysis_name}) is "
            f"{current.value}; it cannot move to {JobStatus(status).value} unless it is a reanalysis"
        )
    job.status = JobStatus(status).value
    job.stage = stage
    job.message = message
    _append_history(job, status, stage=stage, message=message)
    session.flush()


def record_attempt(session: Session, job: ImportJob) -> None:
    """Count one more processing attempt (a worker picked the event up)."""
    job.attempts = (job.attempts or 0) + 1
    job.date_updated = utcnow()
    session.flush()


def find_done_job(session: Session, *, analysis_name: str, fingerprint: str) -> ImportJob | None:
    """The most recent DONE job that imported exactly this folder content, if any."""
    query = (
        sa.select(ImportJob)
        .where(
            ImportJob.analysis_name == analysis_name,
            ImportJob.fingerprint == fingerprint,
            ImportJob.status == JobStatus.DONE.value,
        )
        .order_by(ImportJob.date_updated.desc(), ImportJob.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def _job_by_event(session: Session, event_id: str) -> ImportJob | None:
    return session.scalars(sa.select(ImportJob).where(ImportJob.event_id == event_id)).first()


def _append_history(job: ImportJob, status: JobStatus, *, stage: str | None, message: str | None) -> None:
    now = utcnow()
    entry: dict[str, Any] = {
        "status": JobStatus(status).value,
        "stage": stage,
        "message": message,
        "at": now.isoformat(),
    }
    # A new list, not append(): SQLAlchemy only notices reassigned JSON values.
    job.history = [*(job.history or []), entry]
    job.date_updated = now
