"""``/api/v1/import/jobs``: where each submitted analysis folder is in the pipeline."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.auth import WriteToken
from api.deps import PaginationDep, SessionDep, SettingsDep
from api.models import ErrorOut, ImportJobDetailOut, ImportJobOut, Page
from api.paging import fetch_page
from engine.db.models import ImportJob, JobStatus
from engine.errors import NotFoundError, RetryRefused
from engine.events import default_producer
from engine.kafka import BrokerUnavailable
from engine.retry import retry_job

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
    query = (
        sa.select(ImportJob).where(*conditions).order_by(ImportJob.date_created.desc(), ImportJob.id.desc())
    )
    rows, total = fetch_page(session, query, page)
    items = [job for (job,) in rows]
    return {"items": items, "total": total, "page": page.page, "per_page": page.per_page}


@router.get("/{job_id}", response_model=ImportJobDetailOut, responses={404: {"model": ErrorOut}})
def read_import_job(session: SessionDep, job_id: int) -> ImportJob:
    job = session.get(ImportJob, job_id)
    if job is None:
        raise NotFoundError("import job", job_id)
    return job


class RetryOut(BaseModel):
    analysis: str
    failed_job: int | None
    job: int  # the new import job (GET /api/v1/import/jobs/{job})
    event_id: str
    already: bool  # the failure had been retried before: nothing was done now


@router.post(
    "/{job_id}/retry",
    response_model=RetryOut,
    status_code=202,
    responses={
        404: {"model": ErrorOut},
        409: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
)
async def retry_import_job(settings: SettingsDep, _token: WriteToken, job_id: int) -> dict[str, Any]:
    """Re-import a FAILED job's folder after it was fixed: moves it back from ANALYSES_FAILED,
    clears error.json and publishes it; the new job links to this one (``retry_of``).
    Idempotent: a job retried before answers with its retry. 422 when the folder still fails
    (the message is the new error), 409 when the folder is gone or the job is not FAILED."""
    try:
        result = await run_in_threadpool(retry_job, settings, job_id, producer=default_producer("api"))
    except RetryRefused as refused:
        raise HTTPException(status_code=refused.status, detail=str(refused)) from None
    except BrokerUnavailable as error:
        raise HTTPException(status_code=503, detail=str(error)) from None
    return result.to_dict()
