"""ELLA's analyses-watcher rules (src/vardb/watcher/analysis_watcher.py, AnalysisWatcher) kept by
Annostream's watcher and pipeline: whitelist/blacklist semantics and variables, and a destination
that already exists in ANALYSES_PATH."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.config import ConfigError, Settings, load_settings
from engine.db.models import ImportJob
from engine.db.session import session_scope
from engine.events import build_ready_event, encode
from engine.pipeline import Pipeline
from producers.watcher import NameFilter
from tests.conftest import DATA
from tests.support.events import is_lane_topic


def name_filter(tmp_path: Path, **env: object) -> NameFilter:
    return NameFilter.from_settings(load_settings(ANNOSTREAM_DATA_DIR=tmp_path, **env))


def test_lists_are_prefix_matches_like_ellas_re_match(tmp_path: Path) -> None:
    # check_and_import: any(i.match(analysis_config_data["name"]) for i in self.compiled_whitelist)
    names = name_filter(tmp_path, ANALYSES_ALLOW="Diag", ANALYSES_DENY="Diag-research")
    assert names.allows("Diag-excap-101-AUDIT-v01")
    assert not names.allows("Research-Diag-1")  # re.match anchors at the start only
    assert not names.allows("Diag-research-7")


def test_ella_watcher_list_file_variables_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ELLA's watcher: --whitelistfile/--blacklistfile default to these environment variables.
    (tmp_path / "white.txt").write_text("Diag\nHBOC-\n")
    (tmp_path / "black.txt").write_text("Diag-test\n")
    monkeypatch.setenv("ELLA_WATCHER_WHITELISTFILE", str(tmp_path / "white.txt"))
    monkeypatch.setenv("ELLA_WATCHER_BLACKLISTFILE", str(tmp_path / "black.txt"))
    names = name_filter(tmp_path)
    assert [names.allows(n) for n in ("Diag-1", "HBOC-2", "Other-3", "Diag-test-4")] == [
        True,
        True,
        False,
        False,
    ]


def test_command_line_lists_replace_the_files(tmp_path: Path) -> None:
    # ELLA: "Both --whitelist and --whitelistfile is set. Ignoring --whitelistfile."
    (tmp_path / "white.txt").write_text("Diag\n")
    settings = load_settings(ANNOSTREAM_DATA_DIR=tmp_path, ANALYSES_ALLOW_FILE=tmp_path / "white.txt")
    names = NameFilter.from_settings(settings, whitelist=["Research"])
    assert names.allows("Research-1") and not names.allows("Diag-1")


def test_blank_line_in_a_list_file_is_rejected_naming_the_line(tmp_path: Path) -> None:
    # ELLA compiles a blank line as re.compile(""), which matches every name (a blacklist with a
    # blank line imports nothing). Annostream refuses the file instead of guessing.
    (tmp_path / "black.txt").write_text("# paused\nResearch\n\nDiag-old\n")
    with pytest.raises(ConfigError, match=r"black\.txt: line 3 is blank; ELLA's watcher reads a blank line"):
        name_filter(tmp_path, ELLA_WATCHER_BLACKLISTFILE=tmp_path / "black.txt")


def test_list_file_made_invalid_while_running_pauses_publishing(tmp_path: Path) -> None:
    deny = tmp_path / "deny.txt"
    deny.write_text("Research\n")
    names = name_filter(tmp_path, ANALYSES_DENY_FILE=deny)
    assert names.allows("Diag-1")
    deny.write_text("Research\n\n")  # a mistaken edit
    assert names.refresh() and names.paused is not None and "line 2 is blank" in names.paused
    assert not names.allows("Diag-1")
    deny.write_text("Research\nDiag-2\n")
    assert names.refresh() and names.paused is None
    assert names.allows("Diag-1") and not names.allows("Diag-2")


def test_destination_in_analyses_path_keeps_the_folder_in_incoming_and_says_so(settings: Settings) -> None:
    # check_and_import: "if (self.dest_path / analysis_dir.name).exists(): log.warning(... Skipping.)";
    # the folder stays in incoming, never renamed (ELLA's IGV reads ANALYSES_PATH/<name>/tracks).
    source = DATA / "analyses" / "TestAnalysis-001"
    shutil.copytree(source, settings.analyses_path / "TestAnalysis-001")
    folder = settings.analyses_incoming / "TestAnalysis-001"
    shutil.copytree(source, folder)
    ready = build_ready_event(folder, settings.analyses_incoming, producer="test")
    messages = Pipeline(settings).annotate(encode(ready))
    assert not [m for m in messages if is_lane_topic(m.topic, "analysis.annotated")]
    assert folder.is_dir() and not any(settings.analyses_failed.iterdir())
    assert sorted(p.name for p in settings.analyses_path.iterdir()) == ["TestAnalysis-001"]
    with session_scope(settings.database_url) as session:
        job = session.scalars(sa.select(ImportJob).where(ImportJob.event_id == ready.event_id)).one()
        assert job.status == "FAILED"
        assert "ANALYSES_PATH already has a folder named TestAnalysis-001" in (job.message or "")
        assert "stays in ANALYSES_INCOMING" in (job.message or "")
    dead = json.loads(next(m for m in messages if m.topic.endswith("analysis.failed")).value)
    assert "already has a folder" in json.dumps(dead)
    # Once the operator moves the old folder away, publishing again imports it.
    shutil.move(settings.analyses_path / "TestAnalysis-001", settings.analyses_failed / "old")
    again = build_ready_event(folder, settings.analyses_incoming, producer="test")
    pipeline = Pipeline(settings)
    forward = [m for m in pipeline.annotate(encode(again)) if is_lane_topic(m.topic, "analysis.annotated")]
    assert any(m.topic.endswith("analysis.imported") for m in pipeline.persist(forward[0].value))
    assert (settings.analyses_path / "TestAnalysis-001").is_dir() and not folder.exists()
