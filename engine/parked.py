"""Parked events: events whose failure could not even be recorded (see engine.pipeline.guard).

An operator lists them (``annostream parked list``, ``GET /api/v1/parked``, the
``annostream_parked_events`` gauge), fixes the cause (e.g. makes ANALYSES_FAILED writable), then
``retry`` publishes the exact bytes again to the topic they came from, or ``drop`` gives up on
them: an import job for a dropped event becomes CANCELLED, the one state only an operator sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine import ledger
from engine.db.models import ImportJob, JobStatus, LedgerState, ParkedEvent
from engine.errors import NotFoundError
from engine.jobs import transition

#: (topic, key, value) of one message to publish.
Publish = Callable[[list[tuple[str, str, bytes]]], None]


def list_parked(session: Session) -> list[ParkedEvent]:
    return list(session.scalars(sa.select(ParkedEvent).order_by(ParkedEvent.id)))


def count_parked(session: Session) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(ParkedEvent)) or 0)


def _chosen(session: Session, ids: Sequence[int], every: bool) -> list[ParkedEvent]:
    if every:
        return list_parked(session)
    chosen = []
    for identifier in ids:
        parked = session.get(ParkedEvent, identifier)
        if parked is None:
            raise NotFoundError("parked event", identifier)
        chosen.append(parked)
    return chosen


def retry_parked(session: Session, ids: Sequence[int], publish: Publish, *, every: bool = False) -> int:
    """Publish the chosen parked events again (exact bytes), then forget them; returns how many."""
    chosen = _chosen(session, ids, every)
    publish([(parked.topic, parked.key or "", parked.value) for parked in chosen])
    for parked in chosen:
        session.delete(parked)
    return len(chosen)


def drop_parked(session: Session, ids: Sequence[int], *, every: bool = False) -> int:
    """Give up on the chosen parked events: their import jobs become CANCELLED; returns how many."""
    chosen = _chosen(session, ids, every)
    for parked in chosen:
        if parked.event_id:
            job = session.scalars(sa.select(ImportJob).where(ImportJob.event_id == parked.event_id)).first()
            if job is not None and job.status not in (JobStatus.DONE.value, JobStatus.CANCELLED.value):
                transition(
                    session,
                    job,
                    JobStatus.CANCELLED,
                    stage="parked",
                    message=f"parked event {parked.id} dropped by an operator: {parked.reason}",
                )
            ledger.finish(session, parked.event_id, LedgerState.FAILED)
        session.delete(parked)
    return len(chosen)
