"""reliability tables: event attempts, parked events, work ledger

Revision ID: 0002_h14rel
Revises: 0001
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_h14rel"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "annostream_event_attempt",
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("event_key", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("date_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stage", "event_key", name=op.f("pk_annostream_event_attempt")),
    )
    op.create_table(
        "annostream_parked_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=True),
        sa.Column("analysis", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("date_parked", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annostream_parked_event")),
    )
    with op.batch_alter_table("annostream_parked_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annostream_parked_event_event_id"), ["event_id"], unique=False)
    op.create_table(
        "annostream_work_ledger",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("schema", sa.String(), nullable=False),
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("analysis", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("publish_count", sa.Integer(), nullable=False),
        sa.Column("date_created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_progress", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_annostream_work_ledger")),
    )
    with op.batch_alter_table("annostream_work_ledger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annostream_work_ledger_analysis"), ["analysis"], unique=False)
        batch_op.create_index(batch_op.f("ix_annostream_work_ledger_state"), ["state"], unique=False)


def downgrade() -> None:
    op.drop_table("annostream_work_ledger")
    op.drop_table("annostream_parked_event")
    op.drop_table("annostream_event_attempt")
