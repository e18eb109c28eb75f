"""Shared pieces of the annotation converters: element options, type casts and errors.

A converter is configured once per ``deposit`` element of an ELLA annotation config and then
called once per VCF record with the raw INFO text of its ``source`` field. All option checking
happens at configuration time so that the per-record call does no dictionary lookups of options.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.errors import AnnotationConfigError, AnnotationValueError

log = logging.getLogger(__name__)

# Options every element may carry, whatever its converter.
COMMON_OPTIONS = frozenset({"source", "target", "target_mode", "additional_sources"})
TARGET_MODES = ("insert", "extend", "append", "merge")

RawValue = str | bool
InfoHeader = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class ElementContext:
    """Where an element sits in the config, for error messages that name the entry."""

    index: int
    element_index: int
    converter: str
    source: str
    file: str | None = None

    def describe(self) -> str:
        return f"deposit[{self.index}] ({self.converter}) element {self.element_index} (source {self.source})"

    def config_error(self, message: str, expected: str | None = None) -> AnnotationConfigError:
        return AnnotationConfigError(
            f"annotation config {self.describe()}: {message}", self.file, expected=expected
        )

    def value_error(self, value: object, message: str, expected: str | None = None) -> AnnotationValueError:
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
        return AnnotationValueError(
            f"INFO {self.source}={shown!r}: {message} [{self.describe()}]", expected=expected
        )


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("y", "yes", "t", "true", "on", "1"):
        return True
    if text in ("n", "no", "f", "false", "off", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _identity(value: object) -> object:
    return value


TYPE_CASTS: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "string": str,
    "bool": _to_bool,
    "identity": _identity,
}


def _header_scalar_cast(info_type: str) -> Callable[[str], Any] | None:
    return {"Integer": int, "Float": float}.get(info_type)


def typed_identity(header: Mapping[str, str] | None) -> Callable[[Any], Any]:
    """``identity`` keeps the value as the VCF header types it (as ELLA's cyvcf2 reader did):
    Integer/Float become numbers (a list when the text holds several), anything else stays text."""
    cast = _header_scalar_cast(header.get("Type", "")) if header else None
    if cast is None:
        return _identity

    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if "," in value:
            return [None if part == "." else cast(part) for part in value.split(",")]
        return cast(value)

    return convert


@dataclass
class Options:
    """Reads one element's options, remembering which were used so leftovers are errors."""

    raw: Mapping[str, Any]
    context: ElementContext
    allowed: frozenset[str]
    used: set[str] = field(default_factory=set)

    def get(self, key: str, expected_type: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.raw or self.raw[key] is None:
            return default
        value = self.raw[key]
        types = _as_tuple(expected_type)
        # bool is an int subclass: `True` must not pass where a number or text is expected.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = "/".join(t.__name__ for t in types)
            raise self.context.config_error(f"option {key!r} is {value!r}", expected=names)
        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.context.config_error(
                f"option {key!r} is {value!r}", expected=f"one of {', '.join(choices)}"
            )
        return str(value)

    def nonempty_str(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key, str, default)
        if value is not None and value == "":
            raise self.context.config_error(f"option {key!r} is empty", expected="a non-empty string")
        return value

    def check_unknown(self) -> None:
        unknown = sorted(set(self.raw) - COMMON_OPTIONS - self.allowed)
        if unknown:
            allowed = ", ".join(sorted(COMMON_OPTIONS | self.allowed))
            raise self.context.config_error(
                f"unknown option(s) {', '.join(unknown)}", expected=f"options among {allowed}"
            )


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


class Converter:
    """One configured ``deposit`` element: ``convert`` turns the raw INFO value into JSON data.

    Subclasses declare ``name`` and ``options`` and read their options in ``configure``.
    ``bind`` receives the VCF header once per file; converters that need the header override it.
    """

    name: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()
    needs_header: ClassVar[bool] = False

    def __init__(self, element: Mapping[str, Any], context: ElementContext) -> None:
        self.context = context
        self.source: str = context.source
        opts = Options(element, context, self.options)
        self.configure(opts)
        opts.check_unknown()

    def configure(self, opts: Options) -> None:
        """Read and check this converter's options (configuration time)."""

    def bind(self, header: Mapping[str, str] | None) -> Converter | None:
        """Prepare for one VCF's header. Returns None when the element cannot apply to this VCF."""
        return self

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        raise NotImplementedError


def cast_or_fail(
    cast: Callable[[Any], Any],
    value: Any,
    type_name: str,
    context: ElementContext,
    throw: bool,
) -> tuple[bool, Any]:
    """Apply a configured type cast. Returns (ok, result); raises when ``throw`` is set."""
    try:
        return True, cast(value)
    except (ValueError, TypeError):
        if throw:
            raise context.value_error(
                value,
                f"cannot convert to {type_name}",
                expected=f"a {type_name} value or target_type_throw: false",
            ) from None
        log.debug("%s: cannot convert %r to %s; skipped", context.describe(), value, type_name)
        return False, None
