"""Engine and session factories; the one place that knows how to connect."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from engine.db.ella import MODE_OPTION, SEARCH_PATH, DatabaseMode, detect_mode


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the worker writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# A pooled connection that was used less than this long ago is taken to be alive: pinging it on
# every checkout cost the read API a round trip per request (bench/api_bench.py). A database
# restart inside the window fails one request, and that error empties the pool (SQLAlchemy
# invalidates every connection older than the disconnect it saw).
PING_AFTER_IDLE_SECONDS = 2.0
# Connections per engine: POOL_SIZE kept open, up to POOL_OVERFLOW more under load.
POOL_SIZE = 10
POOL_OVERFLOW = 5
_CHECKED_IN = "annostream_checked_in"
_TRANSACTIONAL_BIND = "annostream_transactional_bind"


def _ping_connections_that_sat_idle(engine: Engine) -> None:
    dialect = engine.dialect

    def note_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None or time.monotonic() - checked_in < PING_AFTER_IDLE_SECONDS:
            return  # new, or used a moment ago
        try:
            dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()  # the ping may have begun a transaction
        except dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out another one.
            raise sa.exc.DisconnectionError(f"pooled connection is gone: {error}") from error

    sa.event.listen(engine.pool, "checkin", note_checkin)
    sa.event.listen(engine.pool, "checkout", ping_if_idle)


def create_db_engine(url: str, *, autocommit: bool = False) -> Engine:
    """An engine for ``url``; on PostgreSQL it knows whether the database is ELLA's own
    (``engine.db.ella``): then its connections search ``annostream`` before ``public``.
    ``autocommit``: its connections stay in autocommit (a pool of its own, so no connection
    switches mode on every checkout)."""
    isolation = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **isolation)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    probe = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with probe.connect() as connection:
            mode = detect_mode(connection)
    finally:
        probe.dispose()
    # Bulk imports stage 100k-row chunks in temporary tables; PostgreSQL's default 8 MB of
    # temp_buffers would spill them to disk. Memory is only used by sessions that need it.
    options = "-c temp_buffers=128MB"
    if mode is DatabaseMode.ELLA:
        options += f" -c search_path={SEARCH_PATH}"
    engine = sa.create_engine(
        url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, connect_args={"options": options}, **isolation
    )
    _ping_connections_that_sat_idle(engine)
    return engine.execution_options(**{MODE_OPTION: mode.value})


@lru_cache(maxsize=8)
def get_engine(url: str, *, autocommit: bool = False) -> Engine:
    """One engine (connection pool) per URL and mode per process."""
    return create_db_engine(url, autocommit=autocommit)


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


def read_session_factory(url: str) -> sessionmaker[Session]:
    """Sessions for reads: every statement runs in autocommit, so a request costs no BEGIN and
    no ROLLBACK round trip and holds nothing open. Each statement sees its own snapshot, as it
    does under READ COMMITTED anyway. Write through ``transaction_for``."""
    return sessionmaker(
        bind=get_engine(url, autocommit=True),
        expire_on_commit=False,
        info={_TRANSACTIONAL_BIND: get_engine(url)},
    )


def transaction_for(session: Session) -> Session:
    """A new session on the database of ``session`` whose statements form one transaction
    (``session`` may be a read session in autocommit); the caller commits and closes it."""
    bind = session.info.get(_TRANSACTIONAL_BIND) or session.get_bind()
    return Session(bind=bind, expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any exception."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
