"""The release events: ``reanalysis.requested`` and ``reannotation.batch`` (schemas/<name>/v1.json).

They carry names, versions and id ranges, never VCF content. Encoding validates against the
schema (a producer bug never reaches the wire); decoding raises ``EventRejected`` naming the field.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import orjson
from jsonschema.exceptions import best_match

import schemas
from engine.config import Settings
from engine.events import EventRejected
from engine.folders import utc_now

REANALYSIS_REQUESTED = "reanalysis.requested"
REANNOTATION_BATCH = "reannotation.batch"
ANNOTATION_CHANGED = "annotation.changed"
BUNDLE_ACTIVATED = "bundle.activated"
# Namespace of the deterministic ids of annotation.changed events: a replayed batch republishes
# the same event ids, so readers can drop duplicates.
_CHANGED_NAMESPACE = uuid.UUID("6f1d9a52-5b7e-4d0e-9a39-1c0b6a7e2d11")


@dataclass(frozen=True, slots=True)
class ReleaseTopics:
    reanalysis: str
    reannotation: str
    changed: str
    bundle_activated: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ReleaseTopics:
        return cls(settings.topic(REANALYSIS_REQUESTED), settings.topic(REANNOTATION_BATCH),
                   settings.topic(ANNOTATION_CHANGED), settings.topic(BUNDLE_ACTIVATED))

    def all(self) -> tuple[str, ...]:
        return (self.reanalysis, self.reannotation, self.changed, self.bundle_activated)


@dataclass(frozen=True, kw_only=True)
class ReanalysisRequested:
    SCHEMA: ClassVar[str] = REANALYSIS_REQUESTED
    VERSION: ClassVar[int] = 1

    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=utc_now)
    producer: str
    analysis: str
    bundle: str | None
    requested_by: str | None = None

    @property
    def key(self) -> str:
        return self.analysis


@dataclass(frozen=True, kw_only=True)
class ReannotationBatchEvent:
    SCHEMA: ClassVar[str] = REANNOTATION_BATCH
    VERSION: ClassVar[int] = 1

    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=utc_now)
    producer: str
    run_id: str
    batch_index: int
    bundle: str
    id_from: int
    id_to: int
    analyses: list[str] | None = None

    @property
    def key(self) -> str:
        # Distinct keys per batch spread a run over every partition (and worker).
        return f"{self.run_id}:{self.batch_index}"


@dataclass(frozen=True, kw_only=True)
class AnnotationChanged:
    """An allele whose bundle-owned annotation a release changed (key: the allele id)."""

    SCHEMA: ClassVar[str] = ANNOTATION_CHANGED
    VERSION: ClassVar[int] = 1

    event_id: str
    time: str = field(default_factory=utc_now)
    producer: str
    run_id: str
    bundle: str
    allele_id: int
    allele: dict[str, Any]  # chromosome, vcf_pos, vcf_ref, vcf_alt
    analyses: list[str]
    changes: list[dict[str, Any]]  # {"target": "a.b", "old": ..., "new": ...}

    @staticmethod
    def event_id_for(run_id: str, allele_id: int) -> str:
        return str(uuid.uuid5(_CHANGED_NAMESPACE, f"{run_id}:{allele_id}"))

    @property
    def key(self) -> str:
        return str(self.allele_id)


@dataclass(frozen=True, kw_only=True)
class BundleActivated:
    """A bundle became the active one; drives the IGV tracks stage (key: the bundle version)."""

    SCHEMA: ClassVar[str] = BUNDLE_ACTIVATED
    VERSION: ClassVar[int] = 1

    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=utc_now)
    producer: str
    bundle: str
    previous: str | None = None

    @property
    def key(self) -> str:
        return self.bundle


ReleaseEvent = ReanalysisRequested | ReannotationBatchEvent | AnnotationChanged | BundleActivated
E = TypeVar("E", ReanalysisRequested, ReannotationBatchEvent, AnnotationChanged, BundleActivated)


def encode_release(event: ReleaseEvent) -> bytes:
    document = {"schema": event.SCHEMA, "version": event.VERSION, **dataclasses.asdict(event)}
    _validate(document, event.SCHEMA, event.VERSION)
    return orjson.dumps(document)


def decode_release(raw: bytes, kind: type[E]) -> E:
    """Parse and validate a ``kind`` event; EventRejected says what is wrong."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise EventRejected(f"not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise EventRejected(f"event is a JSON {type(document).__name__}, expected an object")
    if document.get("schema") != kind.SCHEMA or document.get("version") != kind.VERSION:
        raise EventRejected(f"{document.get('schema')!r} v{document.get('version')!r} event on the "
                            f"{kind.SCHEMA} topic (expected {kind.SCHEMA} v{kind.VERSION})")
    _validate(document, kind.SCHEMA, kind.VERSION)
    names = {item.name for item in dataclasses.fields(kind)}
    return kind(**{key: value for key, value in document.items() if key in names})


def _validate(document: dict[str, Any], name: str, version: int) -> None:
    problem = best_match(schemas.validator(name, version).iter_errors(document))
    if problem is not None:
        where = ".".join(str(part) for part in problem.absolute_path) or "(event)"
        raise EventRejected(f"{name} v{version}: field {where}: {problem.message}")
