"""Versioned JSON Schemas (draft 2020-12) of the events on the wire.

One file per event name and version: ``schemas/<name>/v<version>.json`` (e.g.
``schemas/analysis.ready/v1.json``). A published version never changes; a change that old
readers cannot ignore gets a new version file next to the old one (see docs/events.md).
Schemas may ``$ref`` each other by relative path, resolved through one shared registry.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

BASE_URI = "https://annostream.invalid/schemas/"
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.json$")


class UnknownSchema(LookupError):
    """No schema file for this event name and version."""


@cache
def available() -> dict[str, tuple[int, ...]]:
    """Every event name with its known versions, ascending."""
    found: dict[str, list[int]] = {}
    for folder in resources.files(__name__).iterdir():
        if not folder.is_dir() or folder.name.startswith(("_", ".")):
            continue
        for entry in folder.iterdir():
            match = _VERSION_FILE.match(entry.name)
            if match:
                found.setdefault(folder.name, []).append(int(match.group(1)))
    return {name: tuple(sorted(versions)) for name, versions in sorted(found.items())}


@cache
def load_schema(name: str, version: int) -> dict[str, Any]:
    """The schema document for ``name`` at ``version``; raises UnknownSchema."""
    if version not in available().get(name, ()):
        known = ", ".join(f"{n} v{'/v'.join(map(str, v))}" for n, v in available().items())
        raise UnknownSchema(f"unknown event schema {name!r} version {version!r} (known: {known})")
    text = resources.files(__name__).joinpath(name, f"v{version}.json").read_bytes()
    document: dict[str, Any] = orjson.loads(text)
    return document


@cache
def _registry() -> Registry:
    resources_by_uri = [
        (f"{BASE_URI}{name}/v{version}.json", Resource.from_contents(load_schema(name, version)))
        for name, versions in available().items()
        for version in versions
    ]
    return Registry().with_resources(resources_by_uri)


@cache
def validator(name: str, version: int) -> Draft202012Validator:
    """A ready-to-use validator (cached) for one schema; raises UnknownSchema."""
    return Draft202012Validator(load_schema(name, version), registry=_registry())
