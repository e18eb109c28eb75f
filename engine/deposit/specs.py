"""What an analysis folder and its PED say: the analysis, its VCFs and their samples.

Parsers produce these without touching the database; writers consume them without knowing about
files. The variants of a VCF are ``engine.vcf.records``. Field names are ELLA's column names.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class SampleRecord:
    identifier: str
    affected: bool
    proband: bool
    sample_type: str = "HTS"
    sex: str | None = None  # Male | Female | None
    family_id: str | None = None
    father_identifier: str | None = None
    mother_identifier: str | None = None
    sibling_identifier: str | None = None


@dataclass(slots=True)
class VcfSpec:
    path: Path
    ped: Path | None = None
    technology: str = "HTS"
    caller_name: str | None = None


@dataclass(slots=True)
class AnalysisSpec:
    """An analysis folder, parsed and checked (modern, legacy or folder-name format)."""

    name: str
    genepanel_name: str
    genepanel_version: str
    folder: Path
    priority: int = 1
    date_requested: dt.datetime | None = None
    report: str | None = None
    warnings: str | None = None
    vcfs: list[VcfSpec] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
