"""ELLA's generic converters: ``keyvalue``, ``json``, ``mapping`` and ``meta``."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from engine.deposit.converters.base import (
    TYPE_CASTS,
    Converter,
    ElementContext,
    Options,
    RawValue,
    cast_or_fail,
    typed_identity,
)

TYPE_NAMES = tuple(TYPE_CASTS)


class KeyValueConverter(Converter):
    """The value cast to ``target_type`` (optionally split into a list on ``split``)."""

    name = "keyvalue"
    options = frozenset({"target_type", "target_type_throw", "split"})

    def configure(self, opts: Options) -> None:
        self.target_type = opts.choice("target_type", TYPE_NAMES, "identity")
        self.throw: bool = opts.get("target_type_throw", bool, True)
        self.split: str | None = opts.nonempty_str("split")
        self.cast: Callable[[Any], Any] = TYPE_CASTS[self.target_type]

    def bind(self, header: Mapping[str, str] | None) -> Converter:
        if self.target_type == "identity" and self.split is None:
            self.cast = typed_identity(header)
        return self

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        if self.split is None:
            try:
                return self.cast(value)
            except (ValueError, TypeError):
                return cast_or_fail(self.cast, value, self.target_type, self.context, self.throw)[1]
        if not isinstance(value, str):
            raise self.context.value_error(value, "a flag cannot be split", expected="a text value")
        items = []
        for part in value.split(self.split):
            ok, item = cast_or_fail(self.cast, part, self.target_type, self.context, self.throw)
            if not ok:
                return None  # ELLA: one bad item drops the whole value
            items.append(item)
        return items


_DECODERS: dict[str, Callable[[str], bytes]] = {
    "base16": base64.b16decode,
    "base32": base64.b32decode,
    "base64": base64.b64decode,
}


ENCODINGS = tuple(_DECODERS)


class JSONConverter(Converter):
    """Base16/32/64-encoded JSON, optionally narrowed to ``subpath`` (dot separated)."""

    name = "json"
    options = frozenset({"encoding", "subpath"})

    def configure(self, opts: Options) -> None:
        self.encoding = opts.choice("encoding", ENCODINGS, "base16")
        self.decode = _DECODERS[self.encoding]
        subpath = opts.nonempty_str("subpath")
        self.subpath: tuple[str, ...] = tuple(subpath.split(".")) if subpath else ()

    def load(self, value: RawValue) -> Any:
        if not isinstance(value, str):
            raise self.context.value_error(value, "a flag holds no JSON", expected=f"{self.encoding} JSON")
        try:
            return orjson.loads(self.decode(value))
        except (ValueError, orjson.JSONDecodeError) as error:
            raise self.context.value_error(
                value,
                f"not {self.encoding}-encoded JSON ({error})",
                expected=f"{self.encoding}-encoded UTF-8 JSON",
            ) from None

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        data = self.load(value)
        for key in self.subpath:
            if not isinstance(data, dict):
                raise self.context.value_error(
                    value, f"subpath {'.'.join(self.subpath)!r} crosses a non-object"
                )
            data = data.get(key)
            if data is None:
                return None
        return data


class MappingConverter(Converter):
    """``k1:v1,k2:v2`` into ``{k1: v1, k2: v2}`` with values cast to ``value_target_type``.

    ELLA's code reads ``value_target_type`` while its documentation (and the legacy config) say
    ``target_type``; both spellings are accepted.
    """

    name = "mapping"
    options = frozenset(
        {
            "item_separator",
            "keyvalue_separator",
            "value_target_type",
            "value_target_type_throw",
            "target_type",
            "target_type_throw",
        }
    )

    def configure(self, opts: Options) -> None:
        self.item_separator = opts.nonempty_str("item_separator", ",") or ","
        self.keyvalue_separator = opts.nonempty_str("keyvalue_separator", ":") or ":"
        fallback_type = opts.choice("target_type", TYPE_NAMES, "string")
        self.value_type = opts.choice("value_target_type", TYPE_NAMES, fallback_type)
        fallback_throw = opts.get("target_type_throw", bool, True)
        self.throw: bool = opts.get("value_target_type_throw", bool, fallback_throw)
        self.cast = TYPE_CASTS[self.value_type]

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        if not isinstance(value, str):
            raise self.context.value_error(value, "a flag holds no key/value pairs", expected="text")
        data: dict[str, Any] = {}
        for item in value.split(self.item_separator):
            key, sep, raw = item.partition(self.keyvalue_separator)
            if not sep:
                raise self.context.value_error(
                    value,
                    f"item {item!r} has no {self.keyvalue_separator!r}",
                    expected=f"KEY{self.keyvalue_separator}VALUE items separated by {self.item_separator!r}",
                )
            ok, converted = cast_or_fail(self.cast, raw, self.value_type, self.context, self.throw)
            if ok:
                data[key] = converted
        return data


DEFAULT_META_PATTERN = r"(?i)[a-z_]+\|[a-z_\|]+"


class MetaConverter(Converter):
    """Pipe-separated values whose keys come from the INFO header Description (e.g. SpliceAI).

    ``subelements`` are keyvalue options per key; keys without a subelement are dropped.
    """

    name = "meta"
    options = frozenset(
        {"meta_pattern", "list_separator", "value_separator", "element_separator", "subelements"}
    )
    needs_header = True

    def configure(self, opts: Options) -> None:
        pattern = opts.nonempty_str("meta_pattern", DEFAULT_META_PATTERN) or DEFAULT_META_PATTERN
        try:
            self.pattern = re.compile(pattern)
        except re.error as error:
            raise self.context.config_error(f"meta_pattern {pattern!r} is not a regex ({error})") from None
        self.list_separator: str | None = opts.nonempty_str("list_separator")
        # ELLA's docs call it element_separator, its code value_separator.
        alias = opts.nonempty_str("element_separator", "|") or "|"
        self.value_separator = opts.nonempty_str("value_separator", alias) or alias
        subelements = opts.get("subelements", list)
        if not subelements:
            raise self.context.config_error(
                "option 'subelements' is missing or empty",
                expected="a list of keyvalue options with 'source'",
            )
        self.subconverters: dict[str, KeyValueConverter] = {}
        for position, sub in enumerate(subelements):
            if not isinstance(sub, Mapping) or not isinstance(sub.get("source"), str):
                raise self.context.config_error(
                    f"subelements[{position}] is {sub!r}", expected="a mapping with a 'source' key"
                )
            sub_context = ElementContext(
                self.context.index,
                self.context.element_index,
                self.name,
                f"{self.source}.{sub['source']}",
                self.context.file,
            )
            sub_options = {k: v for k, v in sub.items() if k != "source"}
            self.subconverters[sub["source"]] = KeyValueConverter(
                {"source": sub["source"], **sub_options}, sub_context
            )
        self.keys: list[str] = []

    def bind(self, header: Mapping[str, str] | None) -> Converter | None:
        if header is None:
            return None
        description = header.get("Description", "")
        found = self.pattern.findall(description)
        if len(found) != 1:
            raise self.context.config_error(
                f"INFO header Description {description!r} has {len(found)} matches of meta_pattern",
                expected="exactly one match listing the keys",
            )
        self.keys = found[0].split(self.value_separator)
        missing = set(self.subconverters) - set(self.keys)
        if missing:
            raise self.context.config_error(
                f"subelement(s) {', '.join(sorted(missing))} not in header keys {self.keys}"
            )
        for sub in self.subconverters.values():
            sub.bind(None)
        return self

    def _parse_item(self, raw_item: str) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for key, raw in zip(self.keys, raw_item.split(self.value_separator), strict=False):
            sub = self.subconverters.get(key)
            if sub is not None:
                item[key] = sub.convert(raw, {})
        return item

    def convert(self, value: RawValue, additional: Mapping[str, RawValue | None]) -> Any:
        if not isinstance(value, str):
            raise self.context.value_error(value, "a flag holds no values", expected="text")
        if self.list_separator:
            return [self._parse_item(raw_item) for raw_item in value.split(self.list_separator)]
        return self._parse_item(value)
