"""VCF reading with ELLA's semantics: alleles, genotypes, multiallelic blocks."""

from engine.vcf.alleles import allele_from_vcf
from engine.vcf.reader import iter_variant_batches, read_vcf_samples

__all__ = ["allele_from_vcf", "iter_variant_batches", "read_vcf_samples"]
