"""Trimming and left-aligning one REF/ALT pair (``vt normalize``), and the reference it reads.

The algorithm is vt's (Tan et al., Bioinformatics 2015): while both alleles end in the same base,
drop it, and whenever an allele becomes empty, prepend the reference base before POS (moving
left); then drop common leading bases while both alleles keep at least one. Without a reference
only the trimming that never empties an allele is done, which needs no sequence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError

# Only plain sequence alleles are normalised; symbolic (<DEL>), breakends and '*' are left alone.
_BASES = re.compile(r"[ACGTNacgtn]+")
_WINDOW = 1 << 20  # bases of reference kept in memory around the current position


class Reference:
    """A FASTA (``.fai``-indexed, plain or bgzip) read through a sliding window.

    VCFs are read in position order, so one window per megabase serves almost every lookup and
    memory stays at about one window whatever the genome size.
    """

    def __init__(self, fasta: Path) -> None:
        import pysam

        self.path = Path(fasta)
        try:
            self._fasta = pysam.FastaFile(str(self.path))
        except (OSError, ValueError) as error:
            raise InputError(
                f"cannot open the reference FASTA ({error})",
                file=str(self.path),
                expected="a FASTA with a .fai index (samtools faidx), bgzip-compressed "
                "FASTAs also need their .gzi",
            ) from None
        self._lengths = dict(zip(self._fasta.references, self._fasta.lengths, strict=True))
        self._chrom = ""
        self._start = 0  # 0-based start of the window
        self._seq = ""

    def close(self) -> None:
        self._fasta.close()

    def has_contig(self, chrom: str) -> bool:
        return chrom in self._lengths

    def bases(self, chrom: str, pos: int, length: int) -> str:
        """Upper-case reference bases at 1-based ``pos`` ('' past the contig's end)."""
        start = pos - 1
        offset = start - self._start
        if chrom != self._chrom or offset < 0 or offset + length > len(self._seq):
            self._load(chrom, start, length)
            offset = start - self._start
        return self._seq[offset : offset + length]

    def _load(self, chrom: str, start: int, length: int) -> None:
        # Keep some sequence before ``start``: left-alignment walks left from here.
        begin = max(start - 4096, 0)
        end = min(start + max(length, _WINDOW), self._lengths.get(chrom, 0))
        self._chrom, self._start = chrom, begin
        self._seq = self._fasta.fetch(chrom, begin, end).upper() if end > begin else ""


@dataclass(frozen=True, slots=True)
class Alleles:
    pos: int
    ref: str
    alt: str


def is_sequence(allele: str) -> bool:
    return _BASES.fullmatch(allele) is not None


def normalise_alleles(chrom: str, pos: int, ref: str, alt: str, reference: Reference | None) -> Alleles:
    """The parsimonious, left-aligned form of one REF/ALT pair (unchanged if not plain sequence)."""
    if ref.upper() == alt.upper() or not (is_sequence(ref) and is_sequence(alt)):
        return Alleles(pos, ref, alt)
    if reference is None:
        return _trim(pos, ref, alt)
    left = _left_align(chrom, pos, ref, alt, reference)
    return _trim(left.pos, left.ref, left.alt) if left is not None else _trim(pos, ref, alt)


def _left_align(chrom: str, pos: int, ref: str, alt: str, reference: Reference) -> Alleles | None:
    """vt's loop. At the contig's first base an allele that became empty takes the base after the
    event instead, as the VCF specification asks (and bcftools norm does); None when the
    reference has no such base (then only trim)."""
    while True:
        if ref and alt and ref[-1].upper() == alt[-1].upper():
            ref, alt = ref[:-1], alt[:-1]
        elif not ref or not alt:
            if pos <= 1:
                after = reference.bases(chrom, pos + len(ref), 1)
                return Alleles(pos, ref + after, alt + after) if after else None
            base = reference.bases(chrom, pos - 1, 1)
            if not base:
                return None
            ref, alt, pos = base + ref, base + alt, pos - 1
        else:
            return Alleles(pos, ref, alt)


def _trim(pos: int, ref: str, alt: str) -> Alleles:
    """Drop shared trailing, then leading, bases while both alleles keep at least one."""
    while len(ref) > 1 and len(alt) > 1 and ref[-1].upper() == alt[-1].upper():
        ref, alt = ref[:-1], alt[:-1]
    while len(ref) > 1 and len(alt) > 1 and ref[0].upper() == alt[0].upper():
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return Alleles(pos, ref, alt)
