"""ELLA's genotype rules: from a block of records to one ``VariantRecord`` for the proband.

Mirrors ``vardb.deposit.deposit_analysis.BlockIterator`` and ``importers.GenotypeImporter``:

* only records where the proband has the ALT (a ``1`` in its genotype; for a CNV duplication
  also ``./.``) become alleles; a block (records sharing ``OLD_MULTIALLELIC``) gives one
  genotype with up to two alleles: the record where the proband is ``1/.`` is the allele, the
  one where it is ``./1`` the second allele;
* every sample gets a ``genotypesampledata`` per proband allele: its type relative to that
  allele, multiallelic flag, GQ, DP, AD (``{"REF (A)": n, "G": m}``, merged over the block),
  allele ratio, PL (not on multiallelic genotypes) and CN;
* a sample that is ``./.`` in every record of the block has "No coverage".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from engine.errors import InputError
from engine.vcf.alleles import allele_from_vcf
from engine.vcf.records import AlleleRecord, SampleGenotypeRecord, VariantRecord
from engine.vcf.sites import Genotype, SiteRecord

GENOTYPE_TYPES: dict[Genotype, str] = {
    (0, 1): "Heterozygous",
    (1, 0): "Heterozygous",
    (1, -1): "Heterozygous",
    (-1, 1): "Heterozygous",
    (1, 1): "Homozygous",
    (1,): "Homozygous",
    (0, -1): "Reference",
    (-1, 0): "Reference",
    (0, 0): "Reference",
    (-1, -1): "Reference",
    (-1,): "Reference",
    (0,): "Reference",
}
# A sample's genotype that involves another ALT of the same site (decomposed ``1/2``, ``0/2``).
MULTIALLELIC_GENOTYPES = frozenset({(1, -1), (-1, 1), (0, -1), (-1, 0)})
NO_CALL = frozenset({(-1, -1), (-1,)})
FIRST_OF_PAIR, SECOND_OF_PAIR = (1, -1), (-1, 1)

AnnotationBuilder = Callable[[dict[str, str | bool]], dict[str, Any] | None]


_DUPLICATIONS = frozenset({"dup", "dup_tandem"})


def annotation_sources(builder: AnnotationBuilder | None) -> frozenset[str] | None:
    """The INFO keys ``builder`` reads, when it says (``build_annotation_builder``'s do)."""
    sources = getattr(builder, "sources", None)
    return sources if isinstance(sources, frozenset) else None


def annotate(builder: AnnotationBuilder | None, record: SiteRecord) -> dict[str, Any] | None:
    """The annotation document of a record; the INFO dict is only built when a key the builder
    reads occurs in the line (most lines of an unannotated VCF have none)."""
    if builder is None:
        return None
    if record.alt_count == 1:  # decomposed records gain OLD_MULTIALLELIC: always build those
        sources = annotation_sources(builder)
        if sources is not None and not any(source in record.info for source in sources):
            return None
    return builder(record.info_dict())


def proband_has_allele(record: SiteRecord, proband: int, cnv_dup: bool) -> bool:
    """ELLA's ``has_allele``: a 1 in the genotype; CNV duplications also when not called."""
    gt = record.genotypes[proband]
    return 1 in gt or (cnv_dup and gt in NO_CALL)


def _allele_of(record: SiteRecord, file: str) -> AlleleRecord:
    svtype, svlen, end = (
        record.sv_info() if (record.alt.startswith("<") or "SV" in record.info) else (None, None, None)
    )
    try:
        return allele_from_vcf(
            record.chrom, record.pos, record.ref, record.alt, svtype=svtype, svlen=svlen, end=end
        )
    except InputError as exc:
        raise InputError(exc.message, file=file, line=record.line, expected=exc.expected) from None


def _order_pair(records: list[SiteRecord], proband: int, file: str) -> tuple[SiteRecord, SiteRecord | None]:
    """First and second allele of the proband's genotype (second None unless compound)."""
    if len(records) == 1:
        return records[0], None
    if len(records) > 2:
        raise InputError(
            "the proband has more than two ALT alleles in one multiallelic block",
            file=file,
            line=records[2].line,
            expected="a diploid genotype",
        )
    first = next((r for r in records if r.genotypes[proband] == FIRST_OF_PAIR), None)
    second = next((r for r in records if r.genotypes[proband] == SECOND_OF_PAIR), None)
    if first is None or second is None:
        raise InputError(
            "the proband carries two ALTs of a multiallelic site, but its decomposed genotypes are "
            f"{[r.genotypes[proband] for r in records]}",
            file=file,
            line=records[1].line,
            expected="'1/.' on one record and './1' on the other",
        )
    return first, second


def _variant_quality(record: SiteRecord, file: str) -> int | None:
    if record.qual == ".":
        return None
    try:
        return int(float(record.qual))  # ELLA stores QUAL truncated to an integer
    except ValueError:
        raise InputError(
            f"non-numeric QUAL {record.qual!r}", file=file, line=record.line, expected="a number or '.'"
        ) from None


def _allele_depths(block: list[SiteRecord], n_samples: int) -> list[dict[str, int]]:
    """Per sample, AD over the block as ``{"REF (A)": n, "G": m, ...}``; several REFs -> "REF"."""
    depths: list[dict[str, int]] = [{} for _ in range(n_samples)]
    for record in block:
        ref_key = f"REF ({record.ref})"
        for sample in range(n_samples):
            ad = record.allele_depth(sample)
            if ad is not None:
                depths[sample][ref_key] = ad[0]
                depths[sample][record.alt] = ad[1]
    for depth in depths:
        refs = [key for key in depth if key.startswith("REF (")]
        if len(refs) > 1:
            # Decomposition + normalisation can shift REF; one count avoids double counting.
            ref_count = depth[refs[0]]
            for key in refs:
                del depth[key]
            depth["REF"] = ref_count
    return depths


def _sample_data(
    record: SiteRecord,
    sample: int,
    depth: dict[str, int],
    trust_depth: bool,
    has_coverage: bool,
    secondallele: bool,
    file: str,
) -> SampleGenotypeRecord:
    gt = record.genotypes[sample]
    gtype = GENOTYPE_TYPES.get(gt)
    if gtype is None:
        raise InputError(
            f"unsupported genotype {gt} for sample #{sample + 1}",
            file=file,
            line=record.line,
            expected="a haploid or diploid genotype of 0, 1 and '.'",
        )
    if gt in NO_CALL and not has_coverage:
        gtype = "No coverage"
    multiallelic = gt in MULTIALLELIC_GENOTYPES
    allele_depth: dict[str, int] = dict(depth) if trust_depth else {}
    total = sum(allele_depth.values())
    ratio = allele_depth.get(record.alt, 0) / total if total else 0.0
    return SampleGenotypeRecord(
        type=gtype,
        multiallelic=multiallelic,
        secondallele=secondallele,
        genotype_quality=record.scalar(sample, "GQ"),
        sequencing_depth=record.scalar(sample, "DP"),
        allele_depth=allele_depth,
        allele_ratio=ratio,
        # PL is misleading on decomposed multiallelic sites (ELLA drops it there).
        genotype_likelihood=None if multiallelic else _complete(record.likelihoods(sample)),
        copy_number=record.scalar(sample, "CN"),
    )


def _complete(values: list[int | None] | None) -> list[int] | None:
    if values is None or all(v is None for v in values):
        return None
    return values  # type: ignore[return-value]


def build_variant(
    proband_records: list[SiteRecord],
    block_records: list[SiteRecord],
    covered: Sequence[bool],
    proband: int,
    sample_ids: Sequence[str],
    file: str,
    annotation_builder: AnnotationBuilder | None,
) -> VariantRecord:
    """One proband genotype from the proband's records of a block (see module doc)."""
    first, second = _order_pair(proband_records, proband, file)
    depths = _allele_depths(block_records, len(sample_ids))
    # AD is only comparable when the proband's records share POS and REF.
    trust_depth = len({(r.pos, r.ref) for r in proband_records}) == 1

    def per_sample(record: SiteRecord, is_second: bool) -> dict[str, SampleGenotypeRecord]:
        return {
            sample_id: _sample_data(record, i, depths[i], trust_depth, covered[i], is_second, file)
            for i, sample_id in enumerate(sample_ids)
        }

    head = proband_records[0]  # ELLA: FILTER and QUAL from the first record of the genotype
    return VariantRecord(
        allele=_allele_of(first, file),
        secondallele=_allele_of(second, file) if second else None,
        filter_status=head.filter,
        variant_quality=_variant_quality(head, file),
        samples=per_sample(first, False),
        secondallele_samples=per_sample(second, True) if second else None,
        annotation=annotate(annotation_builder, first),
        secondallele_annotation=annotate(annotation_builder, second) if second else None,
        source_line=first.line,
    )


class _BadNumber(ValueError):
    def __init__(self, key: str, raw: str) -> None:
        super().__init__(key, raw)
        self.key, self.raw = key, raw


def _number(raw: str, key: str) -> int | None:
    if raw == ".":
        return None
    try:
        return int(raw)
    except ValueError:
        try:
            return int(float(raw))  # some callers write GQ/CN as floats
        except ValueError:
            raise _BadNumber(key, raw) from None


def _numbers(raw: str, key: str) -> list[int | None] | None:
    if raw == ".":
        return None
    return [_number(part, key) for part in raw.split(",")]


def _ints(parts: list[str]) -> list[int]:
    try:
        return list(map(int, parts))
    except ValueError:
        return [_number(p, "AD") or 0 for p in parts]


def _scalars_and_pl(
    values: list[str], n: int, gq_i: int | None, dp_i: int | None, cn_i: int | None, pl_i: int | None
) -> tuple[int | None, int | None, int | None, list[int] | None]:
    """GQ, DP, CN and PL of one sample; builtin ``int`` first, the careful parser only if that fails."""
    try:
        return (
            int(values[gq_i]) if gq_i is not None and gq_i < n else None,
            int(values[dp_i]) if dp_i is not None and dp_i < n else None,
            int(values[cn_i]) if cn_i is not None and cn_i < n else None,
            list(map(int, values[pl_i].split(","))) if pl_i is not None and pl_i < n else None,
        )
    except ValueError:  # '.', floats, or garbage (which _number reports)
        return (
            _number(values[gq_i], "GQ") if gq_i is not None and gq_i < n else None,
            _number(values[dp_i], "DP") if dp_i is not None and dp_i < n else None,
            _number(values[cn_i], "CN") if cn_i is not None and cn_i < n else None,
            _complete(_numbers(values[pl_i], "PL")) if pl_i is not None and pl_i < n else None,
        )


def build_single_variant(
    record: SiteRecord,
    sample_ids: Sequence[str],
    file: str,
    annotation_builder: AnnotationBuilder | None,
) -> VariantRecord:
    """``build_variant`` for a record that is a block of its own (the common case), inlined:
    this runs once per imported variant, so it avoids per-field method calls."""
    layout = record.layout
    ad_i, dp_i, gq_i, pl_i, cn_i = layout.ad, layout.dp, layout.gq, layout.pl, layout.cn
    ref_key, alt = f"REF ({record.ref})", record.alt
    samples: dict[str, SampleGenotypeRecord] = {}
    allele = _allele_of(record, file)
    # ELLA's BlockIterator.iter_blocks counts an uncalled sample on a CNV duplication as covered.
    dup_cnv = allele.caller_type == "cnv" and allele.change_type in _DUPLICATIONS
    uncalled = "Reference" if dup_cnv else "No coverage"
    try:
        for sample_id, values, gt in zip(sample_ids, record.sample_values, record.genotypes, strict=True):
            gtype = GENOTYPE_TYPES.get(gt)
            if gtype is None:
                raise InputError(
                    f"unsupported genotype {gt} for sample {sample_id!r}",
                    file=file,
                    line=record.line,
                    expected="a haploid or diploid genotype of 0, 1 and '.'",
                )
            if gt in NO_CALL:
                gtype = uncalled  # uncalled in the only record of its block
            multiallelic = gt in MULTIALLELIC_GENOTYPES
            n = len(values)
            depth: dict[str, int] = {}
            ratio = 0.0
            if ad_i is not None and ad_i < n:
                parts = values[ad_i].split(",")
                if len(parts) == 2 and "." not in parts:
                    ref_depth, alt_depth = _ints(parts)
                    depth = {ref_key: ref_depth, alt: alt_depth}
                    total = ref_depth + alt_depth
                    ratio = alt_depth / total if total else 0.0
            gq, dp, cn, pl = _scalars_and_pl(values, n, gq_i, dp_i, cn_i, None if multiallelic else pl_i)
            samples[sample_id] = SampleGenotypeRecord(
                gtype, multiallelic, False, gq, dp, depth, ratio, pl, cn
            )
    except _BadNumber as exc:
        raise InputError(
            f"non-numeric FORMAT {exc.key} value {exc.raw!r}",
            file=file,
            line=record.line,
            expected=f"integer {exc.key} values or '.'",
        ) from None
    return VariantRecord(
        allele=allele,
        secondallele=None,
        filter_status=record.filter,
        variant_quality=_variant_quality(record, file),
        samples=samples,
        annotation=annotate(annotation_builder, record),
        source_line=record.line,
    )
