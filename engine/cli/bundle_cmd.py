"""``annostream bundle``: add, list and activate annotation data bundles (see docs/bundles.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

bundle_app = typer.Typer(help="Annotation data bundles (ANNOSTREAM_DATA_DIR/bundles, DB_URL).",
                         no_args_is_help=True)


@bundle_app.command("add")
def add_command(
    folder: Annotated[Path, typer.Argument(
        help="Bundle folder: vcfanno_config.toml, sources.json, version and the data.")],
    copy: Annotated[bool, typer.Option(
        "--copy", help="Copy files even where hard links are possible.")] = False,
) -> None:
    """Verify a bundle's checksums and store it under ANNOSTREAM_DATA_DIR/bundles/<version>/ (not active)."""
    from engine.bundles import add_bundle
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope

    settings = get_settings()
    migrate.require_current(settings.database_url)
    with session_scope(settings.database_url) as session:
        info, created = add_bundle(session, folder, settings.data_dir, link=not copy)
    state = "added" if created else "already added"
    typer.echo(f"bundle {info.version} {state}: {info.path}")
    if created:
        typer.echo(f"activate it with: annostream bundle activate {info.version}")


@bundle_app.command("list")
def list_command() -> None:
    """List the stored bundles; the active one is marked with '*'."""
    from engine.bundles import list_bundles
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope

    url = get_settings().database_url
    migrate.require_current(url)
    with session_scope(url) as session:
        bundles = list_bundles(session)
    if not bundles:
        typer.echo("no annotation bundles (add one with 'annostream bundle add DIR')")
        return
    for bundle in bundles:
        datasets = ", ".join(f"{name} {version}" for name, version in bundle.datasets.items())
        added = bundle.date_added.strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{'*' if bundle.active else ' '} {bundle.version}\tadded {added}\t{datasets}")


@bundle_app.command("activate")
def activate_command(
    version: Annotated[str, typer.Argument(help="Version of a stored bundle.")],
) -> None:
    """Make VERSION the active bundle for new analyses (analyses in flight keep theirs).
    Rolling back is activating the previous version."""
    from engine.bundles import activate_bundle
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope

    url = get_settings().database_url
    migrate.require_current(url)
    with session_scope(url) as session:
        info = activate_bundle(session, version)
    typer.echo(f"bundle {info.version} is active")


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
