"""A real ELLA 1.17.2 database for tests and benchmarks: ELLA's production DDL and seed data
(``tests/data/ella-schema``, made by ``ella-cli database make-production``) loaded into a new
database on a PostgreSQL server."""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "ella-schema"


def create_ella_database(server_url: str) -> str:
    """A new database made as ELLA makes its production database; returns its URL."""
    name = f"ella_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    plain = sa.create_engine(url, poolclass=sa.pool.NullPool)
    raw = plain.raw_connection()
    try:
        cursor = raw.cursor()
        for file in ("ella-v1.17.2-schema.sql", "ella-v1.17.2-seed-data.sql"):
            cursor.execute((SCHEMA / file).read_text())
        raw.commit()
    finally:
        raw.close()
        plain.dispose()
    return url


def drop_database(server_url: str, url: str) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)'))
    admin.dispose()
