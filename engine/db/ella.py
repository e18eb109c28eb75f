"""ELLA database mode: Annostream writing into a running ELLA's own PostgreSQL database.

``DB_URL`` may point at a database ELLA created (``ella-cli database make-production``). Then:

- ELLA's tables (``allele``, ``annotation``, ``analysis``, ``sample``, ``genotype``, gene panels,
  ``analysisinterpretation``, ``interpretationlog``, ...) are written exactly as ELLA's own
  deposit writes them and are never altered (no DDL touches them);
- Annostream's own tables (import jobs, bundles, re-annotation runs, and every table declared on
  ``engine.db.models.AnnostreamBase``) live in the PostgreSQL schema ``annostream``, with their
  own Alembic version table there. Connections use ``search_path=annostream,public``: an
  unqualified name finds Annostream's table in ``annostream`` and ELLA's in ``public`` (owned
  tables never take an ELLA table name; a test checks that).

The mode is detected, not configured: a PostgreSQL database whose ``public`` schema has ELLA's
``analysisinterpretation`` table is an ELLA database. Its ``alembic_version`` must be one this code
knows (:data:`KNOWN_ELLA_REVISIONS`); any other is refused, naming it, before anything is written.
Everything else (SQLite, an empty or Annostream-created PostgreSQL database) is standalone mode.
"""

from __future__ import annotations

import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.errors import UnknownEllaVersionError

ANNOSTREAM_SCHEMA = "annostream"
SEARCH_PATH = f"{ANNOSTREAM_SCHEMA},public"
# ELLA's Alembic heads this code writes for, with the release they belong to. ELLA 1.17.2's head
# is 4c2844fef850 ("Allow non-coding transcripts"), checked against the schema ELLA's
# `ella-cli database make-production` creates (tests/data/ella-schema/).
KNOWN_ELLA_REVISIONS = {"4c2844fef850": "ELLA 1.17.2"}
# Execution option carried by every connection of an engine (see engine.db.session).
MODE_OPTION = "annostream_database_mode"
# ELLA's SMALLINT columns of genotypesampledata (ELLA src/vardb/datamodel/genotype.py).
SMALLINT_MAX = 32767


class DatabaseMode(enum.StrEnum):
    STANDALONE = "standalone"
    ELLA = "ella"


def detect_mode(connection: Connection) -> DatabaseMode:
    """The mode of the database ``connection`` is on; refuses an ELLA revision it does not know."""
    if connection.dialect.name != "postgresql":
        return DatabaseMode.STANDALONE
    found = connection.execute(sa.text("SELECT to_regclass('public.analysisinterpretation')")).scalar()
    if found is None:
        return DatabaseMode.STANDALONE
    revision = _ella_revision(connection)
    if revision not in KNOWN_ELLA_REVISIONS:
        known = ", ".join(f"{rev} ({release})" for rev, release in KNOWN_ELLA_REVISIONS.items())
        raise UnknownEllaVersionError(
            f"the database is ELLA's, at Alembic revision {revision or '<none>'}, which this annostream "
            f"does not know; it writes into ELLA databases at {known}. Upgrade annostream or "
            "migrate ELLA to a known revision"
        )
    return DatabaseMode.ELLA


def _ella_revision(connection: Connection) -> str | None:
    if connection.execute(sa.text("SELECT to_regclass('public.alembic_version')")).scalar() is None:
        return None
    rows = connection.execute(sa.text("SELECT version_num FROM public.alembic_version")).scalars().all()
    return ",".join(sorted(rows)) or None


def mode_of(connection: Connection) -> DatabaseMode:
    """The mode an engine was created for (``engine.db.session.create_db_engine``)."""
    value: Any = connection.get_execution_options().get(MODE_OPTION, DatabaseMode.STANDALONE)
    return DatabaseMode(value)


def ensure_schema(connection: Connection) -> None:
    """Create the ``annostream`` schema (ELLA mode, before Annostream's migrations)."""
    connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {ANNOSTREAM_SCHEMA}"))
