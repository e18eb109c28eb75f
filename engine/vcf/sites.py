"""One parsed VCF data line per ALT allele (``SiteRecord``), with lazy access to FORMAT values.

A multi-allelic line (``ALT=G,T``) is decomposed in memory into one ``SiteRecord`` per ALT, the
way vt/ella-anno decompose: genotypes are rewritten relative to that ALT (``1/2`` becomes ``1/.``
for G and ``./1`` for T), AD becomes ``[ref, this alt]``, PL keeps the three likelihoods of
``0/0, 0/k, k/k``, INFO ``Number=A``/``R`` values are split, and ``OLD_MULTIALLELIC`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InputError
from engine.vcf.info import parse_info

Genotype = tuple[int, ...]  # allele indices, -1 = missing ('.'); phase dropped

_GT_CACHE: dict[str, Genotype] = {}


def parse_gt(raw: str) -> Genotype | None:
    """``'0/1'`` -> ``(0, 1)``, ``'1|.'`` -> ``(1, -1)``, ``'.'`` -> ``(-1,)``; None if malformed."""
    cached = _GT_CACHE.get(raw)
    if cached is not None:
        return cached
    parts = raw.replace("|", "/").split("/")
    try:
        parsed = tuple(-1 if part == "." else int(part) for part in parts)
    except ValueError:
        return None
    if any(a < -1 for a in parsed) or not raw:
        return None
    if len(_GT_CACHE) < 10_000:
        _GT_CACHE[raw] = parsed
    return parsed


def relative_to_alt(gt: Genotype, alt_index: int) -> Genotype:
    """Rewrite a multi-allelic genotype for one ALT: that ALT -> 1, REF -> 0, others -> missing."""
    return tuple(1 if a == alt_index else (0 if a == 0 else -1) for a in gt)


@dataclass(slots=True)
class FormatLayout:
    """Positions of the FORMAT keys of one FORMAT string (cached per distinct string)."""

    gt: int
    ad: int | None
    dp: int | None
    gq: int | None
    pl: int | None
    cn: int | None

    @classmethod
    def of(cls, keys: list[str]) -> FormatLayout:
        def index(key: str) -> int | None:
            return keys.index(key) if key in keys else None

        return cls(keys.index("GT"), index("AD"), index("DP"), index("GQ"), index("PL"), index("CN"))


@dataclass(slots=True)
class SiteRecord:
    """One (possibly decomposed) record: one REF/ALT pair with per-sample genotypes."""

    line: int
    chrom: str
    pos: int
    ref: str
    alt: str
    qual: str
    filter: str
    info: str
    layout: FormatLayout
    sample_values: list[list[str]]  # raw FORMAT values, in the order of the analysis' samples
    genotypes: list[Genotype]  # relative to ``alt``, same order
    block_id: str | None  # OLD_MULTIALLELIC: consecutive records with one id form a block
    alt_index: int = 1  # index of ``alt`` in the original (undecomposed) ALT list
    alt_count: int = 1  # number of ALTs of the original line
    info_numbers: dict[str, str] | None = None  # only for decomposed lines: how to split INFO

    def error(self, message: str, expected: str | None = None, file: str | None = None) -> InputError:
        return InputError(message, file=file, line=self.line, expected=expected)

    def _value(self, sample: int, index: int | None) -> str | None:
        if index is None:
            return None
        values = self.sample_values[sample]
        if index >= len(values):
            return None  # trailing FORMAT fields may be dropped
        value = values[index]
        return None if value in (".", "") else value

    def _int(self, raw: str, key: str) -> int | None:
        if raw == ".":
            return None
        try:
            return int(raw)
        except ValueError:
            try:
                return int(float(raw))
            except ValueError:
                raise self.error(f"non-numeric FORMAT {key} value {raw!r}", f"an integer {key}") from None

    def scalar(self, sample: int, key: str) -> int | None:
        raw = self._value(sample, getattr(self.layout, key.lower()))
        return None if raw is None else self._int(raw, key)

    def int_list(self, sample: int, key: str) -> list[int | None] | None:
        raw = self._value(sample, getattr(self.layout, key.lower()))
        if raw is None:
            return None
        return [self._int(part, key) for part in raw.split(",")]

    def allele_depth(self, sample: int) -> tuple[int, int] | None:
        """``(ref depth, this ALT's depth)``, or None when AD is absent, missing or not per allele."""
        values = self.int_list(sample, "AD")
        if values is None or any(v is None for v in values):
            return None
        if self.alt_count > 1:
            if len(values) != self.alt_count + 1:
                return None
            values = [values[0], values[self.alt_index]]
        if len(values) != 2:
            return None  # ELLA: "AD not decomposed", no allele depth
        return values[0], values[1]  # type: ignore[return-value]

    def likelihoods(self, sample: int) -> list[int | None] | None:
        values = self.int_list(sample, "PL")
        if values is None or self.alt_count == 1:
            return values
        k = self.alt_index
        if len(self.genotypes[sample]) == 1:
            picks = [0, k]
        else:
            het = k * (k + 1) // 2
            picks = [0, het, het + k]
        if max(picks) >= len(values):
            return None
        return [values[i] for i in picks]

    def info_dict(self) -> dict[str, str | bool]:
        """INFO as written: key -> raw value text, flags -> True (split per ALT if decomposed)."""
        result = parse_info(self.info)
        if self.alt_count > 1:
            self._split_per_alt(result)
        return result

    def _split_per_alt(self, info: dict[str, str | bool]) -> None:
        numbers = self.info_numbers or {}
        for key, value in info.items():
            if not isinstance(value, str):
                continue
            number = numbers.get(key)
            parts = value.split(",")
            if number == "A" and len(parts) == self.alt_count:
                info[key] = parts[self.alt_index - 1]
            elif number == "R" and len(parts) == self.alt_count + 1:
                info[key] = f"{parts[0]},{parts[self.alt_index]}"
        info.setdefault("OLD_MULTIALLELIC", self.block_id or "")

    def sv_info(self) -> tuple[str | None, int | None, int | None]:
        """``(SVTYPE, SVLEN, END)`` from INFO, for CNV alleles."""
        if "SV" not in self.info and "END=" not in self.info:
            return None, None, None
        info = self.info_dict()

        def integer(key: str) -> int | None:
            value = info.get(key)
            if not isinstance(value, str):
                return None
            try:
                return int(value.split(",")[0])
            except ValueError:
                raise self.error(f"non-numeric INFO {key}={value!r}", f"an integer {key}") from None

        svtype = info.get("SVTYPE")
        return (svtype if isinstance(svtype, str) else None), integer("SVLEN"), integer("END")
