"""The release events: ``reanalysis.requested``, ``reannotation.batch``, ``annotation.changed``
and ``bundle.activated``.

They carry names, versions, id ranges and changed values, never VCF content (see
docs/reanalysis.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.events.base import Event


@dataclass(frozen=True, kw_only=True)
class ReanalysisRequested(Event):
    """Re-annotate one stored analysis with a bundle (the active one when ``bundle`` is None)."""

    SCHEMA: ClassVar[str] = "reanalysis.requested"

    analysis: str
    bundle: str | None
    requested_by: str | None = None

    @property
    def key(self) -> str:
        return self.analysis


@dataclass(frozen=True, kw_only=True)
class ReannotationBatchEvent(Event):
    """One id range of a reannotation run (planned and stored before it is published)."""

    SCHEMA: ClassVar[str] = "reannotation.batch"

    run_id: str
    batch_index: int
    bundle: str
    id_from: int
    id_to: int
    analyses: list[str] | None = None

    @property
    def key(self) -> str:
        # Distinct keys per batch spread a run over every partition (and worker).
        return f"{self.run_id}:{self.batch_index}"


# Namespace of the deterministic ids of annotation.changed events: a replayed batch republishes
# the same event ids, so readers can drop duplicates.
_CHANGED_NAMESPACE = uuid.UUID("6f1d9a52-5b7e-4d0e-9a39-1c0b6a7e2d11")


@dataclass(frozen=True, kw_only=True)
class AnnotationChanged(Event):
    """An allele whose bundle-owned annotation a reannotation run changed (key: the allele id)."""

    SCHEMA: ClassVar[str] = "annotation.changed"

    run_id: str
    bundle: str
    allele_id: int
    allele: dict[str, Any]  # chromosome, vcf_pos, vcf_ref, vcf_alt
    analyses: list[str]  # every stored analysis that has the allele
    changes: list[dict[str, Any]]  # {"target": "a.b", "old": ..., "new": ...}

    @staticmethod
    def event_id_for(run_id: str, allele_id: int) -> str:
        return str(uuid.uuid5(_CHANGED_NAMESPACE, f"{run_id}:{allele_id}"))

    @property
    def key(self) -> str:
        return str(self.allele_id)


@dataclass(frozen=True, kw_only=True)
class BundleActivated(Event):
    """A bundle became the active one; drives the IGV tracks stage (key: the bundle version)."""

    SCHEMA: ClassVar[str] = "bundle.activated"

    bundle: str
    previous: str | None = None

    @property
    def key(self) -> str:
        return self.bundle
