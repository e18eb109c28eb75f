#!/usr/bin/env bash
# Regenerate engine/db/migrations/versions/0001_initial.py from engine.db.models.
# Pre-release we keep a single initial migration: run this after changing models.py.
#
# Autogenerate compares against an empty PostgreSQL database (SQLite cannot reflect
# expression indexes, so autogenerate would silently drop them). It uses REGEN_DATABASE_URL
# (an empty PostgreSQL database) if set, else a throwaway cluster like the tests do.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -n "${REGEN_DATABASE_URL:-}" ] || bash ops/scripts/ensure-postgres.sh
"$PYTHON" - <<'PY'
import os

from alembic import command

from engine.db.migrate import MIGRATIONS_DIR, alembic_config
from engine.db.session import create_db_engine

VERSIONS = MIGRATIONS_DIR / "versions"
TARGET = VERSIONS / "0001_initial.py"


def regenerate(url: str) -> None:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            command.revision(alembic_config(connection), message="initial schema",
                             autogenerate=True, rev_id="0001", head="base")
    finally:
        engine.dispose()


TARGET.unlink(missing_ok=True)
url = os.environ.get("REGEN_DATABASE_URL")
if url:
    regenerate(url)
else:
    from tests.support.pgcluster import ThrowawayCluster

    cluster = ThrowawayCluster()
    try:
        regenerate(cluster.start())
    finally:
        cluster.stop()
next(VERSIONS.glob("0001_*.py")).rename(TARGET)
print(f"wrote {TARGET}")
PY
