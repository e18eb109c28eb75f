"""incremental releases: run mode and plan, re-annotation targets, change report, removed bundles

Revision ID: 0002_h11rel
Revises: 0002_h9rules
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_h11rel"
down_revision: str | None = "0002_h9rules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("annotation_bundle", schema=None) as batch_op:
        batch_op.add_column(sa.Column("date_removed", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("reannotation_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mode", sa.String(), server_default="all", nullable=False))
        batch_op.add_column(sa.Column("plan", JSON, nullable=True))
    op.create_table(
        "reannotation_target",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("allele_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["reannotation_run.id"],
                                name=op.f("fk_reannotation_target_run_id_reannotation_run"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "allele_id", name=op.f("pk_reannotation_target")),
    )
    op.create_table(
        "reannotation_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("allele_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("old_value", JSON, nullable=True),
        sa.Column("new_value", JSON, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["reannotation_run.id"],
                                name=op.f("fk_reannotation_change_run_id_reannotation_run"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reannotation_change")),
    )
    with op.batch_alter_table("reannotation_change", schema=None) as batch_op:
        batch_op.create_index("ix_reannotation_change_run_allele", ["run_id", "allele_id"], unique=False)
        batch_op.create_index("ix_reannotation_change_run_batch", ["run_id", "batch_index"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reannotation_change", schema=None) as batch_op:
        batch_op.drop_index("ix_reannotation_change_run_batch")
        batch_op.drop_index("ix_reannotation_change_run_allele")
    op.drop_table("reannotation_change")
    op.drop_table("reannotation_target")
    with op.batch_alter_table("reannotation_run", schema=None) as batch_op:
        batch_op.drop_column("plan")
        batch_op.drop_column("mode")
    with op.batch_alter_table("annotation_bundle", schema=None) as batch_op:
        batch_op.drop_column("date_removed")
