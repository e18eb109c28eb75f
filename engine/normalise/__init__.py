"""VCF normalisation before annotation, as ella-anno does it (vt decompose -s + vt normalize)."""

from engine.normalise.vcf import NormaliseResult, normalise_vcf

__all__ = ["NormaliseResult", "normalise_vcf"]
