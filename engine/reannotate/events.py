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
from engine.errors import EventRejected
from engine.folders import utc_now

REANALYSIS_REQUESTED = "reanalysis.requested"
REANNOTATION_BATCH = "reannotation.batch"


@dataclass(frozen=True, slots=True)
class ReleaseTopics:
    reanalysis: str
    reannotation: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ReleaseTopics:
        return cls(settings.topic(REANALYSIS_REQUESTED), settings.topic(REANNOTATION_BATCH))

    def all(self) -> tuple[str, str]:
        return (self.reanalysis, self.reannotation)


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


ReleaseEvent = ReanalysisRequested | ReannotationBatchEvent
E = TypeVar("E", ReanalysisRequested, ReannotationBatchEvent)


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
