"""``annostream annotationconfig``: manage versions of the ELLA annotation config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

annotationconfig_app = typer.Typer(help="ELLA annotation config versions (DB_URL).", no_args_is_help=True)


@annotationconfig_app.command("update")
def update_command(
    file: Annotated[Path, typer.Argument(help="Annotation config YAML with 'deposit' and 'view'.")],
) -> None:
    """Store FILE as the active annotation config and print its version id.
    Storing a config that is already stored prints the existing id and changes nothing."""
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope
    from engine.deposit.annotation_config import load_annotation_config, store_annotation_config

    config = load_annotation_config(file)  # check before touching the database
    url = get_settings().database_url
    migrate.require_current(url)
    with session_scope(url) as session:
        config_id = store_annotation_config(session, config)
    typer.echo(config_id)


def register(app: typer.Typer) -> None:
    app.add_typer(annotationconfig_app, name="annotationconfig")
