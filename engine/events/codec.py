"""The wire format of every event: one ``encode`` and one ``decode``.

Every event is a JSON object (orjson) whose first keys are ``schema`` (event name) and
``version``; its shape is the JSON Schema ``schemas/<name>/v<version>.json``. Both directions
validate against that schema, and every violation is worded the same way:
``<name> v<version>: field <path>: <what is wrong>`` (raised as :class:`EventRejected`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, overload

import orjson
from jsonschema import ValidationError
from jsonschema.exceptions import best_match

import schemas
from engine.errors import EventRejected
from engine.events.base import Event, event_class

E = TypeVar("E", bound=Event)


def encode(event: Event) -> bytes:
    """The event as JSON bytes, validated first so a producer bug never reaches the wire."""
    document = event.to_dict()
    _validate(document, event.SCHEMA, event.VERSION)
    return orjson.dumps(document)


@overload
def decode(raw: bytes, kind: None = None, *, incoming: Path | None = None) -> Event: ...
@overload
def decode(raw: bytes, kind: type[E], *, incoming: Path | None = None) -> E: ...


def decode(raw: bytes, kind: type[E] | None = None, *, incoming: Path | None = None) -> Event:
    """Parse and validate one event; raises EventRejected naming what is wrong.

    Checks: a JSON object, a known schema name and version, the schema itself, that it is a
    ``kind`` event when ``kind`` is given (the event a topic carries), and that every analysis
    folder it names resolves inside ``incoming`` (ANALYSES_INCOMING; required for events that
    name folders).
    """
    document = _parse_json_object(raw)
    name, version = document.get("schema"), document.get("version")
    if not isinstance(name, str) or isinstance(version, bool) or not isinstance(version, int):
        raise EventRejected("missing or invalid 'schema'/'version' (expected a name and an integer version)")
    if kind is not None and name != kind.SCHEMA:
        raise EventRejected(f"{name} v{version} event where {kind.SCHEMA} events are expected")
    try:
        check = schemas.validator(name, version)
    except schemas.UnknownSchema as error:
        raise EventRejected(str(error)) from None
    problem = best_match(check.iter_errors(document))
    if problem is not None:
        raise EventRejected(_describe_violation(name, version, problem))
    found = event_class(name, version)
    if found is None:
        raise EventRejected(f"{name} v{version}: this version has a schema but no event class to read it")
    event = found.from_document(document)
    if kind is not None and not isinstance(event, kind):
        raise EventRejected(
            f"{name} v{version} event where {kind.SCHEMA} v{kind.VERSION} events are expected"
        )
    event.check_paths(incoming)
    return event


def _validate(document: dict[str, Any], name: str, version: int) -> None:
    problem = best_match(schemas.validator(name, version).iter_errors(document))
    if problem is not None:
        raise EventRejected(_describe_violation(name, version, problem))


def _parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise EventRejected(f"not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise EventRejected(f"event is a JSON {type(document).__name__}, expected an object")
    return document


def _describe_violation(name: str, version: int, error: ValidationError) -> str:
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    message = error.message
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [key for key in error.validator_value if key not in error.instance]
        where, message = f"{where}.{missing[0]}", "is required but missing"
    field_name = where.lstrip(".") or "(event)"
    return f"{name} v{version}: field {field_name}: {message}"
