"""Turn an ELLA annotation config's ``deposit`` section into a per-record document builder.

Everything that depends only on the config and the VCF header (option checks, converter choice,
header parsing, target paths, which INFO keys matter) is done once in
:func:`build_annotation_builder`; the returned function does only the per-record work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from engine.deposit.converters.base import TARGET_MODES, Converter, ElementContext, InfoHeader, RawValue
from engine.deposit.converters.generic import (
    JSONConverter,
    KeyValueConverter,
    MappingConverter,
    MetaConverter,
)
from engine.deposit.converters.specific import (
    ClinVarJSONConverter,
    ClinVarReferencesConverter,
    HGMDConverter,
    HGMDExtraRefsConverter,
    HGMDPrimaryReportConverter,
)
from engine.deposit.converters.vep import VEPConverter
from engine.deposit.hgnc import HgncTable, load_hgnc_table
from engine.errors import AnnotationConfigError

CONVERTERS: dict[str, type[Converter]] = {
    cls.name: cls
    for cls in (
        KeyValueConverter,
        JSONConverter,
        MappingConverter,
        MetaConverter,
        VEPConverter,
        ClinVarJSONConverter,
        ClinVarReferencesConverter,
        HGMDConverter,
        HGMDPrimaryReportConverter,
        HGMDExtraRefsConverter,
    )
}

InfoDict = Mapping[str, RawValue]
AnnotationBuilder = Callable[[InfoDict], "dict[str, Any] | None"]


@dataclass(frozen=True)
class ElementPlan:
    """One configured element: read ``source`` (+ additional sources), convert, put at target."""

    order: int
    converter: Converter
    parents: tuple[str, ...]
    leaf: str
    mode: str
    additional_sources: tuple[str, ...]

    @property
    def target(self) -> str:
        return ".".join((*self.parents, self.leaf))


def _entry_elements(entry: Any, index: int, file: str | None) -> tuple[str, list[Any]]:
    where = f"annotation config deposit[{index}]"
    if not isinstance(entry, Mapping):
        raise AnnotationConfigError(
            f"{where} is {entry!r}", file, expected="a mapping with name and converter_config"
        )
    name = entry.get("name")
    if name not in CONVERTERS:
        raise AnnotationConfigError(
            f"{where}: unknown converter {name!r}", file, expected=f"one of {', '.join(sorted(CONVERTERS))}"
        )
    unknown = sorted(set(entry) - {"name", "converter_config"})
    if unknown:
        raise AnnotationConfigError(
            f"{where} ({name}): unknown key(s) {', '.join(unknown)}",
            file,
            expected="only name and converter_config",
        )
    converter_config = entry.get("converter_config")
    elements = converter_config.get("elements") if isinstance(converter_config, Mapping) else None
    if not isinstance(elements, list) or not elements:
        raise AnnotationConfigError(
            f"{where} ({name}): converter_config.elements is {elements!r}",
            file,
            expected="a non-empty list of elements",
        )
    return str(name), elements


def _plan_element(name: str, element: Any, context: ElementContext, order: int) -> ElementPlan:
    target = element.get("target")
    if not isinstance(target, str) or not target or "" in target.split("."):
        raise context.config_error(f"target is {target!r}", expected="a dot-separated JSON path like a.b.c")
    mode = element.get("target_mode", "insert")
    if mode not in TARGET_MODES:
        raise context.config_error(f"target_mode is {mode!r}", expected=f"one of {', '.join(TARGET_MODES)}")
    additional = element.get("additional_sources") or []
    if not isinstance(additional, list) or not all(isinstance(s, str) and s for s in additional):
        raise context.config_error(
            f"additional_sources is {additional!r}", expected="a list of INFO field names"
        )
    converter = CONVERTERS[name](element, context)
    *parents, leaf = target.split(".")
    return ElementPlan(order, converter, tuple(parents), leaf, str(mode), tuple(additional))


def _collides(insert_path: tuple[str, ...], other_path: tuple[str, ...], other_mode: str) -> bool:
    """Whether an insert at ``insert_path`` and another element at ``other_path`` overwrite or
    corrupt each other's value. Only a merge may hold an inserted value inside its object."""
    if other_path[: len(insert_path)] == insert_path:
        return True  # same path, or the other writes inside the inserted value
    inside = insert_path[: len(other_path)] == other_path
    return inside and other_mode != "merge"


def _check_insert_conflicts(plans: Sequence[ElementPlan]) -> None:
    """Elements whose values would overwrite each other depending on which fields a record has
    are refused up front."""
    for position, plan in enumerate(plans):
        for other in plans[position + 1 :]:
            if plan.mode != "insert" and other.mode != "insert":
                continue
            first, second = (plan, other) if plan.mode == "insert" else (other, plan)
            if _collides((*first.parents, first.leaf), (*second.parents, second.leaf), second.mode):
                raise other.converter.context.config_error(
                    f"target {other.target!r} ({other.mode}) collides with "
                    f"{plan.converter.context.describe()} target {plan.target!r} ({plan.mode})",
                    expected="distinct insert targets, none inside another",
                )


def parse_deposit_config(config: Mapping[str, Any], file: str | None = None) -> list[ElementPlan]:
    """Check the ``deposit`` section and configure one converter per element (no VCF needed)."""
    deposit = config.get("deposit") if isinstance(config, Mapping) else None
    if not isinstance(deposit, list):
        raise AnnotationConfigError(
            f"annotation config has deposit {deposit!r}", file, expected="a 'deposit' list of converters"
        )
    plans: list[ElementPlan] = []
    for index, entry in enumerate(deposit):
        name, elements = _entry_elements(entry, index, file)
        for element_index, element in enumerate(elements):
            source = element.get("source") if isinstance(element, Mapping) else None
            context = ElementContext(index, element_index, name, str(source), file)
            if not isinstance(source, str) or not source:
                raise context.config_error(
                    f"element is {element!r}", expected="a mapping with 'source' and 'target'"
                )
            plans.append(_plan_element(name, element, context, len(plans)))
    _check_insert_conflicts(plans)
    return plans


def targets_by_source(config: Mapping[str, Any], file: str | None = None) -> dict[str, tuple[str, ...]]:
    """Which document targets (dot paths, config order) each INFO ``source`` field feeds.

    Needs no VCF: it tells which parts of a document a set of INFO fields can produce (say, what a
    re-annotation bundle owns). Raises :class:`AnnotationConfigError` like the builder.
    """
    targets: dict[str, list[str]] = {}
    for plan in parse_deposit_config(config, file):
        feeds = targets.setdefault(plan.converter.source, [])
        if plan.target not in feeds:
            feeds.append(plan.target)
    return {source: tuple(paths) for source, paths in targets.items()}


def _place(document: dict[str, Any], plan: ElementPlan, value: Any) -> None:
    node = document
    for key in plan.parents:
        child = node.get(key)
        if child.__class__ is not dict:
            child = node[key] = {}
        node = child
    mode = plan.mode
    if mode == "insert":
        node[plan.leaf] = value
    elif mode == "extend":
        if not isinstance(value, list):
            raise plan.converter.context.value_error(
                value, "target_mode extend needs a list", expected="a list"
            )
        node.setdefault(plan.leaf, []).extend(value)
    elif mode == "append":
        node.setdefault(plan.leaf, []).append(value)
    else:  # merge
        if not isinstance(value, dict):
            raise plan.converter.context.value_error(
                value, "target_mode merge needs an object", expected="an object"
            )
        _deep_merge(node.setdefault(plan.leaf, {}), value)


def _deep_merge(destination: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        existing = destination.get(key)
        if isinstance(value, Mapping) and isinstance(existing, dict):
            _deep_merge(existing, value)
        else:
            destination[key] = value


def bind_plans(
    plans: Sequence[ElementPlan],
    info_header: InfoHeader,
    hgnc: HgncTable | None = None,
) -> list[ElementPlan]:
    """Prepare each converter for this VCF's header; drop elements the VCF cannot have."""
    bound = []
    for plan in plans:
        header = info_header.get(plan.converter.source)
        if isinstance(plan.converter, VEPConverter):
            plan.converter.with_hgnc(hgnc or load_hgnc_table())
        if plan.converter.bind(header) is not None:
            bound.append(plan)
    return bound


def build_annotation_builder(
    config: Mapping[str, Any],
    info_header: InfoHeader,
    *,
    validate: bool = False,
    hgnc: HgncTable | None = None,
    config_file: str | None = None,
) -> AnnotationBuilder:
    """A function from one record's INFO (key -> raw text, flags -> True) to its ELLA annotation
    document, or None when no configured field produced anything.

    ``info_header`` is the VCF's INFO metadata (ID -> {Number, Type, Description}).
    ``validate`` checks every document against ELLA's annotation JSON schema.
    ``hgnc`` resolves VEP entries that lack ``HGNC_ID`` (default: the packaged HGNC table).
    Raises :class:`AnnotationConfigError` for a bad config; the returned function raises
    :class:`AnnotationValueError` for a value it cannot convert.
    """
    plans = bind_plans(parse_deposit_config(config, config_file), info_header, hgnc)
    by_source: dict[str, list[ElementPlan]] = {}
    for plan in plans:
        by_source.setdefault(plan.converter.source, []).append(plan)
    sources = frozenset(by_source)
    # ELLA reads INFO through cyvcf2: a numeric field written '.' is None (a keyvalue element
    # stores null; ELLA's int/float cast of None fails the import instead), a text field '.' is
    # the text "." (a keyvalue element stores it, converted as written).
    numeric = frozenset(s for s in sources if (info_header.get(s) or {}).get("Type") in ("Integer", "Float"))
    steps_cache: dict[frozenset[str], tuple[_Step, ...]] = {}
    check = None
    if validate:
        from engine.deposit.converters.schema import validate_annotation

        check = validate_annotation

    def steps_for(present: frozenset[str]) -> tuple[_Step, ...]:
        steps = steps_cache.get(present)
        if steps is None:
            selected = sorted((plan for source in present for plan in by_source[source]), key=_by_order)
            # Config order decides the order of extend/append/merge results.
            steps = tuple(_Step.of(plan) for plan in selected)
            if len(steps_cache) < _STEPS_CACHE_SIZE:  # records of one VCF share few field sets
                steps_cache[present] = steps
        return steps

    def build(info: InfoDict) -> dict[str, Any] | None:
        present = sources.intersection(info)
        if not present:
            return None
        document: dict[str, Any] = {}
        for source, additional_sources, convert, plan in steps_for(present):
            raw = info[source]
            if raw == "":
                continue
            if raw == ".":
                # Only keyvalue elements store it; the structured converters (vep, json, ...)
                # have nothing to parse in '.' and skip it.
                if isinstance(plan.converter, KeyValueConverter):
                    _place(document, plan, None if source in numeric else convert(raw, _NONE))
                continue
            additional = _NONE
            if additional_sources:
                additional = {name: info.get(name) for name in additional_sources}
            value = convert(raw, additional)
            if value is not None:
                _place(document, plan, value)
        if not document:
            return None
        references = document.get("references")
        if isinstance(references, list) and all(isinstance(r, dict) for r in references):
            # ELLA's AnnotationImporter._extract_annotation_from_record sorts them by pubmed_id.
            document["references"] = sorted(references, key=_pubmed_order)
        if check is not None:
            check(document)
        return document

    # The INFO keys this builder reads: a reader can skip building the INFO dict of a line in
    # which none of them occurs (the builder would return None for it anyway).
    build.sources = sources  # type: ignore[attr-defined]
    return build


def _pubmed_order(reference: dict[str, Any]) -> tuple[bool, Any]:
    pubmed_id = reference.get("pubmed_id")
    return (pubmed_id is None, pubmed_id if isinstance(pubmed_id, int) else 0)


_NONE: Mapping[str, RawValue | None] = MappingProxyType({})
_STEPS_CACHE_SIZE = 4096


def _by_order(plan: ElementPlan) -> int:
    return plan.order


class _Step(NamedTuple):
    """A plan unpacked for the per-record loop (attribute lookups hoisted out of it)."""

    source: str
    additional_sources: tuple[str, ...]
    convert: Callable[[RawValue, Mapping[str, RawValue | None]], Any]
    plan: ElementPlan

    @classmethod
    def of(cls, plan: ElementPlan) -> _Step:
        return cls(plan.converter.source, plan.additional_sources, plan.converter.convert, plan)
