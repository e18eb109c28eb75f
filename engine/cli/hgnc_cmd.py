"""``annostream hgnc``: the HGNC table the VEP converter resolves gene ids and symbols with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

hgnc_app = typer.Typer(
    help="The HGNC gene table (symbol, HGNC id, Ensembl and NCBI gene ids).", no_args_is_help=True
)


@hgnc_app.command("build")
def build_command(
    download: Annotated[Path, typer.Argument(help="HGNC's complete set (hgnc_complete_set.txt or .json).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Table to write (.tsv.gz).")],
    release: Annotated[str, typer.Option(help="The HGNC release, e.g. the file's date 2026-01-06.")],
) -> None:
    """Build the table from a downloaded HGNC file; use it with ANNOSTREAM_HGNC_TABLE=OUT."""
    from engine.deposit.hgnc import read_hgnc_download, write_hgnc_table

    count = write_hgnc_table(read_hgnc_download(download), out, release=release, source=str(download.name))
    typer.echo(f"{out}: {count} HGNC entries, release {release}")


@hgnc_app.command("info")
def info_command() -> None:
    """Show which HGNC table is in use: its file, release, source and licence."""
    from engine.config import get_settings
    from engine.deposit.hgnc import PACKAGED_TABLE, load_hgnc_table

    path = get_settings().hgnc_table or PACKAGED_TABLE
    table = load_hgnc_table(path)
    typer.echo(f"file: {path}")
    for key, value in table.info.items():
        typer.echo(f"{key}: {value}")
    typer.echo(f"entries: {len(table.symbol_by_id)} approved symbols, {len(table.id_by_gene)} gene ids")


def register(app: typer.Typer) -> None:
    app.add_typer(hgnc_app, name="hgnc")
