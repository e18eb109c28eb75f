"""vcfanno's ops, on text values: collect what matching source records contribute, then reduce.

Values are carried as the exact source text so ``self``/``first``/``concat``/``uniq``/``by_alt``
copy them byte for byte; only the numeric ops (``sum``, ``mean``, ``min``, ``max``, ``div2``) parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.annotate.config import OutputField

FLAG = True
NUMERIC_OPS = frozenset({"sum", "mean", "min", "max", "div2"})

Value = str | bool


@dataclass(frozen=True)
class Contribution:
    """What one matching source record (or BED/TSV row) offers: its ALTs (empty for intervals),
    ID, FILTER and the requested values (None when absent, True for a set Flag)."""

    alts: tuple[str, ...]
    id: str
    filter: str
    values: tuple[Value | None, ...]


@dataclass(frozen=True)
class FieldSpec:
    """An output with what the source header says about its input field."""

    output: OutputField
    slot: int  # index into Contribution.values
    number: str  # source header Number ("1", "A", "R", ".", ...); "1" for columns, ID, FILTER
    is_variant_source: bool
    from_vcf: bool = True  # by_alt re-orders per ALT only for VCF sources (vcfanno concatenates for TSV)

    @property
    def is_array(self) -> bool:
        return self.number not in ("1", "0")

    @property
    def number_a(self) -> bool:
        return self.number == "A"


def format_number(value: float) -> str:
    """Shortest text for a computed number: integers without a fraction, floats to 10 digits."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".10g")


def as_float(text: Value) -> float:
    """vcfanno parses numbers leniently: unparseable text counts as 0."""
    if isinstance(text, bool):
        return 1.0 if text else 0.0
    try:
        return float(text)
    except ValueError:
        return 0.0


def match_alts(
    values: Sequence[Value], query_alts: Sequence[str], source_alts: Sequence[str], out: list[Any]
) -> None:
    """Place per-ALT ``values`` (in ``source_alts`` order) at the query's ALT positions."""
    for qi, alt in enumerate(query_alts):
        try:
            si = source_alts.index(alt)
        except ValueError:
            continue
        if si < len(values):
            out[qi] = values[si]
        elif len(values) == 1:
            out[qi] = values[0]


def raw_value(spec: FieldSpec, c: Contribution) -> Value | None:
    field = spec.output.field
    if spec.is_variant_source and field == "ID":
        return None if c.id in (".", "") else c.id.replace(";", ",")
    if spec.is_variant_source and field == "FILTER":
        return None if c.filter in (".", "", "PASS") else c.filter.replace(";", ",")
    value = c.values[spec.slot]
    if value is None or value == "":
        return None
    if isinstance(value, str) and not spec.is_variant_source:
        return value.replace(";", ",")
    return value


def reduce_field(
    spec: FieldSpec, query_alts: Sequence[str], contributions: Sequence[Contribution]
) -> Value | None:
    """The value to write for one output, or None to write nothing."""
    op = spec.output.op
    collected: list[Value] = []
    by_alt: list[list[str]] | None = None
    self_a: list[Any] | None = None
    for c in contributions:
        value = raw_value(spec, c)
        if value is None:
            continue
        if op == "by_alt" and spec.from_vcf:
            per_alt: list[Any] = ["."] * len(query_alts)
            parts = value.split(",") if isinstance(value, str) else [value]
            match_alts(parts, query_alts, c.alts, per_alt)
            by_alt = by_alt or [[] for _ in query_alts]
            for i, v in enumerate(per_alt):
                if v not in (".", "", None):
                    by_alt[i].append(v if isinstance(v, str) else "true")
            continue
        if op == "self" and spec.number_a and spec.output.field not in ("ID", "FILTER"):
            self_a = self_a or [None] * len(query_alts)
            if len(query_alts) == 1 and c.alts == tuple(query_alts):
                self_a[0] = value
            else:
                parts = value.split(",") if isinstance(value, str) else [value]
                match_alts(parts, query_alts, c.alts, self_a)
            continue
        # vcfanno keeps a VCF list value whole (first/self/concat copy "5,7"); numbers reduce its items
        if spec.is_array and isinstance(value, str) and op in NUMERIC_OPS:
            collected.extend(value.split(","))
        else:
            collected.append(value)
    if by_alt is not None:
        return ",".join("|".join(v) if v else "." for v in by_alt)
    if self_a is not None:
        if all(v is None for v in self_a):
            return None
        return ",".join("." if v is None else str(v) for v in self_a)
    if not collected:
        return None
    return reduce_values(op, collected)


def reduce_values(op: str, values: Sequence[Value]) -> Value | None:
    """Apply a reducer to collected values (also used by [[postannotation]])."""
    if op == "self":
        return values[0] if len(values) == 1 else ",".join(_text(v) for v in values)
    if op == "first":
        return values[0]
    if op in ("concat", "by_alt"):
        return ",".join(_text(v) for v in values)
    if op == "uniq":
        return ",".join(dict.fromkeys(_text(v) for v in values))
    if op == "count":
        return str(len(values))
    if op == "flag":
        return FLAG
    numbers = [as_float(v) for v in values]
    if op == "sum":
        return format_number(sum(numbers))
    if op == "mean":
        return format_number(sum(numbers) / len(numbers))
    if op == "min":
        return format_number(min(numbers))
    if op == "max":
        return format_number(max(numbers))
    if op == "div2":
        if len(numbers) < 2:
            return None
        if numbers[0] == 0:
            return "0"
        return format_number(numbers[0] / numbers[1]) if numbers[1] else None
    raise ValueError(f"unknown op {op}")


def _text(value: Value) -> str:
    return value if isinstance(value, str) else "true"


def render_info(name: str, value: Value | None) -> str:
    """``;NAME=value`` (or ``;NAME`` for a set flag); empty when there is nothing to write."""
    if value is None or value is False:
        return ""
    if value is True:
        return f";{name}"
    return f";{name}={value}"


def reduce_interval_rows(op: str, texts: Sequence[str], numbers: Sequence[float]) -> Value | None:
    """The value for one query record from the BED/TSV rows it overlaps (their column text and, for
    numeric ops, the parsed numbers). ``;`` in a column is written as ``,``."""
    if op == "count":
        return str(len(texts))
    if op == "flag":
        return FLAG
    if op in ("sum", "mean"):
        total = float(sum(numbers))
        return format_number(total / len(numbers) if op == "mean" else total)
    if op in ("min", "max"):
        return format_number(min(numbers) if op == "min" else max(numbers))
    values = [v for v in (t.replace(";", ",") for t in texts) if v != ""]
    return reduce_values(op, values) if values else None
