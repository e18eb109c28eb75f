"""The variants a VCF gives an analysis: ``VariantRecord`` (a proband genotype with its allele(s),
site data, per-sample data and INFO annotation), ``AlleleRecord``, ``SampleGenotypeRecord``.

The record parsers of ``engine.vcf`` produce them and the deposit writers store them; field names
are ELLA's column names. (A VCF line split per ALT while parsing is ``engine.vcf.sites.SiteRecord``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made building
# an allele much slower (one per imported variant; bench/README.md). Hashable by value all the same; treat as
# immutable (it is used as a set/dict key).
@dataclass(slots=True, unsafe_hash=True)
class AlleleRecord:
    """One allele, as ELLA computes it (0-based, half-open, after suffix then prefix trimming)."""

    chromosome: str
    start_position: int
    open_end_position: int
    change_from: str
    change_to: str
    change_type: str  # SNP | del | ins | indel | dup | dup_tandem | del_me | ...
    vcf_pos: int
    vcf_ref: str
    vcf_alt: str
    length: int
    caller_type: str = "snv"  # snv | cnv
    genome_reference: str = "GRCh37"

    def identity(self) -> tuple[Any, ...]:
        """The columns of ELLA's unique constraint ``ucAllele`` (v1.17: incl. length, caller_type)."""
        return (
            self.chromosome,
            self.start_position,
            self.open_end_position,
            self.change_from,
            self.change_to,
            self.change_type,
            self.vcf_pos,
            self.vcf_ref,
            self.vcf_alt,
            self.length,
            self.caller_type,
        )


@dataclass(slots=True)
class SampleGenotypeRecord:
    """``genotypesampledata`` for one sample of one genotype."""

    type: str  # Homozygous | Heterozygous | Reference | No coverage
    multiallelic: bool = False
    secondallele: bool = False
    genotype_quality: int | None = None
    sequencing_depth: int | None = None
    allele_depth: dict[str, int] | None = None
    allele_ratio: float | None = None
    genotype_likelihood: list[int] | None = None
    copy_number: int | None = None


@dataclass(slots=True)
class VariantRecord:
    """A proband genotype: its allele(s), VCF site data, per-sample data and INFO annotation."""

    allele: AlleleRecord
    secondallele: AlleleRecord | None
    filter_status: str | None
    variant_quality: float | None
    samples: dict[str, SampleGenotypeRecord]  # keyed by sample identifier
    secondallele_samples: dict[str, SampleGenotypeRecord] | None = None
    # Annotation document(s) for allele / secondallele, built from INFO by converters (may be None).
    annotation: dict[str, Any] | None = None
    secondallele_annotation: dict[str, Any] | None = None
    source_line: int | None = None  # 1-based line in the VCF, for error messages
