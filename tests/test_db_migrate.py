"""Migrations build the schema from the packaged revision scripts on PostgreSQL and SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.db import migrate
from engine.db.models import Base
from engine.errors import AnnostreamError

ROOT = Path(__file__).resolve().parents[1]


def test_upgrade_creates_every_model_table_and_index(db_url: str) -> None:
    assert migrate.current(db_url) is None
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head()
    engine = sa.create_engine(db_url)
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
        assert set(Base.metadata.tables) <= tables
        for table in Base.metadata.sorted_tables:
            columns = {c["name"] for c in inspector.get_columns(table.name)}
            assert columns == set(table.columns.keys()), table.name
        allele_uniques = {u["name"] for u in inspector.get_unique_constraints("allele")}
        assert "ucAllele" in allele_uniques
        annotation_indexes = {i["name"] for i in inspector.get_indexes("annotation")}
        assert "uq_annotation_current_allele" in annotation_indexes
        # The expression index on lower(hgnc_symbol) (which reflection skips) survives the batch
        # rebuilds SQLite's migrations do of the tables around it.
        catalogue = (
            "SELECT name FROM sqlite_master WHERE type = 'index'"
            if engine.dialect.name == "sqlite"
            else "SELECT indexname FROM pg_indexes"
        )
        with engine.connect() as conn:
            assert "ix_gene_hgnc_symbol" in set(conn.execute(sa.text(catalogue)).scalars())
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(db_url: str) -> None:
    migrate.upgrade(db_url)
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head()


def test_require_current_names_both_revisions_and_the_fix(db_url: str) -> None:
    with pytest.raises(migrate.DatabaseNotCurrentError) as raised:
        migrate.require_current(db_url)
    assert isinstance(raised.value, AnnostreamError)
    message = str(raised.value)
    assert "<empty>" in message and migrate.head() in message and "annostream db upgrade" in message
    migrate.upgrade(db_url)
    migrate.require_current(db_url)


def test_partial_unique_index_allows_one_current_annotation_per_allele(db_url: str) -> None:
    migrate.upgrade(db_url)
    engine = sa.create_engine(db_url)
    allele = Base.metadata.tables["allele"]
    annotation = Base.metadata.tables["annotation"]
    row = dict(
        chromosome="1",
        start_position=9,
        open_end_position=10,
        change_from="A",
        change_to="T",
        change_type="SNP",
        vcf_pos=10,
        vcf_ref="A",
        vcf_alt="T",
        length=1,
        genome_reference="GRCh37",
        caller_type="snv",
    )
    try:
        with engine.begin() as conn:
            allele_id = conn.execute(allele.insert().values(**row)).inserted_primary_key[0]
            doc = dict(allele_id=allele_id, annotations={}, schema_version=1, date_created=sa.func.now())
            conn.execute(annotation.insert().values(**doc, date_superceeded=sa.func.now()))
            conn.execute(annotation.insert().values(**doc))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(annotation.insert().values(**doc))
    finally:
        engine.dispose()


def test_models_and_migration_agree(pg_url: str) -> None:
    """Fails when models.py changed without running ops/scripts/regen-migration.sh."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    migrate.upgrade(pg_url)
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], "models.py differs from 0001_initial.py: run ops/scripts/regen-migration.sh"


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DB_URL": url}
    command = [sys.executable, "-c", "from engine.cli import main; main()", "db", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_cli_upgrade_and_current(sqlite_url: str) -> None:
    before = _cli(sqlite_url, "current")
    assert before.returncode == 1 and "needs upgrade" in before.stdout
    upgraded = _cli(sqlite_url, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert migrate.head() in upgraded.stdout
    after = _cli(sqlite_url, "current")
    assert after.returncode == 0 and "up to date" in after.stdout
