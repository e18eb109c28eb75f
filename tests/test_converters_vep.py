"""The ``vep`` converter and the shipped (ELLA legacy) config on ELLA's TestAnalysis-001 VCF."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.deposit.annotation_config import DEFAULT_CONFIG_PATH
from engine.deposit.converters import build_annotation_builder, worst_consequence
from engine.deposit.converters.vep import hgvsc_distances, short_hgvsc
from engine.deposit.hgnc import HgncRow, HgncTable, load_hgnc_table, read_hgnc_download, write_hgnc_table
from engine.errors import AnnotationValueError

VCF = Path(__file__).parent / "data" / "converters" / "TestAnalysis-001.vcf"
_HEADER_ITEM = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,]*)')


def read_vcf_info(path: Path) -> tuple[dict[str, dict[str, str]], list[tuple[str, dict[str, str | bool]]]]:
    """INFO header metadata and each record's (CHROM:POS, raw INFO) as the VCF reader hands them."""
    header: dict[str, dict[str, str]] = {}
    records = []
    for line in path.read_text().splitlines():
        if line.startswith("##INFO=<"):
            items = {key: value.strip('"') for key, value in _HEADER_ITEM.findall(line[len("##INFO=<") : -1])}
            header[items["ID"]] = items
        elif line and not line.startswith("#"):
            fields = line.split("\t")
            info: dict[str, str | bool] = {}
            for item in fields[7].split(";"):
                key, sep, value = item.partition("=")
                info[key] = value if sep else True
            records.append((f"{fields[0]}:{fields[1]}", info))
    return header, records


@pytest.fixture(scope="module")
def test_analysis() -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str | bool]]]:
    header, records = read_vcf_info(VCF)
    return header, dict(records)


def vep_builder(header: dict[str, dict[str, str]], **kwargs: Any) -> Any:
    config = {
        "deposit": [
            {"name": "vep", "converter_config": {"elements": [{"source": "CSQ", "target": "transcripts"}]}}
        ],
        "view": [],
    }
    return build_annotation_builder(config, header, validate=True, **kwargs)


@pytest.mark.parametrize(
    ("hgvsc", "expected"),
    [  # ELLA's documented examples
        ("c.279G>A", (0, 0)),
        ("n.1901_1904delAAGT", (0, 0)),
        ("c.248-1_248insA", (0, 0)),
        ("c.11712-20dupT", (-20, None)),
        ("c.1624+24T>A", (24, None)),
        ("c.*14G>A", (0, 14)),
        ("c.-315_-314delAC", (0, -314)),
        ("c.*431-1_*431insA", (0, 431)),
        ("p.Gly4Ter", (None, None)),
    ],
)
def test_hgvsc_distances(hgvsc: str, expected: tuple[int | None, int | None]) -> None:
    assert hgvsc_distances(hgvsc) == expected


def test_short_hgvsc() -> None:
    assert short_hgvsc("c.1_2insACGTACGTACGT") == ("c.1_2ins(12)", "ACGTACGTACGT")
    assert short_hgvsc("c.1_20delACGTACGTACGTACGTACGT") == ("c.1_20del", None)
    assert short_hgvsc("c.5dupACGTACGTACGTA") == ("c.5dup", None)
    assert short_hgvsc("c.1_2insACG") == ("c.1_2insACG", None)


BRCA2 = {"hgnc_id": 1101, "symbol": "BRCA2", "strand": 1}
ZAR1L = {
    "hgnc_id": 37116,
    "symbol": "ZAR1L",
    "strand": -1,
    "consequences": ["upstream_gene_variant"],
    "in_last_exon": "no",
    # ELLA's TranscriptData.as_dict always writes these two (null without HGVSc)
    "exon_distance": None,
    "coding_region_distance": None,
}


def test_stop_gained_record_transcripts(test_analysis: Any) -> None:
    """13:32890607 G>T (BRCA2 c.10G>T): RefSeq entries lack HGNC_ID and take it from the
    record's Ensembl entries of the same gene; the regulatory feature is dropped."""
    header, records = test_analysis
    document = vep_builder(header)(records["13:32890607"])
    coding = {
        "in_last_exon": "no",
        "consequences": ["stop_gained"],
        "amino_acids": "G/*",
        "codons": "Gga/Tga",
        "dbsnp": ["rs397507571"],
        "HGVSc": "c.10G>T",
        "HGVSc_short": "c.10G>T",
        "exon_distance": 0,
        "coding_region_distance": 0,
        "HGVSp": "p.Gly4Ter",
    }
    assert document == {
        "transcripts": [
            {"transcript": "ENST00000345108", **ZAR1L, "is_canonical": False, "dbsnp": ["rs397507571"]},
            {
                "transcript": "ENST00000380152",
                **BRCA2,
                **coding,
                "is_canonical": False,
                "exon": "2/27",
                "protein": "ENSP00000369497.3",
            },
            {
                "transcript": "ENST00000530893",
                **BRCA2,
                "is_canonical": False,
                "in_last_exon": "no",
                "consequences": ["5_prime_UTR_variant"],
                "exon": "2/10",
                "dbsnp": ["rs397507571"],
                "HGVSc": "c.-356G>T",
                "HGVSc_short": "c.-356G>T",
                "exon_distance": 0,
                "coding_region_distance": -356,
            },
            {"transcript": "ENST00000533490", **ZAR1L, "is_canonical": True, "dbsnp": ["rs397507571"]},
            {
                "transcript": "ENST00000544455",
                **BRCA2,
                **coding,
                "is_canonical": True,
                "exon": "2/28",
                "protein": "ENSP00000439902.1",
            },
            {
                "transcript": "NM_000059.3",
                **BRCA2,
                **coding,
                "is_canonical": True,
                "exon": "2/27",
                "protein": "NP_000050.2",
            },
            {"transcript": "NM_001136571.1", **ZAR1L, "is_canonical": True, "dbsnp": ["rs397507571"]},
        ]
    }
    assert worst_consequence(document["transcripts"]) == "stop_gained"


def test_splice_donor_record_transcripts(test_analysis: Any) -> None:
    """13:32890666 T>A (BRCA2 c.67+2T>A): intronic, so exon_distance and no coding distance."""
    header, records = test_analysis
    transcripts = {t["transcript"]: t for t in vep_builder(header)(records["13:32890666"])["transcripts"]}
    assert sorted(transcripts) == [
        "ENST00000345108",
        "ENST00000380152",
        "ENST00000530893",
        "ENST00000533490",
        "ENST00000544455",
        "NM_000059.3",
        "NM_001136571.1",
    ]
    assert transcripts["NM_000059.3"] == {
        "transcript": "NM_000059.3",
        **BRCA2,
        "is_canonical": True,
        "in_last_exon": "no",
        "consequences": ["splice_donor_variant"],
        "intron": "2/26",
        "dbsnp": ["rs81002885"],
        "HGVSc": "c.67+2T>A",
        "HGVSc_short": "c.67+2T>A",
        "exon_distance": 2,
        "coding_region_distance": None,
    }
    assert transcripts["ENST00000530893"]["consequences"] == ["intron_variant", "splice_region_variant"]
    assert transcripts["ENST00000530893"]["exon_distance"] == 6


CSQ_FORMAT = "Allele|Consequence|SYMBOL|Gene|Feature_type|Feature|EXON|HGVSc|STRAND|HGNC_ID|CANONICAL|SOURCE"
CSQ_HEADER = {"CSQ": {"Number": ".", "Type": "String", "Description": f"VEP. Format: {CSQ_FORMAT}"}}


def test_source_priority_and_hgnc_resolution() -> None:
    # ELLA's TranscriptData._convert_required: HGNC_ID, else the Gene column through HGNC's
    # Ensembl/NCBI ids, else the approved SYMBOL; a missing SYMBOL is the HGNC id's approved symbol.
    hgnc = HgncTable.from_rows(
        [
            HgncRow(11, "GENE1", "ENSG11", "1"),
            HgncRow(55, "GENE5", "ENSG55", "5"),
            HgncRow(66, "GENE6", "", ""),
        ]
    )
    csq = ",".join(
        [
            "A|missense_variant|GENE1|1|Transcript|NM_1.1|3/3|NM_1.1:c.5A>T|1||YES|RefSeq",
            "A|stop_gained|GENE1|1|Transcript|NM_1.1|3/3|NM_1.1:c.5A>T|1||YES|RefSeq_gff",
            "A|synonymous_variant|GENE1|1|Transcript|NM_1.1|3/3|NM_1.1:c.5A>T|1||YES|RefSeq_Interim_gff",
            "A|intron_variant|GENE2|2|Transcript|NM_2.1||NM_2.1:c.5-3A>T|-1|||RefSeq",
            "A|intron_variant|GENE3|3|Transcript|XM_3.1||XM_3.1:c.5-3A>T|-1|HGNC:33||RefSeq",
            "A|intron_variant|GENE4|4|Transcript|ENST4||ENST4:c.5-3A>T|-1|HGNC:44||",
            "A|non_coding_transcript_exon_variant||ENSG55|Transcript|NR_5.1|1/1||1|||RefSeq",
            "A|upstream_gene_variant|GENE6|6|Transcript|NR_6.1||||||RefSeq",
        ]
    )
    build = vep_builder(CSQ_HEADER, hgnc=hgnc)
    assert build({"CSQ": csq}) == {
        "transcripts": [
            {
                "transcript": "ENST4",
                "hgnc_id": 44,
                "symbol": "GENE4",
                "is_canonical": False,
                "in_last_exon": "no",
                "strand": -1,
                "consequences": ["intron_variant"],
                "HGVSc": "c.5-3A>T",
                "HGVSc_short": "c.5-3A>T",
                "exon_distance": -3,
                "coding_region_distance": None,
            },
            {
                "transcript": "NM_1.1",
                "hgnc_id": 11,
                "symbol": "GENE1",
                "is_canonical": True,
                "in_last_exon": "yes",
                "strand": 1,
                "consequences": ["stop_gained"],
                "exon": "3/3",
                "HGVSc": "c.5A>T",
                "HGVSc_short": "c.5A>T",
                "exon_distance": 0,
                "coding_region_distance": 0,
            },
            {  # NR_ kept; HGNC id from Gene (ENSG55), symbol filled from HGNC
                "transcript": "NR_5.1",
                "hgnc_id": 55,
                "symbol": "GENE5",
                "is_canonical": False,
                "in_last_exon": "yes",
                "strand": 1,
                "consequences": ["non_coding_transcript_exon_variant"],
                "exon": "1/1",
                "exon_distance": None,
                "coding_region_distance": None,
            },
        ]
    }  # NM_2.1: no HGNC id anywhere; XM_3.1: not NM_/NR_/ENST; NR_6.1: no STRAND


def test_packaged_hgnc_table_has_release_licence_and_ellas_ids() -> None:
    table = load_hgnc_table()
    assert table.info["release"].startswith("2020-02-11") and "CC0" in table.info["licence"]
    # BRCA2 by symbol, Ensembl and NCBI gene id; RMRP (an NR_-only gene) by symbol
    assert (
        table.id_by_symbol["BRCA2"] == table.id_by_gene["ENSG00000139618"] == table.id_by_gene["675"] == 1101
    )
    assert table.symbol_by_id[table.id_by_symbol["RMRP"]] == "RMRP"


def test_hgnc_table_built_from_hgncs_complete_set(tmp_path: Path) -> None:
    download = tmp_path / "hgnc_complete_set.txt"
    download.write_text(
        "hgnc_id\tsymbol\tname\tstatus\tentrez_id\tensembl_gene_id\n"
        "HGNC:1101\tBRCA2\tBRCA2 DNA repair\tApproved\t675\tENSG00000139618\n"
        "HGNC:99\tOLD1\twithdrawn\tEntry Withdrawn\t999\t\n"
    )
    out = tmp_path / "hgnc.tsv.gz"
    assert (
        write_hgnc_table(read_hgnc_download(download), out, release="2026-01-06", source=str(download)) == 2
    )
    table = load_hgnc_table(out)
    assert table.id_by_symbol == {"BRCA2": 1101} and table.id_by_gene == {
        "675": 1101,
        "ENSG00000139618": 1101,
        "999": 99,
    }
    assert table.info["release"] == "2026-01-06"


def test_duplicate_transcript_without_priority_is_an_error() -> None:
    csq = (
        "A|stop_gained|G|1|Transcript|NM_1.1|||1|HGNC:1||X,A|stop_gained|G|1|Transcript|NM_1.1|||1|HGNC:1||Y"
    )
    with pytest.raises(AnnotationValueError, match=r"NM_1\.1.*listed twice with SOURCE 'X' and 'Y'"):
        vep_builder(CSQ_HEADER)({"CSQ": csq})


def test_csq_header_without_format_is_named() -> None:
    with pytest.raises(Exception, match=r"deposit\[0\] \(vep\).*no 'Format: '"):
        vep_builder({"CSQ": {"Number": ".", "Type": "String", "Description": "Consequences"}})


def test_whole_test_analysis_with_shipped_config(test_analysis: Any) -> None:
    """Every record of TestAnalysis-001 through ELLA's legacy config, each document validated."""
    header, records = test_analysis
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    build = build_annotation_builder(config, header, validate=True)
    documents = {position: build(info) for position, info in records.items()}
    assert all(documents.values()) and len(documents) == 6
    assert {position: sorted(doc) for position, doc in documents.items()} == {
        "13:32893344": ["transcripts"],  # BIC/ExAC/ClinVar fields: not in the legacy deposit config
        "13:32890607": ["external", "references", "transcripts"],
        "13:32890645": ["external", "references", "transcripts"],
        "13:32890666": ["external", "references", "transcripts"],
        "13:32893218": ["external", "references", "transcripts"],
        "13:32893243": ["external", "references", "transcripts"],
    }
    assert documents["13:32890645"]["external"] == {
        "HGMD": {"acc_num": "CD961847", "disease": "Breast cancer", "tag": "DM"}
    }
    assert documents["13:32890645"]["references"] == [
        {"pubmed_id": 8589730, "source": "HGMD", "source_info": "Primary literature report. aka 279delAC"},
        {"pubmed_id": 18607349, "source": "HGMD", "source_info": "Functional characterisation. No comments."},
    ]
    assert documents["13:32893243"]["references"][1] == {
        "pubmed_id": 16847550,
        "source": "HGMD",
        "source_info": "Additional report. No comments.",
    }
    frameshift = {t["transcript"]: t for t in documents["13:32890645"]["transcripts"]}["NM_000059.3"]
    assert frameshift["HGVSc"] == "c.49_50delAC" and frameshift["HGVSp"] == "p.Arg18LeufsTer12"
    assert [worst_consequence(doc["transcripts"]) for doc in documents.values()] == [
        "synonymous_variant",
        "stop_gained",
        "frameshift_variant",
        "splice_donor_variant",
        "missense_variant",
        "stop_gained",
    ]


def test_hgnc_build_and_info_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from engine.cli import app, register_commands
    from engine.config import get_settings

    download = tmp_path / "hgnc_complete_set.txt"
    download.write_text(
        "hgnc_id\tsymbol\tstatus\tentrez_id\tensembl_gene_id\n"
        "HGNC:10031\tRMRP\tApproved\t6023\tENSG00000269900\n"
    )
    out = tmp_path / "hgnc.tsv.gz"
    register_commands()
    runner = CliRunner()
    built = runner.invoke(app, ["hgnc", "build", str(download), "-o", str(out), "--release", "2026-01-06"])
    assert built.exit_code == 0, built.output
    assert "1 HGNC entries, release 2026-01-06" in built.output
    monkeypatch.setenv("ANNOSTREAM_HGNC_TABLE", str(out))
    get_settings.cache_clear()
    try:
        info = runner.invoke(app, ["hgnc", "info"])
    finally:
        get_settings.cache_clear()
    assert info.exit_code == 0, info.output
    assert f"file: {out}" in info.output and "release: 2026-01-06" in info.output and "CC0" in info.output
