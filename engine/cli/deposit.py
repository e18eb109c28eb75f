"""``annostream deposit``: put reference data (gene panels) into the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

deposit_app = typer.Typer(help="Deposit reference data into the database (DB_URL).", no_args_is_help=True)


FolderOption = Annotated[
    Path,
    typer.Option(
        "--folder",
        help="ELLA gene panel folder NAME_VERSION (e.g. HBOC_v1.0.0) holding "
        "NAME_VERSION_genes_transcripts.tsv and NAME_VERSION_phenotypes.tsv.",
    ),
]
ReplaceOption = Annotated[
    bool,
    typer.Option(
        "--replace",
        help="Replace a panel that is already stored (its transcripts and phenotypes).",
    ),
]
GenomeReferenceOption = Annotated[str, typer.Option("--genome-reference", help="Genome build of the panel.")]


@deposit_app.command("genepanel")
def genepanel_command(
    folder: FolderOption,
    replace: ReplaceOption = False,
    genome_reference: GenomeReferenceOption = "GRCh37",
) -> None:
    """Create a gene panel, or replace a stored one with --replace. A stored panel is left alone."""
    from engine.config import get_settings
    from engine.db import migrate
    from engine.db.session import session_scope
    from engine.deposit.genepanel import deposit_genepanel, read_genepanel_folder

    data = read_genepanel_folder(folder, genome_reference=genome_reference)
    url = get_settings().database_url
    migrate.require_current(url)
    with session_scope(url) as session:
        result = deposit_genepanel(session, data, replace=replace)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(result.summary())


def register(app: typer.Typer) -> None:
    app.add_typer(deposit_app, name="deposit")
