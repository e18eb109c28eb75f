"""Settings own every setting: each environment variable is read, validated and named in errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from engine.annotate.index import cache_root_for
from engine.config import ConfigError, Settings, load_settings

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_watchfiles_force_polling(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", value)
    if value == "":
        monkeypatch.delenv("WATCHFILES_FORCE_POLLING")
    assert load_settings().watch_force_polling is expected


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", "sometimes")
    with pytest.raises(ConfigError, match=r"^invalid WATCHFILES_FORCE_POLLING='sometimes'"):
        load_settings()
    monkeypatch.delenv("WATCHFILES_FORCE_POLLING")
    monkeypatch.setenv("ANNOSTREAM_KAFKA_TIMEOUT", "0")
    with pytest.raises(ConfigError, match=r"^invalid ANNOSTREAM_KAFKA_TIMEOUT='0'"):
        load_settings()


def test_cache_dir_setting_decides_where_indexes_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = tmp_path / "data" / "source.vcf.gz"
    source.parent.mkdir()
    monkeypatch.delenv("ANNOSTREAM_CACHE_DIR", raising=False)
    assert cache_root_for(source) == source.parent / ".annostream-cache"
    monkeypatch.setenv("ANNOSTREAM_CACHE_DIR", "")
    assert cache_root_for(source) == source.parent / ".annostream-cache"
    monkeypatch.setenv("ANNOSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_root_for(source) == tmp_path / "cache"


def test_every_setting_is_in_the_readme_table() -> None:
    table = set(re.findall(r"^\| `([A-Z_]+)`(?:, `([A-Z_]+)`)?", README.read_text(), flags=re.MULTILINE))
    documented = {name for row in table for name in row if name}
    variables = set()
    for info in Settings.model_fields.values():
        if isinstance(info.alias, str):
            variables.add(info.alias)
        elif info.validation_alias is not None:
            variables.add(str(info.validation_alias.choices[0]))  # type: ignore[union-attr]
    assert variables - documented == set(), "add these variables to README.md's configuration table"


def test_the_api_runs_on_half_the_cores_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANNOSTREAM_API_WORKERS", raising=False)
    assert load_settings().api_workers == max(1, len(os.sched_getaffinity(0)) // 2)
    monkeypatch.setenv("ANNOSTREAM_API_WORKERS", "3")
    assert load_settings().api_workers == 3
