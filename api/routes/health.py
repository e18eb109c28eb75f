"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import socket
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import SettingsDep
from api.models import ReadinessOut
from engine.db.session import get_engine
from engine.metrics import render_metrics
from engine.state_metrics import render_state
from engine.status import lane_lag_monitor

router = APIRouter(tags=["operations"])

BROKER_TIMEOUT_S = 2.0
DEFAULT_KAFKA_PORT = 9092


def database_problem(url: str) -> str | None:
    """None when ``SELECT 1`` succeeds, else why it did not."""
    error = _select_one_error(url)
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        # A pooled connection that died while idle says only "server closed the connection";
        # the pool is emptied by then, so a second try on a new connection says why.
        error = _select_one_error(url)
    return None if error is None else _first_line(error)


def _select_one_error(url: str) -> Exception | None:
    try:
        with get_engine(url).connect() as connection:
            connection.execute(sa.select(1))
    except Exception as error:  # any driver error means "not reachable" to a probe
        return error
    return None


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"


def _host_port(server: str) -> tuple[str, int]:
    host, _, port = server.strip().rpartition(":")
    if not host:
        return server.strip(), DEFAULT_KAFKA_PORT
    return host.strip("[]"), int(port)


def broker_problem(bootstrap_servers: str, timeout_s: float = BROKER_TIMEOUT_S) -> str | None:
    """None when any bootstrap server accepts a TCP connection, else every server's failure."""
    failures = []
    for server in bootstrap_servers.split(","):
        try:
            host, port = _host_port(server)
            with socket.create_connection((host, port), timeout=timeout_s):
                return None
        except (OSError, ValueError) as error:
            failures.append(f"{server.strip()}: {error}")
    return "; ".join(failures)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive (it answers); says nothing about its dependencies."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadinessOut, responses={503: {"model": ReadinessOut}})
def readyz(settings: SettingsDep) -> Any:
    """Ready when the database answers and the broker accepts connections."""
    problems: dict[str, str] = {}
    checks: dict[str, str] = {}
    db = database_problem(settings.database_url)
    checks["database"] = "ok" if db is None else "unreachable"
    if db is not None:
        problems["database"] = db
    if settings.kafka_bootstrap_servers is None:
        checks["broker"] = "not configured (KAFKA_BOOTSTRAP_SERVERS is unset)"
    else:
        broker = broker_problem(settings.kafka_bootstrap_servers)
        checks["broker"] = "ok" if broker is None else "unreachable"
        if broker is not None:
            problems["broker"] = broker
    if not problems:
        return {"status": "ready", "checks": checks}
    message = "not ready: " + "; ".join(f"{name} unreachable ({why})" for name, why in problems.items())
    body = {"status": "unavailable", "checks": checks, "message": message}
    return JSONResponse(status_code=503, content=body)


@router.get("/metrics", include_in_schema=False)
def metrics(settings: SettingsDep) -> Response:
    """Counters of every local process (and the waiting events per stage and priority lane,
    measured in the background), then the pipeline's state (engine/state_metrics.py) and the
    database gauges (parked events, work ledger)."""
    monitor = lane_lag_monitor(settings)
    body, content_type = render_metrics(*([monitor] if monitor else []))
    return Response(
        content=body + render_state(settings) + database_gauges(settings.database_url),
        media_type=content_type,
    )


def database_gauges(url: str) -> bytes:
    """Gauges read from the database at scrape time (one truth for every process): parked
    events and work-ledger entries per state. Omitted while the database is unreachable."""
    from engine.ledger import counts
    from engine.parked import count_parked

    try:
        with get_engine(url).connect() as connection, Session(bind=connection) as session:
            parked, ledger = count_parked(session), counts(session)
    except sa.exc.SQLAlchemyError:
        return b""
    lines = [
        "# HELP annostream_parked_events Events parked because recording their failure failed.",
        "# TYPE annostream_parked_events gauge",
        f"annostream_parked_events {parked}",
        "# HELP annostream_ledger_entries Work ledger entries per state (PENDING = not finished).",
        "# TYPE annostream_ledger_entries gauge",
    ]
    lines += [
        f'annostream_ledger_entries{{state="{state}"}} {ledger.get(state, 0)}'
        for state in ("PENDING", "DONE", "FAILED")
    ]
    return ("\n".join(lines) + "\n").encode()
