"""What the annotate stage does to an analysis's VCFs before they are persisted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.events import ReadyEvent


@dataclass(frozen=True)
class AnnotationOutcome:
    artifacts: list[Path] = field(default_factory=list)  # files under the stage's out_dir
    info: dict[str, Any] | None = None  # recorded in the analysis.annotated event
    message: str | None = None  # recorded on the import job


class Annotator(Protocol):
    def run(self, ready: ReadyEvent, folder: Path, out_dir: Path) -> AnnotationOutcome: ...


class PassThroughAnnotator:
    """Hands the folder's VCFs on unchanged."""

    def run(self, ready: ReadyEvent, folder: Path, out_dir: Path) -> AnnotationOutcome:
        return AnnotationOutcome(info={"annotated": False},
                                 message="nothing was annotated: no annotation bundle is active")
