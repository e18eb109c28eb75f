"""Response models of the read API. Field names are ELLA's column names."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

Item = TypeVar("Item")


class ApiModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    message: str


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    total: int
    page: int
    per_page: int
    # Keyset cursor of the next page where the endpoint supports it (pass it as ?cursor=);
    # None on the last page or where the endpoint pages by number only.
    next_cursor: int | None = None


class GenepanelRef(ApiModel):
    name: str
    version: str


class AnalysisSummary(ApiModel):
    id: int
    name: str
    genepanel: GenepanelRef
    priority: int
    date_requested: dt.datetime | None
    date_deposited: dt.datetime


class SampleOut(ApiModel):
    id: int
    identifier: str
    sample_type: str
    proband: bool
    affected: bool
    sex: str | None
    family_id: str | None
    father: str | None
    mother: str | None
    sibling: str | None
    date_deposited: dt.datetime


class AnalysisOut(AnalysisSummary):
    warnings: str | None
    report: str | None
    properties: dict[str, Any] | None
    samples: list[SampleOut]


class AlleleOut(ApiModel):
    id: int
    genome_reference: str
    chromosome: str
    start_position: int
    open_end_position: int
    change_from: str
    change_to: str
    change_type: str
    vcf_pos: int
    vcf_ref: str
    vcf_alt: str
    length: int
    caller_type: str


class GenotypeOut(ApiModel):
    """One sample's call for one allele, with the site's FILTER and QUAL."""

    sample_id: int
    sample_type: str
    type: str
    multiallelic: bool
    genotype_quality: int | None
    sequencing_depth: int | None
    allele_depth: dict[str, int] | None
    allele_ratio: float | None
    genotype_likelihood: list[int] | None
    copy_number: int | None
    filter_status: str | None
    variant_quality: float | None


class AnnotationOut(ApiModel):
    id: int
    date_created: dt.datetime
    bundle_version: str | None  # annotation data bundle that produced it; None = from VCF INFO
    annotation_config_id: int | None
    annotations: dict[str, Any]


class AnnotationVersion(ApiModel):
    id: int
    date_created: dt.datetime
    date_superceeded: dt.datetime | None
    bundle_version: str | None
    annotation_config_id: int | None


class AnalysisAlleleOut(AlleleOut):
    # Keyed by sample identifier; "<identifier> (<sample type>)" where samples share one.
    genotypes: dict[str, GenotypeOut]
    annotation: AnnotationOut | None


class AlleleDetailOut(AlleleOut):
    annotation: AnnotationOut | None
    annotation_history: list[AnnotationVersion]


class ImportJobOut(ApiModel):
    id: int
    analysis_name: str
    event_id: str
    status: str
    stage: str | None
    message: str | None
    attempts: int
    analysis_id: int | None
    date_created: dt.datetime
    date_updated: dt.datetime
    retry_of: int | None = None  # the FAILED job this job retries


class ImportJobDetailOut(ImportJobOut):
    fingerprint: str | None
    history: list[dict[str, Any]]


class ReadinessOut(BaseModel):
    status: str
    checks: dict[str, str]
    message: str | None = None
