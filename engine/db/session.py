"""Engine and session factories; the one place that knows how to connect."""

from __future__ import annotations

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


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; on PostgreSQL it knows whether the database is ELLA's own
    (``engine.db.ella``): then its connections search ``annostream`` before ``public``."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})
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
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"options": options}
    )
    return engine.execution_options(**{MODE_OPTION: mode.value})


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One engine (connection pool) per URL per process."""
    return create_db_engine(url)


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


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
