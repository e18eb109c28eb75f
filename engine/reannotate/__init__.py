"""Reanalysis and data releases: re-annotate stored alleles with an annotation bundle.

See docs/reanalysis.md. ``core`` does the work (export -> annotate -> convert -> write),
``runs`` plans and reports reannotation runs, ``publish`` requests work, ``stages`` is what the
worker runs for ``reanalysis.requested`` and ``reannotation.batch`` events.
"""

from engine.reannotate.core import AlleleSelection, ReannotateResult, reannotate_alleles, resolve_bundle

__all__ = ["AlleleSelection", "ReannotateResult", "reannotate_alleles", "resolve_bundle"]
