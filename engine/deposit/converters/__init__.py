"""INFO fields to ELLA's per-allele annotation document, configured like ELLA's ``deposit``
section of the annotation config (converters ``keyvalue``, ``json``, ``mapping``, ``meta``,
``vep``, ``clinvarjson``, ``clinvarreferences``, ``hgmd``, ``hgmdprimaryreport``,
``hgmdextrarefs``). See docs/annotation-documents.md.
"""

from engine.deposit.converters.builder import (
    CONVERTERS,
    AnnotationBuilder,
    build_annotation_builder,
    parse_deposit_config,
    targets_by_source,
)
from engine.deposit.converters.schema import validate_annotation
from engine.deposit.converters.vep import CONSEQUENCE_SEVERITY, worst_consequence

__all__ = [
    "CONSEQUENCE_SEVERITY",
    "CONVERTERS",
    "AnnotationBuilder",
    "build_annotation_builder",
    "parse_deposit_config",
    "targets_by_source",
    "validate_annotation",
    "worst_consequence",
]
