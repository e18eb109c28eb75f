"""The one VCF header object: read by the importer, the normaliser and the annotator, written by
the normaliser and the annotator (as cyvcf2's single ``VCF`` header serves its reader and ``Writer``).

``VcfHeader.parse`` takes the header lines (``#`` lines up to and including ``#CHROM``) and keeps
every meta line as written, with its line number: structured lines (``##INFO=<...>``, ``##FORMAT``,
``##contig``, ...) are split into their fields, INFO/FORMAT definitions are indexed by ID (Number,
Type, Description), contigs and samples are listed. Parsing is lenient (a file passes through the
normaliser and the annotator as bcftools and vcfanno pass it); ``check`` applies the importer's
strict rules, naming the line of the first problem, and ``read_header`` adds htslib's opinion.

Writers change the header through ``add_line``/``define_info``/``remove_infos``/``replace_line``
and write ``lines()``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

from engine.errors import InputError, LimitExceeded
from engine.limits import LIMITS
from engine.vcf.textio import READ_ERRORS, numbered_lines, open_text, read_header_and_body, stream_error

#: allele.vcf_pos and start_position are 32-bit INTEGER columns (as in ELLA).
MAX_POS = 2**31 - 1
MANDATORY_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
_STRUCTURED = re.compile(r"##([A-Za-z0-9_.-]+)=<(.*)>\s*$")
# key=value items of a structured line; a value is quoted (with \" escapes) or runs to the comma.
_ITEM = re.compile(r'\s*([^=,]+)=("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)')
_NUMBER_VALUES = re.compile(r"\d+|[ARG.]")
_TYPES = {
    "INFO": {"Integer", "Float", "Flag", "Character", "String"},
    "FORMAT": {"Integer", "Float", "Character", "String"},
}


def structured_fields(body: str) -> dict[str, str]:
    """``ID=DP,Number=1,Description="a, b"`` -> ``{'ID': 'DP', 'Number': '1', 'Description': 'a, b'}``
    (a quoted value is unquoted; its backslash escapes are kept as written)."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(body):
        match = _ITEM.match(body, position)
        if match is None or match.end() == position:
            break
        key, value = match.group(1).strip(), match.group(2)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        fields.setdefault(key, value)
        position = match.end()
    return fields


@dataclass(slots=True)
class MetaLine:
    """One ``#`` line before ``#CHROM``: its text, its line in the file (0 if added), and for a
    structured line its kind (``INFO``, ``FORMAT``, ``contig``, ...) and fields."""

    text: str
    number: int = 0
    kind: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, text: str, number: int = 0) -> MetaLine:
        match = _STRUCTURED.match(text)
        if match is None:
            return cls(text, number)
        return cls(text, number, match.group(1), structured_fields(match.group(2)))

    @property
    def id(self) -> str | None:
        return self.fields.get("ID")


def definition_line(kind: str, ident: str, number: str, vtype: str, description: str) -> str:
    """``##INFO=<ID=..,Number=..,Type=..,Description="..">`` with the description escaped."""
    escaped = description.replace("\\", "\\\\").replace('"', '\\"')
    return f'##{kind}=<ID={ident},Number={number},Type={vtype},Description="{escaped}">'


@dataclass
class VcfHeader:
    """Everything above the first record. ``infos``/``formats`` map ID -> {"Number", "Type",
    "Description"} (the shape the annotation converters take)."""

    path: Path
    meta: list[MetaLine]  # change through the methods below (they keep the indexes current)
    column_line: str
    column_number: int  # the line of ``#CHROM``: the first record is line column_number + 1

    def __post_init__(self) -> None:
        self.samples: list[str] = self.column_line.split("\t")[9:]

    # -- reading ------------------------------------------------------------------------------

    @classmethod
    def parse(cls, path: Path, lines: Iterable[tuple[int, str]]) -> VcfHeader:
        """The header from numbered lines (consumed up to and including ``#CHROM``)."""
        meta: list[MetaLine] = []
        last = 0
        for number, line in lines:
            last = number
            if line.startswith("#CHROM"):
                return cls(path, meta, line, number)
            if not line.startswith("#"):
                if number == 1:
                    _check_first_line(path, line)
                raise InputError(
                    "data or stray text before the #CHROM header line",
                    file=str(path),
                    line=number,
                    expected="'##' meta lines, then the #CHROM line",
                )
            meta.append(MetaLine.of(line, number))
        raise InputError(
            "VCF ends before its #CHROM header line",
            file=str(path),
            line=max(last, 1),
            expected="a #CHROM header line",
        )

    @classmethod
    def read_binary(cls, path: Path, handle: BinaryIO) -> tuple[VcfHeader | None, bytes]:
        """The header of an open binary stream (None for an empty stream), and the first bytes of
        the body after it."""
        try:
            lines, first = read_header_and_body(handle)
        except READ_ERRORS as error:
            raise stream_error(path, error) from None
        if not lines and not first:
            return None, b""
        numbered: Iterator[tuple[int, str]] = enumerate(lines, 1)
        if first:  # so a data line before #CHROM is reported at its own line
            following = first.split(b"\n", 1)[0].decode("utf-8", errors="replace")
            numbered = enumerate([*lines, following], 1)
        return cls.parse(path, numbered), first

    @property
    def line_count(self) -> int:
        """Header lines in the file, including ``#CHROM``."""
        return self.column_number

    @property
    def n_columns(self) -> int:
        """Columns of the ``#CHROM`` line: every record must have as many."""
        return self.column_line.count("\t") + 1

    def _definitions(self, kind: str) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for line in self.meta:
            ident = line.id
            if line.kind == kind and ident is not None:
                found[ident] = {
                    "Number": line.fields.get("Number", ""),
                    "Type": line.fields.get("Type", ""),
                    "Description": line.fields.get("Description", ""),
                }
        return found

    @cached_property
    def infos(self) -> dict[str, dict[str, str]]:
        return self._definitions("INFO")

    @cached_property
    def formats(self) -> dict[str, dict[str, str]]:
        return self._definitions("FORMAT")

    @cached_property
    def info_numbers(self) -> dict[str, str]:
        """INFO ID -> Number (A, R, G, ., n): how a multiallelic record's values split."""
        return {ident: d["Number"] for ident, d in self.infos.items()}

    @cached_property
    def format_numbers(self) -> dict[str, str]:
        return {ident: d["Number"] for ident, d in self.formats.items()}

    @cached_property
    def contigs(self) -> list[str]:
        return [ident for line in self.meta if line.kind == "contig" and (ident := line.id) is not None]

    # -- checking -----------------------------------------------------------------------------

    def check(self) -> None:
        """The importer's rules, first problem first, each naming its line."""
        if not self.meta:
            _check_first_line(self.path, self.column_line)
        for line in self.meta:
            _check_meta(self.path, line)
        self.check_columns()

    def check_columns(self) -> None:
        """The ``#CHROM`` line: tab-separated mandatory columns, FORMAT with samples, unique names."""
        _check_column_line(self.path, self.column_number, self.column_line)

    def check_mandatory_columns(self) -> None:
        """Only the eight tab-separated mandatory columns (what splitting records needs)."""
        _check_mandatory_columns(self.path, self.column_number, self.column_line.split("\t"))

    def check_with_htslib(self) -> None:
        """Let htslib (cyvcf2) parse the header too; its rejection becomes an error at the header."""
        import cyvcf2  # local: only needed here, and importing it is not free

        try:
            reader = cyvcf2.VCF(str(self.path))
        except Exception as exc:  # cyvcf2 raises bare Exception (or OSError) for header errors
            raise InputError(
                f"htslib cannot parse the VCF header ({exc})",
                file=str(self.path),
                line=self.line_count,
                expected="a VCF 4.x header",
            ) from exc
        try:
            if list(reader.samples) != self.samples:
                raise InputError(
                    "htslib reads different sample names from the header",
                    file=str(self.path),
                    line=self.line_count,
                    expected=f"samples {self.samples}",
                )
        finally:
            reader.close()

    # -- writing ------------------------------------------------------------------------------

    def _changed(self) -> None:
        for name in ("infos", "formats", "info_numbers", "format_numbers", "contigs"):
            self.__dict__.pop(name, None)

    def lines(self) -> list[str]:
        return [*(line.text for line in self.meta), self.column_line]

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def add_line(self, text: str) -> None:
        """Append a meta line (before ``#CHROM``)."""
        self.meta.append(MetaLine.of(text))
        self._changed()

    def replace_line(self, line: MetaLine, text: str) -> None:
        self.meta[self.meta.index(line)] = MetaLine.of(text, line.number)
        self._changed()

    def define_info(self, ident: str, number: str, vtype: str, description: str) -> None:
        """Add an INFO definition, replacing any of the same ID (at the end of the meta lines)."""
        self.remove_infos({ident})
        self.add_line(definition_line("INFO", ident, number, vtype, description))

    def remove_infos(self, idents: Iterable[str]) -> None:
        gone = set(idents)
        self.meta = [line for line in self.meta if not (line.kind == "INFO" and line.id in gone)]
        self._changed()


def _check_first_line(path: Path, text: str) -> None:
    if not text.startswith("##fileformat=VCF"):
        raise InputError(
            "VCF does not start with a ##fileformat line",
            file=str(path),
            line=1,
            expected="##fileformat=VCFv4.x",
        )


def _check_meta(path: Path, line: MetaLine) -> None:
    number, text = line.number, line.text
    if number == 1:
        _check_first_line(path, text)
    if not text.startswith("##"):
        raise InputError(
            "data or stray text before the #CHROM header line",
            file=str(path),
            line=number,
            expected="'##' meta lines, then the #CHROM line",
        )
    value = text.partition("=")[2]
    if value.startswith("<") and not value.rstrip().endswith(">"):
        raise InputError(
            "unterminated structured header line",
            file=str(path),
            line=number,
            expected="##KEY=<...> on one line",
        )
    kind = line.kind
    if kind not in _TYPES:
        return
    ident, num, typ = line.fields.get("ID"), line.fields.get("Number"), line.fields.get("Type")
    if ident is None or num is None or typ is None:
        raise InputError(
            f"##{kind} line lacks ID, Number or Type",
            file=str(path),
            line=number,
            expected=f'##{kind}=<ID=...,Number=...,Type=...,Description="...">',
        )
    if not _NUMBER_VALUES.fullmatch(num) or typ not in _TYPES[kind]:
        raise InputError(
            f"##{kind} {ident} has Number={num} Type={typ}",
            file=str(path),
            line=number,
            expected=f"Number an integer, A, R, G or '.'; Type one of {sorted(_TYPES[kind])}",
        )


def _check_mandatory_columns(path: Path, number: int, columns: list[str]) -> None:
    if tuple(columns[:8]) != MANDATORY_COLUMNS:
        raise InputError(
            "malformed #CHROM header line",
            file=str(path),
            line=number,
            expected="tab-separated " + " ".join(MANDATORY_COLUMNS) + " [FORMAT samples...]",
        )


def _check_column_line(path: Path, number: int, line: str) -> None:
    columns = line.split("\t")
    _check_mandatory_columns(path, number, columns)
    if len(columns) == 9 or (len(columns) > 9 and columns[8] != "FORMAT"):
        raise InputError(
            "sample columns without FORMAT (or FORMAT without samples)",
            file=str(path),
            line=number,
            expected="FORMAT followed by sample names",
        )
    samples = columns[9:]
    if len(samples) > LIMITS.max_samples:
        raise LimitExceeded(
            f"{len(samples)} sample columns",
            file=str(path),
            line=number,
            expected=f"at most {LIMITS.max_samples} samples (ANNOSTREAM_MAX_SAMPLES)",
        )
    duplicates = sorted({s for s in samples if samples.count(s) > 1})
    if duplicates or any(not s for s in samples):
        raise InputError(
            f"duplicate or empty sample names {duplicates}",
            file=str(path),
            line=number,
            expected="unique sample names",
        )


def read_header(path: Path) -> VcfHeader:
    """Read and check (with htslib too) only the header of ``path``."""
    with open_text(path) as handle:
        header = VcfHeader.parse(path, numbered_lines(path, handle))
    header.check()
    header.check_with_htslib()
    return header


def parse_pos(raw: str, *, file: str, line: int) -> int:
    """A record's POS column as a positive integer, or an InputError at its line."""
    try:
        pos = int(raw)
    except ValueError:
        raise InputError(
            f"POS {raw!r} is not a number", file=file, line=line, expected="a positive integer POS"
        ) from None
    if pos < 1:
        raise InputError(
            f"POS {pos} is not positive", file=file, line=line, expected="a positive integer POS"
        )
    if pos > MAX_POS:
        raise InputError(
            f"POS {raw[:40]!r} is beyond any chromosome",
            file=file,
            line=line,
            expected=f"a POS of at most {MAX_POS}",
        )
    return pos
