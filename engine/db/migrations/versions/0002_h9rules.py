"""ELLA input rules: non-coding transcripts, one sample row per VCF

- ``transcript.cds_start``/``cds_end`` nullable: ELLA stores NULL for a non-coding transcript
  (empty coding start/end in the panel file).
- ``sample``: no unique (analysis_id, identifier): ELLA creates the samples of each VCF of an
  analysis as their own rows (an HTS trio plus a Sanger proband is two rows for the proband).

In ELLA database mode ELLA owns these tables (its schema already has both), so nothing is altered.

Revision ID: 0002_h9rules
Revises: 0002_h13ops
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.db.migrations.modes import manages_ella_tables

revision: str = "0002_h9rules"
down_revision: str | None = "0002_h13ops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if not manages_ella_tables():
        return
    # SQLite's batch mode rebuilds `transcript` and reflects `gene` only as the target of its
    # foreign key; SQLAlchemy warns that it cannot reflect gene's expression index. `gene` is not
    # rebuilt, so its index stays (tests/test_db_migrate.py checks the schema after upgrade).
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "Skipped unsupported reflection of expression-based index", sa.exc.SAWarning
        )
        with op.batch_alter_table("transcript", schema=None) as batch_op:
            batch_op.alter_column("cds_start", existing_type=sa.Integer(), nullable=True)
            batch_op.alter_column("cds_end", existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("sample", schema=None) as batch_op:
        batch_op.drop_constraint("uq_sample_analysis_id_identifier", type_="unique")


def downgrade() -> None:
    if not manages_ella_tables():
        return
    with op.batch_alter_table("sample", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_sample_analysis_id_identifier", ["analysis_id", "identifier"])
    with op.batch_alter_table("transcript", schema=None) as batch_op:
        batch_op.alter_column("cds_end", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("cds_start", existing_type=sa.Integer(), nullable=False)
