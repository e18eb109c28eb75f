"""What normalisation needs from (and adds to) a VCF header."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError

# vt's own header lines, so a file normalised here reads like one from ella-anno's vt steps.
OLD_MULTIALLELIC_LINE = (
    '##INFO=<ID=OLD_MULTIALLELIC,Number=1,Type=String,Description="Original chr:pos:ref:alt encoding">'
)
OLD_VARIANT_LINE = (
    '##INFO=<ID=OLD_VARIANT,Number=.,Type=String,Description="Original chr:pos:ref:alt encoding">'
)
_DEFINITION = re.compile(r"##(INFO|FORMAT)=<(.*)>\s*$")
_ID = re.compile(r"(?:^|,)ID=([^,>]+)")
_NUMBER = re.compile(r"(?:^|,)Number=([^,>]+)")
# Older GATK declares AD as Number=. although it has one value per allele; ella-anno rewrites it
# to R before decomposing, and so do we (otherwise AD could not be split per ALT).
_GATK_AD = "##FORMAT=<ID=AD,Number=.,"


@dataclass
class HeaderInfo:
    """Header lines to write, and the per-allele INFO/FORMAT keys (Number A, R or G)."""

    lines: list[str]
    info_numbers: dict[str, str] = field(default_factory=dict)
    format_numbers: dict[str, str] = field(default_factory=dict)
    n_columns: int = 8  # columns of the #CHROM line (every record must have as many)
    input_line_count: int = 0  # header lines in the input file (the first record is the next line)


def prepare_header(path: Path, raw_lines: list[str]) -> HeaderInfo:
    """Check the header has a ``#CHROM`` line; add vt's OLD_MULTIALLELIC/OLD_VARIANT definitions."""
    if not raw_lines or not raw_lines[-1].startswith("#CHROM"):
        raise InputError("VCF header has no #CHROM line", file=str(path), line=len(raw_lines) or 1,
                         expected="meta lines (##...) followed by the #CHROM column line")
    info = HeaderInfo(lines=[], input_line_count=len(raw_lines))
    for line in raw_lines[:-1]:
        if line.startswith(_GATK_AD):
            line = line.replace("Number=.", "Number=R", 1)
        _record_number(line, info)
        info.lines.append(line)
    for extra in (OLD_MULTIALLELIC_LINE, OLD_VARIANT_LINE):
        key = _ID.search(extra[len("##INFO=<"):])
        if key and key.group(1) not in info.info_numbers:
            info.lines.append(extra)
    info.n_columns = raw_lines[-1].count("\t") + 1
    info.lines.append(raw_lines[-1])
    return info


def _record_number(line: str, info: HeaderInfo) -> None:
    match = _DEFINITION.match(line)
    if match is None:
        return
    kind, body = match.groups()
    ident, number = _ID.search(body), _NUMBER.search(body)
    if ident is None or number is None:
        return  # the reader's header check reports malformed definitions with their line
    table = info.info_numbers if kind == "INFO" else info.format_numbers
    table[ident.group(1)] = number.group(1)
