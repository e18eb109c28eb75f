"""Alembic revision scripts (shipped as package data so ``annostream db upgrade`` works installed)."""
