"""ELLA's allele normalisation (vardb.util.vcfrecord), case by case."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.vcf.alleles import allele_from_vcf

# (pos, ref, alt, sv kwargs) -> (start, open_end, change_from, change_to, change_type, length, caller)
CASES = [
    # SNP: 0-based half-open, one base
    ((123, "A", "G", {}), (122, 123, "A", "G", "SNP", 1, "snv")),
    # SNP hidden in padding: suffix "AA" then prefix "A" trimmed (ELLA's docstring example)
    ((100, "AGAA", "ACAA", {}), (100, 101, "G", "C", "SNP", 1, "snv")),
    # deletion: prefix trimmed, starts after the anchor base
    ((123, "AC", "A", {}), (123, 124, "C", "", "del", 1, "snv")),
    ((32890645, "GAC", "G", {}), (32890645, 32890647, "AC", "", "del", 2, "snv")),
    # suffix is trimmed before prefix: ATT>AT loses one T at the end, then the A prefix
    ((10, "ATT", "AT", {}), (10, 11, "T", "", "del", 1, "snv")),
    # suffix trimming can eat the anchor: AA>A deletes the first base
    ((10, "AA", "A", {}), (9, 10, "A", "", "del", 1, "snv")),
    # insertion: anchored on the base before, no reference span, length 1
    ((123, "A", "AC", {}), (122, 123, "", "C", "ins", 1, "snv")),
    ((50, "A", "ATTT", {}), (49, 50, "", "TTT", "ins", 1, "snv")),
    # insertion found by suffix trimming (A>TA): inserted before POS, start two bases back
    ((10, "A", "TA", {}), (8, 9, "", "T", "ins", 1, "snv")),
    # indel (ELLA docstring: 123-GAGA-AC)
    ((123, "GAGA", "AC", {}), (122, 126, "GAGA", "AC", "indel", 4, "snv")),
    ((5, "ACGT", "ATTTT", {}), (5, 7, "CG", "TTT", "indel", 3, "snv")),
    # MNV: same length, several bases -> indel in ELLA
    ((7, "AC", "GT", {}), (6, 8, "AC", "GT", "indel", 2, "snv")),
    # lower-case bases are kept as written
    ((3, "a", "g", {}), (2, 3, "a", "g", "SNP", 1, "snv")),
    # CNVs: symbolic ALT, no trimming, start at POS-1
    ((1000, "N", "<DEL>", {"svtype": "DEL", "svlen": -500}), (999, 1499, "", "", "del", 500, "cnv")),
    # ELLA's VCFRecord._build_allele: only INFO/SVTYPE makes a CNV; a <DEL> without it is trimmed
    # like bases (nothing in common: an "indel" of length 5)
    ((1000, "N", "<DEL>", {"svlen": -500}), (999, 1000, "N", "<DEL>", "indel", 5, "snv")),
    # VCFRecord.sv_change_type/_cnv_allele_info: another symbolic ALT takes SVTYPE's change type
    # and keeps REF/ALT as change_from/change_to
    ((1000, "N", "<CNV>", {"svtype": "DUP", "svlen": 700}), (999, 1000, "N", "<CNV>", "dup", 700, "cnv")),
    ((1000, "N", "<CNV>", {"svtype": "DEL", "svlen": -700}), (999, 1699, "N", "<CNV>", "del", 700, "cnv")),
    # VCFRecord._snv_allele_info: IUPAC codes in REF are stored as written
    ((2000, "M", "A", {}), (1999, 2000, "M", "A", "SNP", 1, "snv")),
    ((2000, "ARG", "A", {}), (2000, 2002, "RG", "", "del", 2, "snv")),
    ((1000, "N", "<DEL:ME>", {"svtype": "DEL", "svlen": -300}), (999, 1299, "", "", "del_me", 300, "cnv")),
    ((1000, "A", "<DUP>", {"svtype": "DUP", "svlen": 2000}), (999, 1000, "", "", "dup", 2000, "cnv")),
    (
        (1000, "A", "<DUP:TANDEM>", {"svtype": "DUP", "svlen": 2000}),
        (999, 1000, "", "", "dup_tandem", 2000, "cnv"),
    ),
    # SVTYPE with explicit sequence: keeps REF/ALT as change_from/to
    ((1000, "ACGT", "A", {"svtype": "DEL", "svlen": -3}), (999, 1002, "ACGT", "A", "del", 3, "cnv")),
    # END instead of SVLEN
    ((1000, "N", "<DEL>", {"svtype": "DEL", "end": 1600}), (999, 1599, "", "", "del", 600, "cnv")),
]


@pytest.mark.parametrize(("given", "expected"), CASES, ids=[f"{c[0][1]}>{c[0][2]}@{c[0][0]}" for c in CASES])
def test_allele_normalisation(given: tuple, expected: tuple) -> None:
    pos, ref, alt, sv = given
    allele = allele_from_vcf("13", pos, ref, alt, **sv)
    got = (
        allele.start_position,
        allele.open_end_position,
        allele.change_from,
        allele.change_to,
        allele.change_type,
        allele.length,
        allele.caller_type,
    )
    assert got == expected
    # the VCF representation is kept verbatim
    assert (allele.chromosome, allele.vcf_pos, allele.vcf_ref, allele.vcf_alt) == ("13", pos, ref, alt)
    assert allele.genome_reference == "GRCh37"


@pytest.mark.parametrize(
    ("ref", "alt", "sv", "fragment"),
    [
        ("AXG", "A", {}, "illegal REF 'AXG'"),
        ("A", "B", {}, "illegal ALT 'B'"),
        ("A", "G]17:198982]", {}, "illegal ALT"),
        ("A", "A", {}, "REF and ALT are both 'A'"),
        ("AT", "AT", {}, "REF and ALT are both 'AT'"),
        ("", "A", {}, "illegal REF ''"),
        ("N", "<INV>", {"svtype": "INV", "svlen": 10}, "unsupported structural variant"),
        ("N", "<DEL>", {"svtype": "DEL"}, "has no length"),
    ],
)
def test_bad_alleles_are_input_errors(ref: str, alt: str, sv: dict, fragment: str) -> None:
    with pytest.raises(InputError) as caught:
        allele_from_vcf("1", 10, ref, alt, **sv)
    assert fragment in str(caught.value)
    assert caught.value.expected
