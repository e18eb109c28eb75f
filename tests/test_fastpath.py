"""The columnar VCF fast path gives exactly what the exact line parser gives, down to the rows.

A synthetic VCF mixes what the fast path parses in bulk (SNVs, indels, no-calls, absent AD/PL,
several FORMATs) with what it must hand to the exact parser (raw and decomposed multiallelic
sites, CNVs, '*', dropped trailing FORMAT fields, float GQ, odd AD), in blocks small enough
that multiallelic blocks straddle block boundaries.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.db import migrate
from engine.db.models import Genepanel
from engine.db.session import session_scope
from engine.deposit.columns import VariantColumns, to_records
from engine.deposit.converters import build_annotation_builder
from engine.deposit.specs import AnalysisSpec, SampleRecord, VcfSpec
from engine.deposit.writer import write_analysis
from engine.errors import InputError
from engine.vcf.fastpath import iter_variant_blocks
from engine.vcf.header import read_header
from engine.vcf.reader import iter_variant_batches
from engine.vcf.records import VariantRecord

HEADER = """##fileformat=VCFv4.2
##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##INFO=<ID=MYDB,Number=1,Type=String,Description="A database value">
##INFO=<ID=OLD_MULTIALLELIC,Number=1,Type=String,Description="Original site">
##INFO=<ID=SVTYPE,Number=1,Type=String,Description="SV type">
##INFO=<ID=SVLEN,Number=.,Type=Integer,Description="SV length">
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
CONFIG = {
    "deposit": [
        {
            "name": "keyvalue",
            "converter_config": {"elements": [{"source": "MYDB", "target": "external.MYDB"}]},
        }
    ]
}
GTS = ["0/1", "1/1", "0|1", "1|0", "0/0", "./.", "1/.", "./1", "0/.", ".", "1", "0", ".|."]
FORMATS = ["GT:AD:DP:GQ:PL", "GT:DP", "GT", "GT:GQ:DP:AD", "DP:GT:CN"]


def sample_value(rng: random.Random, fmt: str) -> str:
    values = {
        "GT": rng.choice(GTS),
        "DP": rng.choice(["12", ".", "0", "40"]),
        "GQ": rng.choice(["99", ".", "7"]),
        "CN": rng.choice(["2", "."]),
        "AD": rng.choice(["5,7", "0,0", ".", "3,.", "1,2,3", "12,0"]),
        "PL": rng.choice(["0,30,300", ".", "10,0,90"]),
    }
    return ":".join(values[key] for key in fmt.split(":"))


def simple_line(rng: random.Random, chrom: str, pos: int) -> str:
    ref = rng.choice("ACGT")
    kind = rng.random()
    if kind < 0.7:
        alt = rng.choice([b for b in "ACGT" if b != ref])
    elif kind < 0.8:
        ref, alt = ref + rng.choice(["T", "AT", "A"]), ref  # deletions, incl. ELLA's suffix case
    elif kind < 0.9:
        alt = ref + rng.choice(["G", "CA", ref])  # insertions
    else:
        ref, alt = ref + "CG", rng.choice("ACGT") + "TA"  # indel (both changed)
    fmt = rng.choice(FORMATS)
    info = rng.choice([".", "DP=10", "DP=3;MYDB=pathogenic", "AF=0.5;MYDB=x"])
    qual = rng.choice(["50", "3220.60", ".", "7.999"])
    samples = "\t".join(sample_value(rng, fmt) for _ in range(3))
    filter_ = rng.choice(["PASS", "LowQual", "."])
    return f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t{qual}\t{filter_}\t{info}\t{fmt}\t{samples}"


def special_lines(rng: random.Random, chrom: str, pos: int) -> list[str]:
    """Lines only the exact parser handles (or that must make the fast path step aside)."""
    fmt = "GT:AD:DP:GQ:PL"
    site = f"{chrom}:{pos}:A/C/G"
    choice = rng.randrange(7)
    if choice == 0:  # a raw multiallelic line
        return [
            f"{chrom}\t{pos}\t.\tA\tC,G\t60\tPASS\tAF=0.3,0.2;MYDB=m\t{fmt}\t"
            "1/2:2,7,9:20:40:90,80,70,60,50,40\t0/1:8,6,0:14:50:10,0,90,20,95,200\t0/0:9,0,0:15:30:."
        ]
    if choice == 1:  # a decomposed block: two lines sharing OLD_MULTIALLELIC
        return [
            f"{chrom}\t{pos}\t.\tA\tC\t60\tPASS\tAF=0.3;OLD_MULTIALLELIC={site}\t{fmt}\t"
            "1/.:2,7:20:40:.\t0/1:8,6:14:50:10,0,90\t0/.:9,0:15:30:.",
            f"{chrom}\t{pos}\t.\tA\tG\t60\tPASS\tAF=0.2;OLD_MULTIALLELIC={site}\t{fmt}\t"
            "./1:2,9:20:40:.\t0/.:8,0:14:50:.\t0/1:9,6:15:30:5,0,80",
        ]
    if choice == 2:  # CNVs
        return [
            f"{chrom}\t{pos}\t.\tN\t<DEL>\t.\tPASS\tSVTYPE=DEL;SVLEN=-500\tGT:CN\t0/1:1\t0/0:2\t./.:.",
            f"{chrom}\t{pos + 1}\t.\tN\t<DUP>\t.\tPASS\tSVTYPE=DUP;SVLEN=300\tGT:CN\t./.:3\t0/0:2\t0/0:2",
        ]
    if choice == 3:  # '*' and trailing FORMAT fields dropped
        return [
            f"{chrom}\t{pos}\t.\tA\t*\t50\tPASS\t.\tGT\t0/1\t0/0\t0/0",
            f"{chrom}\t{pos + 1}\t.\tA\tG\t50\tPASS\t.\t{fmt}\t0/1:3,4\t0/0\t./.",
        ]
    if choice == 4:  # float GQ/DP, spaces in PL
        return [
            f"{chrom}\t{pos}\t.\tA\tG\t50\tPASS\t.\tGT:GQ:DP:PL\t0/1:30.0:12:0, 3,9\t0/0:1:2.5:.\t0/0:.:.:."
        ]
    if choice == 5:  # lower-case bases, leading zeros
        return [f"{chrom}\t{pos}\t.\ta\tg\t50\tPASS\t.\tGT:DP\t0/1:007\t0/0:1\t0/0:1"]
    return [f"{chrom}\t{pos}\t.\tA\tT\t50\tPASS\t.\tGT:AD\t1/1:x,.\t0/0:.,.\t0/0:1,2"]


def synthetic_vcf(path: Path, n: int = 3000, seed: int = 7) -> Path:
    rng = random.Random(seed)
    lines: list[str] = []
    pos = 1000
    for i in range(n):
        chrom = "1" if i < n // 2 else "X"
        pos += rng.randrange(3, 9)
        lines += special_lines(rng, chrom, pos) if rng.random() < 0.08 else [simple_line(rng, chrom, pos)]
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def comparable(records: list[VariantRecord]) -> list[VariantRecord]:
    for record in records:
        record.source_line = None
    return sorted(
        records, key=lambda r: (r.allele.chromosome, r.allele.vcf_pos, r.allele.vcf_alt, r.allele.vcf_ref)
    )


def builder_for(path: Path) -> Any:
    return build_annotation_builder(CONFIG, read_header(path).infos)


def fast_records(path: Path, block_bytes: int) -> tuple[list[VariantRecord], int]:
    records: list[VariantRecord] = []
    in_bulk = 0
    for item in iter_variant_blocks(
        VcfSpec(path=path), TRIO, annotation_builder=builder_for(path), block_bytes=block_bytes
    ):
        if isinstance(item, VariantColumns):
            in_bulk += item.size
            records += to_records(item)
        else:
            records += item
    return records, in_bulk


@pytest.mark.parametrize("block_bytes", [2_000, 50_000, 8 << 20])
def test_fast_path_reads_what_the_exact_parser_reads(tmp_path: Path, block_bytes: int) -> None:
    path = synthetic_vcf(tmp_path / "mixed.vcf")
    exact = [
        r
        for batch in iter_variant_batches(VcfSpec(path=path), TRIO, annotation_builder=builder_for(path))
        for r in batch
    ]
    fast, in_bulk = fast_records(path, block_bytes)
    assert comparable(fast) == comparable(exact)
    assert len(exact) > 1500 and in_bulk > 0.8 * len(exact)  # most lines really took the fast path
    assert any(r.secondallele for r in exact) and any(r.allele.caller_type == "cnv" for r in exact)
    assert any(r.annotation for r in fast) and any(r.annotation is None for r in fast)


def test_gzip_input_and_crlf_blocks(tmp_path: Path) -> None:
    import gzip

    plain = synthetic_vcf(tmp_path / "mixed.vcf", n=400, seed=3)
    text = plain.read_text()
    compressed = tmp_path / "mixed.vcf.gz"
    with gzip.open(compressed, "wt") as handle:
        handle.write(text)
    crlf = tmp_path / "crlf.vcf"
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    exact = comparable([r for b in iter_variant_batches(VcfSpec(path=plain), TRIO) for r in b])
    for path in (compressed, crlf):
        records: list[VariantRecord] = []
        for item in iter_variant_blocks(VcfSpec(path=path), TRIO, block_bytes=4_000):
            records += to_records(item) if isinstance(item, VariantColumns) else item
        assert comparable(records) == exact


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("1\t5000\t.\tA\tG\t50\tPASS\t.\tGT:GQ\t0/1:high\t0/0:1\t0/0:1", "FORMAT GQ value 'high'"),
        ("1\t5000\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/0", "11 tab-separated columns"),
        ("1\t5000\t.\tA\tG\t50\tPASS\t.\tGT\t0/x\t0/0\t0/0", "malformed GT '0/x' for sample 'P'"),
        ("1\t5000\t.\tA\tG\tgood\tPASS\t.\tGT\t0/1\t0/0\t0/0", "non-numeric QUAL 'good'"),
        ("1\t5000\t.\tA\tA\t50\tPASS\t.\tGT\t0/1\t0/0\t0/0", "REF and ALT are both 'A'"),
    ],
)
def test_errors_keep_file_and_line(tmp_path: Path, bad: str, fragment: str) -> None:
    good = [f"1\t{100 + i}\t.\tA\tG\t50\tPASS\t.\tGT:DP\t0/1:3\t0/0:4\t1/1:5" for i in range(300)]
    path = tmp_path / "bad.vcf"
    path.write_text(HEADER + "\n".join([*good[:200], bad, *good[200:]]) + "\n")
    with pytest.raises(InputError) as caught:
        for _ in iter_variant_blocks(VcfSpec(path=path), TRIO, block_bytes=3_000):
            pass
    assert caught.value.file == str(path)
    assert caught.value.line == HEADER_LINES + 201
    assert fragment in str(caught.value)


def test_a_duplicated_variant_is_still_reported(tmp_path: Path, sqlite_url: str) -> None:
    line = "1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/0\t0/0"
    path = tmp_path / "dup.vcf"
    path.write_text(HEADER + "\n".join([line, line.replace("\t100\t", "\t101\t"), line]) + "\n")
    url = migrated(sqlite_url)
    with pytest.raises(InputError, match="appears twice") as caught, session_scope(url) as session:
        write_analysis(
            session, analysis_spec("Dup", path), TRIO, iter_variant_blocks(VcfSpec(path=path), TRIO)
        )
    assert caught.value.line == HEADER_LINES + 3


# -- the same rows in the database ------------------------------------------------------------------


def migrated(url: str) -> str:
    migrate.upgrade(url)
    with session_scope(url) as session:
        session.add(Genepanel(name="HBOC", version="v1.0.0", genome_reference="GRCh37"))
    return url


def analysis_spec(name: str, path: Path) -> AnalysisSpec:
    return AnalysisSpec(
        name=name,
        genepanel_name="HBOC",
        genepanel_version="v1.0.0",
        folder=path.parent,
        vcfs=[VcfSpec(path=path)],
    )


ROWS = """
SELECT s.name, a1.chromosome, a1.start_position, a1.open_end_position, a1.change_from,
       a1.change_to, a1.change_type, a1.vcf_pos, a1.vcf_ref, a1.vcf_alt, a1.length, a1.caller_type,
       a1.genome_reference, a2.vcf_pos, a2.vcf_alt, ps.identifier, g.filter_status, g.variant_quality,
       gs.identifier, d.secondallele, d.multiallelic, d.type, d.genotype_quality, d.sequencing_depth,
       {json:d.allele_depth}, d.allele_ratio, {json:d.genotype_likelihood}, d.copy_number,
       {json:an.annotations}
FROM genotype g JOIN sample ps ON ps.id = g.sample_id JOIN analysis s ON s.id = ps.analysis_id
JOIN allele a1 ON a1.id = g.allele_id LEFT JOIN allele a2 ON a2.id = g.secondallele_id
JOIN genotypesampledata d ON d.genotype_id = g.id JOIN sample gs ON gs.id = d.sample_id
LEFT JOIN annotation an ON an.allele_id = a1.id AND an.date_superceeded IS NULL
WHERE s.name = :name
"""


def stored_rows(url: str, name: str) -> list[tuple[Any, ...]]:
    """Every genotypesampledata row of the analysis with its genotype, alleles and annotation."""
    sql = ROWS
    for column in ("d.allele_depth", "d.genotype_likelihood", "an.annotations"):
        as_text = column if url.startswith("sqlite") else f"CAST({column} AS text)"
        sql = sql.replace(f"{{json:{column}}}", as_text)
    with session_scope(url) as session:
        rows = session.execute(sa.text(sql), {"name": name}).all()
    return sorted((tuple(row)[1:] for row in rows), key=repr)


@pytest.mark.parametrize("fast_first", [True, False])
def test_both_paths_store_the_same_rows(tmp_path: Path, db_url: str, fast_first: bool) -> None:
    """Two analyses from one VCF, one per path; the first creates the alleles, the second reuses
    them (so both the plain and the ON CONFLICT allele merge run)."""
    url = migrated(db_url)
    path = synthetic_vcf(tmp_path / "mixed.vcf", n=1500)
    builder = builder_for(path)
    streams = {
        "Fast": lambda: iter_variant_blocks(
            VcfSpec(path=path), TRIO, annotation_builder=builder, block_bytes=20_000
        ),
        "Exact": lambda: iter_variant_batches(VcfSpec(path=path), TRIO, annotation_builder=builder),
    }
    order = ["Fast", "Exact"] if fast_first else ["Exact", "Fast"]
    counts = {}
    for name in order:
        with session_scope(url) as session:
            result = write_analysis(session, analysis_spec(name, path), TRIO, streams[name]())
        counts[name] = (result.n_variants, result.n_genotypes)
    assert counts["Fast"] == counts["Exact"]
    fast, exact = stored_rows(url, "Fast"), stored_rows(url, "Exact")
    assert len(fast) >= 3 * counts["Fast"][0] > 2000
    assert fast == exact


SINGLE = [SampleRecord("P", affected=True, proband=True, family_id="F")]


@pytest.mark.parametrize(
    ("samples", "lines"),
    [
        # Every GT:GQ:DP line has a sample with its trailing fields dropped: no row of that
        # FORMAT passes the bulk check (this raised KeyError 'gt0').
        (
            SINGLE,
            ["1\t100\t.\tA\tG\t50\tPASS\t.\tGT:GQ:DP\t./.", "1\t200\t.\tA\tG\t50\tPASS\t.\tGT:GQ:DP\t0/1"],
        ),
        # The same FORMAT group first, a bulk group after it (and the reverse order).
        (
            SINGLE,
            ["1\t100\t.\tA\tG\t50\tPASS\t.\tGT:GQ:DP\t./.", "1\t150\t.\tC\tT\t50\tPASS\t.\tGT:DP\t0/1:7"],
        ),
        (
            SINGLE,
            ["1\t100\t.\tC\tT\t50\tPASS\t.\tGT:DP\t0/1:7", "1\t150\t.\tA\tG\t50\tPASS\t.\tGT:GQ:DP\t1/1"],
        ),
        # A FORMAT whose rows pass but the proband carries none of them.
        (
            SINGLE,
            ["1\t100\t.\tA\tG\t50\tPASS\t.\tGT:GQ\t0/0:5", "1\t150\t.\tC\tT\t50\tPASS\t.\tGT:DP\t0/1:7"],
        ),
        (
            TRIO,
            [
                "1\t100\t.\tA\tG\t50\tPASS\t.\tGT:GQ:DP\t0/1:3:4\t./.\t0/0:1:1",
                "1\t150\t.\tC\tT\t50\tPASS\t.\tGT:AD\t0/1:3,4\t0/0:5,0\t0/0:2,0",
            ],
        ),
    ],
)
def test_a_format_group_with_no_bulk_rows(
    tmp_path: Path, samples: list[SampleRecord], lines: list[str]
) -> None:
    header = HEADER.replace("\tP\tF\tM\n", "\tP\n") if samples is SINGLE else HEADER
    path = tmp_path / "dropped.vcf"
    path.write_text(header + "\n".join(lines) + "\n")
    exact = [r for b in iter_variant_batches(VcfSpec(path=path), samples) for r in b]
    records: list[VariantRecord] = []
    for item in iter_variant_blocks(VcfSpec(path=path), samples):
        records += to_records(item) if isinstance(item, VariantColumns) else item
    assert exact and comparable(records) == comparable(exact)
