"""The operator's web pages, served by the read API: ``/`` (pipeline health) and ``/ui/...``.

Server-rendered Jinja2 templates; htmx (vendored in ``static/``, no build step, works offline)
refreshes the live parts of a page every few seconds by fetching the same URL with the
``HX-Request`` header, which renders only the page's fragment. Reads follow
ANNOSTREAM_API_READ_AUTH (a session cookie from the login form counts as a token); every
write (retry, activate, reanalyse) needs a logged-in session and the form's CSRF value.
The pages read through the same engine functions as the JSON API and the CLI.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from kafka import TopicPartition
from kafka.errors import KafkaError

from api.allele_data import analysis_allele_page
from api.auth import configured_tokens, token_is_valid
from api.deps import Pagination, PublisherDep, SessionDep, SettingsDep, WriteSessionDep
from api.routes.analyses import find_analysis
from api.web.session import (
    COOKIE,
    COOKIE_MAX_AGE_S,
    csrf_ok,
    csrf_value,
    safe_next,
    same_origin,
    session_token,
)
from engine.bundles import activate_bundle, list_bundles
from engine.config import Settings
from engine.db.models import Analysis, ImportJob, JobStatus, Sample
from engine.deposit.targets import deposit_target
from engine.errors import AnnostreamError, InputError, RetryRefused
from engine.events import Topics, default_producer
from engine.kafka import BrokerUnavailable, open_reader, poll_until_idle, topic_partitions
from engine.reannotate.changes import list_changes
from engine.reannotate.runs import find_run, list_runs
from engine.retry import find_failed_folder, read_error_file, retry_job
from engine.status import Health, collect_health

log = logging.getLogger("annostream.web")

WEB_ROOT = Path(__file__).parent
templates = Jinja2Templates(directory=str(WEB_ROOT / "templates"))
router = APIRouter(include_in_schema=False)

HEALTH_TTL_S = 3.0  # several browsers refreshing every 5 s share one look at the broker
DEAD_LETTERS_SHOWN = 50
JOBS_PER_PAGE = 50
ALLELES_PER_PAGE = 50
CHANGES_PER_PAGE = 100
STAGE_OF_TOPIC = {"analysis.ready": "annotate", "analysis.annotated": "persist"}


class LoginRequired(Exception):
    """Reads need a token (ANNOSTREAM_API_READ_AUTH) and the browser has no session."""


def read_access(request: Request, settings: SettingsDep) -> str | None:
    """The session's token (None when not logged in); LoginRequired when reads need one."""
    token = session_token(request, settings)
    if token is None and settings.api_read_auth:
        raise LoginRequired()
    return token


ReadAccess = Annotated[str | None, Depends(read_access)]


def login_redirect(request: Request, _error: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)


def page(request: Request, template: str, token: str | None, **context: Any) -> HTMLResponse:
    """Render ``template``; an htmx refresh gets only its fragment (``fragment`` block)."""
    fragment = request.headers.get("hx-request") == "true"
    context.update(
        request=request,
        layout="fragment.html" if fragment else "base.html",
        logged_in=token is not None,
        csrf=csrf_value(token) if token else "",
        notice=request.query_params.get("notice"),
        error=request.query_params.get("error"),
        fragment=fragment,
        read_auth=request.app.state.settings.api_read_auth,
    )
    return templates.TemplateResponse(request, template, context)


def back(path: str, *, notice: str | None = None, error: str | None = None) -> RedirectResponse:
    query = {key: value for key, value in (("notice", notice), ("error", error)) if value}
    separator = "&" if "?" in path else "?"
    return RedirectResponse(path + ((separator + urlencode(query)) if query else ""), status_code=303)


def write_access(request: Request, settings: Settings, csrf: str | None) -> str:
    """The session token of a valid write; raises _Refused otherwise."""
    token = session_token(request, settings)
    if token is None:
        raise _Refused("log in with an API token to do this")
    if not same_origin(request) or not csrf_ok(token, csrf):
        raise _Refused("the form is stale or came from another site; reload the page and try again")
    return token


class _Refused(Exception):
    pass


# --- login ---------------------------------------------------------------------------------------


@router.get("/ui/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return page(
        request,
        "login.html",
        None,
        next=safe_next(next),
        no_tokens=not configured_tokens(request.app.state.settings),
    )


@router.post("/ui/login")
def login(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    target = safe_next(next)
    if not same_origin(request):
        return back("/ui/login", error="the login form came from another site")
    if not token_is_valid(token.strip(), configured_tokens(settings)):
        return RedirectResponse(
            "/ui/login?" + urlencode({"next": target, "error": "invalid token"}), status_code=303
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        max_age=COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/ui/logout")
def logout(request: Request, settings: SettingsDep, csrf: Annotated[str, Form()] = "") -> Response:
    try:
        write_access(request, settings, csrf)
    except _Refused as refused:
        return back("/", error=str(refused))
    response = back("/", notice="logged out")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# --- pipeline health -----------------------------------------------------------------------------

_health_lock = threading.Lock()
_health_cache: dict[str, tuple[float, Health]] = {}


def cached_health(settings: Settings) -> Health:
    key = settings.database_url
    with _health_lock:
        cached = _health_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < HEALTH_TTL_S:
            return cached[1]
        health = collect_health(settings, max_count=10_000, idle_s=0.2)
        _health_cache[key] = (time.monotonic(), health)
        return health


def stage_label(base_topic: str) -> str:
    """The stage a topic feeds, with its priority lane: ``annotate``, ``annotate · urgent lane``."""
    for topic, stage in STAGE_OF_TOPIC.items():
        if base_topic == topic:
            return stage
        if base_topic.startswith(topic + "."):
            return f"{stage} · {base_topic.removeprefix(topic + '.')} lane"
    return base_topic


def lag_by_stage(health: Health, settings: Settings) -> list[dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = {}
    for item in health.lag:
        base = item.topic.removeprefix(settings.topic_prefix)
        stage = stages.setdefault(
            item.topic,
            {
                "stage": stage_label(base),
                "topic": item.topic,
                "lag": 0,
                "exact": True,
                "partitions": 0,
            },
        )
        stage["lag"] += item.lag
        stage["exact"] &= item.complete
        stage["partitions"] += 1
    return list(stages.values())


@router.get("/", response_class=HTMLResponse)
async def health_page(
    request: Request, settings: SettingsDep, session: SessionDep, token: ReadAccess
) -> HTMLResponse:
    health = await run_in_threadpool(cached_health, settings)
    analyses = session.scalar(sa.select(sa.func.count()).select_from(Analysis)) or 0
    return page(
        request,
        "health.html",
        token,
        health=health,
        stages=lag_by_stage(health, settings),
        analyses=analyses,
        now=dt.datetime.now(dt.UTC),
    )


# --- import jobs ---------------------------------------------------------------------------------


@router.get("/ui/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    token: ReadAccess,
    status: Annotated[str, Query()] = "",
    q: Annotated[str, Query()] = "",
    page_number: Annotated[int, Query(alias="page", ge=1)] = 1,
) -> HTMLResponse:
    conditions = []
    if status in JobStatus.__members__:
        conditions.append(ImportJob.status == status)
    if q.strip():
        conditions.append(ImportJob.analysis_name.icontains(q.strip(), autoescape=True))
    total = session.scalar(sa.select(sa.func.count()).select_from(ImportJob).where(*conditions)) or 0
    jobs = list(
        session.scalars(
            sa.select(ImportJob)
            .where(*conditions)
            .order_by(ImportJob.id.desc())
            .offset((page_number - 1) * JOBS_PER_PAGE)
            .limit(JOBS_PER_PAGE)
        )
    )
    ids = [job.id for job in jobs]
    retried_by = (
        dict(
            session.execute(
                sa.select(ImportJob.retry_of, ImportJob.id).where(ImportJob.retry_of.in_(ids))
            ).all()
        )
        if ids
        else {}
    )
    rows = []
    for job in jobs:
        detail = None
        if job.status == JobStatus.FAILED.value:
            folder = find_failed_folder(settings, job.analysis_name, job.event_id)
            detail = {
                "folder": str(folder) if folder else None,
                "error": read_error_file(folder) if folder else None,
            }
        rows.append({"job": job, "failure": detail, "retried_by": retried_by.get(job.id)})
    pages = max(1, -(-total // JOBS_PER_PAGE))
    return page(
        request,
        "jobs.html",
        token,
        rows=rows,
        total=total,
        status=status,
        q=q,
        statuses=list(JobStatus.__members__),
        page_number=page_number,
        pages=pages,
    )


@router.post("/ui/jobs/{job_id}/retry")
async def retry_action(
    request: Request, settings: SettingsDep, job_id: int, csrf: Annotated[str, Form()] = ""
) -> Response:
    where = request.headers.get("referer") or "/ui/jobs?status=FAILED"
    target = safe_next(_local_path(where))
    try:
        write_access(request, settings, csrf)
        result = await run_in_threadpool(retry_job, settings, job_id, producer=default_producer("web"))
    except (_Refused, RetryRefused, BrokerUnavailable) as refused:
        return back(_strip_query(target), error=str(refused))
    return back(_strip_query(target), notice=result.describe())


def _local_path(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _strip_query(path: str) -> str:
    """Keep the page's filters but drop an earlier notice or error."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(path)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("notice", "error")]
    return parts.path + (f"?{urlencode(kept)}" if kept else "")


# --- analyses ------------------------------------------------------------------------------------


@router.get("/ui/analyses", response_class=HTMLResponse)
def analyses_page(
    request: Request,
    session: SessionDep,
    token: ReadAccess,
    q: Annotated[str, Query()] = "",
    page_number: Annotated[int, Query(alias="page", ge=1)] = 1,
) -> HTMLResponse:
    condition = Analysis.name.icontains(q.strip(), autoescape=True) if q.strip() else sa.true()
    total = session.scalar(sa.select(sa.func.count()).select_from(Analysis).where(condition)) or 0
    samples = (
        sa.select(sa.func.count())
        .where(Sample.analysis_id == Analysis.id)
        .correlate(Analysis)
        .scalar_subquery()
    )
    rows = session.execute(
        sa.select(
            Analysis,
            deposit_target(session).analysis_priority().label("priority"),
            samples.label("samples"),
        )
        .where(condition)
        .order_by(Analysis.id.desc())
        .offset((page_number - 1) * JOBS_PER_PAGE)
        .limit(JOBS_PER_PAGE)
    ).all()
    pages = max(1, -(-total // JOBS_PER_PAGE))
    return page(
        request, "analyses.html", token, rows=rows, total=total, q=q, page_number=page_number, pages=pages
    )


@router.get("/ui/analyses/{analysis_id}", response_class=HTMLResponse)
def analysis_page(
    request: Request,
    session: SessionDep,
    token: ReadAccess,
    analysis_id: int,
    page_number: Annotated[int, Query(alias="page", ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = ALLELES_PER_PAGE,
) -> HTMLResponse:
    found = find_analysis(session, analysis_id)
    if found is None:
        return page(request, "missing.html", token, what=f"analysis {analysis_id}")
    analysis, priority = found
    samples = list(
        session.scalars(sa.select(Sample).where(Sample.analysis_id == analysis_id).order_by(Sample.id))
    )
    alleles, total = analysis_allele_page(
        session, analysis_id, Pagination(page=page_number, per_page=per_page)
    )
    pages = max(1, -(-total // per_page))
    jobs = list(
        session.scalars(
            sa.select(ImportJob)
            .where(ImportJob.analysis_name == analysis.name)
            .order_by(ImportJob.id.desc())
            .limit(5)
        )
    )
    return page(
        request,
        "analysis.html",
        token,
        analysis=analysis,
        priority=priority,
        samples=samples,
        alleles=[allele_row(allele) for allele in alleles],
        total=total,
        page_number=page_number,
        pages=pages,
        per_page=per_page,
        jobs=jobs,
    )


def allele_row(allele: dict[str, Any]) -> dict[str, Any]:
    """What the allele table shows: position, change, genotypes and key annotation."""
    annotation = allele.get("annotation") or {}
    document: dict[str, Any] = annotation.get("annotations") or {}
    return {
        **allele,
        "bundle": annotation.get("bundle_version"),
        "frequencies": key_frequencies(document.get("frequencies")),
        "clinvar": clinvar_classes(document.get("external")),
        "transcripts": key_transcripts(document.get("transcripts")),
    }


def key_frequencies(frequencies: Any) -> list[tuple[str, str]]:
    """(provider, overall frequency) per provider: the ``G`` (global) value, else the first."""
    shown: list[tuple[str, str]] = []
    if not isinstance(frequencies, dict):
        return shown
    for provider, values in sorted(frequencies.items()):
        freq = values.get("freq") if isinstance(values, dict) else None
        if not isinstance(freq, dict) or not freq:
            continue
        population = "G" if "G" in freq else sorted(freq)[0]
        value = freq[population]
        label = provider if population == "G" else f"{provider} {population}"
        shown.append((label, f"{value:.3g}" if isinstance(value, float) else str(value)))
    return shown


def clinvar_classes(external: Any) -> list[str]:
    clinvar = external.get("CLINVAR") if isinstance(external, dict) else None
    if not isinstance(clinvar, dict):
        return []
    classes = {
        str(item.get("clinical_significance_descr"))
        for item in clinvar.get("items") or []
        if isinstance(item, dict) and item.get("clinical_significance_descr")
    }
    return sorted(classes)


def key_transcripts(transcripts: Any, limit: int = 3) -> list[str]:
    if not isinstance(transcripts, list):
        return []
    shown = []
    for transcript in transcripts[:limit]:
        if not isinstance(transcript, dict):
            continue
        name = transcript.get("transcript") or ""
        hgvs = transcript.get("HGVSc_short") or transcript.get("HGVSc") or ""
        symbol = transcript.get("symbol") or ""
        shown.append(" ".join(part for part in (symbol, f"{name}:{hgvs}" if hgvs else name) if part))
    if len(transcripts) > limit:
        shown.append(f"+{len(transcripts) - limit} more")
    return shown


@router.post("/ui/analyses/{analysis_id}/reanalyse")
def reanalyse_action(
    request: Request,
    settings: SettingsDep,
    session: WriteSessionDep,
    publisher: PublisherDep,
    analysis_id: int,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    from engine.reannotate.publish import request_reanalysis

    where = f"/ui/analyses/{analysis_id}"
    analysis = session.get(Analysis, analysis_id)
    if analysis is None:
        return back("/ui/analyses", error=f"analysis {analysis_id} not found")
    name = analysis.name
    try:
        write_access(request, settings, csrf)
        event = request_reanalysis(
            session, publisher, name, None, producer=default_producer("web"), requested_by="web"
        )
    except (_Refused, AnnostreamError) as refused:
        session.rollback()
        return back(where, error=str(refused))
    return back(
        where, notice=f"reanalysis of {name} with bundle {event.bundle} requested (event {event.event_id})"
    )


# --- bundles and re-annotation runs --------------------------------------------------------------


@router.get("/ui/bundles", response_class=HTMLResponse)
def bundles_page(request: Request, session: SessionDep, token: ReadAccess) -> HTMLResponse:
    bundles = list(reversed(list_bundles(session)))  # newest first
    return page(request, "bundles.html", token, bundles=bundles)


@router.post("/ui/bundles/{version}/activate")
def activate_action(
    request: Request,
    settings: SettingsDep,
    session: WriteSessionDep,
    version: str,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    try:
        write_access(request, settings, csrf)
        activate_bundle(session, version)
        session.commit()
    except (_Refused, AnnostreamError) as refused:
        session.rollback()
        return back("/ui/bundles", error=str(refused))
    return back("/ui/bundles", notice=f"bundle {version} is active: new analyses are annotated with it")


@router.get("/ui/reannotations", response_class=HTMLResponse)
def reannotations_page(request: Request, session: SessionDep, token: ReadAccess) -> HTMLResponse:
    total, runs = list_runs(session, limit=50)
    return page(request, "reannotations.html", token, runs=runs, total=total)


@router.get("/ui/reannotations/{run}", response_class=HTMLResponse)
def reannotation_changes_page(
    request: Request,
    session: SessionDep,
    token: ReadAccess,
    run: str,
    analysis: Annotated[str, Query()] = "",
    target: Annotated[str, Query()] = "",
    page_number: Annotated[int, Query(alias="page", ge=1)] = 1,
) -> HTMLResponse:
    """A run's change report: the owned targets whose value changed, per allele and analysis."""
    found = find_run(session, run)
    if found is None:
        return page(request, "missing.html", token, what=f"re-annotation run {run}")
    problem = None
    try:
        total, changes = list_changes(
            session,
            found,
            analysis=analysis.strip() or None,
            target=target.strip() or None,
            limit=CHANGES_PER_PAGE,
            offset=(page_number - 1) * CHANGES_PER_PAGE,
        )
    except InputError as error:
        total, changes, problem = 0, [], str(error)
    query = urlencode({key: value for key, value in (("analysis", analysis), ("target", target)) if value})
    return page(
        request,
        "changes.html",
        token,
        run=found,
        changes=changes,
        total=total,
        analysis=analysis,
        target=target,
        problem=problem,
        base=f"/ui/reannotations/{found.id}" + (f"?{query}" if query else ""),
        page_number=page_number,
        pages=max(1, -(-total // CHANGES_PER_PAGE)),
    )


# --- dead letters --------------------------------------------------------------------------------


def recent_dead_letters(
    settings: Settings, limit: int = DEAD_LETTERS_SHOWN
) -> tuple[list[dict[str, Any]], str | None]:
    """The newest ``limit`` events of the dead-letter topic (read from the start: the only
    position every broker answers correctly), and an error when the broker cannot be read."""
    if not settings.kafka_bootstrap_servers:
        return [], "KAFKA_BOOTSTRAP_SERVERS is not set"
    topic = Topics.from_settings(settings).failed
    newest: deque[dict[str, Any]] = deque(maxlen=limit)
    try:
        reader = open_reader(settings.kafka_bootstrap_servers)
        try:
            partitions: list[TopicPartition] = topic_partitions(reader, topic)
            if not partitions:
                return [], None
            reader.assign(partitions)
            reader.seek_to_beginning(*partitions)
            for _partition, records in poll_until_idle(reader, idle_s=0.3, timeout_s=5.0):
                for record in records:
                    try:
                        event = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        event = {"error": {"message": "not JSON"}, "raw": bytes(record.value[:200]).hex()}
                    event["_at"] = dt.datetime.fromtimestamp(record.timestamp / 1000, dt.UTC)
                    newest.append(event)
        finally:
            reader.close()
    except (BrokerUnavailable, KafkaError) as error:
        return [], str(error)
    events = sorted(newest, key=lambda event: event["_at"], reverse=True)
    return events, None


def _parked_events(request: Request) -> list[Any]:
    """Events parked because even recording their failure failed (engine/parked.py)."""
    from engine.parked import list_parked

    with request.app.state.sessions() as session:
        return list(list_parked(session))


@router.get("/ui/dead-letters", response_class=HTMLResponse)
async def dead_letters_page(request: Request, settings: SettingsDep, token: ReadAccess) -> HTMLResponse:
    events, problem = await run_in_threadpool(recent_dead_letters, settings)
    parked = await run_in_threadpool(_parked_events, request)
    return page(
        request,
        "dead_letters.html",
        token,
        events=events,
        problem=problem,
        parked=parked,
        topic=Topics.from_settings(settings).failed,
    )
