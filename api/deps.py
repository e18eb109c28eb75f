"""Request-scoped dependencies: settings, one database session per request, the process's event
publisher, pagination."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from engine.config import Settings
from engine.db.session import transaction_for
from engine.kafka import EventPublisher

MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100


# The cheap dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in its thread
# pool, one hop each, which cost more than the work here (measured with wrk in bench/api_bench.py).
async def current_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def event_publisher(request: Request) -> EventPublisher:
    # One per process (created by create_app), shared by every request.
    publisher: EventPublisher = request.app.state.publisher
    return publisher


async def db_session(request: Request) -> AsyncIterator[Session]:
    # A read session (engine.db.session.read_session_factory). Opening one does no I/O and
    # closing one in autocommit only hands its connection back to the pool, so both run on the
    # event loop (a plain generator would cost two more hops through the thread pool).
    session: Session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


def db_write_session(session: Annotated[Session, Depends(db_session, scope="function")]) -> Iterator[Session]:
    # For endpoints that write: one transaction, committed by the endpoint (or the engine
    # function it calls); closing rolls back whatever was not.
    with transaction_for(session) as writing:
        yield writing


@dataclass(frozen=True)
class Pagination:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


async def pagination(
    page: Annotated[int, Query(ge=1, description="1-based page number")] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description="items per page")] = DEFAULT_PER_PAGE,
) -> Pagination:
    return Pagination(page=page, per_page=per_page)


# scope="function": the session closes when the response is built, before it is sent.
SessionDep = Annotated[Session, Depends(db_session, scope="function")]
WriteSessionDep = Annotated[Session, Depends(db_write_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(current_settings)]
PublisherDep = Annotated[EventPublisher, Depends(event_publisher)]
PaginationDep = Annotated[Pagination, Depends(pagination)]
