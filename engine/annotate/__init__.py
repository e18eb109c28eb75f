"""Annotation engine: a faster, exact drop-in for vcfanno (``annostream annotate``)."""

from engine.annotate.annotator import AnnotateResult, annotate_vcf
from engine.annotate.config import AnnotationConfig, load_config

__all__ = ["AnnotateResult", "AnnotationConfig", "annotate_vcf", "load_config"]
