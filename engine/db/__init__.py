"""Storage: SQLAlchemy models, sessions, migrations and bulk writers."""
