"""``annostream normalise``: split multi-allelic records, drop '*', trim and left-align indels."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("normalise")
    def normalise_command(
        input_vcf: Annotated[Path, typer.Argument(metavar="INPUT", help="VCF (.vcf or .vcf.gz).")],
        output: Annotated[
            Path | None,
            typer.Option(
                "-o", "--output", help="Output VCF (bgzip-compressed if it ends in .gz); default stdout."
            ),
        ] = None,
        fasta: Annotated[
            Path | None,
            typer.Option("--fasta", help="Reference FASTA (.fai-indexed): check REF and left-align indels."),
        ] = None,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No summary on stderr.")] = False,
    ) -> None:
        """Normalise a VCF as ella-anno does before annotation (vt decompose -s + vt normalize)."""
        from engine.normalise import normalise_vcf

        result = normalise_vcf(input_vcf, output, fasta=fasta)
        if not quiet:
            counts = ", ".join(f"{key} {value}" for key, value in result.counts().items())
            print(f"annostream normalise: {counts} in {result.seconds:.2f}s", file=sys.stderr)
