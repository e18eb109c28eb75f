"""The release events: ``reanalysis.requested`` and ``reannotation.batch``.

They carry names, versions and id ranges, never VCF content (see docs/reanalysis.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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
