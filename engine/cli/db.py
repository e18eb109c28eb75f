"""``annostream db``: create or upgrade the database schema and show its revision."""

from __future__ import annotations

import typer

db_app = typer.Typer(
    help="Database schema: upgrade to the newest revision, show the current one.", no_args_is_help=True
)


@db_app.command("upgrade")
def upgrade_command(
    revision: str = typer.Argument("head", help="Target revision (default: the newest)."),
) -> None:
    """Create the schema or bring it up to date (DB_URL, default: embedded SQLite)."""
    from engine.config import get_settings
    from engine.db import migrate

    url = get_settings().database_url
    migrate.upgrade(url, revision)
    typer.echo(f"database is at revision {migrate.current(url)}")


@db_app.command("current")
def current_command() -> None:
    """Print the database's schema revision and whether it is the newest; exit 1 if not."""
    from engine.config import get_settings
    from engine.db import migrate

    url = get_settings().database_url
    found = migrate.current(url)
    expected = migrate.head()
    state = "up to date" if found == expected else f"needs upgrade to {expected}"
    typer.echo(f"{found or '<empty>'} ({state})")
    if found != expected:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
