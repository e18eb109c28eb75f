"""Streaming normalisation of a VCF: ella-anno's ``remove_star_alleles`` + ``vt decompose -s`` +
``vt normalize -r FASTA`` in one pass over the text.

Lines are handled in chunks of whole lines; a biallelic SNV is copied untouched (its REF is
compared with the FASTA when one is given), everything else takes the per-record path. Memory is
one chunk plus one reference window. Records keep their order in the file: ELLA's import needs
the records of one split site next to each other, and neither it nor the annotator needs a sorted
file (a re-sort like ella-anno's ``vcf-sort`` could separate them after left-alignment).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from engine.errors import InputError
from engine.normalise.align import Reference, normalise_alleles
from engine.normalise.decompose import PLACEHOLDERS, STAR, split_record, star_to_ref
from engine.vcf.header import VcfHeader, definition_line, parse_pos
from engine.vcf.textio import COMPRESSION_ERRORS, atomic_output, iter_line_chunks, open_binary, stream_error

# vt's own header lines, so a file normalised here reads like one from ella-anno's vt steps.
OLD_MULTIALLELIC_LINE = definition_line(
    "INFO", "OLD_MULTIALLELIC", "1", "String", "Original chr:pos:ref:alt encoding"
)
OLD_VARIANT_LINE = definition_line("INFO", "OLD_VARIANT", ".", "String", "Original chr:pos:ref:alt encoding")

MAX_REPORTED_MISMATCHES = 20


@dataclass
class NormaliseResult:
    output: Path | None
    records_in: int = 0
    records_out: int = 0
    split: int = 0  # multi-allelic records split into one record per ALT
    left_aligned: int = 0  # output records moved to a smaller POS
    trimmed: int = 0  # output records whose alleles were trimmed in place
    dropped: int = 0  # '*' and gVCF <NON_REF>/<*> alleles (records) left out
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "split": self.split,
            "left_aligned": self.left_aligned,
            "trimmed": self.trimmed,
            "dropped": self.dropped,
        }


@dataclass
class _Mismatches:
    count: int = 0
    first_line: int | None = None
    examples: list[str] = field(default_factory=list)

    def add(self, line: int, text: str) -> None:
        self.count += 1
        if self.first_line is None:
            self.first_line = line
        if len(self.examples) < MAX_REPORTED_MISMATCHES:
            self.examples.append(text)


def normalise_vcf(
    src: Path,
    dst: Path | None,
    *,
    fasta: Path | None = None,
    stream: BinaryIO | None = None,
    fast_gzip: bool = False,
) -> NormaliseResult:
    """Normalise ``src`` into ``dst`` (bgzip-compressed if it ends in .gz; written atomically).

    ``fast_gzip`` writes a .gz ``dst`` as plain gzip at level 1 instead (several times faster;
    for intermediate files read once, not for files to index with tabix).

    ``dst=None`` writes to ``stream`` (default stdout). With ``fasta`` every REF is checked
    against it (all mismatches are reported in one error) and indels are left-aligned.
    """
    started = time.perf_counter()
    src = Path(src)
    result = NormaliseResult(output=Path(dst) if dst is not None else None)
    reference = Reference(Path(fasta)) if fasta is not None else None
    try:
        with open_binary(src) as handle, atomic_output(dst, stream, fast_gzip=fast_gzip) as out:
            header, first = VcfHeader.read_binary(src, handle)
            if header is not None:  # a 0-byte file passes through as a 0-byte file
                header.check_mandatory_columns()  # records are split by its tabs
                prepare_header(header)
                out.write(header.text().encode())
                _Normaliser(src, header, reference, result).run(
                    iter_line_chunks(handle, first, header_lines=header.line_count), out
                )
    except COMPRESSION_ERRORS as error:
        raise stream_error(src, error) from None
    finally:
        if reference is not None:
            reference.close()
    result.seconds = time.perf_counter() - started
    return result


def prepare_header(header: VcfHeader) -> None:
    """Declare vt's OLD_MULTIALLELIC/OLD_VARIANT unless the file does, and read older GATK's
    ``AD Number=.`` as R (it has one value per allele; ella-anno rewrites it before decomposing,
    and so do we: otherwise AD could not be split per ALT)."""
    for line in list(header.meta):
        if line.kind == "FORMAT" and line.id == "AD" and line.fields.get("Number") == ".":
            header.replace_line(line, line.text.replace("Number=.", "Number=R", 1))
    for ident, text in (("OLD_MULTIALLELIC", OLD_MULTIALLELIC_LINE), ("OLD_VARIANT", OLD_VARIANT_LINE)):
        if ident not in header.infos:
            header.add_line(text)


class _Normaliser:
    def __init__(
        self, src: Path, header: VcfHeader, reference: Reference | None, result: NormaliseResult
    ) -> None:
        self.src = src
        self.header = header
        self.reference = reference
        self.result = result
        self.line_no = header.line_count
        self.mismatches = _Mismatches()

    def run(self, chunks: Iterator[bytes], out: BinaryIO) -> None:
        for chunk in chunks:
            out.write(self._chunk(chunk))
        if self.mismatches.count:
            raise self._mismatch_error()

    def _chunk(self, chunk: bytes) -> bytes:
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(
                "VCF is not valid UTF-8 text",
                file=str(self.src),
                line=self.line_no + 1,
                expected="UTF-8 text",
            ) from None
        lines = text.split("\n")
        lines.pop()  # chunks end with a newline
        out: list[str] = []
        append = out.append
        reference = self.reference
        result = self.result
        number = self.line_no
        tabs = self.header.n_columns - 1
        for line in lines:
            number += 1
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                continue
            # Checked here for every line (cheap) so that a broken record is reported with the
            # input file's name and line, not the normalised file's.
            if line.count("\t") != tabs:
                raise self._columns_error(number, line)
            parts = line.split("\t", 5)
            pos = parse_pos(parts[1], file=str(self.src), line=number)
            result.records_in += 1
            ref, alt = parts[3], parts[4]
            if len(ref) == 1 and len(alt) == 1 and alt != STAR:
                # The common case: a biallelic SNV (or '.'), copied as it is.
                if reference is not None:
                    self._check_ref(number, parts[0], pos, ref)
                append(line)
                result.records_out += 1
                continue
            self._record(number, line, pos, out)
        self.line_no = number
        if not out:
            return b""
        out.append("")
        return "\n".join(out).encode()

    def _record(self, number: int, line: str, pos: int, out: list[str]) -> None:
        """Everything but a biallelic SNV: split, drop '*', trim and left-align."""
        fields = line.split("\t")
        if self.reference is not None:
            self._check_ref(number, fields[0], pos, fields[3])
        alts = fields[4].split(",")
        if len(alts) > 1:
            self.result.split += 1
            self.result.dropped += sum(alt in PLACEHOLDERS for alt in alts)
            records = split_record(fields, self.header.info_numbers, self.header.format_numbers)
        elif alts[0] in PLACEHOLDERS:
            self.result.dropped += 1
            records = []
        else:
            star_to_ref(fields)
            records = [fields]
        for record in records:
            self._normalise(record, pos)
            out.append("\t".join(record))
            self.result.records_out += 1

    def _normalise(self, record: list[str], pos: int) -> None:
        chrom, ref, alt = record[0], record[3], record[4]
        if len(ref) == 1 and len(alt) == 1:
            return
        alleles = normalise_alleles(chrom, pos, ref, alt, self.reference)
        if (alleles.pos, alleles.ref, alleles.alt) == (pos, ref, alt):
            return
        old = f"OLD_VARIANT={chrom}:{pos}:{ref}/{alt}"
        record[1], record[3], record[4] = str(alleles.pos), alleles.ref, alleles.alt
        record[7] = old if record[7] in (".", "") else f"{record[7]};{old}"
        if alleles.pos < pos:
            self.result.left_aligned += 1
        else:
            self.result.trimmed += 1

    def _check_ref(self, number: int, chrom: str, pos: int, ref: str) -> None:
        reference = self.reference
        assert reference is not None
        if not reference.has_contig(chrom):
            self.mismatches.add(number, f"{chrom}:{pos} (line {number}: contig {chrom} is not in the FASTA)")
            return
        expected = reference.bases(chrom, pos, len(ref))
        if expected != ref.upper():
            self.mismatches.add(number, f"{chrom}:{pos} (line {number}: REF {ref}, FASTA {expected or '-'})")

    def _mismatch_error(self) -> InputError:
        found = self.mismatches
        more = f", and {found.count - len(found.examples)} more" if found.count > len(found.examples) else ""
        fasta = self.reference.path if self.reference is not None else "the FASTA"
        return InputError(
            f"REF differs from the reference FASTA at {found.count} record(s): "
            f"{', '.join(found.examples)}{more}",
            file=str(self.src),
            line=found.first_line,
            expected=f"REF bases equal to {fasta} (is the VCF on the same genome build?)",
        )

    def _columns_error(self, number: int, line: str) -> InputError:
        found = line.count("\t") + 1
        columns = self.header.n_columns
        samples = f", FORMAT and {columns - 9} samples" if columns > 8 else ""
        return self._error(
            number,
            f"{found} tab-separated columns",
            f"{columns} columns as in the #CHROM line (8 fixed{samples})",
        )

    def _error(self, number: int, message: str, expected: str) -> InputError:
        return InputError(message, file=str(self.src), line=number, expected=expected)
