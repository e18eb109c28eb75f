"""Requesting releases: a reanalysis of one stored analysis, or a reannotation run.

The one implementation behind ``annostream reanalyse``/``reannotate`` and
``POST /api/v1/reanalyses``. Requests are checked against the database first (the analysis and
the bundle exist), so a typo is answered at once instead of turning into a dead letter later.
Callers pass the session and the process's :class:`engine.kafka.EventPublisher`; a reannotation
run is recorded first and published by the caller, which opens a broker connection only when
there is something to publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine import ledger
from engine.bundles import resolve_bundle
from engine.db.models import Analysis
from engine.errors import BrokerUnavailable, InputError, UnknownAnalysisError
from engine.events import Event, ReanalysisRequested, ReannotationBatchEvent, Topics
from engine.ledger import WorkEvent
from engine.reannotate.runs import (
    DEFAULT_BATCH_SIZE,
    RunProgress,
    find_run,
    missing_batches,
    plan_run,
    run_progress,
)

if TYPE_CHECKING:  # the Kafka client is loaded only by callers that publish
    from engine.kafka import EventPublisher


def check_reanalysis(session: Session, analysis: str, bundle: str | None) -> str:
    """The bundle version the request will use.

    Raises UnknownAnalysisError (no such stored analysis) or InputError (unknown bundle, or no
    active bundle when ``bundle`` is None).
    """
    if session.scalar(sa.select(Analysis.id).where(Analysis.name == analysis)) is None:
        raise UnknownAnalysisError(
            f"no stored analysis named {analysis!r}", expected="the name of an imported analysis"
        )
    return resolve_bundle(session, bundle).version


def request_reanalysis(
    session: Session,
    publisher: EventPublisher,
    analysis: str,
    bundle: str | None,
    *,
    producer: str,
    requested_by: str | None = None,
) -> ReanalysisRequested:
    """Check and publish a reanalysis request (keyed by the analysis); returns the event.

    Raises what :func:`check_reanalysis` raises, or BrokerUnavailable.
    """
    version = check_reanalysis(session, analysis, bundle)
    event = ReanalysisRequested(
        producer=producer, analysis=analysis, bundle=version, requested_by=requested_by
    )
    # The transactional outbox: committed before it is published, so a broker that loses it
    # (restart, outage) loses nothing: the reconciler publishes it again.
    ledger.record(session, WorkEvent.of(event, publisher.topics))
    session.commit()
    publish_recorded(publisher, [event])
    return event


def start_reannotation(
    session: Session,
    topics: Topics,
    *,
    bundle: str | None,
    analyses: Sequence[str] | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    producer: str,
    full: bool = False,
) -> tuple[RunProgress, list[ReannotationBatchEvent]] | None:
    """Plan a run and commit it with its batch events in the work ledger; the caller then
    publishes the events (:func:`publish_recorded`), so a batch never refers to an unstored run
    and a broker that loses one loses nothing (the reconciler publishes it again).

    ``None`` when an incremental release has nothing to re-annotate (nothing is written, and no
    broker connection is needed)."""
    run, events = plan_run(
        session, bundle=bundle, analyses=analyses, batch_size=batch_size, producer=producer, full=full
    )
    if run is None:
        session.rollback()
        return None
    progress = run_progress(session, run)
    for event in events:  # the transactional outbox: committed with the plan
        ledger.record(session, WorkEvent.of(event, topics))
    session.commit()
    return progress, events


def resume_reannotation(
    session: Session, topics: Topics, run: str, *, producer: str
) -> tuple[RunProgress, list[ReannotationBatchEvent]]:
    """Record again the batches of ``run`` that are not DONE (failed ones go back to PENDING);
    returns the progress and the events for the caller to publish (:func:`publish_recorded`)."""
    found = find_run(session, run)
    if found is None:
        raise InputError(
            f"no reannotation run {run!r}", expected="an id or run id from GET /api/v1/reannotations"
        )
    events = missing_batches(session, found, producer=producer)
    progress = run_progress(session, found)
    for event in events:
        ledger.record(session, WorkEvent.of(event, topics))
    session.commit()
    return progress, events


def publish_recorded(publisher: EventPublisher, events: Sequence[Event]) -> None:
    """Publish events already committed to the work ledger; an unreachable broker says so."""
    try:
        publisher.publish(events)
    except BrokerUnavailable as error:
        raise BrokerUnavailable(
            f"{error}; the work is recorded in the database's work ledger and will "
            "be published when the broker is back (or run 'annostream replay "
            "--from-ledger')"
        ) from None
