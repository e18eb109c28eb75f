"""What the annotate stage does to an analysis's VCFs before they are persisted.

``EngineAnnotator`` (the default) does ella-anno's job: each VCF of the folder is normalised
(multi-allelic records split, ``*`` alleles dropped, indels trimmed, and with
``ANNOSTREAM_REFERENCE_FASTA`` REF checked and indels left-aligned) and, when an annotation
bundle is active, annotated with the bundle's vcfanno config. The result for
``<folder>/<path>.vcf`` is written to ``<out_dir>/<path>.vcf``: the persist stage maps artifacts
back to the folder's VCFs by that relative path.

The active bundle is read once, when the stage starts, and recorded in the event's
``annotation["bundle_version"]``: an analysis in flight finishes on the bundle it started with
(bundle folders are never changed after ``annostream bundle add``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.annotate import annotate_vcf
from engine.bundles import BundleInfo, active_bundle
from engine.config import Settings
from engine.db.session import session_scope
from engine.deposit.analysis_folder import load_analysis_folder
from engine.events import ReadyEvent
from engine.normalise import normalise_vcf


@dataclass(frozen=True)
class AnnotationOutcome:
    artifacts: list[Path] = field(default_factory=list)  # files under the stage's out_dir
    info: dict[str, Any] | None = None  # recorded in the analysis.annotated event
    message: str | None = None  # recorded on the import job


class Annotator(Protocol):
    def run(self, ready: ReadyEvent, folder: Path, out_dir: Path) -> AnnotationOutcome: ...


_COUNTS = ("records_in", "records_out", "split", "left_aligned", "trimmed", "dropped")


class EngineAnnotator:
    """Normalise every VCF of the analysis and annotate it with the active bundle, if any."""

    def __init__(self, settings: Settings, *, threads: int = 1) -> None:
        self.settings = settings
        self.threads = threads

    def run(self, ready: ReadyEvent, folder: Path, out_dir: Path) -> AnnotationOutcome:
        bundle = self._active_bundle()
        spec = load_analysis_folder(
            folder,
            max_analysis_bytes=self.settings.max_analysis_file_bytes,
            max_json_depth=self.settings.max_json_depth,
        )
        counts = dict.fromkeys((*_COUNTS, "records_annotated"), 0)
        artifacts = []
        for vcf in spec.vcfs:
            target = out_dir / vcf.path.relative_to(spec.folder)
            self._process(vcf.path, target, bundle, counts)
            artifacts.append(target)
        info: dict[str, Any] = {
            "annotated": bundle is not None,
            "bundle_version": bundle.version if bundle else None,
            "normalised": True,
            "reference_fasta": str(fasta) if (fasta := self.settings.reference_fasta) else None,
            **counts,
        }
        return AnnotationOutcome(artifacts=artifacts, info=info, message=_message(bundle, counts))

    def _active_bundle(self) -> BundleInfo | None:
        with session_scope(self.settings.database_url) as session:
            return active_bundle(session)

    def _process(self, source: Path, target: Path, bundle: BundleInfo | None, counts: dict[str, int]) -> None:
        fasta = self.settings.reference_fasta
        if bundle is None:
            # Read once, soon, by the persist stage: gzip level 1 instead of BGZF level 6 (the
            # BGZF compression was most of this stage's time: bench/README.md).
            result = normalise_vcf(source, target, fasta=fasta, fast_gzip=True)
        else:
            # Uncompressed: it is read once, right away, by the annotator.
            scratch = target.parent / f".normalised-{target.name.removesuffix('.gz')}"
            try:
                result = normalise_vcf(source, scratch, fasta=fasta)
                annotated = annotate_vcf(
                    bundle.config,
                    scratch,
                    target,
                    base_path=bundle.path,
                    search_cwd=False,
                    threads=self.threads,
                )
                counts["records_annotated"] += annotated.annotated
            finally:
                scratch.unlink(missing_ok=True)
        for key in _COUNTS:
            counts[key] += getattr(result, key)


def _message(bundle: BundleInfo | None, counts: dict[str, int]) -> str:
    normalised = (
        f"normalised {counts['records_in']} records into {counts['records_out']} "
        f"({counts['split']} split, {counts['left_aligned']} left-aligned, "
        f"{counts['dropped']} '*' dropped)"
    )
    if bundle is None:
        return f"{normalised}; nothing was annotated: no annotation bundle is active"
    annotated = counts["records_annotated"]
    return f"{normalised}; annotated with bundle {bundle.version} ({annotated} records with values)"
