"""Reanalysis requests (``POST /api/v1/reanalyses``) and reannotation runs (``/api/v1/reannotations``).

Posting needs a bearer token (api.auth); the request is checked against the database, then
published as a ``reanalysis.requested`` event which the worker handles (202 Accepted).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from api.auth import WriteToken
from api.deps import PaginationDep, PublisherDep, SessionDep, WriteSessionDep
from api.models import ApiModel, ErrorOut, Page
from engine.db.models import Analysis, ImportJob
from engine.errors import BrokerUnavailable, InputError, NotFoundError, UnknownAnalysisError
from engine.reannotate.changes import list_changes
from engine.reannotate.publish import request_reanalysis
from engine.reannotate.runs import RunProgress, find_run, list_runs, run_progress

router = APIRouter(tags=["reanalysis"])


class ReanalysisIn(BaseModel):
    analysis: str = Field(min_length=1, max_length=255, description="name of a stored analysis")
    bundle: str | None = Field(None, description="bundle version; null: the active bundle")


class ReanalysisAccepted(BaseModel):
    event_id: str  # also the import job's event_id: GET /api/v1/import/jobs?analysis=NAME
    analysis: str
    bundle: str


class ReannotationOut(ApiModel):
    id: int
    run_id: str
    bundle_version: str
    analyses: list[str] | None
    status: str  # RUNNING, DONE, FAILED (some batches failed)
    total_batches: int
    done_batches: int
    failed_batches: int
    total_alleles: int
    alleles_done: int
    created: int
    superseded: int
    unchanged: int
    date_created: dt.datetime
    failures: list[str]
    mode: str  # "incremental" (what the release changed), "all", or "reanalysis" (one analysis)


class ChangeOut(ApiModel):
    allele_id: int
    chromosome: str
    vcf_pos: int
    vcf_ref: str
    vcf_alt: str
    target: str  # dotted path in the annotation document
    old: Any  # null: absent before
    new: Any  # null: withdrawn
    analyses: list[str]  # every stored analysis that has the allele


@router.post(
    "/api/v1/reanalyses",
    status_code=202,
    response_model=ReanalysisAccepted,
    responses={
        401: {"model": ErrorOut},
        404: {"model": ErrorOut},
        422: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
    summary="Re-annotate a stored analysis's alleles with a bundle (default: the active one)",
)
def post_reanalysis(
    body: ReanalysisIn,
    request: Request,
    session: WriteSessionDep,
    publisher: PublisherDep,
    _token: WriteToken,
) -> ReanalysisAccepted:
    client = request.client.host if request.client else "unknown"
    try:
        event = request_reanalysis(
            session, publisher, body.analysis, body.bundle, producer="api", requested_by=f"api@{client}"
        )
    except UnknownAnalysisError:
        raise NotFoundError("analysis", repr(body.analysis)) from None
    except InputError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    except BrokerUnavailable as error:
        raise HTTPException(status_code=503, detail=str(error)) from None
    assert event.bundle is not None  # resolved to a version by the request
    return ReanalysisAccepted(event_id=event.event_id, analysis=body.analysis, bundle=event.bundle)


@router.get(
    "/api/v1/reanalyses/{event_id}",
    responses={404: {"model": ErrorOut}},
    summary="Where a reanalysis request is (its import job)",
)
def read_reanalysis(session: SessionDep, event_id: str) -> dict[str, Any]:
    job = session.scalar(sa.select(ImportJob).where(ImportJob.event_id == event_id))
    if job is None:
        raise NotFoundError("reanalysis", event_id)
    return {
        "event_id": job.event_id,
        "analysis": job.analysis_name,
        "status": job.status,
        "stage": job.stage,
        "message": job.message,
        "history": job.history,
        "date_created": job.date_created,
        "date_updated": job.date_updated,
    }


def _out(progress: RunProgress) -> ReannotationOut:
    return ReannotationOut(
        status=progress.status,
        **{name: getattr(progress, name) for name in ReannotationOut.model_fields if name != "status"},
    )


@router.get(
    "/api/v1/reannotations", response_model=Page[ReannotationOut], summary="Reannotation runs, newest first"
)
def list_reannotations(session: SessionDep, page: PaginationDep) -> dict[str, Any]:
    total, runs = list_runs(session, limit=page.per_page, offset=page.offset)
    return {
        "items": [_out(run) for run in runs],
        "total": total,
        "page": page.page,
        "per_page": page.per_page,
    }


@router.get(
    "/api/v1/reannotations/{run}",
    response_model=ReannotationOut,
    responses={404: {"model": ErrorOut}},
    summary="Progress of one reannotation run (by id or run id)",
)
def read_reannotation(session: SessionDep, run: str) -> ReannotationOut:
    found = find_run(session, run)
    if found is None:
        raise NotFoundError("reannotation run", run)
    return _out(run_progress(session, found))


@router.get(
    "/api/v1/reannotations/{run}/changes",
    response_model=Page[ChangeOut],
    responses={404: {"model": ErrorOut}},
    summary="The change report of a run: owned targets whose value changed, per allele",
)
def read_reannotation_changes(
    session: SessionDep, run: str, page: PaginationDep, analysis: str | None = None, target: str | None = None
) -> dict[str, Any]:
    found = find_run(session, run)
    if found is None:
        raise NotFoundError("reannotation run", run)
    unknown = (
        analysis is not None
        and session.scalar(sa.select(Analysis.id).where(Analysis.name == analysis)) is None
    )
    if unknown:
        raise NotFoundError("analysis", repr(analysis))
    total, rows = list_changes(
        session, found, analysis=analysis, target=target, limit=page.per_page, offset=page.offset
    )
    return {
        "items": [row.as_dict() for row in rows],
        "total": total,
        "page": page.page,
        "per_page": page.per_page,
    }
