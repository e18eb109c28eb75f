"""The FastAPI application factory of the read API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import require_read_token
from api.errors import install_error_handlers
from api.routes import alleles, analyses, bundles, genepanels, health, import_jobs, parked, reanalyses
from api.web import pages
from engine import metrics
from engine.config import Settings, get_settings
from engine.db.migrate import require_current
from engine.db.session import POOL_SIZE, get_engine, read_session_factory
from engine.kafka import EventPublisher

log = logging.getLogger("annostream.api")

API_TITLE = "Annostream read API"
UNMATCHED_ROUTE = "<unmatched>"


def _lifespan(
    settings: Settings, publisher: EventPublisher, sessions: _LazySessions
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Serving an old schema would answer with wrong or missing data: refuse to start.
        require_current(settings.database_url)
        log.info("read API ready (database schema is current)")
        yield
        publisher.close()
        get_engine(settings.database_url).dispose()
        sessions.dispose()

    return lifespan


class RequestMetrics:
    """Counts every request and its duration by route template (the raw path would make a label
    per id). A plain ASGI middleware: Starlette's ``@app.middleware("http")`` wraps every
    response in streams and a task group, which cost a large share of a small request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started is answered 500 by Starlette

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            method = scope["method"]
            metrics.API_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            metrics.API_REQUEST_DURATION.labels(method=method, route=route).observe(
                time.perf_counter() - started
            )


class ConcurrencyLimit:
    """At most ``limit`` requests in the app at once; the others wait their turn, first come,
    first served.

    Set to the connection pool's size, so a request never waits for a connection. Without it
    (measured with wrk, bench/api_bench.py), requests that had finished their query kept their
    connection while they waited for a thread to serialize the response, and the threads were
    all waiting for connections: stalls until the pool's 30 s timeout.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.turns = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self.turns:
            await self.app(scope, receive, send)


def _include_routers(app: FastAPI) -> None:
    app.include_router(health.router)
    app.include_router(analyses.router)
    app.include_router(alleles.router)
    app.include_router(import_jobs.router)
    app.include_router(genepanels.router)
    app.include_router(bundles.router)
    app.include_router(reanalyses.router)
    app.include_router(parked.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(pages.WEB_ROOT / "static")), name="static")


class _LazySessions:
    """A read-session factory that creates the engine (and so connects) on the first request."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._factory: sessionmaker[Session] | None = None

    def __call__(self) -> Session:
        if self._factory is None:
            self._factory = read_session_factory(self._url)
        return self._factory()

    def dispose(self) -> None:
        if self._factory is not None:
            get_engine(self._url, autocommit=True).dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The read API for the database in ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    # One Kafka producer per process for write endpoints, opened on first use.
    publisher = EventPublisher(settings, client_id="annostream-api", command="api")
    # Bound on first use, not here: the engine probes the database (standalone or ELLA's), and
    # the API must start during a database outage and answer 503 until it is back.
    sessions = _LazySessions(settings.database_url)
    app = FastAPI(
        title=API_TITLE,
        version="1",
        lifespan=_lifespan(settings, publisher, sessions),
        dependencies=[Depends(require_read_token)],
    )
    app.state.settings = settings
    app.state.publisher = publisher
    app.state.sessions = sessions
    install_error_handlers(app)
    app.add_exception_handler(pages.LoginRequired, pages.login_redirect)
    app.add_middleware(ConcurrencyLimit, limit=POOL_SIZE)
    app.add_middleware(RequestMetrics)  # added last: outermost, so it also counts the wait
    _include_routers(app)
    return app
