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
def test_contig_naming_mapped_by_default_and_strict_on_request(work: Path) -> None:
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
    with pytest.raises(InputError, match="contig naming mismatch") as caught:
        annotate_vcf(config, work / "query.vcf", work / "strict.vcf", chr_map="none")
    assert "'chr1'" in str(caught.value) and "-chr-map auto" in str(caught.value)
    assert not (work / "strict.vcf").exists()
    out = work / "mapped.vcf"
    result = annotate_vcf(config, work / "query.vcf", out)  # vcfanno's rule is the default
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


# -- vcfanno's semantics: where a source is found, contig names, -p ----------------------------------


@needs_tabix
def test_source_paths_resolve_as_vcfanno(
    work: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As given from the working directory first, else -base-path + '/' + file (vcfanno's
    Config.Sources); the config's folder only when no -base-path is given."""
    elsewhere = tmp_path_factory.mktemp("cwd")
    (elsewhere / "data").mkdir()
    other = (DATA / "source.vcf").read_text().replace("AC=3", "AC=77")
    (elsewhere / "data" / "source.vcf").write_text(other)
    bgzip_index(elsewhere / "data" / "source.vcf")
    config = write_config(work, '[[annotation]]\nfile="data/source.vcf.gz"\nfields=["AC"]\nops=["self"]\n')
    monkeypatch.chdir(elsewhere)
    out = work / "cwd.vcf"
    annotate_vcf(config, work / "query.vcf", out, base_path=work / "nowhere")
    assert "AC=77" in out.read_text()  # found as given, relative to the working directory
    monkeypatch.chdir(work)
    (work / "data").mkdir()
    shutil.copy(work / "source.vcf.gz", work / "data" / "source.vcf.gz")
    shutil.copy(work / "source.vcf.gz.tbi", work / "data" / "source.vcf.gz.tbi")
    monkeypatch.chdir(tmp_path_factory.mktemp("empty"))
    annotate_vcf(config, work / "query.vcf", out, base_path=work)  # -base-path + "/" + file
    assert "AC=3" in out.read_text()
    annotate_vcf(config, work / "query.vcf", out)  # no -base-path: the config's folder
    assert "AC=3" in out.read_text()
    with pytest.raises(InputError, match="source file not found") as caught:
        annotate_vcf(config, work / "query.vcf", out, base_path=elsewhere / "nowhere")
    assert "data/source.vcf.gz" in str(caught.value) and str(elsewhere / "nowhere") in str(caught.value)
    assert "working directory" in str(caught.value)


@needs_tabix
def test_chr_prefix_is_matched_both_ways_and_logged_once(
    work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = (DATA / "source.vcf").read_text()
    renamed = "\n".join(line if line.startswith("#") else "chr" + line for line in source.splitlines())
    (work / "chrsource.vcf").write_text(renamed.replace("##contig=<ID=", "##contig=<ID=chr") + "\n")
    bgzip_index(work / "chrsource.vcf")
    plain = write_config(work, '[[annotation]]\nfile="source.vcf.gz"\nfields=["AC"]\nops=["self"]\n').rename(
        work / "plain.toml"
    )
    config = write_config(work, '[[annotation]]\nfile="chrsource.vcf.gz"\nfields=["AC"]\nops=["self"]\n')
    expected = annotate_vcf(plain, work / "query.vcf", work / "expected.vcf")
    with caplog.at_level("WARNING"):
        result = annotate_vcf(config, work / "query.vcf", work / "out.vcf")  # query "1", source "chr1"
    assert result.annotated == expected.annotated > 0
    assert (work / "out.vcf").read_text().split("#CHROM")[1] == (work / "expected.vcf").read_text().split(
        "#CHROM"
    )[1]
    notes = [r.getMessage() for r in caplog.records if "chr prefix" in r.getMessage()]
    assert notes and len(notes) == len(set(notes))  # once per contig, not per record
    assert "input contig '1' matched source contig 'chr1'" in " ".join(notes)
    mapping = work / "names.txt"
    mapping.write_text("1 chr1\n# a comment\n")
    mapped = annotate_vcf(config, work / "query.vcf", work / "mapped.vcf", chr_map=str(mapping))
    assert mapped.annotated == expected.annotated
    mapping.write_text("1 chr1 extra\n")
    with pytest.raises(InputError, match="3 names on a -chr-map line"):
        annotate_vcf(config, work / "query.vcf", work / "mapped.vcf", chr_map=str(mapping))


@needs_tabix
@pytest.mark.parametrize("threads", [2, 3])
def test_parallel_chunks_give_the_serial_output(
    work: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    import engine.annotate.annotator as annotator

    lines = (DATA / "query.vcf").read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    body = [line for line in lines if not line.startswith("#")]
    (work / "many.vcf").write_text("\n".join(header + body * 40) + "\n")  # unsorted is fine
    config = write_config(
        work, '[[annotation]]\nfile="source.vcf.gz"\nfields=["AC","GENE"]\nops=["self","self"]\n'
    )
    serial = annotate_vcf(config, work / "many.vcf", work / "serial.vcf", threads=1)
    monkeypatch.setattr(annotator, "CHUNK_BYTES", 500)  # many chunks
    parallel = annotate_vcf(config, work / "many.vcf", work / "parallel.vcf.gz", threads=threads)
    assert (serial.records, serial.annotated) == (parallel.records, parallel.annotated)
    import gzip

    written = gzip.decompress((work / "parallel.vcf.gz").read_bytes()).decode()
    assert written == (work / "serial.vcf").read_text()


@needs_tabix
def test_field_not_in_the_source_header_gets_no_values(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    """As vcfanno ("NOPE not found in header"): a warning naming the block, no values, no error."""
    text = (DATA / "source.vcf").read_text().replace("\tAC=", "\tNOPE=1;AC=")
    (work / "source.vcf").write_text(text)
    bgzip_index(work / "source.vcf")
    config = write_config(
        work, '[[annotation]]\nfile="source.vcf.gz"\nfields=["NOPE","AC"]\nops=["self","self"]\n'
    )
    for _ in range(2):  # compiling, then from the compiled index: both warn
        caplog.clear()
        with caplog.at_level("WARNING"):
            annotate_vcf(config, work / "query.vcf", work / "out.vcf")
        assert any(
            "'NOPE' is not defined" in r.getMessage() and "[[annotation]] #1" in r.getMessage()
            for r in caplog.records
        )
        body = [line for line in (work / "out.vcf").read_text().splitlines() if not line.startswith("#")]
        assert any("AC=" in line for line in body) and not any("NOPE=" in line for line in body)
