"""Reanalysis and data releases: re-annotate stored alleles with an annotation bundle.

See docs/reanalysis.md. ``core`` does the work (export -> annotate -> convert -> write),
``select`` decides which alleles an incremental release takes (``diff`` compares bundles),
``runs`` plans and reports reannotation runs, ``publish`` requests work, ``stages`` is what the
worker runs for ``reanalysis.requested`` and ``reannotation.batch`` events.

Nothing is imported here: ``annostream reannotate`` plans a release without loading the
annotator and its converters (the worker's side), which took most of the command's start-up.
"""
