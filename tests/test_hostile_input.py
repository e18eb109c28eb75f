"""Hostile analysis folders and events never reach "internal error" and never touch anything
outside the analysis folder: each one is a FAILED job (or a dead letter) whose message names the
file and, where there is one, the line. Runs the real stages on PostgreSQL and SQLite."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from engine.config import Settings
from engine.db.models import ImportJob
from engine.db.session import session_scope
from engine.events import build_ready_event, encode
from engine.limits import LIMITS
from engine.pipeline import Pipeline
from tests.test_pipeline_failures import (
    PED,
    VCF,
    first_record_line,
    make_folder,
    replace_line,
    run,
    set_column,
)

ANALYSIS_FILE = "TestAnalysis-001.analysis"


def analysis(**fields: object) -> Callable[[Path], None]:
    document = {
        "name": "Bad-001",
        "genepanel_name": "HBOC",
        "genepanel_version": "v1.0.0",
        "data": [{"vcf": VCF, "ped": PED}],
        **fields,
    }
    return lambda folder: (folder / ANALYSIS_FILE).write_text(json.dumps(document))


def edit_record(column: int, value: str) -> Callable[[Path], None]:
    return lambda folder: replace_line(folder, VCF, first_record_line(folder), set_column(column, value))


def non_utf8_sample(folder: Path) -> None:
    path = folder / VCF
    path.write_bytes(path.read_bytes().replace(b"TestSample-001", b"TestSample-\xff\xfe1", 1))


def nul_in_record(folder: Path) -> None:
    replace_line(folder, VCF, first_record_line(folder) + 1, lambda line: line.replace("\t", "\t\x00", 1))


def own_father(folder: Path) -> None:
    replace_line(
        folder,
        PED,
        2,
        lambda line: "\t".join([*line.split("\t")[:2], line.split("\t")[1], *line.split("\t")[3:]]),
    )


def symlink_out(folder: Path) -> None:
    (folder / "report.txt").unlink(missing_ok=True)
    os.symlink("/etc/hostname", folder / "report.txt")


def deep_json(folder: Path) -> None:
    (folder / ANALYSIS_FILE).write_text('{"name": "Bad-001", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")


HOSTILE = {
    # case: (edit, file the message names, line (int, "first record", "#CHROM" or None), words)
    "POS beyond 32 bits": (edit_record(1, "4294967296"), VCF, "first record", "POS"),
    "POS with 40 digits": (edit_record(1, "1" * 40), VCF, "first record", "POS"),
    "NUL byte in a record": (nul_in_record, VCF, "second record", "NUL"),
    "non-UTF-8 sample name": (non_utf8_sample, VCF, "#CHROM", "UTF-8"),
    "sample is its own father": (own_father, PED, 2, "own father"),
    "analysis name ../../x": (analysis(name="../../x"), ANALYSIS_FILE, None, "analysis name"),
    "absolute analysis name": (analysis(name="/tmp/escaped-h14rel"), ANALYSIS_FILE, None, "analysis name"),
    "absolute vcf path": (analysis(data=[{"vcf": "/etc/hostname"}]), ANALYSIS_FILE, None, "outside"),
    "vcf path with ..": (
        analysis(data=[{"vcf": f"../Bad-001/{VCF}", "ped": PED}]),
        ANALYSIS_FILE,
        None,
        "outside",
    ),
    "ped path with ..": (analysis(data=[{"vcf": VCF, "ped": "../../x.ped"}]), ANALYSIS_FILE, None, "outside"),
    "deeply nested .analysis": (deep_json, ANALYSIS_FILE, None, "nested too deeply"),
}


def record_line(folder: Path) -> int:
    lines = (folder / VCF).read_bytes().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(b"#CHROM")) + 1


def expected_line(folder: Path, line: object) -> int | None:
    if line == "first record":
        return record_line(folder)
    if line == "second record":
        return record_line(folder) + 1
    if line == "#CHROM":
        return record_line(folder) - 1
    return line if isinstance(line, int) else None


def assert_failed_with(
    settings: Settings, folder_name: str, published: list, file: str | None, line: int | None, words: str
) -> None:
    assert [message.topic for message in published] == ["t.analysis.failed"], published
    dead = orjson.loads(published[0].value)
    error = dead["error"]
    assert words.lower() in error["message"].lower(), error
    assert "internal error" not in error["message"], error
    if file:
        assert (error["file"] or "").endswith(file), error
    if line is not None:
        assert error["line"] == line, error
    with session_scope(settings.database_url) as session:
        job = session.scalars(sa.select(ImportJob).where(ImportJob.analysis_name == folder_name)).one()
        assert job.status == "FAILED" and "internal error" not in (job.message or "")


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_folder_is_explained(settings: Settings, case: str) -> None:
    edit, file, line, words = HOSTILE[case]
    folder = make_folder(settings, "Bad-001", edit)
    where = expected_line(folder, line)
    published = run(settings, folder)
    assert_failed_with(settings, "Bad-001", published, file, where, words)
    assert not Path("/tmp/escaped-h14rel").exists()
    assert not (settings.work_dir.parent / "x").exists()


def test_symlink_out_of_the_folder_is_refused_everywhere(settings: Settings) -> None:
    from engine.deposit.analysis_folder import load_analysis_folder
    from engine.errors import InputError

    folder = make_folder(settings, "Bad-001", symlink_out)
    with pytest.raises(InputError, match="symlink") as published:
        build_ready_event(folder, settings.analyses_incoming, producer="test")
    with pytest.raises(InputError, match="symlink") as loaded:
        load_analysis_folder(folder)
    for error in (published.value, loaded.value):
        assert (error.file or "").endswith("report.txt")


@pytest.fixture
def small_limits() -> Iterator[None]:
    saved = (LIMITS.max_vcf_bytes, LIMITS.max_line_bytes, LIMITS.max_samples)
    yield
    LIMITS.max_vcf_bytes, LIMITS.max_line_bytes, LIMITS.max_samples = saved


def gzip_bomb(folder: Path) -> None:
    text = (folder / VCF).read_text()
    record = text.splitlines()[-1]
    (folder / VCF).unlink()
    with gzip.open(folder / f"{VCF}.gz", "wt") as out:
        out.write(text)
        for _ in range(200_000):  # ~30 MB decompressed, a few hundred kB compressed
            out.write(record + "\n")
    analysis(data=[{"vcf": f"{VCF}.gz", "ped": PED}])(folder)


def long_line(folder: Path) -> None:
    replace_line(folder, VCF, first_record_line(folder), lambda line: line + "A" * 300_000)


BOUNDS = {
    # case: (edit, setting to lower, value, file, words)
    "gzip bomb": (gzip_bomb, "max_vcf_bytes", 1_000_000, f"{VCF}.gz", "too large"),
    "50 MB line (scaled down)": (long_line, "max_line_bytes", 100_000, VCF, "too long"),
    "too many samples": (lambda folder: None, "max_samples", 2, VCF, "samples"),
}


@pytest.mark.parametrize("case", list(BOUNDS))
def test_bounds_on_input(settings: Settings, small_limits: None, case: str) -> None:
    edit, setting, value, file, words = BOUNDS[case]
    folder = make_folder(settings, "Bad-001", edit)
    bounded = settings.model_copy(update={setting: value})
    published = run(bounded, folder)
    assert_failed_with(settings, "Bad-001", published, file, None, words)
    assert "ANNOSTREAM_MAX" in orjson.loads(published[0].value)["error"]["message"]


@pytest.mark.parametrize("name", ["../../escaped-h14rel", "/tmp/escaped-h14rel", "..", ".hidden", "a/b"])
def test_event_with_a_path_as_analysis_name_is_dead_lettered(settings: Settings, name: str) -> None:
    folder = make_folder(settings, "Good-001")
    event = build_ready_event(folder, settings.analyses_incoming, producer="test", analysis="Good-001")
    document = orjson.loads(encode(event))
    document["analysis"] = name
    published = Pipeline(settings).annotate(orjson.dumps(document))
    assert [message.topic for message in published] == ["t.analysis.failed"]
    assert "analysis" in orjson.loads(published[0].value)["error"]["message"]
    assert not Path("/tmp/escaped-h14rel").exists()
    assert not (settings.work_dir.parent / "escaped-h14rel").exists()
    assert folder.is_dir()  # an invalid event moves nothing
