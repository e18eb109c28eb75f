"""The columnar counterpart of ``engine.vcf.records``: a block of simple variants as arrays.

The VCF fast path (``engine.vcf.fastpath``) parses the common single-site lines in bulk and hands
them to the bulk writer as columns instead of one ``VariantRecord`` per variant: building and
encoding those objects was most of an import's Python time. Every array has one entry per
variant (a proband genotype with one allele); column names are ELLA's, as in ``records``.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pyarrow as pa

from engine.db.models import ALLELE_IDENTITY, SAMPLE_DATA_FIELDS
from engine.vcf.records import AlleleRecord, SampleGenotypeRecord, VariantRecord


@dataclass(frozen=True, slots=True)
class SampleColumns:
    """``genotypesampledata`` of one sample for every variant of a block (never a second allele)."""

    type: pa.Array  # string: Homozygous | Heterozygous | Reference | No coverage
    multiallelic: pa.Array  # bool
    genotype_quality: pa.Array  # int64, nullable
    sequencing_depth: pa.Array  # int64, nullable
    allele_depth: pa.Array  # string: the JSON document (``{}`` when AD is absent)
    allele_ratio: pa.Array  # float64
    genotype_likelihood: pa.Array  # string: a JSON list, nullable
    copy_number: pa.Array  # int64, nullable


@dataclass(frozen=True, slots=True)
class VariantColumns:
    """Variants of single-ALT, non-CNV VCF lines, in file order, with their sample data."""

    size: int
    chromosome: pa.Array  # string
    start_position: pa.Array  # int64
    open_end_position: pa.Array  # int64
    change_from: pa.Array  # string
    change_to: pa.Array  # string
    change_type: pa.Array  # string
    vcf_pos: pa.Array  # int64
    vcf_ref: pa.Array  # string
    vcf_alt: pa.Array  # string
    length: pa.Array  # int64
    filter_status: pa.Array  # string
    variant_quality: pa.Array  # int64, nullable
    annotation: pa.Array  # string: the annotation document as JSON, nullable
    samples: tuple[tuple[str, SampleColumns], ...]  # (sample identifier, its data), VCF order
    proband: str  # identifier of the sample whose genotypes these are
    caller_type: str = "snv"
    genome_reference: str = "GRCh37"
    lines: pa.Array | None = None  # int64: 1-based VCF line of each variant, for error messages


def to_records(columns: VariantColumns) -> list[VariantRecord]:
    """The same variants as ``VariantRecord``s (for writers without a columnar path, and tests)."""
    n = columns.size
    alleles = [
        AlleleRecord(
            **dict(zip(_ALLELE_FIELDS, fields, strict=True)),
            caller_type=columns.caller_type,
            genome_reference=columns.genome_reference,
        )
        for fields in zip(*(getattr(columns, name).to_pylist() for name in _ALLELE_FIELDS), strict=True)
    ]
    per_sample = []
    for identifier, data in columns.samples:
        values = zip(*(getattr(data, name).to_pylist() for name in _SAMPLE_FIELDS), strict=True)
        per_sample.append(
            [
                (
                    identifier,
                    SampleGenotypeRecord(
                        gtype,
                        multiallelic,
                        False,
                        gq,
                        dp,
                        orjson.loads(depth),
                        ratio,
                        None if pl is None else orjson.loads(pl),
                        cn,
                    ),
                )
                for gtype, multiallelic, gq, dp, depth, ratio, pl, cn in values
            ]
        )
    sites = zip(
        columns.filter_status.to_pylist(),
        columns.variant_quality.to_pylist(),
        columns.annotation.to_pylist(),
        strict=True,
    )
    return [
        VariantRecord(
            allele=alleles[i],
            secondallele=None,
            filter_status=filter_status,
            variant_quality=quality,
            samples=dict(sample[i] for sample in per_sample),
            annotation=None if annotation is None else orjson.loads(annotation),
        )
        for i, (filter_status, quality, annotation) in zip(range(n), sites, strict=True)
    ]


# The allele columns a VCF gives (caller_type and genome_reference come from the analysis).
_ALLELE_FIELDS = ALLELE_IDENTITY[:-1]
_SAMPLE_FIELDS = SAMPLE_DATA_FIELDS
