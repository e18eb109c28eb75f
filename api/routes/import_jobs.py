"""``/api/v1/import/jobs``: where each submitted analysis folder is in the pipeline."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query

from api.deps import PaginationDep, SessionDep
from api.models import ErrorOut, ImportJobDetailOut, ImportJobOut, Page
from engine.db.models import ImportJob, JobStatus
from engine.errors import NotFoundError

router = APIRouter(prefix="/api/v1/import/jobs", tags=["import jobs"])


@router.get("", response_model=Page[ImportJobOut])
def list_import_jobs(
    session: SessionDep,
    page: PaginationDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    analysis: Annotated[str | None, Query(description="only jobs for this analysis name")] = None,
) -> dict[str, Any]:
    conditions = []
    if status is not None:
        conditions.append(ImportJob.status == status.value)
    if analysis is not None:
        conditions.append(ImportJob.analysis_name == analysis)
    total = session.scalar(sa.select(sa.func.count()).select_from(ImportJob).where(*conditions)) or 0
    query = (
        sa.select(ImportJob)
        .where(*conditions)
        .order_by(ImportJob.date_created.desc(), ImportJob.id.desc())
        .offset(page.offset)
        .limit(page.per_page)
    )
    items = list(session.scalars(query))
    return {"items": items, "total": total, "page": page.page, "per_page": page.per_page}


@router.get("/{job_id}", response_model=ImportJobDetailOut, responses={404: {"model": ErrorOut}})
def read_import_job(session: SessionDep, job_id: int) -> ImportJob:
    job = session.get(ImportJob, job_id)
    if job is None:
        raise NotFoundError("import job", job_id)
    return job
