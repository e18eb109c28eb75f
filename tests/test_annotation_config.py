"""Annotation config versions in the database (PostgreSQL and SQLite) and the CLI command."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from engine.cli import app, register_commands
from engine.db import migrate
from engine.db.models import AnnotationConfig
from engine.db.session import session_scope
from engine.deposit.annotation_config import (
    DEFAULT_CONFIG_PATH,
    active_annotation_config,
    load_annotation_config,
    store_annotation_config,
)
from engine.errors import InputError

SMALL = {
    "deposit": [
        {
            "name": "keyvalue",
            "converter_config": {
                "elements": [{"source": "AC", "target": "frequencies.DB.count.G", "target_type": "int"}]
            },
        }
    ],
    "view": [
        {"section": "frequency", "template": "frequencyDetails", "source": "frequencies.DB", "config": {}}
    ],
}


@pytest.fixture
def migrated(db_url: str) -> str:
    migrate.upgrade(db_url)
    return db_url


def test_default_is_stored_on_first_use(migrated: str) -> None:
    with session_scope(migrated) as session:
        config_id, config = active_annotation_config(session)
    shipped = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert config == {"deposit": shipped["deposit"], "view": shipped["view"]}
    with session_scope(migrated) as session:
        assert active_annotation_config(session)[0] == config_id
        assert session.scalar(sa.select(sa.func.count()).select_from(AnnotationConfig)) == 1


def test_storing_is_idempotent_and_latest_is_active(migrated: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(SMALL))
    with session_scope(migrated) as session:
        first = store_annotation_config(session, path)
    with session_scope(migrated) as session:
        # Same content from a dict with keys in another order: same version.
        reordered = {"view": SMALL["view"], "deposit": SMALL["deposit"]}
        assert store_annotation_config(session, reordered) == first
        assert active_annotation_config(session) == (first, SMALL)
    changed = copy.deepcopy(SMALL)
    changed["deposit"][0]["converter_config"]["elements"][0]["target_type"] = "float"
    with session_scope(migrated) as session:
        second = store_annotation_config(session, changed)
    assert second > first
    with session_scope(migrated) as session:
        assert active_annotation_config(session) == (second, changed)
        rows = session.execute(sa.select(AnnotationConfig.id, AnnotationConfig.sha256)).all()
    assert len(rows) == 2 and len({sha for _, sha in rows}) == 2


def test_invalid_config_is_rejected_before_storing(migrated: str, tmp_path: Path) -> None:
    bad = copy.deepcopy(SMALL)
    bad["deposit"][0]["name"] = "keyvalu"
    with session_scope(migrated) as session, pytest.raises(InputError, match="unknown converter 'keyvalu'"):
        store_annotation_config(session, bad)
    with session_scope(migrated) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AnnotationConfig)) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deposit: []\nview: []\n  bad: 1\n", r"config.yml:3: not valid YAML"),
        ("- just\n- a list\n", r"config.yml: annotation config is list"),
        ("deposit: []\nview: []\nextra: 1\n", r"unknown key\(s\) extra"),
        ("deposit: []\nview: [{section: frequency}]\n", r"view\[0\]"),
        ("view: []\n", r"annotation config has deposit None"),
    ],
)
def test_load_errors_name_file_and_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_annotation_config(path)


def test_shipped_default_loads() -> None:
    config = load_annotation_config(DEFAULT_CONFIG_PATH)
    assert [entry["name"] for entry in config["deposit"]][:2] == ["vep", "clinvarjson"]


def test_cli_update_prints_version_id(migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_URL", migrated)
    from engine.config import get_settings

    if hasattr(get_settings, "cache_clear"):
        get_settings.cache_clear()
    register_commands()
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(SMALL))
    runner = CliRunner()
    first = runner.invoke(app, ["annotationconfig", "update", str(path)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["annotationconfig", "update", str(path)])
    assert again.exit_code == 0 and again.output == first.output
    with session_scope(migrated) as session:
        assert active_annotation_config(session)[0] == int(first.output.strip())

    bad = tmp_path / "bad.yml"
    bad.write_text(
        "deposit:\n  - name: keyvalue\n    converter_config: {elements: [{source: A, target: a, "
        "target_type: integer}]}\nview: []\n"
    )
    failed = runner.invoke(app, ["annotationconfig", "update", str(bad)])
    assert failed.exit_code != 0
    assert "option 'target_type' is 'integer'" in str(failed.exception)
    if hasattr(get_settings, "cache_clear"):
        get_settings.cache_clear()
