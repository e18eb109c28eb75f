"""What a migration may touch, by database mode (see ``engine.db.ella``).

Standalone (Annostream owns the whole database): every table. ELLA database mode: ELLA owns its
tables and migrates them with its own Alembic history; Annostream's history runs with
``search_path=annostream,public`` and its version table in the ``annostream`` schema, so a plain
``op.create_table`` of an Annostream-owned table lands in ``annostream``. A migration that
creates or alters one of ELLA's tables (the standalone copies) must do so only under
``if manages_ella_tables():``.
"""

from __future__ import annotations

from alembic import context


def manages_ella_tables() -> bool:
    """True unless the migration runs against ELLA's own database."""
    return not bool(context.config.attributes.get("ella_mode", False))
