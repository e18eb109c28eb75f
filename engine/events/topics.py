"""Every Kafka topic of the engine, in one registry: :class:`Topics`.

Each field of :class:`Topics` is one topic: its base name (``ANNOSTREAM_TOPIC_PREFIX`` is put in
front at run time), the event class it carries and the topic configs it is created with.
``Topics.from_settings(settings).ready`` is the prefixed name to produce to or consume from;
``Topics.specs()`` lists what the registry declares. Adding a topic is adding one field here
(docs/events.md, "Adding an event or a topic").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.config import Settings
from engine.events.analysis import AnnotatedEvent, FailedEvent, ImportedEvent, ReadyEvent, StatusEvent
from engine.events.base import Event
from engine.events.release import (
    AnnotationChanged,
    BundleActivated,
    ReanalysisRequested,
    ReannotationBatchEvent,
)

#: Lanes, highest first drained: ELLA's ``.analysis`` priorities (1 normal, 2 high, 3 urgent) and,
#: below them, the re-annotation batches of a data release. A worker takes an event of a lane only
#: while no higher lane of any stage has events waiting or running in it (consumers/worker.py).
RELEASE, NORMAL, HIGH, URGENT = 0, 1, 2, 3
LANE_NAMES = {RELEASE: "release", NORMAL: "normal", HIGH: "high", URGENT: "urgent"}


def lane_of_priority(priority: int | None) -> int:
    """The import lane of an analysis priority (anything unknown is normal)."""
    return priority if priority in (NORMAL, HIGH, URGENT) else NORMAL


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What the registry says about one topic."""

    attribute: str  # the field of Topics
    name: str  # without the prefix
    carries: type[Event]  # the event class written to it
    configs: Mapping[str, str]  # topic configs at creation (e.g. cleanup.policy)
    lane_of: str | None  # a further topic for the same event as that main topic (e.g. a priority lane)


def _topic(
    name: str, carries: type[Event], *, configs: Mapping[str, str] | None = None, lane_of: str | None = None
) -> Any:
    # Returns a dataclasses.Field (typed Any so that a `str` field can be declared with it).
    return field(metadata={"topic": (name, carries, MappingProxyType(dict(configs or {})), lane_of)})


@dataclass(frozen=True, slots=True)
class Topics:
    """The engine's topic names with ANNOSTREAM_TOPIC_PREFIX applied: one field per topic."""

    # The normal lane keeps the plain names (pipelines that publish analysis.ready themselves
    # keep working); high and urgent analyses travel on topics of their own: one topic per
    # priority, so no broker feature beyond plain topics is needed (docs/decisions.md).
    ready: str = _topic("analysis.ready", ReadyEvent)
    ready_high: str = _topic("analysis.ready.high", ReadyEvent, lane_of="analysis.ready")
    ready_urgent: str = _topic("analysis.ready.urgent", ReadyEvent, lane_of="analysis.ready")
    annotated: str = _topic("analysis.annotated", AnnotatedEvent)
    annotated_high: str = _topic("analysis.annotated.high", AnnotatedEvent, lane_of="analysis.annotated")
    annotated_urgent: str = _topic("analysis.annotated.urgent", AnnotatedEvent, lane_of="analysis.annotated")
    imported: str = _topic("analysis.imported", ImportedEvent)
    failed: str = _topic("analysis.failed", FailedEvent)  # dead letters of every stage
    # Compacted: keeps the latest status of every analysis (the key) instead of expiring by age.
    status: str = _topic("analysis.status", StatusEvent, configs={"cleanup.policy": "compact"})
    reanalysis: str = _topic("reanalysis.requested", ReanalysisRequested)
    reannotation: str = _topic("reannotation.batch", ReannotationBatchEvent)
    changed: str = _topic("annotation.changed", AnnotationChanged)  # the change report, per allele
    bundle_activated: str = _topic("bundle.activated", BundleActivated)  # drives the tracks stage

    @classmethod
    def specs(cls) -> tuple[TopicSpec, ...]:
        """Every declared topic, in declaration order."""
        return tuple(TopicSpec(item.name, *item.metadata["topic"]) for item in dataclasses.fields(cls))

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls(**{spec.attribute: settings.topic(spec.name) for spec in cls.specs()})

    def ready_lanes(self) -> dict[int, str]:
        """The analysis.ready topic of each import lane."""
        return {NORMAL: self.ready, HIGH: self.ready_high, URGENT: self.ready_urgent}

    def annotated_lanes(self) -> dict[int, str]:
        """The analysis.annotated topic of each import lane."""
        return {NORMAL: self.annotated, HIGH: self.annotated_high, URGENT: self.annotated_urgent}

    def ready_for(self, priority: int | None) -> str:
        return self.ready_lanes()[lane_of_priority(priority)]

    def annotated_for(self, priority: int | None) -> str:
        return self.annotated_lanes()[lane_of_priority(priority)]

    def carrying(self, kind: type[Event]) -> str:
        """The (prefixed) main topic that carries ``kind`` events."""
        for spec in self.specs():
            if spec.lane_of is None and issubclass(kind, spec.carries):
                return str(getattr(self, spec.attribute))
        raise LookupError(f"no topic carries {kind.__qualname__} events (see engine/events/topics.py)")

    def all(self) -> tuple[str, ...]:
        """Every topic name (prefixed), in declaration order."""
        return tuple(getattr(self, spec.attribute) for spec in self.specs())


def topic_config(name: str) -> dict[str, str]:
    """The configs to create topic ``name`` (prefixed or not) with; empty for defaults.

    The longest registered base name that ``name`` ends with decides.
    """
    matching = [spec for spec in Topics.specs() if name.endswith(spec.name)]
    if not matching:
        return {}
    return dict(max(matching, key=lambda spec: len(spec.name)).configs)
