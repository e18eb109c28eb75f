"""VCF REF/ALT -> ELLA allele (``AlleleRecord``), with ELLA's exact coordinate rules.

ELLA (``vardb.util.vcfrecord.VCFRecord._build_allele``) stores alleles 0-based and half-open:

* sequence alleles: drop the common suffix of REF/ALT first, then the common prefix (moving the
  start right by its length). What is left decides the type: one base each -> ``SNP``; both
  non-empty -> ``indel``; empty REF -> ``ins`` (start at the base *before* the insertion point,
  end at the insertion point, length 1); empty ALT -> ``del``.
* CNVs: records with an ``SVTYPE`` INFO value (only that: ELLA's ``VCFRecord.sv_type``; a
  ``<DEL>`` without SVTYPE is a sequence allele, stored as ELLA's trimming makes it): no
  trimming, start at ``POS - 1``; the change type from ELLA's four symbolic ALTs, else from
  SVTYPE DEL/DUP (``<CNV>`` keeps REF/ALT as change_from/change_to); ``dup``/``dup_tandem`` span
  one base, deletions span ``abs(SVLEN)``.
* REF may hold IUPAC ambiguity codes (GRCh37 has a few, e.g. ``M`` on chr3): stored as written.
"""

from __future__ import annotations

import re
from functools import lru_cache

from engine.errors import InputError
from engine.vcf.records import AlleleRecord

# VCF 4.x: ALT bases are A, C, G, T, N in either case; REF may also hold the IUPAC codes of
# the reference genome, which ELLA stores as written (VCFRecord._snv_allele_info).
_BASES = re.compile(r"[ACGTNacgtn]+")
_REF_BASES = re.compile(r"[ACGTNMRWSYKVHDBacgtnmrwsykvhdb]+")
_SYMBOLIC = re.compile(r"<[^<>]+>")

SYMBOLIC_CHANGE_TYPES: dict[str, str] = {
    "<DUP>": "dup",
    "<DUP:TANDEM>": "dup_tandem",
    "<DEL>": "del",
    "<DEL:ME>": "del_me",
}
_SVTYPE_CHANGE_TYPES = {"DEL": "del", "DUP": "dup"}
# Change types whose reference span is a single base (ELLA: the event is "at" POS).
_POINT_CNV_TYPES = frozenset({"dup", "dup_tandem", "ins"})


def is_cnv(alt: str, svtype: str | None) -> bool:
    """Whether ELLA treats this record as a CNV (``caller_type`` ``cnv``): it has INFO/SVTYPE."""
    return svtype is not None


def allele_from_vcf(
    chrom: str,
    pos: int,
    ref: str,
    alt: str,
    *,
    svtype: str | None = None,
    svlen: int | None = None,
    end: int | None = None,
) -> AlleleRecord:
    """Build the ELLA allele for one VCF REF/ALT pair (``pos`` is the 1-based VCF POS).

    Raises ``InputError`` (without file/line: the caller adds them) for characters that are
    not bases, identical REF/ALT, unsupported symbolic ALTs and CNVs without a length.
    """
    if is_cnv(alt, svtype):
        return _cnv_allele(chrom, pos, ref, alt, svtype, svlen, end)
    return _sequence_allele(chrom, pos, ref, alt)


@lru_cache(maxsize=4096)
def check_bases(value: str, column: str) -> str:
    """``value`` if it is made of A, C, G, T, N (either case), else ``InputError``."""
    # Cached: the same short REF/ALT strings recur millions of times in a large VCF.
    if not (_REF_BASES if column == "REF" else _BASES).fullmatch(value):
        raise InputError(
            f"illegal {column} {value!r}",
            expected=f"{column} made of the bases A, C, G, T, N"
            + (" or a symbolic allele <DEL>, <DUP>, <DUP:TANDEM>, <DEL:ME>" if column == "ALT" else ""),
        )
    return value


def _common_prefix_length(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _sequence_allele(chrom: str, pos: int, ref: str, alt: str) -> AlleleRecord:
    check_bases(ref, "REF")
    if not _SYMBOLIC.fullmatch(alt):  # ELLA trims a symbolic ALT without SVTYPE like bases
        check_bases(alt, "ALT")
    start = pos - 1
    if len(ref) == 1 and len(alt) == 1:
        if ref == alt:
            raise InputError(f"REF and ALT are both {ref!r}", expected="ALT different from REF")
        return AlleleRecord(chrom, start, start + 1, ref, alt, "SNP", pos, ref, alt, 1)

    suffix = _common_prefix_length(ref[::-1], alt[::-1])
    trimmed_ref, trimmed_alt = (ref[:-suffix], alt[:-suffix]) if suffix else (ref, alt)
    prefix = _common_prefix_length(trimmed_ref, trimmed_alt)
    trimmed_ref, trimmed_alt = trimmed_ref[prefix:], trimmed_alt[prefix:]
    start += prefix

    if len(trimmed_ref) == 1 and len(trimmed_alt) == 1:
        change_type, end, length = "SNP", start + 1, 1
    elif trimmed_ref and trimmed_alt:
        change_type, end = "indel", start + len(trimmed_ref)
        length = max(len(trimmed_ref), len(trimmed_alt))
    elif trimmed_alt:
        # The insertion sits between the base before ``start`` and ``start``: ELLA anchors it on
        # the preceding base and gives it no reference span.
        change_type, end, length = "ins", start, 1
        start -= 1
    elif trimmed_ref:
        change_type, end, length = "del", start + len(trimmed_ref), len(trimmed_ref)
    else:
        raise InputError(f"REF and ALT are both {ref!r}", expected="ALT different from REF")
    return AlleleRecord(chrom, start, end, trimmed_ref, trimmed_alt, change_type, pos, ref, alt, length)


def _cnv_change_type(alt: str, svtype: str | None) -> str:
    if alt in SYMBOLIC_CHANGE_TYPES:
        return SYMBOLIC_CHANGE_TYPES[alt]
    if svtype in _SVTYPE_CHANGE_TYPES:
        return _SVTYPE_CHANGE_TYPES[svtype]
    raise InputError(
        f"unsupported structural variant ALT={alt!r} SVTYPE={svtype!r}",
        expected="ALT <DUP>, <DUP:TANDEM>, <DEL>, <DEL:ME> or SVTYPE DEL or DUP",
    )


def _cnv_allele(
    chrom: str, pos: int, ref: str, alt: str, svtype: str | None, svlen: int | None, end: int | None
) -> AlleleRecord:
    check_bases(ref, "REF")
    change_type = _cnv_change_type(alt, svtype)
    if not _SYMBOLIC.fullmatch(alt):
        check_bases(alt, "ALT")
    if svlen is None:
        if end is None:
            raise InputError(
                f"structural variant {alt!r} has no length", expected="INFO SVLEN (or END) for a CNV"
            )
        svlen = end - pos  # END is the last deleted base, POS the padding base before it
    length = abs(svlen)
    start = pos - 1
    open_end = start + 1 if change_type in _POINT_CNV_TYPES else start + length
    symbolic = alt in SYMBOLIC_CHANGE_TYPES
    return AlleleRecord(
        chrom,
        start,
        open_end,
        "" if symbolic else ref,
        "" if symbolic else alt,
        change_type,
        pos,
        ref,
        alt,
        length,
        caller_type="cnv",
    )
