"""``annostream annotate``: vcfanno's command line (single-dash long options) on the fast engine."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import typer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annostream annotate",
        description="Annotate a VCF with the sources in a vcfanno TOML config "
        "(sources are compiled to an index on first use).",
    )
    parser.add_argument("config", type=Path, help="vcfanno TOML config")
    parser.add_argument("input", type=Path, help="query VCF (.vcf or .vcf.gz)")
    parser.add_argument(
        "-o",
        "--output",
        "-output",
        type=Path,
        default=None,
        help="output VCF (bgzip-compressed if it ends in .gz); default stdout",
    )
    parser.add_argument(
        "-base-path",
        "--base-path",
        dest="base_path",
        type=Path,
        default=None,
        help="where a source 'file' is looked for when it is not found as given (vcfanno's rule)",
    )
    parser.add_argument(
        "-p",
        "--threads",
        dest="threads",
        type=int,
        default=2,
        help="chunks of the input annotated at once, in threads (default 2, as vcfanno)",
    )
    parser.add_argument(
        "-permissive-overlap",
        "--permissive-overlap",
        dest="permissive_overlap",
        action="store_true",
        help="annotate on overlap alone, without REF/ALT match",
    )
    parser.add_argument(
        "-chr-map",
        "--chr-map",
        dest="chr_map",
        default="auto",
        help="contig names: 'auto' (default, as vcfanno: chr1 in the input finds 1 in a source and "
        "the reverse), 'none' (names must be equal), or a file of 'INPUT_NAME SOURCE_NAME' lines",
    )
    parser.add_argument("-lua", "--lua", dest="lua", default=None, help=argparse.SUPPRESS)
    parser.add_argument("-ends", "--ends", dest="ends", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    return parser


def run(argv: list[str]) -> int:
    from engine.annotate.annotator import annotate_cli_summary, annotate_vcf
    from engine.errors import InputError

    args = build_parser().parse_args(argv)
    if args.lua:
        raise InputError(
            "Lua is not supported; write custom ops as expressions in [[postannotation]]", file=args.lua
        )
    if args.ends:
        raise InputError("-ends is not supported", expected="annotation of the variant interval only")
    logging.basicConfig(level=logging.WARNING, format="annostream annotate: %(message)s")
    result = annotate_vcf(
        args.config,
        args.input,
        args.output,
        base_path=args.base_path,
        threads=args.threads,
        permissive_overlap=args.permissive_overlap,
        chr_map=args.chr_map,
    )
    if not args.quiet:
        print(f"annostream annotate: {annotate_cli_summary(result)}", file=sys.stderr)
    return 0


def register(app: typer.Typer) -> None:
    @app.command(
        "annotate",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
        help="Annotate a VCF like vcfanno: annotate [-base-path DIR] [-p N] [-permissive-overlap] "
        "[-chr-map auto|none|FILE] CONFIG.toml INPUT.vcf[.gz] [-o OUT]. Run with -h for details.",
    )
    def annotate(ctx: typer.Context) -> None:
        raise typer.Exit(run(list(ctx.args)))
