"""Opening a VCF (plain or gzip/BGZF) as numbered text lines, and checking its header.

Record parsing needs exact 1-based line numbers for error messages and the raw FILTER/INFO text
(ELLA keeps FILTER as written, and annotation converters want INFO values as written), so the
file is read as text. htslib (through cyvcf2) is asked to parse the header as a second opinion,
so anything it rejects is rejected here too, but with a line number.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from engine.errors import InputError, LimitExceeded
from engine.limits import LIMITS, file_too_large, line_too_long

#: allele.vcf_pos and start_position are 32-bit INTEGER columns (as in ELLA).
MAX_POS = 2**31 - 1
MANDATORY_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
_STRUCTURED_META = re.compile(r"##(INFO|FORMAT|FILTER|contig|ALT)=<(.*)>\s*$")
_META_ID = re.compile(r"(?:^|,)ID=([^,>]+)")
_META_NUMBER = re.compile(r"(?:^|,)Number=([^,>]+)")
_META_TYPE = re.compile(r"(?:^|,)Type=([^,>]+)")
_META_DESCRIPTION = re.compile(r'(?:^|,)Description="((?:[^"\\]|\\.)*)"')
_NUMBER_VALUES = re.compile(r"\d+|[ARG.]")
_TYPES = {
    "INFO": {"Integer", "Float", "Flag", "Character", "String"},
    "FORMAT": {"Integer", "Float", "Character", "String"},
}


@dataclass(slots=True)
class VcfHeader:
    """What record parsing needs from the header."""

    path: Path
    samples: list[str]
    line_count: int  # header lines, including ``#CHROM``: the first record is line_count + 1
    info_numbers: dict[str, str] = field(default_factory=dict)  # INFO ID -> Number (A, R, G, ., n)
    # INFO ID -> {"Number", "Type", "Description"}: annotation converters need the descriptions
    # (VEP's CSQ lists its subfields in its Description).
    infos: dict[str, dict[str, str]] = field(default_factory=dict)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as raw:
        return raw.read(2) == b"\x1f\x8b"


def open_text(path: Path) -> IO[str]:
    """Open a VCF as text, decompressing gzip/BGZF whatever the file is called."""
    if not path.is_file():
        raise InputError("VCF file not found", file=str(path), expected="an existing .vcf or .vcf.gz file")
    if _is_gzip(path):
        return io.TextIOWrapper(
            io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=1 << 20),
            encoding="utf-8",
            newline="",
        )
    return path.open("r", encoding="utf-8", newline="", buffering=1 << 20)


def numbered_lines(path: Path, handle: IO[str], start: int = 0) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` without the line ending; decoding/decompression errors
    become ``InputError`` naming the line where the stream broke."""
    number = start
    try:
        total = 0
        while True:
            # readline with a bound: a 50 MB line never has to fit in memory whole.
            line = handle.readline(LIMITS.max_line_bytes + 1)
            if not line:
                return
            number += 1
            total += len(line)
            if len(line) > LIMITS.max_line_bytes:
                raise line_too_long(str(path), number)
            if total > LIMITS.max_vcf_bytes:
                raise file_too_large(str(path))
            if "\x00" in line:
                raise InputError("NUL byte inside a line", file=str(path), line=number, expected="text")
            yield number, line.rstrip("\r\n")
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(
            f"compressed VCF is truncated or corrupt ({exc})",
            file=str(path),
            line=number + 1,
            expected="a complete gzip/BGZF file",
        ) from exc
    except UnicodeDecodeError as exc:
        raise InputError(
            "VCF is not valid UTF-8 text", file=str(path), line=number + 1, expected="UTF-8 text"
        ) from exc


def _check_structured_meta(path: Path, number: int, line: str, info_numbers: dict[str, str],
                           infos: dict[str, dict[str, str]]) -> None:
    match = _STRUCTURED_META.match(line)
    if match is None:
        return
    kind, body = match.groups()
    if kind not in ("INFO", "FORMAT"):
        return
    ident = _META_ID.search(body)
    num = _META_NUMBER.search(body)
    typ = _META_TYPE.search(body)
    if ident is None or num is None or typ is None:
        raise InputError(
            f"##{kind} line lacks ID, Number or Type",
            file=str(path),
            line=number,
            expected=f'##{kind}=<ID=...,Number=...,Type=...,Description="...">',
        )
    if not _NUMBER_VALUES.fullmatch(num.group(1)) or typ.group(1) not in _TYPES[kind]:
        raise InputError(
            f"##{kind} {ident.group(1)} has Number={num.group(1)} Type={typ.group(1)}",
            file=str(path),
            line=number,
            expected=f"Number an integer, A, R, G or '.'; Type one of {sorted(_TYPES[kind])}",
        )
    if kind == "INFO":
        info_numbers[ident.group(1)] = num.group(1)
        description = _META_DESCRIPTION.search(body)
        infos[ident.group(1)] = {"Number": num.group(1), "Type": typ.group(1),
                                 "Description": description.group(1) if description else ""}


def _check_meta_line(path: Path, number: int, line: str) -> None:
    if number == 1 and not line.startswith("##fileformat=VCF"):
        raise InputError(
            "VCF does not start with a ##fileformat line",
            file=str(path),
            line=1,
            expected="##fileformat=VCFv4.x",
        )
    value = line.partition("=")[2]
    if line.startswith("##") and value.startswith("<") and not value.rstrip().endswith(">"):
        raise InputError(
            "unterminated structured header line",
            file=str(path),
            line=number,
            expected="##KEY=<...> on one line",
        )


def _samples_from_column_line(path: Path, number: int, line: str) -> list[str]:
    columns = line.split("\t")
    if tuple(columns[:8]) != MANDATORY_COLUMNS:
        raise InputError(
            "malformed #CHROM header line",
            file=str(path),
            line=number,
            expected="tab-separated " + " ".join(MANDATORY_COLUMNS) + " [FORMAT samples...]",
        )
    if len(columns) == 9 or (len(columns) > 9 and columns[8] != "FORMAT"):
        raise InputError(
            "sample columns without FORMAT (or FORMAT without samples)",
            file=str(path),
            line=number,
            expected="FORMAT followed by sample names",
        )
    samples = columns[9:]
    if len(samples) > LIMITS.max_samples:
        raise LimitExceeded(f"{len(samples)} sample columns", file=str(path), line=number,
                            expected=f"at most {LIMITS.max_samples} samples (ANNOSTREAM_MAX_SAMPLES)")
    duplicates = sorted({s for s in samples if samples.count(s) > 1})
    if duplicates or any(not s for s in samples):
        raise InputError(
            f"duplicate or empty sample names {duplicates}",
            file=str(path),
            line=number,
            expected="unique sample names",
        )
    return samples


def parse_header(path: Path, lines: Iterator[tuple[int, str]]) -> VcfHeader:
    """Consume header lines from ``lines`` up to and including ``#CHROM``."""
    info_numbers: dict[str, str] = {}
    infos: dict[str, dict[str, str]] = {}
    last = 0
    for number, line in lines:
        last = number
        if line.startswith("##"):
            _check_meta_line(path, number, line)
            _check_structured_meta(path, number, line, info_numbers, infos)
            continue
        if number == 1:
            _check_meta_line(path, number, line)
        if line.startswith("#CHROM"):
            samples = _samples_from_column_line(path, number, line)
            return VcfHeader(path, samples, number, info_numbers, infos)
        raise InputError(
            "data or stray text before the #CHROM header line",
            file=str(path),
            line=number,
            expected="'##' meta lines, then the #CHROM line",
        )
    raise InputError(
        "VCF ends before its #CHROM header line",
        file=str(path),
        line=max(last, 1),
        expected="a #CHROM header line",
    )


def check_with_htslib(header: VcfHeader) -> None:
    """Let htslib (cyvcf2) parse the header too; its rejection becomes an error at the header."""
    import cyvcf2  # local: only needed here, and importing it is not free

    try:
        reader = cyvcf2.VCF(str(header.path))
    except Exception as exc:  # cyvcf2 raises bare Exception (or OSError) for header errors
        raise InputError(
            f"htslib cannot parse the VCF header ({exc})",
            file=str(header.path),
            line=header.line_count,
            expected="a VCF 4.x header",
        ) from exc
    try:
        if list(reader.samples) != header.samples:
            raise InputError(
                "htslib reads different sample names from the header",
                file=str(header.path),
                line=header.line_count,
                expected=f"samples {header.samples}",
            )
    finally:
        reader.close()


def read_header(path: Path) -> VcfHeader:
    """Read and check only the header of ``path``."""
    with open_text(path) as handle:
        header = parse_header(path, numbered_lines(path, handle))
    check_with_htslib(header)
    return header


def parse_pos(raw: str, *, file: str, line: int) -> int:
    """A record's POS column as a positive integer, or an InputError at its line."""
    try:
        pos = int(raw)
    except ValueError:
        raise InputError(f"POS {raw!r} is not a number", file=file, line=line,
                         expected="a positive integer POS") from None
    if pos < 1:
        raise InputError(f"POS {pos} is not positive", file=file, line=line,
                         expected="a positive integer POS")
    if pos > MAX_POS:
        raise InputError(f"POS {raw[:40]!r} is beyond any chromosome", file=file, line=line,
                         expected=f"a POS of at most {MAX_POS}")
    return pos
