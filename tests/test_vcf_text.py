"""The one VCF text layer: header object, INFO parser, opener wording, atomic writer, layering."""

from __future__ import annotations

import ast
import gzip
from pathlib import Path

import pytest

from engine.annotate.annotator import annotate_vcf
from engine.deposit.specs import SampleRecord, VcfSpec
from engine.errors import InputError
from engine.normalise.vcf import normalise_vcf
from engine.vcf.fastpath import iter_variant_blocks
from engine.vcf.header import VcfHeader, read_header, structured_fields
from engine.vcf.info import parse_info, render_info
from engine.vcf.reader import iter_variant_batches
from engine.vcf.textio import atomic_output

ROOT = Path(__file__).resolve().parents[1]
HEADER = """##fileformat=VCFv4.2
##contig=<ID=1,length=249250621>
##contig=<ID=chrX,length=155270560>
##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth, total">
##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence. Format: Allele|Gene",Source="VEP">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=AD,Number=.,Type=Integer,Description="Allele depths">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tP
"""
RECORDS = [
    "1\t100\t.\tA\tG,T\t50\tPASS\tDP=3;;CSQ=G|BRCA2\tGT:AD\t1/2:1,2,3",
    "chrX\t200\t.\tC\tT\t50\tPASS\tDP=4\tGT:AD\t0/1:3,4",
]
PROBAND = [SampleRecord("P", affected=True, proband=True, family_id="F")]


def write(path: Path, header: str = HEADER, records: list[str] = RECORDS) -> Path:
    path.write_text(header + "\n".join(records) + "\n")
    return path


def test_structured_fields_keep_quoted_commas() -> None:
    fields = structured_fields('ID=CSQ,Number=.,Type=String,Description="a, b=c \\"d\\"",Source="VEP"')
    assert fields == {
        "ID": "CSQ",
        "Number": ".",
        "Type": "String",
        "Description": 'a, b=c \\"d\\"',
        "Source": "VEP",
    }


def test_one_header_object_reads_and_writes(tmp_path: Path) -> None:
    path = write(tmp_path / "in.vcf")
    header = read_header(path)
    assert header.samples == ["P"] and header.line_count == 8 and header.n_columns == 10
    assert header.contigs == ["1", "chrX"]
    assert header.infos["DP"] == {"Number": "1", "Type": "Integer", "Description": "Depth, total"}
    assert header.infos["CSQ"]["Description"] == "Consequence. Format: Allele|Gene"
    assert header.format_numbers == {"GT": "1", "AD": "."}
    header.define_info("DP", "1", "Float", 'mean "depth"')
    header.remove_infos({"CSQ"})
    header.add_line("##source=test")
    assert header.infos["DP"]["Type"] == "Float" and "CSQ" not in header.infos
    lines = header.lines()
    assert lines[-1].startswith("#CHROM") and lines[-2] == "##source=test"
    assert '##INFO=<ID=DP,Number=1,Type=Float,Description="mean \\"depth\\"">' in lines
    again = VcfHeader.parse(path, enumerate(lines, 1))
    again.check()
    assert again.infos == header.infos


def test_the_normaliser_and_annotator_write_through_the_header(tmp_path: Path) -> None:
    src = write(tmp_path / "in.vcf")
    out = tmp_path / "norm.vcf"
    normalise_vcf(src, out)
    header = read_header(out)
    assert header.formats["AD"]["Number"] == "R"  # older GATK's AD Number=. is read as R
    assert {"OLD_MULTIALLELIC", "OLD_VARIANT"} <= set(header.infos)
    assert header.contigs == ["1", "chrX"]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (".", {}),
        ("", {}),
        ("DP=3;;DB", {"DP": "3", "DB": True}),
        ("A=1;", {"A": "1"}),
        ("T=a=b;X=", {"T": "a=b", "X": ""}),
    ],
)
def test_one_info_parser_skips_empty_items(text: str, parsed: dict[str, object]) -> None:
    assert parse_info(text) == parsed
    assert parse_info(render_info(parse_info(text))) == parsed


def test_empty_info_items_agree_in_importer_and_annotator(tmp_path: Path) -> None:
    """The importer's INFO and the annotator's rewritten line read ``DP=3;;CSQ=..`` alike."""
    src = write(tmp_path / "in.vcf")
    records = [r for b in iter_variant_batches(VcfSpec(path=src), PROBAND) for r in b]
    assert len(records) == 2
    source = tmp_path / "src.vcf"
    write(source, HEADER.replace("\tFORMAT\tP", ""), ["1\t100\t.\tA\tG\t.\t.\tDP=9"])
    import pysam

    pysam.tabix_index(str(source), preset="vcf", force=True)
    config = tmp_path / "conf.toml"
    config.write_text(f'[[annotation]]\nfile="{source}.gz"\nfields=["DP"]\nnames=["src_dp"]\nops=["self"]\n')
    out = tmp_path / "out.vcf"
    annotate_vcf(config, src, out)
    body = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert body[0].split("\t")[7] == "DP=3;CSQ=G|BRCA2;src_dp=9"  # rewritten: the empty item is gone


def _truncated(tmp_path: Path) -> Path:
    plain = write(
        tmp_path / "big.vcf",
        records=[f"1\t{i}\t.\tA\tG\t50\tPASS\tDP={i}\tGT:AD\t0/1:1,2" for i in range(1, 40_000)],
    )
    whole = gzip.compress(plain.read_bytes())
    broken = tmp_path / "broken.vcf.gz"
    broken.write_bytes(whole[: len(whole) // 2])
    return broken


def _not_utf8(tmp_path: Path) -> Path:
    path = write(tmp_path / "latin1.vcf")
    path.write_bytes(path.read_bytes().replace(b"BRCA2", b"BRCA\xe92"))
    return path


@pytest.mark.parametrize(
    ("make", "wording"),
    [(_truncated, "compressed VCF is truncated or corrupt"), (_not_utf8, "VCF is not valid UTF-8 text")],
)
def test_one_wording_for_unreadable_streams(tmp_path: Path, make: object, wording: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    source = tmp_path / "s.bed"
    source.write_text("1\t0\t10\tx\n")
    import pysam

    pysam.tabix_index(str(source), preset="bed", force=True)
    config = tmp_path / "c.toml"
    config.write_text(f'[[annotation]]\nfile="{source}.gz"\ncolumns=[4]\nnames=["x"]\nops=["first"]\n')
    commands = {
        "exact": lambda: [b for b in iter_variant_batches(VcfSpec(path=path), PROBAND)],
        "fast": lambda: list(iter_variant_blocks(VcfSpec(path=path), PROBAND)),
        "normalise": lambda: normalise_vcf(path, tmp_path / "n.vcf"),
        "annotate": lambda: annotate_vcf(config, path, tmp_path / "a.vcf"),
    }
    for name, command in commands.items():
        with pytest.raises(InputError) as caught:
            command()
        assert wording in str(caught.value), name
        assert caught.value.file == str(path), name
        assert not (tmp_path / "n.vcf").exists() and not (tmp_path / "a.vcf").exists()


def test_atomic_output_leaves_nothing_on_error(tmp_path: Path) -> None:
    for name in ("x.vcf", "x.vcf.gz"):
        dst = tmp_path / name
        with pytest.raises(RuntimeError), atomic_output(dst) as out:
            out.write(b"##fileformat=VCFv4.2\n")
            raise RuntimeError("stop")
        assert list(tmp_path.iterdir()) == []
    with atomic_output(tmp_path / "y.vcf.gz") as out:
        out.write(b"##fileformat=VCFv4.2\n")
    assert gzip.decompress((tmp_path / "y.vcf.gz").read_bytes()) == b"##fileformat=VCFv4.2\n"


def _imports(folder: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return found


def test_vcf_and_normalise_never_import_annotate() -> None:
    for folder in ("engine/vcf", "engine/normalise"):
        wrong = {m for m in _imports(folder) if m.startswith("engine.annotate")}
        assert not wrong, f"{folder} imports {sorted(wrong)}"
    assert not {m for m in _imports("engine/vcf") if m.startswith("engine.normalise")}
