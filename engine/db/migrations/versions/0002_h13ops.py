"""import_job.retry_of: a retried import job links to the failed job it retries

Revision ID: 0002_h13ops
Revises: 0001
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_h13ops"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_of", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_import_job_retry_of"), ["retry_of"])
        batch_op.create_foreign_key(batch_op.f("fk_import_job_retry_of_import_job"), "import_job",
                                    ["retry_of"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_import_job_retry_of_import_job"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_import_job_retry_of"), type_="unique")
        batch_op.drop_column("retry_of")
