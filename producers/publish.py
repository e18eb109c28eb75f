"""Publishing one analysis folder as an ``analysis.ready`` event (used by the watcher and
``annostream publish``).

The folder is checked the way the importer will read it (``load_analysis_folder``) before
anything is published, so a broken folder fails here, where the user can see it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from engine import metrics
from engine.config import Settings
from engine.events import Genepanel, ReadyEvent, Topics, build_ready_event, default_producer, encode
from engine.kafka import EventProducer, ensure_engine_topics, require_bootstrap

if TYPE_CHECKING:
    from engine.deposit.specs import AnalysisSpec

log = logging.getLogger(__name__)


def check_folder(folder: Path) -> AnalysisSpec:
    """Parse the analysis folder; raises engine.errors.InputError if it cannot be imported."""
    from engine.deposit.analysis_folder import load_analysis_folder  # parsing is heavy; load lazily

    return load_analysis_folder(folder)


def apply_spec(event: ReadyEvent, spec: AnalysisSpec) -> ReadyEvent:
    """The event with the analysis name, gene panel and priority from the parsed folder."""
    panel = None
    if spec.genepanel_name and spec.genepanel_version:
        panel = Genepanel(name=spec.genepanel_name, version=spec.genepanel_version)
    # ELLA takes any integer priority (stored on the interpretation log); the event's priority
    # picks a processing lane, 1 normal .. 3 urgent, so values outside are clamped into it.
    lane = min(max(spec.priority, 1), 3)
    return dataclasses.replace(event, analysis=spec.name, genepanel=panel, priority=lane)


def prepare_ready_event(folder: Path, settings: Settings, *, producer: str) -> ReadyEvent:
    """Check ``folder`` (inside ANALYSES_INCOMING) and describe it as an analysis.ready event."""
    spec = check_folder(folder)
    event = build_ready_event(folder, settings.analyses_incoming, producer=producer)
    return apply_spec(event, spec)


def send_ready(event: ReadyEvent, producer: EventProducer, topics: Topics, settings: Settings) -> None:
    """Record in the work ledger, publish (keyed by analysis name), wait for the broker's ack."""
    from engine.ledger import Message, WorkEvent, record_then_publish

    def publish(messages: list[Message]) -> None:
        for topic, key, value in messages:
            producer.send(topic, key, value)

    topic = topics.ready_for(event.priority)  # the lane of its priority
    work = WorkEvent(
        event_id=event.event_id,
        schema=event.SCHEMA,
        topic=topic,
        key=event.key,
        value=encode(event),
        analysis=event.analysis,
    )
    record_then_publish(settings, [work], publish)
    metrics.EVENTS_PRODUCED.labels(topic=topic).inc()
    log.info(
        "published %s for %s (%s, %d files, fingerprint %s)",
        event.event_id,
        event.analysis,
        event.folder,
        len(event.files),
        event.fingerprint[:12],
        extra={"analysis": event.analysis, "event_id": event.event_id},
    )


def publish_folder(folder: Path, settings: Settings, *, producer_name: str | None = None) -> ReadyEvent:
    """Check and publish one folder; returns the published event.

    Raises InputError (folder problem), EventRejected (event would violate its schema) or
    BrokerUnavailable (KAFKA_BOOTSTRAP_SERVERS unset or unreachable).
    """
    require_bootstrap(settings, "publish")
    event = prepare_ready_event(folder, settings, producer=producer_name or default_producer("publish"))
    bootstrap = ensure_engine_topics(settings, command="publish")
    with EventProducer(
        bootstrap, client_id="annostream-publish", timeout_s=settings.kafka_timeout_s
    ) as producer:
        send_ready(event, producer, Topics.from_settings(settings), settings)
    return event
