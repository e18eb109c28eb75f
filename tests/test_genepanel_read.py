"""Reading ELLA gene panel folders: the shipped demo panel, and every kind of malformed input."""

from __future__ import annotations

import filecmp
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.deposit.genepanel import (
    DEMO_GENEPANELS_DIR,
    read_genepanel_folder,
    split_panel_name,
    transcript_type,
)
from engine.errors import InputError
from tests.support.genepanels import HBOC_FOLDER, copy_panel, replace_field

Edit = Callable[[list[str]], list[str]]
# Line numbers in the HBOC test files: 1 comment, 2 header, 3 = BRCA2, 4 = BRCA1.
BRCA2_LINE, BRCA1_LINE = 3, 4


def test_demo_panel_is_shipped_and_matches_the_test_copy() -> None:
    demo = DEMO_GENEPANELS_DIR / "HBOC_v1.0.0"
    for path in HBOC_FOLDER.iterdir():
        assert filecmp.cmp(path, demo / path.name, shallow=False), path.name


def test_reads_hboc_panel() -> None:
    panel = read_genepanel_folder(HBOC_FOLDER)

    assert (panel.name, panel.version, panel.genome_reference) == ("HBOC", "v1.0.0", "GRCh37")
    assert panel.genes == {1100: "BRCA1", 1101: "BRCA2"}
    by_name = {row.transcript_name: row for row in panel.transcripts}
    brca1 = by_name["NM_007294.3"]
    assert (brca1.chromosome, brca1.tx_start, brca1.tx_end, brca1.strand) == ("17", 41196311, 41277500, "-")
    assert (brca1.cds_start, brca1.cds_end, brca1.type, brca1.inheritance) == (
        41197694,
        41276113,
        "RefSeq",
        "AD",
    )
    assert len(brca1.exon_starts) == len(brca1.exon_ends) == 23
    # NM_007294.3 is a 7207 nt mRNA with a 5592 nt CDS (1863 codons + stop).
    assert sum(end - start for start, end in zip(brca1.exon_starts, brca1.exon_ends, strict=True)) == 7207
    assert _coding_length(brca1.exon_starts, brca1.exon_ends, brca1.cds_start, brca1.cds_end) == 5592
    brca2 = by_name["NM_000059.3"]
    assert (brca2.chromosome, brca2.gene_id, len(brca2.exon_starts)) == ("13", 1101, 27)
    assert _coding_length(brca2.exon_starts, brca2.exon_ends, brca2.cds_start, brca2.cds_end) == 10257

    phenotypes = {(p.gene_id, p.description): p for p in panel.phenotypes}
    assert len(phenotypes) == 8
    assert phenotypes[(1100, "{Breast-ovarian cancer, familial, 1}")].omim_id == 604370
    # ELLA stores a phenotype without inheritance as "N/A".
    assert phenotypes[(1101, "{Pancreatic cancer 2}")].inheritance == "N/A"
    assert panel.warnings == []


def _coding_length(starts: tuple[int, ...], ends: tuple[int, ...], cds_start: int, cds_end: int) -> int:
    return sum(
        max(0, min(end, cds_end) - max(start, cds_start)) for start, end in zip(starts, ends, strict=True)
    )


def test_optional_columns_tags_hgnc_prefix_and_trailing_commas(tmp_path: Path) -> None:
    def edit(lines: list[str]) -> list[str]:
        fields = lines[BRCA1_LINE - 1].split("\t")
        fields[6], fields[7] = "MANE Select, clinical", "HGNC:1100"
        fields[12] += ","  # UCSC writes exon lists with a trailing comma
        fields[13] += ","
        return [*lines[: BRCA1_LINE - 1], "\t".join(fields), *lines[BRCA1_LINE:]]

    panel = read_genepanel_folder(copy_panel(tmp_path, edit_transcripts=edit))
    brca1 = next(row for row in panel.transcripts if row.gene_id == 1100)
    assert brca1.tags == ("MANE Select", "clinical")
    assert len(brca1.exon_starts) == 23


def test_trailing_empty_fields_may_be_missing(tmp_path: Path) -> None:
    # Spreadsheet exports drop trailing empty cells ("PMID", "inheritance info", "comment").
    folder = copy_panel(tmp_path, edit_phenotypes=lambda lines: [line.rstrip("\t") for line in lines])
    assert len(read_genepanel_folder(folder).phenotypes) == 8


def test_duplicate_phenotype_lines_are_one_phenotype(tmp_path: Path) -> None:
    folder = copy_panel(tmp_path, edit_phenotypes=lambda lines: [*lines, lines[2]])
    assert len(read_genepanel_folder(folder).phenotypes) == 8


def test_phenotype_symbol_mismatch_is_a_warning(tmp_path: Path) -> None:
    folder = copy_panel(
        tmp_path, edit_phenotypes=lambda lines: [*lines[:2], replace_field(lines[2], 1, "BRCC1"), *lines[3:]]
    )
    warnings = read_genepanel_folder(folder).warnings
    assert len(warnings) == 1
    assert ":3: HGNC id 1100 is BRCC1 here but BRCA1" in warnings[0]


@pytest.mark.parametrize("transcript_name", ["NM_007294.3", "ENST00000357654", "LRG_292t1", "NR_003051.3"])
def test_transcript_type_is_what_ellas_deposit_writes(transcript_name: str) -> None:
    # ELLA 1.17.2 deposit_genepanel.TranscriptRecord.as_row: "type": "RefSeq" for every transcript.
    assert transcript_type(transcript_name) == "RefSeq"


def test_empty_coding_start_and_end_are_a_non_coding_transcript(tmp_path: Path) -> None:
    # ELLA's TranscriptRecord.validate_coding_start_end: a falsy value is None (NULL in transcript).
    def non_coding(lines: list[str]) -> list[str]:
        return _edit_line(BRCA2_LINE, 11, "")(_edit_line(BRCA2_LINE, 10, "")(lines))

    transcripts = read_genepanel_folder(copy_panel(tmp_path, edit_transcripts=non_coding)).transcripts
    brca2 = next(t for t in transcripts if t.transcript_name == "NM_000059.3")
    assert (brca2.cds_start, brca2.cds_end) == (None, None)


def test_split_panel_name_follows_ella() -> None:
    assert split_panel_name("HBOC_v1.0.0") == ("HBOC", "v1.0.0")
    assert split_panel_name("Mendeliome_v12") == ("Mendeliome", "v12")
    with pytest.raises(InputError, match="NAME_VERSION"):
        split_panel_name("HBOC-v1")
    with pytest.raises(InputError, match="starting with 'v'"):
        split_panel_name("HBOC_1.0")


def _edit_line(line_number: int, column: int, value: str) -> Edit:
    def edit(lines: list[str]) -> list[str]:
        changed = list(lines)
        changed[line_number - 1] = replace_field(changed[line_number - 1], column, value)
        return changed

    return edit


MALFORMED_TRANSCRIPTS: dict[str, tuple[Edit, int | None, str, str]] = {
    # case: (edit, line, words in the message, words in "expected")
    "start not a number": (
        _edit_line(BRCA2_LINE, 1, "32889616x"),
        BRCA2_LINE,
        "'read start'",
        "whole number",
    ),
    "negative end": (_edit_line(BRCA1_LINE, 2, "-5"), BRCA1_LINE, "'read end'", "whole number"),
    "start after end": (_edit_line(BRCA1_LINE, 1, "41277501"), BRCA1_LINE, "after read end", "start <= end"),
    "bad strand": (_edit_line(BRCA2_LINE, 5, "*"), BRCA2_LINE, "strand is '*'", "'+' or '-'"),
    "empty name": (_edit_line(BRCA2_LINE, 3, ""), BRCA2_LINE, "'name': is empty", "a value"),
    "bad HGNC id": (_edit_line(BRCA1_LINE, 7, "BRCA1"), BRCA1_LINE, "'HGNC id'", "HGNC id such as"),
    "exon count mismatch": (
        _edit_line(BRCA1_LINE, 13, "41197819"),
        BRCA1_LINE,
        "23 exon starts but 1 exon ends",
        "as many exon ends",
    ),
    "bad exon list": (
        _edit_line(BRCA2_LINE, 12, "32889616,,32893213"),
        BRCA2_LINE,
        "'exon starts'",
        "comma-separated",
    ),
    "coding start after end": (
        _edit_line(BRCA2_LINE, 10, "32972908"),
        BRCA2_LINE,
        "coding start",
        "start <= end",
    ),
    "duplicate transcript": (
        lambda lines: [*lines, lines[BRCA2_LINE - 1]],
        5,
        "NM_000059.3 is listed twice",
        "first seen on line 3",
    ),
    "one id, two symbols": (
        _edit_line(BRCA1_LINE, 7, "1101"),
        BRCA1_LINE,
        "HGNC id 1101 has symbol BRCA1",
        "same HGNC symbol",
    ),
    "one symbol, two ids": (
        _edit_line(BRCA1_LINE, 8, "brca2"),
        BRCA1_LINE,
        "HGNC symbol brca2 has HGNC id 1100",
        "one HGNC id per HGNC symbol",
    ),
    "too many fields": (
        lambda lines: [*lines[: BRCA1_LINE - 1], lines[BRCA1_LINE - 1] + "\textra\tmore"],
        BRCA1_LINE,
        "17 tab-separated fields but the header has 15",
        "at most 15",
    ),
    "missing column": (
        lambda lines: [lines[0], lines[1].replace("\texon ends", "\texon_ends"), *lines[2:]],
        2,
        "lacks column(s) 'exon ends'",
        "'exon starts', 'exon ends'",
    ),
    "data before header": (
        lambda lines: [lines[2], *lines],
        1,
        "data line before the header",
        "'#chromosome'",
    ),
    "no header": (lambda lines: [lines[0], *lines[2:]], 2, "data line before the header", "'#chromosome'"),
    "no transcripts": (lambda lines: lines[:2], None, "has no transcripts", "one line per transcript"),
}


@pytest.mark.parametrize("case", list(MALFORMED_TRANSCRIPTS))
def test_malformed_transcripts_file(tmp_path: Path, case: str) -> None:
    edit, line, message, expected = MALFORMED_TRANSCRIPTS[case]
    folder = copy_panel(tmp_path, edit_transcripts=edit)

    with pytest.raises(InputError) as caught:
        read_genepanel_folder(folder)

    error = caught.value
    assert error.file == str(folder / "HBOC_v1.0.0_genes_transcripts.tsv")
    assert error.line == line
    assert message in error.message
    assert error.expected and expected in error.expected
    location = f"{error.file}:{line}: " if line else f"{error.file}: "
    assert str(error).startswith(location)


MALFORMED_PHENOTYPES: dict[str, tuple[Edit, int | None, str, str]] = {
    "bad MIM number": (
        _edit_line(5, 3, "MIM614320"),
        5,
        "'phenotype MIM number'",
        "whole number or an empty",
    ),
    "empty phenotype": (_edit_line(4, 4, ""), 4, "'phenotype': is empty", "a value"),
    "bad HGNC id": (_edit_line(6, 0, "x1101"), 6, "'HGNC id'", "HGNC id such as"),
    "gene without transcripts": (
        _edit_line(7, 0, "1102"),
        7,
        "HGNC id 1102 (BRCA2), a gene without transcripts",
        "genes in the transcripts file",
    ),
    "no header": (lambda lines: [lines[0], *lines[2:]], 2, "data line before the header", "'HGNC id'"),
    "missing column": (
        lambda lines: [lines[0], lines[1].replace("\tphenotype\t", "\tdisease\t"), *lines[2:]],
        2,
        "lacks column(s) 'phenotype'",
        "'phenotype MIM number'",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED_PHENOTYPES))
def test_malformed_phenotypes_file(tmp_path: Path, case: str) -> None:
    edit, line, message, expected = MALFORMED_PHENOTYPES[case]
    folder = copy_panel(tmp_path, edit_phenotypes=edit)

    with pytest.raises(InputError) as caught:
        read_genepanel_folder(folder)

    error = caught.value
    assert (error.file, error.line) == (str(folder / "HBOC_v1.0.0_phenotypes.tsv"), line)
    assert message in error.message
    assert error.expected and expected in error.expected


def test_phenotype_inheritance_and_mim_number_may_be_empty_or_none(tmp_path: Path) -> None:
    # ELLA's own export writes a missing MIM number as "None".
    folder = copy_panel(tmp_path, edit_phenotypes=_edit_line(3, 3, "None"))
    phenotype = read_genepanel_folder(folder).phenotypes[0]
    assert (phenotype.description, phenotype.omim_id) == ("{Breast-ovarian cancer, familial, 1}", None)


def test_missing_phenotypes_file_names_the_expected_files(tmp_path: Path) -> None:
    folder = copy_panel(tmp_path)
    (folder / "HBOC_v1.0.0_phenotypes.tsv").rename(folder / "HBOC_v1.0.0.phenotypes.csv")

    with pytest.raises(InputError) as caught:
        read_genepanel_folder(folder)

    assert caught.value.file == str(folder / "HBOC_v1.0.0_phenotypes.tsv")
    assert "HBOC_v1.0.0.phenotypes.csv" in caught.value.message  # what the folder does hold
    assert caught.value.expected == "HBOC_v1.0.0_genes_transcripts.tsv and HBOC_v1.0.0_phenotypes.tsv"


def test_folder_must_exist_and_be_named_name_version(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_genepanel_folder(tmp_path / "HBOC_v9")
    (tmp_path / "HBOC").mkdir()
    with pytest.raises(InputError) as caught:
        read_genepanel_folder(tmp_path / "HBOC")
    assert caught.value.file == str(tmp_path / "HBOC")
    assert "HBOC_v1.0.0" in (caught.value.expected or "")


def test_panel_without_phenotypes_is_accepted_with_a_warning(tmp_path: Path) -> None:
    folder = copy_panel(tmp_path, edit_phenotypes=lambda lines: lines[:2])
    panel = read_genepanel_folder(folder)
    assert panel.phenotypes == []
    assert any("no phenotypes" in warning for warning in panel.warnings)
