"""import_job.retry_of (a retry links to the failed job it retries); analysis_allele and
analysis_allele_total (the read API's list of each analysis's alleles, built once)

Revision ID: 0002_h13ops
Revises: 0002_h14rel
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_h13ops"
down_revision: str | None = "0002_h14rel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analysis_allele",
        sa.Column("analysis_id", sa.Integer(), nullable=False),
        sa.Column("allele_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["analysis_id"], ["analysis.id"], name=op.f("fk_analysis_allele_analysis_id_analysis"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("analysis_id", "allele_id", name=op.f("pk_analysis_allele")),
    )
    op.create_table(
        "analysis_allele_total",
        sa.Column("analysis_id", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("date_deposited", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["analysis_id"], ["analysis.id"],
                                name=op.f("fk_analysis_allele_total_analysis_id_analysis"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("analysis_id", name=op.f("pk_analysis_allele_total")),
    )
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_of", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_import_job_retry_of"), ["retry_of"])
        batch_op.create_foreign_key(batch_op.f("fk_import_job_retry_of_import_job"), "import_job",
                                    ["retry_of"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    op.drop_table("analysis_allele_total")
    op.drop_table("analysis_allele")
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_import_job_retry_of_import_job"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_import_job_retry_of"), type_="unique")
        batch_op.drop_column("retry_of")
