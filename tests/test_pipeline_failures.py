"""Bad input through the real pipeline stages (no faust): each failure is specific (file, line,
what was expected), lands in error.json, on the import job and in the dead-letter event, nothing
is half-imported, and the next good analysis still imports. Runs on PostgreSQL and SQLite."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from engine.config import Settings
from engine.db.models import Allele, Analysis, ImportJob
from engine.db.session import get_engine, session_scope
from engine.events import build_ready_event, encode
from engine.pipeline import Outgoing, Pipeline
from tests.support.env import topics_for

DATA = Path(__file__).parent / "data"
TEST_ANALYSIS = DATA / "analyses" / "TestAnalysis-001"
VCF = "TestAnalysis-001.vcf"
PED = "TestAnalysis-001.ped"

TOPICS = topics_for()  # the conftest settings use the prefix "t."


def make_folder(settings: Settings, name: str, edit: Callable[[Path], None] | None = None) -> Path:
    folder = settings.analyses_incoming / name
    shutil.copytree(TEST_ANALYSIS, folder)
    (folder / "READY").unlink(missing_ok=True)
    (folder / "TestAnalysis-001.analysis").write_text(
        json.dumps({"params": {"genepanel": "HBOC_v1.0.0"}, "name": name, "priority": "1"})
    )
    if edit:
        edit(folder)
    return folder


def run(settings: Settings, folder: Path) -> list[Outgoing]:
    """Both stages, as the worker runs them; returns what the last stage publishes (without the
    job status updates, which tests/test_status_events.py covers)."""
    pipeline = Pipeline(settings)
    event = build_ready_event(folder, settings.analyses_incoming, producer="test", analysis=folder.name)
    published = without_status(pipeline.annotate(encode(event)))
    if len(published) == 1 and published[0].topic == TOPICS.annotated:
        published = without_status(pipeline.persist(published[0].value))
    return published


def without_status(messages: list[Outgoing]) -> list[Outgoing]:
    return [message for message in messages if message.topic != TOPICS.status]


def replace_line(folder: Path, file: str, line_number: int, edit: Callable[[str], str]) -> None:
    path = folder / file
    lines = path.read_text().splitlines()
    lines[line_number - 1] = edit(lines[line_number - 1])
    path.write_text("\n".join(lines) + "\n")


def first_record_line(folder: Path) -> int:
    lines = (folder / VCF).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith("#CHROM")) + 1


def set_column(column: int, value: str) -> Callable[[str], str]:
    def edit(line: str) -> str:
        fields = line.split("\t")
        fields[column] = value
        return "\t".join(fields)

    return edit


def write_analysis_file(content: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "TestAnalysis-001.analysis").write_text(content)


def truncated_gzip(folder: Path) -> None:
    data = gzip.compress((folder / VCF).read_bytes())
    (folder / VCF).unlink()
    (folder / f"{VCF}.gz").write_bytes(data[: len(data) // 2])
    analysis = {
        "name": folder.name,
        "genepanel_name": "HBOC",
        "genepanel_version": "v1.0.0",
        "data": [{"vcf": f"{VCF}.gz", "ped": PED}],
    }
    (folder / "TestAnalysis-001.analysis").write_text(json.dumps(analysis))


def record_edit(column: int, value: str) -> Callable[[Path], None]:
    return lambda folder: replace_line(folder, VCF, first_record_line(folder), set_column(column, value))


BAD_INPUTS = {
    # case: (edit, file the message names, line or None, words the message must contain)
    "malformed analysis json": (
        write_analysis_file('{"name": "x",\n  "params": }'),
        "TestAnalysis-001.analysis",
        2,
        "JSON",
    ),
    "unknown key": (
        write_analysis_file(
            json.dumps(
                {
                    "name": "Bad",
                    "genepanel_name": "HBOC",
                    "genepanel_version": "v1.0.0",
                    "data": [{"vcf": VCF, "ped": PED}],
                    "colour": "blue",
                }
            )
        ),
        "TestAnalysis-001.analysis",
        None,
        "colour",
    ),
    "named file missing": (
        write_analysis_file(
            json.dumps(
                {
                    "name": "Bad",
                    "genepanel_name": "HBOC",
                    "genepanel_version": "v1.0.0",
                    "data": [{"vcf": "missing.vcf", "ped": PED}],
                }
            )
        ),
        "TestAnalysis-001.analysis",
        None,
        "missing.vcf",
    ),
    "unknown gene panel": (
        write_analysis_file(
            json.dumps({"params": {"genepanel": "NOPE_v9.9.9"}, "name": "Bad", "priority": "1"})
        ),
        None,
        None,
        "gene panel NOPE_v9.9.9 is not in the database",
    ),
    "ped column count": (lambda f: replace_line(f, PED, 2, lambda line: line + "\textra"), PED, 2, "column"),
    "two probands": (lambda f: replace_line(f, PED, 2, lambda line: line[:-1] + "1"), PED, None, "proband"),
    # ELLA's SampleImporter.process ignores PED lines of samples the VCF lacks; the VCF sample the
    # PED then misses is the error
    "ped sample not in vcf": (
        lambda f: replace_line(f, PED, 3, lambda line: line.replace("TestSample-003", "Stranger-9")),
        VCF,
        None,
        "TestSample-003",
    ),
    "non-numeric POS": (record_edit(1, "12x"), VCF, "first record", "POS"),
    "illegal ALT characters": (record_edit(4, "G!"), VCF, "first record", "ALT"),
    "missing GT": (
        lambda f: replace_line(f, VCF, first_record_line(f), lambda line: line.replace("\tGT:", "\tXX:")),
        VCF,
        "first record",
        "GT",
    ),
    "broken header": (lambda f: replace_line(f, VCF, 5, lambda line: "##INFO=<ID=broken"), VCF, 5, "header"),
    "truncated gzip": (truncated_gzip, f"{VCF}.gz", None, "truncated"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_explained_everywhere(settings: Settings, case: str) -> None:
    edit, file, line, words = BAD_INPUTS[case]
    folder = make_folder(settings, "Bad-001", edit)
    expected_line = first_record_line(folder) if line == "first record" else line

    published = run(settings, folder)

    assert [message.topic for message in published] == [TOPICS.failed]
    dead = orjson.loads(published[0].value)
    error_files = list(settings.analyses_failed.glob("Bad-001*/error.json"))
    assert len(error_files) == 1 and not folder.exists()
    error = json.loads(error_files[0].read_text())
    for where in (dead["error"], error):
        assert words.lower() in where["message"].lower(), where
        if file:
            assert where["file"].endswith(file), where
        if expected_line is not None:
            assert where["line"] == expected_line, where
    assert error["event_id"] == dead["original"]["event_id"]
    with session_scope(settings.database_url) as session:
        job = session.scalars(sa.select(ImportJob)).one()
        assert job.status == "FAILED" and words.lower() in job.message.lower()
        assert session.scalar(sa.select(sa.func.count()).select_from(Analysis)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(Allele)) == 0

    # The engine keeps serving: the next good folder imports.
    good = make_folder(settings, "Good-002")
    assert [message.topic for message in run(settings, good)] == [TOPICS.imported]
    assert (settings.analyses_path / "Good-002").is_dir()
    get_engine.cache_clear()


def test_same_name_with_different_content_is_rejected(settings: Settings) -> None:
    assert run(settings, make_folder(settings, "Twice-001"))[0].topic == TOPICS.imported
    again = make_folder(settings, "Twice-001", lambda f: (f / "warnings.txt").write_text("changed"))
    # As ELLA's watcher: while ANALYSES_PATH holds a folder of that name, it stays in incoming.
    published = run(settings, again)
    assert [message.topic for message in published] == ["t.analysis.failed"]
    assert "already has a folder named Twice-001" in orjson.loads(published[0].value)["error"]["message"]
    assert again.is_dir() and not any(settings.analyses_failed.iterdir())
    # With the old folder archived elsewhere, the name is still taken in the database.
    shutil.move(settings.analyses_path / "Twice-001", settings.data_dir / "archived-Twice-001")
    published = run(settings, again)
    assert [message.topic for message in published] == [TOPICS.failed]
    assert "already imported" in orjson.loads(published[0].value)["error"]["message"]
    assert next(settings.analyses_failed.glob("Twice-001*/error.json"))


def test_crash_between_commit_and_move_is_repaired(settings: Settings) -> None:
    folder = make_folder(settings, "Crash-001")
    pipeline = Pipeline(settings)
    event = encode(build_ready_event(folder, settings.analyses_incoming, producer="test"))
    annotated = pipeline.annotate(event)[0].value
    # Simulate the crash: the move after the commit does not happen.
    import engine.pipeline.stages as stages

    original = stages.move_to_imported
    stages.move_to_imported = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        pipeline.persist(annotated)
    finally:
        stages.move_to_imported = original
    assert folder.is_dir()
    # Kafka redelivers the same event: nothing is written twice and the folder moves.
    again = without_status(pipeline.persist(annotated))
    assert [message.topic for message in again] == [TOPICS.imported]
    assert not folder.exists() and (settings.analyses_path / "Crash-001").is_dir()
    with session_scope(settings.database_url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Analysis)) == 1


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"version": 99}, "analysis.ready"),
        ({"schema": "analysis.unknown"}, "analysis.unknown"),
        ({"folder": "../outside"}, "folder"),
        ({"folder": "/etc"}, "folder"),
    ],
)
def test_invalid_events_go_to_the_dead_letter_topic_with_the_reason(
    settings: Settings, change: dict, reason: str
) -> None:
    folder = make_folder(settings, "Odd-001")
    document = build_ready_event(folder, settings.analyses_incoming, producer="test").to_dict()
    raw = orjson.dumps({**document, **change})

    published = without_status(Pipeline(settings).annotate(raw))

    assert [message.topic for message in published] == [TOPICS.failed]
    dead = orjson.loads(published[0].value)
    assert dead["stage"] == "validate" and reason in dead["error"]["message"]
    assert dead["original"] == orjson.loads(raw)
    assert folder.is_dir(), "an invalid event must not move anything"
    with session_scope(settings.database_url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ImportJob)) == 0


def test_a_symlink_escaping_incoming_is_rejected(settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(TEST_ANALYSIS, outside)
    (settings.analyses_incoming / "Link-001").symlink_to(outside)
    document = build_ready_event(outside, outside.parent, producer="test", analysis="Link-001").to_dict()
    raw = orjson.dumps({**document, "folder": "Link-001"})

    published = without_status(Pipeline(settings).annotate(raw))

    dead = orjson.loads(published[0].value)
    assert published[0].topic == TOPICS.failed and dead["stage"] == "validate"
    assert "ANALYSES_INCOMING" in dead["error"]["message"] or "outside" in dead["error"]["message"]
    assert outside.is_dir() and (outside / VCF).is_file()
