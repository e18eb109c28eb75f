"""Requesting releases: publish ``reanalysis.requested`` or plan and publish a reannotation run.

Used by the CLI and the API. Requests are checked against the database first (the analysis and
the bundle exist), so a typo is answered at once instead of turning into a dead letter later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.config import Settings
from engine.db.models import Analysis
from engine.db.session import session_scope
from engine.errors import InputError
from engine.events import ReanalysisRequested, Topics, encode
from engine.kafka import EventProducer, ensure_topics, require_bootstrap
from engine.reannotate.core import resolve_bundle
from engine.reannotate.runs import DEFAULT_BATCH_SIZE, RunProgress, plan_run, run_progress


def check_reanalysis(session: Session, analysis: str, bundle: str | None) -> str:
    """The bundle version the request will use; InputError if the analysis or bundle is unknown."""
    if session.scalar(sa.select(Analysis.id).where(Analysis.name == analysis)) is None:
        raise InputError(f"no stored analysis named {analysis!r}",
                         expected="the name of an imported analysis")
    return resolve_bundle(session, bundle).version


def request_reanalysis(settings: Settings, analysis: str, bundle: str | None, *,
                       producer: str, requested_by: str | None = None) -> ReanalysisRequested:
    """Check and publish a reanalysis request (keyed by the analysis); returns the event."""
    with session_scope(settings.database_url) as session:
        version = check_reanalysis(session, analysis, bundle)
    event = ReanalysisRequested(producer=producer, analysis=analysis, bundle=version,
                                requested_by=requested_by)
    topic = Topics.from_settings(settings).reanalysis
    publish_messages(settings, [(topic, event.key, encode(event))])
    return event


def start_reannotation(settings: Settings, *, bundle: str | None, analyses: Sequence[str] | None,
                       batch_size: int = DEFAULT_BATCH_SIZE, producer: str) -> RunProgress:
    """Plan a run (committed before anything is published) and publish its batches."""
    with session_scope(settings.database_url) as session:
        run, events = plan_run(session, bundle=bundle, analyses=analyses, batch_size=batch_size,
                               producer=producer)
        progress = run_progress(session, run)
    topic = Topics.from_settings(settings).reannotation
    publish_messages(settings, [(topic, event.key, encode(event)) for event in events])
    return progress


def publish_messages(settings: Settings, messages: list[tuple[str, str, bytes]]) -> None:
    """Publish (topic, key, value) messages, each acknowledged by the broker, creating topics first."""
    bootstrap = require_bootstrap(settings, "reanalyse/reannotate")
    ensure_topics(bootstrap, sorted({topic for topic, _key, _value in messages}),
                  partitions=settings.topic_partitions,
                  replication_factor=settings.topic_replication_factor)
    with EventProducer(bootstrap, client_id="annostream-release") as producer:
        for topic, key, value in messages:
            producer.send(topic, key, value)
