"""The document a re-annotation makes current: the current one with the bundle's part replaced.

A bundle *owns* the document targets that the annotation config's converters fill from INFO
fields the bundle writes (the ``names`` of its ``[[annotation]]`` blocks and the ``name`` of its
``[[postannotation]]`` blocks). Re-annotating removes every owned target from the current
document and puts in what the bundle produced now: a value the new release withdrew disappears,
while parts the bundle cannot produce (say VEP ``transcripts`` from the analysis VCF's own
``CSQ`` at import) stay.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from engine.annotate.config import AnnotationConfig
from engine.deposit.converters import targets_by_source

TargetPath = tuple[str, ...]


def bundle_info_fields(config: AnnotationConfig) -> frozenset[str]:
    """The INFO fields a vcfanno config writes (``setid`` writes the ID column, not INFO)."""
    names = {output.name for block in config.annotations for output in block.outputs}
    names.update(
        post.name for post in config.postannotations if post.name and post.op not in ("setid", "delete")
    )
    return frozenset(names)


def owned_targets(deposit_config: Mapping[str, Any], info_fields: Iterable[str]) -> tuple[TargetPath, ...]:
    """The document targets the converters fill from ``info_fields``, as key paths."""
    by_source = targets_by_source(deposit_config)
    paths: dict[TargetPath, None] = {}
    for field in info_fields:
        for target in by_source.get(field, ()):
            paths[tuple(target.split("."))] = None
    return tuple(paths)


def merge_document(
    current: dict[str, Any] | None, produced: Mapping[str, Any] | None, owned: Iterable[TargetPath]
) -> dict[str, Any]:
    """``current`` without the ``owned`` targets, plus ``produced``. Modifies ``current``."""
    document = current if current is not None else {}
    if document:
        for path in owned:
            _remove(document, path)
    if produced:
        _deep_merge(document, produced)
    return document


def owned_values(document: Mapping[str, Any], owned: Iterable[TargetPath]) -> dict[str, Any]:
    """{"a.b.c": value} of the owned targets present in ``document`` (copied: merging mutates)."""
    values: dict[str, Any] = {}
    for path in owned:
        node: Any = document
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                break
            node = node[key]
        else:
            values[".".join(path)] = copy.deepcopy(node) if isinstance(node, dict | list) else node
    return values


def _remove(document: dict[str, Any], path: TargetPath) -> None:
    """Delete the value at ``path`` and the objects it leaves empty on the way up."""
    *parents, leaf = path
    trail: list[tuple[dict[str, Any], str]] = []
    node = document
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            return
        trail.append((node, key))
        node = child
    if leaf not in node:
        return
    del node[leaf]
    for parent, key in reversed(trail):
        if parent[key]:
            return
        del parent[key]


def _deep_merge(destination: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        existing = destination.get(key)
        if isinstance(value, Mapping) and isinstance(existing, dict):
            _deep_merge(existing, value)
        else:
            destination[key] = value
