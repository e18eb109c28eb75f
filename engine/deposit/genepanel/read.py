"""Gene panels in ELLA's folder format: reading a panel folder into plain data.

A panel folder is named ``NAME_VERSION`` (``HBOC_v1.0.0``; the version starts with ``v``) and
holds two tab-separated files:

* ``NAME_VERSION_genes_transcripts.tsv``: header ``#chromosome  read start  read end  name  score
  strand  tags  HGNC id  HGNC symbol  inheritance  coding start  coding end  exon starts  exon ends
  metadata`` (``score``, ``tags`` and ``metadata`` are optional; columns are found by name).
  Coordinates are 0-based half-open (UCSC/BED), exon lists are comma separated.
* ``NAME_VERSION_phenotypes.tsv``: header ``HGNC id  HGNC symbol  inheritance  phenotype MIM number
  phenotype  PMID  inheritance info  comment`` (only the first five are read).

Other lines starting with ``#`` are comments. Genes, transcripts and phenotypes are shared
between panels; a panel is a set of links to them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from engine.errors import InputError

TRANSCRIPTS_SUFFIX = "_genes_transcripts.tsv"
PHENOTYPES_SUFFIX = "_phenotypes.tsv"
DEFAULT_GENOME_REFERENCE = "GRCh37"
# The panels shipped with annostream (``annostream up --demo`` deposits them).
DEMO_GENEPANELS_DIR = Path(__file__).resolve().parents[2] / "demo" / "genepanels"

TRANSCRIPT_COLUMNS = (
    "chromosome",
    "read start",
    "read end",
    "name",
    "strand",
    "HGNC id",
    "HGNC symbol",
    "inheritance",
    "coding start",
    "coding end",
    "exon starts",
    "exon ends",
)
PHENOTYPE_COLUMNS = ("HGNC id", "HGNC symbol", "inheritance", "phenotype MIM number", "phenotype")
# ELLA's convention for a phenotype without a stated inheritance.
UNKNOWN_INHERITANCE = "N/A"


# --- Parsed data -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TranscriptRow:
    """One line of the transcripts file, with ELLA's ``transcript`` column names."""

    transcript_name: str
    gene_id: int  # HGNC id
    hgnc_symbol: str
    inheritance: str  # per panel: stored on ``genepanel_transcript``
    type: str  # always "RefSeq": what ELLA's deposit writes (TranscriptRecord.as_row)
    chromosome: str
    tx_start: int
    tx_end: int
    strand: str
    cds_start: int | None  # None: a non-coding transcript (empty coding start/end)
    cds_end: int | None
    exon_starts: tuple[int, ...]
    exon_ends: tuple[int, ...]
    tags: tuple[str, ...] | None = None
    line: int = 0

    def transcript_values(self, genome_reference: str) -> dict[str, Any]:
        return {
            "gene_id": self.gene_id,
            "transcript_name": self.transcript_name,
            "type": self.type,
            "tags": list(self.tags) if self.tags else None,
            "genome_reference": genome_reference,
            "chromosome": self.chromosome,
            "tx_start": self.tx_start,
            "tx_end": self.tx_end,
            "strand": self.strand,
            "cds_start": self.cds_start,
            "cds_end": self.cds_end,
            "exon_starts": list(self.exon_starts),
            "exon_ends": list(self.exon_ends),
        }


@dataclass(frozen=True, slots=True)
class PhenotypeRow:
    gene_id: int  # HGNC id
    hgnc_symbol: str
    description: str
    inheritance: str
    omim_id: int | None = None
    line: int = 0

    def identity(self) -> tuple[int, str, str]:
        """The columns of ``phenotype``'s unique constraint."""
        return (self.gene_id, self.description, self.inheritance)


@dataclass(slots=True)
class GenepanelData:
    """A panel folder, parsed and checked; nothing here has touched the database."""

    name: str
    version: str
    genome_reference: str
    transcripts: list[TranscriptRow]
    phenotypes: list[PhenotypeRow]
    folder: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def genes(self) -> dict[int, str]:
        """HGNC id -> HGNC symbol for every gene with a transcript in the panel."""
        return {row.gene_id: row.hgnc_symbol for row in self.transcripts}


# --- Reading a panel folder --------------------------------------------------------------------


def split_panel_name(prefix: str) -> tuple[str, str]:
    """``HBOC_v1.0.0`` -> ``("HBOC", "v1.0.0")``: ELLA splits at the first underscore."""
    name, sep, version = prefix.partition("_")
    if not (name and sep and version.startswith("v") and len(version) > 1):
        raise InputError(
            f"cannot tell gene panel name and version from {prefix!r}",
            expected="NAME_VERSION with a version starting with 'v', e.g. HBOC_v1.0.0",
        )
    return name, version


def read_genepanel_folder(folder: Path, *, genome_reference: str = DEFAULT_GENOME_REFERENCE) -> GenepanelData:
    """Parse and check an ELLA gene panel folder; every problem is an ``InputError`` with file/line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            "gene panel folder does not exist",
            file=str(folder),
            expected="a folder NAME_VERSION with the panel's TSV files",
        )
    try:
        name, version = split_panel_name(folder.name)
    except InputError as error:
        raise InputError(error.message, file=str(folder), expected=error.expected) from None
    transcripts_path = _panel_file(folder, TRANSCRIPTS_SUFFIX)
    phenotypes_path = _panel_file(folder, PHENOTYPES_SUFFIX)

    transcripts = read_transcripts(transcripts_path)
    phenotypes = read_phenotypes(phenotypes_path)
    warnings = _check_phenotypes_against_transcripts(phenotypes, transcripts, phenotypes_path)
    if not phenotypes:
        warnings.append(f"{phenotypes_path}: the panel has no phenotypes")
    return GenepanelData(
        name=name,
        version=version,
        genome_reference=genome_reference,
        transcripts=transcripts,
        phenotypes=phenotypes,
        folder=folder,
        warnings=warnings,
    )


def _panel_file(folder: Path, suffix: str) -> Path:
    path = folder / f"{folder.name}{suffix}"
    if not path.is_file():
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise InputError(
            f"gene panel file is missing (the folder holds: {present})",
            file=str(path),
            expected=f"{folder.name}{TRANSCRIPTS_SUFFIX} and {folder.name}{PHENOTYPES_SUFFIX}",
        )
    return path


def read_transcripts(path: Path) -> list[TranscriptRow]:
    rows: list[TranscriptRow] = []
    first_line_of: dict[str, int] = {}
    symbol_of: dict[int, tuple[str, int]] = {}
    id_of_symbol: dict[str, tuple[int, int]] = {}
    for line, values in _tsv_records(path, "chromosome", TRANSCRIPT_COLUMNS):
        fields = _FieldReader(path, line, values)
        row = _transcript_row(fields, line)
        if row.transcript_name in first_line_of:
            raise InputError(
                f"transcript {row.transcript_name} is listed twice",
                file=str(path),
                line=line,
                expected=f"one line per transcript (first seen on line {first_line_of[row.transcript_name]})",
            )
        first_line_of[row.transcript_name] = line
        _check_gene_identity(row.gene_id, row.hgnc_symbol, symbol_of, id_of_symbol, path, line)
        rows.append(row)
    if not rows:
        raise InputError(
            "the transcripts file has no transcripts",
            file=str(path),
            expected="a '#chromosome' header followed by one line per transcript",
        )
    return rows


def _transcript_row(fields: _FieldReader, line: int) -> TranscriptRow:
    tx_start, tx_end = fields.integer("read start"), fields.integer("read end")
    if tx_start > tx_end:
        fields.fail("read start", f"read start {tx_start} is after read end {tx_end}", "start <= end")
    # ELLA's TranscriptRecord.validate_coding_start_end: an empty value is None (non-coding).
    cds_start, cds_end = fields.optional_integer("coding start"), fields.optional_integer("coding end")
    if cds_start is not None and cds_end is not None and cds_start > cds_end:
        fields.fail("coding start", f"coding start {cds_start} is after coding end {cds_end}", "start <= end")
    exon_starts, exon_ends = fields.integer_list("exon starts"), fields.integer_list("exon ends")
    if len(exon_starts) != len(exon_ends):
        fields.fail(
            "exon ends",
            f"{len(exon_starts)} exon starts but {len(exon_ends)} exon ends",
            "as many exon ends as exon starts",
        )
    for number, (start, end) in enumerate(zip(exon_starts, exon_ends, strict=True), start=1):
        if start > end:
            fields.fail(
                "exon starts", f"exon {number} starts at {start}, after its end {end}", "start <= end"
            )
    strand = fields.text("strand")
    if strand not in ("+", "-"):
        fields.fail("strand", f"strand is {strand!r}", "'+' or '-'")
    name = fields.text("name")
    tags = tuple(tag.strip() for tag in fields.optional("tags").split(",") if tag.strip())
    return TranscriptRow(
        transcript_name=name,
        gene_id=fields.hgnc_id("HGNC id"),
        hgnc_symbol=fields.text("HGNC symbol"),
        inheritance=fields.optional("inheritance"),
        type=transcript_type(name),
        chromosome=fields.text("chromosome"),
        tx_start=tx_start,
        tx_end=tx_end,
        strand=strand,
        cds_start=cds_start,
        cds_end=cds_end,
        exon_starts=exon_starts,
        exon_ends=exon_ends,
        tags=tags or None,
        line=line,
    )


def transcript_type(transcript_name: str) -> str:
    """ELLA 1.17.2's deposit (``TranscriptRecord.as_row``) writes ``type = "RefSeq"`` for every
    transcript, Ensembl and LRG accessions included; ELLA's code reading ``transcript.type`` sees
    that value, so Annostream stores the same."""
    return "RefSeq"


def _check_gene_identity(
    hgnc_id: int,
    symbol: str,
    symbol_of: dict[int, tuple[str, int]],
    id_of_symbol: dict[str, tuple[int, int]],
    path: Path,
    line: int,
) -> None:
    """One symbol per HGNC id and one HGNC id per symbol (ELLA's gene table enforces both)."""
    known_symbol, known_line = symbol_of.setdefault(hgnc_id, (symbol, line))
    if known_symbol != symbol:
        raise InputError(
            f"HGNC id {hgnc_id} has symbol {symbol}, but {known_symbol} on line {known_line}",
            file=str(path),
            line=line,
            expected="the same HGNC symbol for every line of a gene",
        )
    known_id, known_line = id_of_symbol.setdefault(symbol.lower(), (hgnc_id, line))
    if known_id != hgnc_id:
        raise InputError(
            f"HGNC symbol {symbol} has HGNC id {hgnc_id}, but {known_id} on line {known_line}",
            file=str(path),
            line=line,
            expected="one HGNC id per HGNC symbol",
        )


def read_phenotypes(path: Path) -> list[PhenotypeRow]:
    rows: list[PhenotypeRow] = []
    seen: set[tuple[int, str, str]] = set()
    for line, values in _tsv_records(path, "HGNC id", PHENOTYPE_COLUMNS):
        fields = _FieldReader(path, line, values)
        row = PhenotypeRow(
            gene_id=fields.hgnc_id("HGNC id"),
            hgnc_symbol=fields.optional("HGNC symbol"),
            description=fields.text("phenotype"),
            inheritance=fields.optional("inheritance") or UNKNOWN_INHERITANCE,
            omim_id=fields.optional_integer("phenotype MIM number"),
            line=line,
        )
        # A phenotype listed twice is the same database row; the first line wins.
        if row.identity() not in seen:
            seen.add(row.identity())
            rows.append(row)
    return rows


def _check_phenotypes_against_transcripts(
    phenotypes: Sequence[PhenotypeRow],
    transcripts: Sequence[TranscriptRow],
    path: Path,
) -> list[str]:
    symbols = {row.gene_id: row.hgnc_symbol for row in transcripts}
    warnings: list[str] = []
    for row in phenotypes:
        if row.gene_id not in symbols:
            raise InputError(
                f"phenotype for HGNC id {row.gene_id} ({row.hgnc_symbol}), a gene without transcripts",
                file=str(path),
                line=row.line,
                expected="phenotypes only for genes in the transcripts file",
            )
        if row.hgnc_symbol and row.hgnc_symbol != symbols[row.gene_id]:
            warnings.append(
                f"{path}:{row.line}: HGNC id {row.gene_id} is {row.hgnc_symbol} here but "
                f"{symbols[row.gene_id]} in the transcripts file; using {symbols[row.gene_id]}"
            )
    return warnings


def _tsv_records(
    path: Path, first_column: str, required: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, column -> value) for each data line; the header is the line starting with
    ``first_column`` (optionally after '#'), other '#' lines are comments."""
    header: list[str] | None = None
    with path.open(encoding="utf-8", newline="") as handle:
        for line_number, raw in enumerate(handle, start=1):
            text = raw.rstrip("\r\n")
            if not text.strip():
                continue
            if header is None and text.lstrip("#").startswith(first_column):
                header = [column.strip() for column in text.lstrip("#").split("\t")]
                _check_header(header, required, path, line_number)
                continue
            if text.startswith("#"):
                continue
            if header is None:
                raise InputError(
                    "data line before the header",
                    file=str(path),
                    line=line_number,
                    expected=f"a header line starting with '{_header_start(path, first_column)}'",
                )
            yield line_number, _record(header, text, path, line_number)
    if header is None:
        raise InputError(
            "no header line found",
            file=str(path),
            expected=f"a header line starting with '{_header_start(path, first_column)}'",
        )


def _header_start(path: Path, first_column: str) -> str:
    return f"#{first_column}" if path.name.endswith(TRANSCRIPTS_SUFFIX) else first_column


def _check_header(header: list[str], required: Sequence[str], path: Path, line: int) -> None:
    missing = [column for column in required if column not in header]
    if missing:
        raise InputError(
            f"header lacks column(s) {', '.join(repr(c) for c in missing)}",
            file=str(path),
            line=line,
            expected="tab-separated columns " + ", ".join(repr(c) for c in required),
        )


def _record(header: list[str], text: str, path: Path, line: int) -> dict[str, str]:
    values = [value.strip() for value in text.split("\t")]
    if len(values) > len(header):
        raise InputError(
            f"{len(values)} tab-separated fields but the header has {len(header)} columns",
            file=str(path),
            line=line,
            expected=f"at most {len(header)} fields",
        )
    # Editors drop trailing empty fields; they are empty values, not an error.
    values += [""] * (len(header) - len(values))
    return dict(zip(header, values, strict=True))


class _FieldReader:
    """Typed access to one line's fields; every failure names file, line and column."""

    def __init__(self, path: Path, line: int, values: dict[str, str]) -> None:
        self.path, self.line, self.values = path, line, values

    def fail(self, column: str, message: str, expected: str) -> NoReturn:
        raise InputError(
            f"column '{column}': {message}", file=str(self.path), line=self.line, expected=expected
        )

    def optional(self, column: str) -> str:
        return self.values.get(column, "")

    def text(self, column: str) -> str:
        value = self.optional(column)
        if not value:
            self.fail(column, "is empty", "a value")
        return value

    def integer(self, column: str) -> int:
        return self._parse(column, self.text(column), _non_negative_int, "a whole number >= 0")

    def optional_integer(self, column: str) -> int | None:
        value = self.optional(column)
        # ELLA's own panel export writes a missing MIM number as "None".
        if value in ("", "None", "NA", "N/A", "."):
            return None
        return self._parse(column, value, _non_negative_int, "a whole number or an empty field")

    def hgnc_id(self, column: str) -> int:
        return self._parse(column, self.text(column), _hgnc_number, "an HGNC id such as 1100 or HGNC:1100")

    def integer_list(self, column: str) -> tuple[int, ...]:
        value = self.text(column)
        # UCSC's exon lists end with a comma.
        parts = [part.strip() for part in value.rstrip(",").split(",")]
        return tuple(
            self._parse(column, part, _non_negative_int, "comma-separated whole numbers >= 0")
            for part in parts
        )

    def _parse(self, column: str, value: str, parse: Callable[[str], int], expected: str) -> int:
        try:
            return parse(value)
        except ValueError:
            self.fail(column, f"{value!r} is not valid", expected)


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _hgnc_number(value: str) -> int:
    match = re.fullmatch(r"(?:HGNC:)?(\d+)", value, flags=re.IGNORECASE)
    if not match:
        raise ValueError(value)
    return int(match.group(1))
