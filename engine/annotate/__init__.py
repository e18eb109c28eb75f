"""Annotation engine: a faster, exact drop-in for vcfanno (``annostream annotate``)."""

from engine.annotate.config import AnnotationConfig, load_config
from engine.annotate.engine import AnnotateResult, annotate_vcf

__all__ = ["AnnotateResult", "AnnotationConfig", "annotate_vcf", "load_config"]
