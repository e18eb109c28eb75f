"""An index for planning a data release without reading every annotation

``ix_annotation_current_source`` (bundle_version, annotation_config_id of the current rows): the
plan's first step counts the current annotations per source bundle and config, which read the
whole annotation table (about 1 s for 1M alleles) and now reads this small index. (An index on
allele (chromosome, vcf_pos) for the plan's match was tried and left out: the planner kept its
hash join, and the index cost the import about as much as that join.) In ELLA database mode ELLA
owns the table (and its annotation rows have no bundle version): nothing is altered, and a
release there re-annotates every allele anyway.

Revision ID: 0004_release_plan_indexes
Revises: 0003_genotype_secondallele
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.db.migrations.modes import manages_ella_tables

revision: str = "0004_release_plan_indexes"
down_revision: str | None = "0003_genotype_secondallele"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT = sa.text("date_superceeded IS NULL")


def upgrade() -> None:
    if not manages_ella_tables():
        return
    op.create_index(
        "ix_annotation_current_source",
        "annotation",
        ["bundle_version", "annotation_config_id"],
        postgresql_where=CURRENT,
        sqlite_where=CURRENT,
    )


def downgrade() -> None:
    if not manages_ella_tables():
        return
    op.drop_index("ix_annotation_current_source", table_name="annotation")
