"""The one base every event on the wire derives from.

An event class declares its ``SCHEMA`` (the event name, also the folder under ``schemas/``),
its ``VERSION`` (the schema file ``v<VERSION>.json``) and its partition ``key``. Defining a
concrete subclass registers it: :func:`event_class` finds it by name and version, and the
codec (``engine.events.codec``) needs nothing else to encode or decode it.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from engine.timeutil import iso_utc

E = TypeVar("E", bound="Event")


_REGISTRY: dict[tuple[str, int], type[Event]] = {}


@dataclass(frozen=True, kw_only=True)
class Event:
    """Common envelope: ``schema`` and ``version`` (class-level), id, time and producer.

    Subclasses are frozen, keyword-only dataclasses *without* ``slots`` (slots would make the
    dataclass decorator replace the class that registered itself).
    """

    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int] = 1

    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=iso_utc)
    producer: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "SCHEMA" not in cls.__dict__ and "VERSION" not in cls.__dict__:
            return  # an intermediate base (e.g. AnalysisEvent), not an event on the wire
        identity = (cls.SCHEMA, cls.VERSION)
        if identity in _REGISTRY:
            raise TypeError(
                f"two event classes for {cls.SCHEMA} v{cls.VERSION}: "
                f"{_REGISTRY[identity].__qualname__} and {cls.__qualname__}"
            )
        _REGISTRY[identity] = cls

    @property
    def key(self) -> str:
        """The Kafka message key (partition key); every event class defines it."""
        raise NotImplementedError(f"{type(self).__qualname__} does not define its partition key")

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: ``schema`` and ``version`` first, nested events with their own."""
        body = {item.name: _plain(getattr(self, item.name)) for item in dataclasses.fields(self)}
        return {"schema": self.SCHEMA, "version": self.VERSION, **body}

    def check_paths(self, incoming: Path | None) -> None:
        """Reject (EventRejected) paths that could lead outside where they belong.

        ``incoming`` is ANALYSES_INCOMING; events naming analysis folders need it.
        """

    @classmethod
    def from_document(cls: type[E], document: dict[str, Any]) -> E:
        """The event from a document already validated against its schema.

        Classes with nested parts (files, a nested event) override this to build them.
        """
        return cls(**plain_fields(document, cls))


def plain_fields(
    document: dict[str, Any], kind: type[Event], *, nested: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The document's fields that ``kind`` has, except the ``nested`` ones its caller builds."""
    names = {item.name for item in dataclasses.fields(kind)} - nested
    return {key: value for key, value in document.items() if key in names}


def _plain(value: Any) -> Any:
    """JSON-ready copy; nested events keep their own schema/version envelope."""
    if isinstance(value, Event):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def event_class(name: str, version: int) -> type[Event] | None:
    """The class registered for ``name`` v``version``, or None."""
    return _REGISTRY.get((name, version))


def event_classes() -> dict[tuple[str, int], type[Event]]:
    """Every registered event class by (schema name, version)."""
    return dict(_REGISTRY)
