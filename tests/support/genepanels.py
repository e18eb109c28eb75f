"""Helpers for the gene panel tests: copies of the HBOC_v1.0.0 test panel, edited per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

HBOC_FOLDER = Path(__file__).parent.parent / "data" / "genepanels" / "HBOC_v1.0.0"
TRANSCRIPTS_HEADER = (
    "#chromosome\tread start\tread end\tname\tscore\tstrand\ttags\tHGNC id\tHGNC symbol\tinheritance\t"
    "coding start\tcoding end\texon starts\texon ends\tmetadata"
)
PHENOTYPES_HEADER = (
    "HGNC id\tHGNC symbol\tinheritance\tphenotype MIM number\tphenotype\tPMID\tinheritance info\tcomment"
)


def copy_panel(
    destination: Path,
    prefix: str = "HBOC_v1.0.0",
    edit_transcripts: Callable[[list[str]], list[str]] | None = None,
    edit_phenotypes: Callable[[list[str]], list[str]] | None = None,
) -> Path:
    """Copy the HBOC test panel to ``destination/prefix``; the edit functions get and return lines."""
    folder = destination / prefix
    folder.mkdir(parents=True)
    for source_suffix, edit in (
        ("_genes_transcripts.tsv", edit_transcripts),
        ("_phenotypes.tsv", edit_phenotypes),
    ):
        source = HBOC_FOLDER / f"HBOC_v1.0.0{source_suffix}"
        target = folder / f"{prefix}{source_suffix}"
        if edit is None:
            shutil.copyfile(source, target)
            continue
        lines = source.read_text().splitlines()
        target.write_text("\n".join(edit(lines)) + "\n")
    return folder


def replace_field(line: str, column: int, value: str) -> str:
    fields = line.split("\t")
    fields[column] = value
    return "\t".join(fields)


def synthetic_panel(
    destination: Path,
    prefix: str,
    genes: int,
    transcripts_per_gene: int = 1,
    phenotypes_per_gene: int = 2,
    first_hgnc_id: int = 100000,
) -> Path:
    """A large, valid panel with made-up genes (for bulk behaviour, not biology)."""
    folder = destination / prefix
    folder.mkdir(parents=True)
    transcript_lines = [TRANSCRIPTS_HEADER]
    phenotype_lines = [PHENOTYPES_HEADER]
    for number in range(genes):
        hgnc_id = first_hgnc_id + number
        start = 1000 + number * 10000
        for variant in range(transcripts_per_gene):
            exon_starts = f"{start},{start + 2000},{start + 4000}"
            exon_ends = f"{start + 500},{start + 2500},{start + 5000}"
            transcript_lines.append(
                "\t".join(
                    [
                        str(1 + number % 22),
                        str(start),
                        str(start + 5000),
                        f"NM_{hgnc_id:06d}{variant}.1",
                        "0",
                        "+-"[number % 2],
                        "",
                        str(hgnc_id),
                        f"SYN{hgnc_id}",
                        "AD",
                        str(start + 100),
                        str(start + 4900),
                        exon_starts,
                        exon_ends,
                        "{}",
                    ]
                )
            )
        for phenotype in range(phenotypes_per_gene):
            phenotype_lines.append(
                "\t".join(
                    [
                        str(hgnc_id),
                        f"SYN{hgnc_id}",
                        "AR" if phenotype else "AD",
                        str(600000 + number),
                        f"Synthetic disorder {hgnc_id}-{phenotype}",
                        "",
                        "",
                        "",
                    ]
                )
            )
    (folder / f"{prefix}_genes_transcripts.tsv").write_text("\n".join(transcript_lines) + "\n")
    (folder / f"{prefix}_phenotypes.tsv").write_text("\n".join(phenotype_lines) + "\n")
    return folder
