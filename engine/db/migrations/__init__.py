"""Alembic migrations; configured programmatically by :mod:`engine.db.migrate` (no alembic.ini)."""
