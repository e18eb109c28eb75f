"""Schema migrations: upgrade a database to the newest revision and check it is current.

Alembic is configured in code (the scripts ship inside the package), so an installed
``annostream`` needs no ``alembic.ini`` and no working-directory conventions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from engine.db.ella import ANNOSTREAM_SCHEMA, DatabaseMode, ensure_schema, mode_of
from engine.db.session import create_db_engine
from engine.errors import DatabaseNotCurrentError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every annostream process.
_PG_MIGRATION_LOCK = 0x616E6E6F  # "anno"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
        # ELLA database mode: only Annostream's own tables, versioned in the annostream schema.
        config.attributes["ella_mode"] = mode_of(connection) is DatabaseMode.ELLA
    return config


def version_table_schema(connection: Connection) -> str | None:
    """Where Annostream's ``alembic_version`` lives: ELLA's own is in ``public``."""
    return ANNOSTREAM_SCHEMA if mode_of(connection) is DatabaseMode.ELLA else None


def head() -> str:
    """The newest revision shipped with this code."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migration scripts in {MIGRATIONS_DIR}")
    return revision


def _ensure_sqlite_folder(url: str) -> None:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def _connect(url: str) -> Iterator[Connection]:
    # A private engine: migrations must not leave DDL-era connections in the shared pool.
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` up to ``revision``; safe to run from several processes at once."""
    _ensure_sqlite_folder(url)
    with _connect(url) as connection:
        if connection.dialect.name == "postgresql":
            # Serialise concurrent upgrades (e.g. several workers starting together).
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            connection.commit()
        try:
            if mode_of(connection) is DatabaseMode.ELLA:
                ensure_schema(connection)
            command.upgrade(alembic_config(connection), revision)
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.rollback()
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
                connection.commit()


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None for an empty database."""
    _ensure_sqlite_folder(url)
    with _connect(url) as connection:
        schema = version_table_schema(connection)
        context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
        return context.get_current_revision()


def require_current(url: str) -> None:
    """Raise :class:`DatabaseNotCurrentError` unless the database is at :func:`head`."""
    expected = head()
    found = current(url)
    if found != expected:
        raise DatabaseNotCurrentError(url, found, expected)
