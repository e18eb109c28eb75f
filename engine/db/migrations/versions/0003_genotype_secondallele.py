"""genotype.secondallele_id: a partial index, so an allele page finds the genotypes whose second
allele it shows without scanning every genotype of the analysis

Only the few genotypes of a multiallelic site (1/2) have a second allele, so the index is small
and cheap to maintain on import. In ELLA database mode ELLA owns ``genotype``: nothing is altered.

Revision ID: 0003_genotype_secondallele
Revises: 0002_h11rel
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.db.migrations.modes import manages_ella_tables

revision: str = "0003_genotype_secondallele"
down_revision: str | None = "0002_h11rel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("secondallele_id IS NOT NULL")


def upgrade() -> None:
    if not manages_ella_tables():
        return
    op.create_index(
        "ix_genotype_secondallele_id",
        "genotype",
        ["secondallele_id"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade() -> None:
    if not manages_ella_tables():
        return
    op.drop_index("ix_genotype_secondallele_id", table_name="genotype")
