"""The event contract: every event class, its codec and every topic.

- ``base``: :class:`Event`, the one base (schema name, version, partition key, envelope);
  anything that violates the contract raises :class:`engine.errors.EventRejected`.
- ``analysis``: the import-flow events and how they are built from folders and stage results.
- ``release``: the reanalysis and reannotation events.
- ``codec``: :func:`encode` and :func:`decode`, validating against ``schemas/<name>/v<N>.json``.
- ``topics``: :class:`Topics`, the registry of every topic and the event it carries.

How to add an event or a topic: docs/events.md, "Adding an event or a topic".
"""

from engine.errors import EventRejected
from engine.events.analysis import (
    EXCLUDED_FILES,
    AnalysisEvent,
    AnnotatedEvent,
    FailedEvent,
    FileEntry,
    Genepanel,
    ImportedEvent,
    ReadyEvent,
    StatusEvent,
    annotated_event,
    build_ready_event,
    content_files,
    default_producer,
    describe_files,
    failed_event,
    fingerprint,
    imported_event,
    sha256_file,
    status_event,
    verify_files,
)
from engine.events.base import Event, event_class, event_classes
from engine.events.codec import decode, encode
from engine.events.release import ReanalysisRequested, ReannotationBatchEvent
from engine.events.topics import Topics, TopicSpec, topic_config

__all__ = [
    "EXCLUDED_FILES",
    "AnalysisEvent",
    "AnnotatedEvent",
    "Event",
    "EventRejected",
    "FailedEvent",
    "FileEntry",
    "Genepanel",
    "ImportedEvent",
    "ReadyEvent",
    "ReanalysisRequested",
    "ReannotationBatchEvent",
    "StatusEvent",
    "TopicSpec",
    "Topics",
    "annotated_event",
    "build_ready_event",
    "content_files",
    "decode",
    "default_producer",
    "describe_files",
    "encode",
    "event_class",
    "event_classes",
    "failed_event",
    "fingerprint",
    "imported_event",
    "sha256_file",
    "status_event",
    "topic_config",
    "verify_files",
]
