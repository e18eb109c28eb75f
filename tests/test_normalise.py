"""VCF normalisation (vt decompose -s + vt normalize, as ella-anno runs them) on real files."""

from __future__ import annotations

import gzip
import random
import shutil
import subprocess
from pathlib import Path

import pysam
import pytest

from engine.cli import main as cli_main
from engine.deposit.specs import SampleRecord, VcfSpec
from engine.errors import InputError
from engine.normalise import normalise_vcf
from engine.normalise.vcf import OLD_MULTIALLELIC_LINE, OLD_VARIANT_LINE
from engine.vcf.reader import iter_variant_batches

HEADER = """##fileformat=VCFv4.2
##contig=<ID=1,length=60>
##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##INFO=<ID=DPR,Number=R,Type=Integer,Description="Depth per allele">
##INFO=<ID=GL3,Number=G,Type=Float,Description="Site likelihoods">
##INFO=<ID=DB,Number=0,Type=Flag,Description="dbSNP">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allele depths">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">
##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Likelihoods">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tP\tF\tM
"""
FMT = "GT:AD:DP:GQ:PL"
# 1-based: T1 T2 G3 C4 A5 A6 A7 A8 A9 C10 G11 T12 ... (five A's at 5-9)
SEQUENCE = "TTGCAAAAACGTAGGCTAGCTAGGATCGATCGTTAGCCATGCAAGTCCGATAGCTTACG"
TRIO = [
    SampleRecord(
        "P", affected=True, proband=True, family_id="F", father_identifier="F", mother_identifier="M"
    ),
    SampleRecord("F", affected=False, proband=False, family_id="F"),
    SampleRecord("M", affected=False, proband=False, family_id="F"),
]
# Proband 1/2, father 0/1, mother 0/2 at a C>A,G site.
MULTIALLELIC = (
    f"1\t10\trs1\tC\tA,G\t60\tPASS\tDP=50;AF=0.3,0.2;DPR=5,6,7;GL3=1,2,3,4,5,6;DB\t{FMT}\t"
    "1/2:2,7,9:20:40:90,80,70,60,50,40\t0/1:8,6,0:14:50:10,0,90,20,95,200\t"
    "0|2:9,0,6:15:30:5,30,300,0,310,80"
)


def write_vcf(path: Path, records: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(f"{record}\n" for record in records))
    return path


def write_fasta(tmp_path: Path, sequence: str = SEQUENCE, name: str = "1") -> Path:
    fasta = tmp_path / "ref.fa"
    fasta.write_text(
        f">{name}\n" + "\n".join(sequence[i : i + 20] for i in range(0, len(sequence), 20)) + "\n"
    )
    pysam.faidx(str(fasta))
    return fasta


def body(path: Path) -> list[list[str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        return [line.rstrip("\n").split("\t") for line in handle if not line.startswith("#")]


def header_lines(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text().splitlines() if line.startswith("##")]


def test_multiallelic_split_like_vt_decompose_s(tmp_path: Path) -> None:
    src = write_vcf(tmp_path / "in.vcf", [MULTIALLELIC])

    result = normalise_vcf(src, tmp_path / "out.vcf")

    first, second = body(tmp_path / "out.vcf")
    old = "OLD_MULTIALLELIC=1:10:C/A/G"
    assert first == [
        "1",
        "10",
        "rs1",
        "C",
        "A",
        "60",
        "PASS",
        f"DP=50;AF=0.3;DPR=5,6;GL3=1,2,3;DB;{old}",
        FMT,
        "1/.:2,7:20:40:90,80,70",
        "0/1:8,6:14:50:10,0,90",
        "0|.:9,0:15:30:5,30,300",
    ]
    assert second == [
        "1",
        "10",
        "rs1",
        "C",
        "G",
        "60",
        "PASS",
        f"DP=50;AF=0.2;DPR=5,7;GL3=1,4,6;DB;{old}",
        FMT,
        "./1:2,9:20:40:90,60,40",
        "0/.:8,0:14:50:10,20,200",
        "0|1:9,6:15:30:5,0,80",
    ]
    assert OLD_MULTIALLELIC_LINE in header_lines(tmp_path / "out.vcf")
    assert (result.records_in, result.records_out, result.split, result.dropped) == (1, 2, 1, 0)


def test_proband_1_2_becomes_allele_and_secondallele_in_the_reader(tmp_path: Path) -> None:
    src = write_vcf(
        tmp_path / "trio.vcf",
        [
            f"1\t3\t.\tG\tT\t50\tPASS\tDP=10;AF=0.5\t{FMT}\t0/1:5,5:10:40:90,0,70\t0/0:9,0:9:30:0,30,300\t"
            "0/1:4,4:8:20:50,0,50",
            MULTIALLELIC,
        ],
    )
    out = tmp_path / "trio.norm.vcf.gz"
    normalise_vcf(src, out)

    variants = [v for batch in iter_variant_batches(VcfSpec(path=out), TRIO) for v in batch]

    assert len(variants) == 2
    compound = variants[1]
    assert (compound.allele.vcf_pos, compound.allele.vcf_ref, compound.allele.vcf_alt) == (10, "C", "A")
    assert compound.secondallele is not None
    assert (compound.secondallele.vcf_pos, compound.secondallele.vcf_alt) == (10, "G")
    proband = compound.samples["P"]
    assert (proband.type, proband.multiallelic, proband.secondallele) == ("Heterozygous", True, False)
    assert proband.allele_depth == {"REF (C)": 2, "A": 7, "G": 9}
    assert compound.secondallele_samples is not None
    assert compound.secondallele_samples["P"].secondallele is True
    assert compound.samples["F"].type == "Heterozygous"  # father carries A
    assert compound.secondallele_samples["M"].type == "Heterozygous"  # mother carries G
    assert compound.samples["M"].type == "Reference"  # ... and not A


def test_star_alleles_are_dropped_and_read_as_ref(tmp_path: Path) -> None:
    src = write_vcf(
        tmp_path / "in.vcf",
        [
            f"1\t20\t.\tG\tT,*\t50\tPASS\tAF=0.1,0.2\t{FMT}\t1/2:3,4,5:12:40:1,2,3,4,5,6\t"
            "2/2:0,0,9:9:30:9,9,9,9,9,0\t0/1:5,5,0:10:30:50,0,50,60,60,90",
            "1\t21\t.\tC\t*\t50\tPASS\tAF=0.9\tGT\t1/1\t0/1\t0/0",
        ],
    )

    result = normalise_vcf(src, tmp_path / "out.vcf")

    records = body(tmp_path / "out.vcf")
    assert len(records) == 1
    assert records[0][4] == "T"
    assert [sample.split(":")[0] for sample in records[0][9:]] == ["1/0", "0/0", "0/1"]
    assert records[0][7] == "AF=0.1;OLD_MULTIALLELIC=1:20:G/T/*"
    assert (result.records_in, result.records_out, result.dropped) == (2, 1, 2)


def test_left_align_and_trim_against_the_fasta(tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path)
    src = write_vcf(
        tmp_path / "in.vcf",
        [
            "1\t3\t.\tG\tC\t.\t.\t.\tGT\t0/1\t0/0\t0/0",  # SNV: copied as it is
            "1\t8\t.\tAA\tA\t.\t.\tDP=3\tGT\t0/1\t0/0\t0/0",  # deletes an A of AAAAA: moves to POS 4
            "1\t9\t.\tA\tAA\t.\t.\t.\tGT\t0/1\t0/0\t0/0",  # inserts an A: moves to POS 4
            "1\t10\t.\tCG\tTG\t.\t.\t.\tGT\t0/1\t0/0\t0/0",  # MNP with a shared base: trimmed to C>T
            "1\t9\t.\tAC\tA,ACC\t.\t.\t.\tGT\t1/2\t0/0\t0/0",  # split, then each part normalised
        ],
    )

    result = normalise_vcf(src, tmp_path / "out.vcf", fasta=fasta)

    records = [(r[1], r[3], r[4], r[7]) for r in body(tmp_path / "out.vcf")]
    assert records == [
        ("3", "G", "C", "."),
        ("4", "CA", "C", "DP=3;OLD_VARIANT=1:8:AA/A"),
        ("4", "C", "CA", "OLD_VARIANT=1:9:A/AA"),
        ("10", "C", "T", "OLD_VARIANT=1:10:CG/TG"),
        ("9", "AC", "A", "OLD_MULTIALLELIC=1:9:AC/A/ACC"),
        ("9", "A", "AC", "OLD_MULTIALLELIC=1:9:AC/A/ACC;OLD_VARIANT=1:9:AC/ACC"),
    ]
    assert OLD_VARIANT_LINE in header_lines(tmp_path / "out.vcf")
    assert (result.left_aligned, result.trimmed, result.split) == (2, 2, 1)


def test_without_a_fasta_indels_are_only_trimmed(tmp_path: Path) -> None:
    src = write_vcf(
        tmp_path / "in.vcf",
        [
            "1\t8\t.\tAA\tA\t.\t.\t.\tGT\t0/1\t0/0\t0/0",
            "1\t10\t.\tCGT\tTGT\t.\t.\t.\tGT\t0/1\t0/0\t0/0",
        ],
    )

    normalise_vcf(src, tmp_path / "out.vcf")

    assert [(r[1], r[3], r[4]) for r in body(tmp_path / "out.vcf")] == [("8", "AA", "A"), ("10", "C", "T")]


def test_ref_mismatches_are_listed_and_no_output_is_left(tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path)
    src = write_vcf(
        tmp_path / "in.vcf",
        [
            "1\t3\t.\tA\tC\t.\t.\t.\tGT\t0/1\t0/0\t0/0",  # FASTA has G
            "1\t4\t.\tC\tA\t.\t.\t.\tGT\t0/1\t0/0\t0/0",  # fine
            "1\t5\t.\tAT\tA\t.\t.\t.\tGT\t0/1\t0/0\t0/0",  # FASTA has AA
            "2\t7\t.\tA\tG\t.\t.\t.\tGT\t0/1\t0/0\t0/0",  # no contig 2 in the FASTA
        ],
    )
    out = tmp_path / "out.vcf"

    with pytest.raises(InputError) as caught:
        normalise_vcf(src, out, fasta=fasta)

    message = str(caught.value)
    assert "at 3 record(s)" in message
    assert "1:3 (line 14: REF A, FASTA G)" in message
    assert "1:5 (line 16: REF AT, FASTA AA)" in message
    assert "2:7 (line 17: contig 2 is not in the FASTA)" in message
    assert "1:4" not in message
    assert caught.value.file == str(src) and caught.value.line == 14
    assert not out.exists() and list(tmp_path.glob(".out.vcf.*")) == []


def test_biallelic_records_pass_through_byte_for_byte(tmp_path: Path) -> None:
    records = [
        f"1\t3\t.\tG\tT\t50\tPASS\tDP=10;AF=0.5\t{FMT}\t0/1:5,5:10:40:90,0,70\t0/0:9,0:9:30:0,30,300\t./."
        for _ in range(3)
    ] + [
        "1\t30\t.\tT\t<DEL>\t.\t.\tSVTYPE=DEL\tGT\t0/1\t0/0\t0/0",
        "1\t40\t.\tGA\tG\t.\t.\t.\tGT\t0/1\t0/0\t0/0",
    ]
    src = write_vcf(tmp_path / "in.vcf", records)

    normalise_vcf(src, tmp_path / "out.vcf")

    assert ["\t".join(r) for r in body(tmp_path / "out.vcf")] == records


@pytest.mark.parametrize("content", ["", HEADER])
def test_empty_vcfs_pass_through(tmp_path: Path, content: str) -> None:
    src = tmp_path / "empty.vcf"
    src.write_text(content)

    result = normalise_vcf(src, tmp_path / "out.vcf")

    text = (tmp_path / "out.vcf").read_text()
    assert (result.records_in, result.records_out) == (0, 0)
    if content:
        assert text.startswith("##fileformat=VCFv4.2\n") and text.endswith("\tP\tF\tM\n")
        assert OLD_MULTIALLELIC_LINE in text
    else:
        assert text == ""


def test_bad_lines_are_reported_with_their_number(tmp_path: Path) -> None:
    src = write_vcf(
        tmp_path / "in.vcf",
        ["1\t3\t.\tG\tT\t.\t.\t.\tGT\t0/1\t0/0\t0/0", "1\tx\t.\tGA\tG\t.\t.\t.\tGT\t0/1\t0/0\t0/0"],
    )
    with pytest.raises(InputError, match="POS 'x' is not a number") as caught:
        normalise_vcf(src, tmp_path / "out.vcf")
    assert caught.value.line == 15

    write_vcf(src, ["1\t3\t.\tG\tT\t.\t.\t.\tGT\t0/1\t0/0"])  # a sample column missing
    with pytest.raises(InputError, match="11 tab-separated columns") as caught:
        normalise_vcf(src, tmp_path / "out.vcf")
    assert (caught.value.line, caught.value.file) == (14, str(src))
    assert "12 columns as in the #CHROM line (8 fixed, FORMAT and 3 samples)" in str(caught.value)

    src.write_text("##fileformat=VCFv4.2\n1\t3\t.\tG\tT\n")
    with pytest.raises(InputError, match="before the #CHROM header line"):
        normalise_vcf(src, tmp_path / "out.vcf")


def test_gzip_input_and_bgzf_output(tmp_path: Path) -> None:
    plain = write_vcf(tmp_path / "in.vcf", [MULTIALLELIC])
    compressed = tmp_path / "in.vcf.gz"
    pysam.tabix_compress(str(plain), str(compressed))

    normalise_vcf(compressed, tmp_path / "out.vcf.gz")

    with open(tmp_path / "out.vcf.gz", "rb") as handle:
        assert handle.read(4) == b"\x1f\x8b\x08\x04"  # BGZF: gzip with the extra field
    assert len(body(tmp_path / "out.vcf.gz")) == 2


def test_cli_normalise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fasta = write_fasta(tmp_path)
    src = write_vcf(tmp_path / "in.vcf", [MULTIALLELIC, "1\t8\t.\tAA\tA\t.\t.\t.\tGT\t0/1\t0/0\t0/0"])

    with pytest.raises(SystemExit) as exited:
        cli_main(["normalise", str(src), "-o", str(tmp_path / "out.vcf"), "--fasta", str(fasta)])

    assert exited.value.code == 0
    assert [r[1] for r in body(tmp_path / "out.vcf")] == ["10", "10", "4"]
    assert "records_in 2, records_out 3, split 1, left_aligned 1" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")
def test_same_alleles_as_bcftools_norm_on_random_indels(tmp_path: Path) -> None:
    rng = random.Random(7)
    # Short repeats everywhere, so many indels have somewhere to move.
    sequence = "".join(rng.choice(["A", "C", "G", "T", "AT", "CAG", "GGGG"]) for _ in range(6000))[:20000]
    fasta = write_fasta(tmp_path, sequence)
    records, pos = [], 50
    while pos < len(sequence) - 60:
        ref = sequence[pos - 1 : pos - 1 + rng.randint(1, 4)]
        kind = rng.random()
        if kind < 0.4:
            alt = ref[0]  # deletion
        elif kind < 0.8:
            alt = ref + sequence[pos : pos + rng.randint(1, 3)]  # insertion of the following bases
        else:
            alt = f"{ref}T,{ref[0]}" if len(ref) > 1 else ",".join(b for b in "ACGT" if b != ref)
        if alt != ref:
            records.append(f"1\t{pos}\t.\t{ref}\t{alt}\t.\t.\t.\tGT\t0/1\t0/0\t0/0")
        pos += rng.randint(5, 40)
    src = write_vcf(tmp_path / "in.vcf", records)

    result = normalise_vcf(src, tmp_path / "ours.vcf", fasta=fasta)
    assert result.left_aligned > 50 and result.split > 50  # the comparison covers real moves
    theirs = subprocess.run(
        ["bcftools", "norm", "-f", str(fasta), "-m", "-any", str(src)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout

    ours_alleles = sorted((r[1], r[3], r[4]) for r in body(tmp_path / "ours.vcf"))
    their_alleles = sorted(
        (line.split("\t")[1], line.split("\t")[3], line.split("\t")[4])
        for line in theirs.splitlines()
        if not line.startswith("#")
    )
    assert len(ours_alleles) > 300
    assert ours_alleles == their_alleles
