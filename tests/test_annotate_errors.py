"""Bad input: each error names the file and config entry, and no partial output is left behind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.annotate import annotate_vcf
from engine.errors import InputError

DATA = Path(__file__).parent / "data" / "annotate"
needs_tabix = pytest.mark.skipif(
    not shutil.which("bgzip") or not shutil.which("tabix"),
    reason="bgzip/tabix not installed (run ops/scripts/ensure-tools.sh as root)",
)


def bgzip_index(path: Path, preset: str = "vcf") -> Path:
    subprocess.run(["bgzip", "-f", str(path)], check=True)
    subprocess.run(["tabix", "-f", "-p", preset, f"{path}.gz"], check=True)
    return Path(f"{path}.gz")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(DATA / "source.vcf", tmp_path / "source.vcf")
    shutil.copy(DATA / "query.vcf", tmp_path / "query.vcf")
    bgzip_index(tmp_path / "source.vcf")
    return tmp_path


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "conf.toml"
    path.write_text(body)
    return path


def run_expecting_error(tmp_path: Path, config: Path, *words: str) -> InputError:
    out = tmp_path / "out.vcf.gz"
    with pytest.raises(InputError) as caught:
        annotate_vcf(config, tmp_path / "query.vcf", out)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    assert not out.exists()
    assert not list(tmp_path.glob(".out.vcf.gz.*")), "temporary output left behind"
    return caught.value


@needs_tabix
def test_missing_source_names_block(work: Path) -> None:
    config = write_config(work, '[[annotation]]\nfile="nope.vcf.gz"\nfields=["AC"]\nops=["self"]\n')
    run_expecting_error(work, config, "conf.toml", "[[annotation]] #1", "nope.vcf.gz", "not found")


@needs_tabix
def test_optional_missing_source_is_skipped(work: Path) -> None:
    config = write_config(
        work, '[[annotation]]\nfile="nope.vcf.gz"\nfields=["AC"]\nops=["self"]\noptional=true\n'
    )
    result = annotate_vcf(config, work / "query.vcf", work / "out.vcf")
    assert result.skipped_sources and (work / "out.vcf").exists()


@needs_tabix
def test_unindexed_source(work: Path) -> None:
    (work / "source.vcf.gz.tbi").unlink()
    config = write_config(work, '[[annotation]]\nfile="source.vcf.gz"\nfields=["AC"]\nops=["self"]\n')
    run_expecting_error(work, config, "has no index", "tabix")


@needs_tabix
def test_unsorted_source(work: Path) -> None:
    lines = (DATA / "source.vcf").read_text().splitlines()
    body = [line for line in lines if not line.startswith("#")]
    header = [line for line in lines if line.startswith("#")]
    (work / "unsorted.vcf").write_text("\n".join([*header, body[2], body[0], *body[3:]]) + "\n")
    subprocess.run(["bgzip", "-f", str(work / "unsorted.vcf")], check=True)
    Path(f"{work}/unsorted.vcf.gz.tbi").write_bytes(b"")  # tabix refuses unsorted input; fake the index
    config = write_config(work, '[[annotation]]\nfile="unsorted.vcf.gz"\nfields=["AC"]\nops=["self"]\n')
    error = run_expecting_error(work, config, "not sorted", "unsorted.vcf.gz")
    assert error.line is not None


@needs_tabix
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('fields=["AC"]\nops=["median"]', ["unknown op 'median'"]),
        ('fields=["AC","AF"]\nops=["self"]', ["different lengths"]),
        ('fields=["AC"]\nnames=["a","b"]\nops=["self"]', ["different lengths"]),
        ('fields=["NOPE"]\nops=["self"]', ["'NOPE' is not defined", "source.vcf.gz"]),
        ('fields=["AC"]\nops=["lua:AC+1"]', ["Lua is not supported"]),
    ],
)
def test_config_errors(work: Path, body: str, words: list[str]) -> None:
    config = write_config(work, f'[[annotation]]\nfile="source.vcf.gz"\n{body}\n')
    run_expecting_error(work, config, "conf.toml", "[[annotation]] #1", *words)


@needs_tabix
def test_postannotation_lua_and_bad_expression(work: Path) -> None:
    base = '[[annotation]]\nfile="source.vcf.gz"\nfields=["AC","AN"]\nops=["self","self"]\n'
    config = write_config(
        work, base + '[[postannotation]]\nfields=["AC"]\nop="lua:AC+1"\nname="x"\ntype="Float"\n'
    )
    run_expecting_error(work, config, "[[postannotation]] #1", "Lua is not supported")
    config = write_config(
        work, base + '[[postannotation]]\nfields=["AC"]\nop="__import__(\'os\')"\nname="x"\n'
    )
    run_expecting_error(work, config, "[[postannotation]] #1", "neither a reducer nor a valid expression")


@needs_tabix
def test_expression_postannotation(work: Path) -> None:
    config = write_config(
        work,
        '[[annotation]]\nfile="source.vcf.gz"\nfields=["AC","AN"]\nops=["self","self"]\n'
        '[[postannotation]]\nfields=["AC","AN"]\nop="AC / AN"\nname="MYAF"\ntype="Float"\n',
    )
    out = work / "out.vcf"
    annotate_vcf(config, work / "query.vcf", out)
    line = next(x for x in out.read_text().splitlines() if x.startswith("1\t100\t.\tA\tG"))
    assert "MYAF=0.003" in line
    assert "##INFO=<ID=MYAF,Number=1,Type=Float" in out.read_text()


@needs_tabix
def test_contig_naming_mismatch_detected_and_mapped(work: Path) -> None:
    text = (DATA / "query.vcf").read_text()
    renamed = "\n".join(
        line
        if line.startswith("##fileformat")
        or line.startswith("#CHROM")
        or line.startswith("##INFO")
        or line.startswith("##FORMAT")
        else line.replace("ID=", "ID=chr")
        if line.startswith("##contig")
        else "chr" + line
        for line in text.splitlines()
    )
    (work / "query.vcf").write_text(renamed + "\n")
    config = write_config(work, '[[annotation]]\nfile="source.vcf.gz"\nfields=["AC"]\nops=["self"]\n')
    run_expecting_error(work, config, "contig naming mismatch", "'chr1'", "-chr-map auto")
    out = work / "mapped.vcf"
    result = annotate_vcf(config, work / "query.vcf", out, chr_map="auto")
    assert result.annotated > 0
    assert "chr1\t100\t.\tA\tG" in out.read_text()


@needs_tabix
def test_cli_single_dash_options_and_stdout(work: Path) -> None:
    config = write_config(work, '[[annotation]]\nfile="source.vcf.gz"\nfields=["AC"]\nops=["self"]\n')
    subdir = work / "elsewhere"
    subdir.mkdir()
    shutil.move(str(config), subdir / "conf.toml")
    done = subprocess.run(
        [
            str(Path(".venv/bin/annostream").resolve()),
            "annotate",
            "-base-path",
            str(work),
            "-p",
            "2",
            str(subdir / "conf.toml"),
            str(work / "query.vcf"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "AC=3" in done.stdout
    assert "annotated 15 records" in done.stderr


@needs_tabix
def test_recompiles_when_source_changes(work: Path) -> None:
    config = write_config(work, '[[annotation]]\nfile="source.vcf.gz"\nfields=["GENE"]\nops=["self"]\n')
    first = annotate_vcf(config, work / "query.vcf", work / "a.vcf")
    again = annotate_vcf(config, work / "query.vcf", work / "b.vcf")
    assert first.compiled and not again.compiled
    text = (DATA / "source.vcf").read_text().replace("GENE=ABC", "GENE=XYZ")
    (work / "source.vcf").write_text(text)
    bgzip_index(work / "source.vcf")
    changed = annotate_vcf(config, work / "query.vcf", work / "c.vcf")
    assert changed.compiled
    assert "GENE=XYZ" in (work / "c.vcf").read_text()
