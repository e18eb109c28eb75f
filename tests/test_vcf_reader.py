"""VCF -> VariantRecord batches with ELLA's genotype rules, and bad VCFs reported by line."""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
from pathlib import Path

import pytest

from engine.deposit.analysis_folder import load_analysis_folder
from engine.deposit.ped import resolve_samples
from engine.deposit.specs import SampleRecord, VcfSpec
from engine.errors import InputError
from engine.vcf import iter_variant_batches, read_vcf_samples
from engine.vcf.records import AlleleRecord, SampleGenotypeRecord, VariantRecord

DATA = Path(__file__).parent / "data"
TEST_ANALYSIS_001 = DATA / "analyses" / "TestAnalysis-001"

HEADER = """##fileformat=VCFv4.2
##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##INFO=<ID=OLD_MULTIALLELIC,Number=1,Type=String,Description="Original site">
##INFO=<ID=SVTYPE,Number=1,Type=String,Description="SV type">
##INFO=<ID=SVLEN,Number=.,Type=Integer,Description="SV length">
##INFO=<ID=DB,Number=0,Type=Flag,Description="dbSNP">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allele depths">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">
##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Likelihoods">
##FORMAT=<ID=CN,Number=1,Type=Integer,Description="Copy number">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tP\tF\tM
"""
HEADER_LINES = HEADER.count("\n")
TRIO = [
    SampleRecord(
        "P", affected=True, proband=True, family_id="F", father_identifier="F", mother_identifier="M"
    ),
    SampleRecord("F", affected=False, proband=False, family_id="F"),
    SampleRecord("M", affected=False, proband=False, family_id="F"),
]
FMT = "GT:AD:DP:GQ:PL"
# A site A>C,G where the proband is 1/2, the father 0/1 and the mother 0/2 ...
RAW_MULTIALLELIC = (
    f"1\t300\t.\tA\tC,G\t60.7\tPASS\tDP=50;AF=0.3,0.2;DB\t{FMT}\t"
    "1/2:2,7,9:20:40:90,80,70,60,50,40\t0/1:8,6,0:14:50:10,0,90,20,95,200\t0/2:9,0,6:15:30:5,30,300,0,310,80"
)
# ... and the same site as vt/ella-anno decompose it.
DECOMPOSED_MULTIALLELIC = [
    f"1\t300\t.\tA\tC\t60.7\tPASS\tDP=50;AF=0.3;DB;OLD_MULTIALLELIC=1:300:A/C/G\t{FMT}\t"
    "1/.:2,7:20:40:.\t0/1:8,6:14:50:10,0,90\t0/.:9,0:15:30:.",
    f"1\t300\t.\tA\tG\t60.7\tPASS\tDP=50;AF=0.2;DB;OLD_MULTIALLELIC=1:300:A/C/G\t{FMT}\t"
    "./1:2,9:20:40:.\t0/.:8,0:14:50:.\t0/1:9,6:15:30:5,0,80",
]


def write_vcf(tmp_path: Path, records: list[str], name: str = "t.vcf", header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(header + "".join(r + "\n" for r in records))
    return path


def read_all(path: Path, samples: list[SampleRecord] = TRIO, **kwargs: object) -> list[VariantRecord]:
    return [v for batch in iter_variant_batches(VcfSpec(path), samples, **kwargs) for v in batch]  # type: ignore[arg-type]


def gsd(
    type_: str,
    *,
    multi: bool = False,
    second: bool = False,
    gq: int | None = None,
    dp: int | None = None,
    ad: dict[str, int] | None = None,
    ratio: float = 0.0,
    pl: list[int] | None = None,
    cn: int | None = None,
) -> SampleGenotypeRecord:
    return SampleGenotypeRecord(type_, multi, second, gq, dp, {} if ad is None else ad, ratio, pl, cn)


def test_test_analysis_001_round_trip() -> None:
    spec = load_analysis_folder(TEST_ANALYSIS_001)
    vcf = spec.vcfs[0]
    samples = resolve_samples(vcf.path, read_vcf_samples(vcf.path), vcf.ped, vcf.technology)
    seen_info: list[dict[str, str | bool]] = []

    def builder(info: dict[str, str | bool]) -> dict:
        seen_info.append(info)
        return {"hgmd_acc": info.get("HGMD__acc_num")}

    variants = read_all(vcf.path, samples, annotation_builder=builder, batch_size=4)
    assert [v.source_line for v in variants] == [164, 165, 166, 167, 168, 169]
    het = {"TestSample-001", "TestSample-002", "TestSample-003"}

    first = variants[0]
    assert first.allele == AlleleRecord("13", 32893343, 32893344, "A", "G", "SNP", 32893344, "A", "G", 1)
    assert first.secondallele is None and first.secondallele_samples is None
    assert (first.filter_status, first.variant_quality) == ("PASS", 5000)
    expected = gsd(
        "Heterozygous", gq=99, dp=187, ad={"REF (A)": 107, "G": 80}, ratio=80 / 187, pl=[2048, 0, 2917]
    )
    assert first.samples == {s: expected for s in het}

    deletion = variants[2]
    assert deletion.allele == AlleleRecord("13", 32890645, 32890647, "AC", "", "del", 32890645, "GAC", "G", 2)
    assert deletion.samples["TestSample-002"].allele_depth == {"REF (GAC)": 107, "G": 80}
    assert deletion.annotation == {"hgmd_acc": "CD961847"}

    # INFO reaches the converters exactly as written: escapes, flags and all
    assert (
        seen_info[0]["CLINVAR__CLNDBN"]
        == r"Familial_cancer_of_breast|Breast-ovarian_cancer\x2c_familial_2|not_provided"
    )
    assert seen_info[0]["EXAC__DB"] is True
    assert seen_info[0]["BIC__BRCA2__Base_Change"] == "A@#SPto@#SPG"
    assert seen_info[0]["CLINVAR__CAF"] == "0.998,0.001997"


def test_trio_genotype_types_and_relative_only_variant(tmp_path: Path) -> None:
    path = write_vcf(
        tmp_path,
        [
            f"1\t100\trs1\tA\tG\t50\tLowQual;q10\tDP=9\t{FMT}\t0/1:10,5:15:99:100,0,200\t0/0:20,0:20:60:0,60,600\t./.:.:.:.:.",
            f"1\t200\t.\tC\tT\t.\t.\t.\t{FMT}\t0/0:9,0:9:20:0,20,200\t0/1:5,5:10:30:30,0,30\t1/1:0,8:8:24:240,24,0",
            f"1\t250\t.\tCA\tC\t33\tPASS\t.\t{FMT}\t1|1:0,12:12:36:360,36,0\t0|1:6,6:12:30:30,0,30\t1|0:7,5:12:40:40,0,40",
            *DECOMPOSED_MULTIALLELIC,
        ],
    )
    first, hom, compound = read_all(path)
    assert first.source_line == HEADER_LINES + 1
    assert (first.filter_status, first.variant_quality) == ("LowQual;q10", 50)
    assert first.samples == {
        "P": gsd("Heterozygous", gq=99, dp=15, ad={"REF (A)": 10, "G": 5}, ratio=5 / 15, pl=[100, 0, 200]),
        "F": gsd("Reference", gq=60, dp=20, ad={"REF (A)": 20, "G": 0}, pl=[0, 60, 600]),
        "M": gsd("No coverage"),
    }
    # line 2 is the parents' variant only: not imported
    assert hom.source_line == HEADER_LINES + 3
    assert hom.allele.change_type == "del" and hom.variant_quality == 33
    assert [hom.samples[s].type for s in "PFM"] == [
        "Homozygous",
        "Heterozygous",
        "Heterozygous",
    ]  # phase ignored

    # proband 1/2: one genotype, two alleles; first is the record where the proband is 1/.
    assert compound.allele == AlleleRecord("1", 299, 300, "A", "C", "SNP", 300, "A", "C", 1)
    assert compound.secondallele == AlleleRecord("1", 299, 300, "A", "G", "SNP", 300, "A", "G", 1)
    assert (compound.filter_status, compound.variant_quality, compound.source_line) == (
        "PASS",
        60,
        HEADER_LINES + 4,
    )
    assert compound.samples == {
        "P": gsd("Heterozygous", multi=True, gq=40, dp=20, ad={"REF (A)": 2, "C": 7, "G": 9}, ratio=7 / 18),
        "F": gsd(
            "Heterozygous", gq=50, dp=14, ad={"REF (A)": 8, "C": 6, "G": 0}, ratio=6 / 14, pl=[10, 0, 90]
        ),
        "M": gsd("Reference", multi=True, gq=30, dp=15, ad={"REF (A)": 9, "C": 0, "G": 6}),
    }
    assert compound.secondallele_samples == {
        "P": gsd(
            "Heterozygous",
            multi=True,
            second=True,
            gq=40,
            dp=20,
            ad={"REF (A)": 2, "C": 7, "G": 9},
            ratio=9 / 18,
        ),
        "F": gsd("Reference", multi=True, second=True, gq=50, dp=14, ad={"REF (A)": 8, "C": 6, "G": 0}),
        "M": gsd(
            "Heterozygous",
            second=True,
            gq=30,
            dp=15,
            ad={"REF (A)": 9, "C": 0, "G": 6},
            ratio=6 / 15,
            pl=[5, 0, 80],
        ),
    }


def comparable(variant: VariantRecord) -> VariantRecord:
    return dataclasses.replace(variant, source_line=None, annotation=None, secondallele_annotation=None)


def test_raw_multiallelic_is_decomposed_like_vt(tmp_path: Path) -> None:
    infos: list[dict[str, str | bool]] = []

    def builder(info: dict[str, str | bool]) -> dict:
        infos.append(info)
        return {}

    raw = read_all(write_vcf(tmp_path, [RAW_MULTIALLELIC], "raw.vcf"), annotation_builder=builder)
    decomposed = read_all(write_vcf(tmp_path, DECOMPOSED_MULTIALLELIC, "dec.vcf"))
    assert [comparable(v) for v in raw] == [comparable(v) for v in decomposed]
    assert len(raw) == 1 and raw[0].secondallele is not None
    assert infos == [
        {"DP": "50", "AF": "0.3", "DB": True, "OLD_MULTIALLELIC": "1:300:A/C/G"},
        {"DP": "50", "AF": "0.2", "DB": True, "OLD_MULTIALLELIC": "1:300:A/C/G"},
    ]


def test_no_coverage_needs_no_call_in_the_whole_block(tmp_path: Path) -> None:
    # raw: P 0/1, F ./., M 2/2 at T>A,C -> decomposed as below; only the T>A record is the proband's
    path = write_vcf(
        tmp_path,
        [
            "1\t400\t.\tT\tA\t20\tPASS\tOLD_MULTIALLELIC=1:400:T/A/C\tGT:DP\t0/1:10\t./.:.\t./.:12",
            "1\t400\t.\tT\tC\t20\tPASS\tOLD_MULTIALLELIC=1:400:T/A/C\tGT:DP\t0/.:10\t./.:.\t1/1:12",
        ],
    )
    (variant,) = read_all(path)
    assert variant.allele.vcf_alt == "A" and variant.secondallele is None
    assert variant.samples == {
        "P": gsd("Heterozygous", dp=10),
        "F": gsd("No coverage"),
        "M": gsd("Reference", dp=12),  # ./. here, but called in the block
    }


def test_cnv_haploid_and_copy_number(tmp_path: Path) -> None:
    path = write_vcf(
        tmp_path,
        [
            "1\t1000\t.\tN\t<DEL>\t.\tPASS\tSVTYPE=DEL;SVLEN=-500\tGT:CN\t0/1:1\t0/0:2\t0/0:2",
            "1\t5000\t.\tN\t<DUP>\t.\tPASS\tSVTYPE=DUP;SVLEN=800\tGT:CN\t./.:3\t0/0:2\t./.:.",
            "X\t700\t.\tG\tA\t10\tPASS\t.\tGT\t1\t0\t.",
        ],
    )
    deletion, dup, haploid = read_all(path)
    assert deletion.allele == AlleleRecord(
        "1", 999, 1499, "", "", "del", 1000, "N", "<DEL>", 500, caller_type="cnv"
    )
    assert [deletion.samples[s].copy_number for s in "PFM"] == [1, 2, 2]
    # ELLA counts an uncalled duplication as the proband's
    assert dup.allele.change_type == "dup" and dup.allele.open_end_position == 5000
    # ELLA's BlockIterator.iter_blocks: an uncalled sample on a CNV duplication counts as covered
    assert dup.samples["P"].type == "Reference" and dup.samples["P"].copy_number == 3
    assert dup.samples["M"].type == "Reference"
    assert [haploid.samples[s].type for s in "PFM"] == ["Homozygous", "Reference", "No coverage"]


def test_gzip_batches_and_empty_vcf(tmp_path: Path) -> None:
    records = [f"2\t{1000 + i}\t.\tA\tT\t10\tPASS\t.\tGT\t0/1\t0/0\t0/0" for i in range(25)]
    plain = write_vcf(tmp_path, records)
    subprocess.run(["bgzip", "-k", str(plain)], check=True)
    batches = list(iter_variant_batches(VcfSpec(Path(f"{plain}.gz")), TRIO, batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [v.allele.vcf_pos for b in batches for v in b] == [1000 + i for i in range(25)]
    assert read_vcf_samples(Path(f"{plain}.gz")) == ["P", "F", "M"]
    assert read_all(write_vcf(tmp_path, [], "empty.vcf")) == []


def bad_vcf_error(tmp_path: Path, records: list[str], header: str = HEADER) -> InputError:
    path = write_vcf(tmp_path, records, header=header)
    with pytest.raises(InputError) as caught:
        read_all(path)
    assert caught.value.file == str(path)
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")
    return caught.value


GOOD = f"1\t100\t.\tA\tG\t50\tPASS\t.\t{FMT}\t0/1:1,1:2:3:0,1,2\t0/0:.:.:.:.\t0/0:.:.:.:."


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("1\tabc\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/0\t0/0", "POS 'abc' is not a number"),
        ("1\t100\t.\tAXG\tG\t50\tPASS\t.\tGT\t0/0\t0/0\t0/0", "illegal REF 'AXG'"),
        ("1\t100\t.\tA\tG,Z\t50\tPASS\t.\tGT\t0/1\t0/0\t0/0", "illegal ALT 'Z'"),
        ("1\t100\t.\tA\tG\t50\tPASS\t.\tAD:DP\t1,1:2\t.:.\t.:.", "FORMAT 'AD:DP' has no GT"),
        ("1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/0", "11 tab-separated columns"),
        ("1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/x\t0/0\t0/0", "malformed GT '0/x' for sample 'P'"),
        ("1\t100\t.\tA\tG\t50\tPASS\t.\tGT:GQ\t0/1:high\t0/0:1\t0/0:1", "non-numeric FORMAT GQ value 'high'"),
        ("1\t100\t.\tA\tG\tgood\tPASS\t.\tGT\t0/1\t0/0\t0/0", "non-numeric QUAL 'good'"),
        ("1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/2\t0/0\t0/0", "refers to an ALT this line does not have"),
    ],
)
def test_bad_record_is_reported_with_its_line(tmp_path: Path, bad: str, fragment: str) -> None:
    error = bad_vcf_error(tmp_path, [GOOD, GOOD.replace("\t100\t", "\t101\t"), bad, GOOD])
    assert error.line == HEADER_LINES + 3
    assert fragment in str(error)
    assert error.expected


@pytest.mark.parametrize(
    ("replace", "by", "line", "fragment"),
    [
        ("##INFO=<ID=AF,Number=A,Type=Float,", "##INFO=<ID=AF,Number=A,", 3, "lacks ID, Number or Type"),
        ("##INFO=<ID=DP,Number=1,Type=Integer,", "##INFO=<ID=DP,Number=1,Type=Number,", 2, "Type=Number"),
        ('Description="Depth">', 'Description="Depth"', 2, "unterminated structured header line"),
        ("##fileformat=VCFv4.2\n", "", 1, "does not start with a ##fileformat line"),
        ("##FORMAT=<ID=GT", "#FORMAT=<ID=GT", 8, "stray text before the #CHROM"),
        ("#CHROM\tPOS\tID\tREF", "#CHROM\tPOS\tREF", HEADER_LINES, "malformed #CHROM header line"),
        ("\tP\tF\tM", "\tP\tF\tP", HEADER_LINES, "duplicate or empty sample names ['P']"),
    ],
)
def test_broken_header_is_reported_with_its_line(
    tmp_path: Path, replace: str, by: str, line: int, fragment: str
) -> None:
    assert replace in HEADER
    error = bad_vcf_error(tmp_path, [GOOD], header=HEADER.replace(replace, by))
    assert error.line == line
    assert fragment in str(error)


def test_missing_column_header_and_unknown_sample(tmp_path: Path) -> None:
    error = bad_vcf_error(tmp_path, [], header=HEADER.split("#CHROM")[0])
    assert error.line == HEADER_LINES - 1 and "ends before its #CHROM" in str(error)
    path = write_vcf(tmp_path, [GOOD], "u.vcf")
    stranger = [SampleRecord("X", affected=True, proband=True)]
    with pytest.raises(InputError, match=r"samples \['X'\] are not columns of the VCF"):
        read_all(path, stranger)


def test_truncated_gzip_names_the_line_where_it_breaks(tmp_path: Path) -> None:
    records = [f"3\t{10 + i}\t.\tC\tG\t10\tPASS\tDP={i}\tGT\t0/1\t0/0\t0/0" for i in range(20_000)]
    plain = write_vcf(tmp_path, records)
    subprocess.run(["bgzip", str(plain)], check=True)
    whole = Path(f"{plain}.gz").read_bytes()
    truncated = tmp_path / "truncated.vcf.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    # the line where decompression stops: one after the last complete line readable
    readable = 0
    with gzip.open(truncated, "rt") as handle:
        try:
            for line in handle:
                readable += line.endswith("\n")
        except EOFError:
            pass
    with pytest.raises(InputError) as caught:
        read_all(truncated)
    assert caught.value.file == str(truncated)
    assert caught.value.line is not None
    assert HEADER_LINES < caught.value.line <= readable + 1
    assert "truncated or corrupt" in str(caught.value) or "columns" in str(caught.value)
