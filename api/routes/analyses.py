"""``/api/v1/analyses``: imported analyses, their samples and their alleles."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from api.allele_data import analysis_allele_page
from api.deps import PaginationDep, SessionDep
from api.models import AnalysisAlleleOut, AnalysisOut, AnalysisSummary, ErrorOut, Page
from api.paging import fetch_page
from engine.db.models import Analysis, Sample
from engine.deposit.targets import deposit_target
from engine.errors import NotFoundError

router = APIRouter(prefix="/api/v1/analyses", tags=["analyses"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}


def summary_fields(analysis: Analysis, priority: int) -> dict[str, Any]:
    return {
        "id": analysis.id,
        "name": analysis.name,
        "genepanel": {"name": analysis.genepanel_name, "version": analysis.genepanel_version},
        "priority": priority,
        "date_requested": analysis.date_requested,
        "date_deposited": analysis.date_deposited,
    }


def sample_fields(sample: Sample, identifiers: dict[int, str]) -> dict[str, Any]:
    def relative(sample_id: int | None) -> str | None:
        return identifiers.get(sample_id) if sample_id is not None else None

    return {
        "id": sample.id,
        "identifier": sample.identifier,
        "sample_type": sample.sample_type,
        "proband": sample.proband,
        "affected": sample.affected,
        "sex": sample.sex,
        "family_id": sample.family_id,
        "father": relative(sample.father_id),
        "mother": relative(sample.mother_id),
        "sibling": relative(sample.sibling_id),
        "date_deposited": sample.date_deposited,
    }


def find_analysis(session: Session, analysis_id: int) -> tuple[Analysis, int] | None:
    """The analysis and its priority (read where the database keeps it: see DepositTarget)."""
    row = session.execute(
        sa.select(Analysis, deposit_target(session).analysis_priority()).where(Analysis.id == analysis_id)
    ).first()
    return None if row is None else (row[0], int(row[1]))


def find_analysis_with_samples(session: Session, analysis_id: int) -> tuple[Analysis, int, list[Sample]]:
    """The analysis, its priority and its samples in one statement (a row per sample)."""
    rows = session.execute(
        sa.select(Analysis, deposit_target(session).analysis_priority(), Sample)
        .outerjoin(Sample, Sample.analysis_id == Analysis.id)
        .where(Analysis.id == analysis_id)
        .order_by(Sample.id)
    ).all()
    if not rows:
        raise NotFoundError("analysis", analysis_id)
    analysis, priority, _ = rows[0]
    return analysis, int(priority), [sample for _, _, sample in rows if sample is not None]


def get_analysis(session: Session, analysis_id: int) -> tuple[Analysis, int]:
    found = find_analysis(session, analysis_id)
    if found is None:
        raise NotFoundError("analysis", analysis_id)
    return found


@router.get("", response_model=Page[AnalysisSummary])
def list_analyses(
    session: SessionDep,
    page: PaginationDep,
    name: Annotated[str | None, Query(description="case-insensitive part of the analysis name")] = None,
) -> dict[str, Any]:
    condition = Analysis.name.icontains(name, autoescape=True) if name else sa.true()
    query = (
        sa.select(Analysis, deposit_target(session).analysis_priority())
        .where(condition)
        .order_by(Analysis.date_deposited.desc(), Analysis.id.desc())
    )
    rows, total = fetch_page(session, query, page)
    items = [summary_fields(analysis, priority) for analysis, priority in rows]
    return {"items": items, "total": total, "page": page.page, "per_page": page.per_page}


@router.get("/{analysis_id}", response_model=AnalysisOut, responses=NOT_FOUND)
def read_analysis(session: SessionDep, analysis_id: int) -> dict[str, Any]:
    analysis, priority, samples = find_analysis_with_samples(session, analysis_id)
    identifiers = {sample.id: sample.identifier for sample in samples}
    return {
        **summary_fields(analysis, priority),
        "warnings": analysis.warnings,
        "report": analysis.report,
        "properties": analysis.properties,
        "samples": [sample_fields(sample, identifiers) for sample in samples],
    }


@router.get("/{analysis_id}/alleles", response_model=Page[AnalysisAlleleOut], responses=NOT_FOUND)
def list_analysis_alleles(
    session: SessionDep,
    analysis_id: int,
    page: PaginationDep,
    cursor: Annotated[
        int | None,
        Query(
            ge=0,
            description="keyset cursor: `next_cursor` of the previous page (fast at any depth; "
            "overrides `page`)",
        ),
    ] = None,
) -> dict[str, Any]:
    get_analysis(session, analysis_id)
    items, total = analysis_allele_page(session, analysis_id, page, after=cursor)
    last = items[-1]["id"] if len(items) == page.per_page else None
    return {"items": items, "total": total, "page": page.page, "per_page": page.per_page, "next_cursor": last}
