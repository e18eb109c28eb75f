"""annotation: no database foreign keys (allele_id, annotation_config_id, previous_annotation_id)

PostgreSQL checks a foreign key with one lookup per inserted row: an import's 50,000 annotation
rows spent about half of their insert time (0.37 of 0.69 s) in those checks, inside the allele
merge's transaction that concurrent imports may wait for. The ids are written only by the
annotation versioner, from alleles the same transaction created or looked up, the config it
read, and the row it superseded, so they cannot dangle; Annostream never deletes alleles,
configs or annotation rows. ``genotype`` and ``genotypesampledata`` made the same choice
(docs/data-model.md, "Differences from ELLA"). In ELLA database mode ELLA owns ``annotation``:
nothing is altered.

Revision ID: 0005_annotation_without_fks
Revises: 0004_release_plan_indexes
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from engine.db.migrations.modes import manages_ella_tables

revision: str = "0005_annotation_without_fks"
down_revision: str | None = "0004_release_plan_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = (
    ("fk_annotation_allele_id_allele", "allele", ["allele_id"]),
    ("fk_annotation_annotation_config_id_annotationconfig", "annotationconfig", ["annotation_config_id"]),
    ("fk_annotation_previous_annotation_id_annotation", "annotation", ["previous_annotation_id"]),
)


def upgrade() -> None:
    if not manages_ella_tables():
        return
    # Batch mode: SQLite cannot drop a constraint in place (the table is rebuilt); on PostgreSQL
    # these are plain ALTER TABLE statements.
    with op.batch_alter_table("annotation") as batch:
        for name, _referred, _columns in FOREIGN_KEYS:
            batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    if not manages_ella_tables():
        return
    with op.batch_alter_table("annotation") as batch:
        for name, referred, columns in FOREIGN_KEYS:
            batch.create_foreign_key(name, referred, columns, ["id"])
