"""Validate annotation documents against ELLA's annotation JSON schemas (shipped copies).

``annotation_v1.json`` refers to its sub-schemas by relative URI (``annotation/*.json``); they
are served from a local :class:`referencing.Registry`, never fetched. ELLA's sub-schemas all
declare the same ``$id`` as the root; each is registered under the URI the root's ``$ref``
resolves to and its ``$id`` is set to that URI, so its internal ``#/definitions`` refs resolve
inside the sub-schema rather than in the root. ``external.HGMD`` and ``external.CLINVAR`` are
checked against ``hgmd_v1`` / ``clinvar_v1`` as well.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from engine.errors import InputError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "jsonschemas"
ROOT_SCHEMA = "annotation_v1.json"
_WRAPPER_ID = "urn:annostream:annotation-document"


def _load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


@cache
def annotation_validator() -> Draft7Validator:
    """The compiled validator (built once per process)."""
    root = _load(ROOT_SCHEMA)
    base = root["$id"]
    resources = [(base, root)]
    for path in sorted((SCHEMA_DIR / "annotation").glob("*.json")):
        uri = urljoin(base, f"annotation/{path.name}")
        schema = {**_load(f"annotation/{path.name}"), "$id": uri}
        resources.append((uri, schema))
    registry: Registry = Registry().with_resources(
        (uri, Resource.from_contents(schema, default_specification=DRAFT7)) for uri, schema in resources
    )
    wrapper = {
        "$id": _WRAPPER_ID,
        "allOf": [
            {"$ref": base},
            {
                "properties": {
                    "external": {
                        "type": "object",
                        "properties": {
                            "HGMD": {"$ref": urljoin(base, "annotation/hgmd_v1.json")},
                            "CLINVAR": {"$ref": urljoin(base, "annotation/clinvar_v1.json")},
                        },
                    }
                }
            },
        ],
    }
    return Draft7Validator(wrapper, registry=registry)


def validate_annotation(document: dict[str, Any]) -> None:
    """Raise :class:`InputError` naming the first failing path if ``document`` breaks the schema."""
    validator = annotation_validator()
    error = best_match(validator.iter_errors(document))
    if error is None:
        return
    path = ".".join(str(part) for part in error.absolute_path) or "<document>"
    raise InputError(
        f"annotation document invalid at {path}: {error.message}",
        expected="a document matching ELLA's annotation_v1 schema",
    )
