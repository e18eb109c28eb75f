"""Annotation bundles: add (checksums verified, copied), list, activate, on PostgreSQL and SQLite."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from api.routes import bundles as bundles_route
from engine.bundles import activate_bundle, active_bundle, add_bundle, list_bundles
from engine.cli import main as cli_main
from engine.config import get_settings
from engine.db.migrate import upgrade
from engine.db.models import AnnotationBundle
from engine.db.session import session_factory, session_scope
from engine.errors import InputError
from tests.support.bundles import make_bundle, sha256


@pytest.fixture
def db(db_url: str) -> str:
    upgrade(db_url)
    return db_url


def stored_rows(url: str) -> list[tuple[str, bool]]:
    with session_scope(url) as session:
        return [
            (row.version, row.active)
            for row in session.scalars(sa.select(AnnotationBundle).order_by(AnnotationBundle.id))
        ]


def add_two_bundles(db: str, tmp_path: Path) -> None:
    for version in ("2024.1", "2024.2"):
        source = make_bundle(tmp_path / version, version, af_scale=version[-1])
        with session_scope(db) as session:
            add_bundle(session, source, tmp_path / "data")


def test_add_copies_a_verified_bundle_that_outlives_its_source(db: str, tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "incoming")
    data_dir = tmp_path / "data"

    with session_scope(db) as session:
        info, created = add_bundle(session, source, data_dir)
    shutil.rmtree(source)

    assert created
    assert info.path == (data_dir / "bundles" / "2024.1").absolute()
    assert (
        sha256(info.path / "data" / "mydb.vcf.gz")
        == json.loads((info.path / "sources.json").read_text())["mydb"]["files"]["data/mydb.vcf.gz"]
    )
    assert (info.path / "vcfanno_config.toml").is_file()
    assert list((info.path / "data" / ".annostream-cache").glob("mydb.vcf.gz.*.idx/meta.json"))  # compiled
    assert [p.name for p in (data_dir / "bundles").iterdir()] == ["2024.1"]  # no staging left
    with session_scope(db) as session:
        listed = list_bundles(session)
        assert active_bundle(session) is None
    assert [(b.version, b.active, b.datasets) for b in listed] == [("2024.1", False, {"mydb": "1.0"})]
    assert listed[0].config_sha256 == info.config_sha256 and len(info.config_sha256) == 64


def test_adding_the_same_bundle_twice_changes_nothing(db: str, tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "incoming")
    with session_scope(db) as session:
        add_bundle(session, source, tmp_path / "data")
    with session_scope(db) as session:
        info, created = add_bundle(session, source, tmp_path / "data", link=False)
    assert not created and info.version == "2024.1"
    assert stored_rows(db) == [("2024.1", False)]

    changed = make_bundle(tmp_path / "changed", af_scale="1")
    with session_scope(db) as session, pytest.raises(InputError, match="already added with other content"):
        add_bundle(session, changed, tmp_path / "data")


def test_a_corrupt_file_is_refused_and_named(db: str, tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "incoming")
    tbi = source / "data" / "mydb.vcf.gz.tbi"
    corrupt = bytearray(tbi.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    tbi.write_bytes(bytes(corrupt))

    with session_scope(db) as session, pytest.raises(InputError) as caught:
        add_bundle(session, source, tmp_path / "data", link=False)

    assert caught.value.file == str(tbi.absolute())
    assert "checksum mismatch" in str(caught.value)
    assert stored_rows(db) == []
    assert list((tmp_path / "data" / "bundles").iterdir()) == []


@pytest.mark.parametrize(
    ("breakage", "named", "message"),
    [
        ("missing_listed_file", "data/mydb.vcf.gz.tbi", "file listed in sources.json is missing"),
        ("unlisted_source", "data/mydb.vcf.gz", "not listed in sources.json"),
        ("no_version", "version", "no version file"),
        ("no_manifest", "sources.json", "no sources manifest"),
        ("bad_digest", "sources.json", "checksum of 'data/mydb.vcf.gz' is 'abc'"),
        ("escaping_path", "sources.json", "is not inside the bundle"),
    ],
)
def test_an_incomplete_bundle_is_refused_and_the_file_named(
    db: str, tmp_path: Path, breakage: str, named: str, message: str
) -> None:
    source = make_bundle(tmp_path / "incoming")
    manifest = json.loads((source / "sources.json").read_text())
    files = manifest["mydb"]["files"]
    if breakage == "missing_listed_file":
        (source / "data" / "mydb.vcf.gz.tbi").unlink()
    elif breakage == "unlisted_source":
        del files["data/mydb.vcf.gz"]
    elif breakage == "no_version":
        (source / "version").unlink()
    elif breakage == "no_manifest":
        (source / "sources.json").unlink()
    elif breakage == "bad_digest":
        files["data/mydb.vcf.gz"] = "abc"
    elif breakage == "escaping_path":
        files["../elsewhere.vcf.gz"] = "0" * 64
    if (source / "sources.json").exists():
        (source / "sources.json").write_text(json.dumps(manifest))

    with session_scope(db) as session, pytest.raises(InputError, match=message) as caught:
        add_bundle(session, source, tmp_path / "data")

    assert caught.value.file == str(source.absolute() / named)
    assert stored_rows(db) == []


def test_ella_anno_md5sum_destinations_are_verified(db: str, tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "incoming")
    data = source / "data"
    import hashlib

    lines = [
        f"{hashlib.md5((data / name).read_bytes()).hexdigest()}  {name}"
        for name in ("mydb.vcf.gz", "mydb.vcf.gz.tbi")
    ]
    (data / "MD5SUM").write_text("\n".join(lines) + "\n")
    (source / "sources.json").write_text(json.dumps({"mydb": {"version": "1.0", "destination": "data"}}))

    with session_scope(db) as session:
        info, _ = add_bundle(session, source, tmp_path / "data_dir")
    assert info.datasets == {"mydb": "1.0"}

    (data / "MD5SUM").write_text(lines[0].replace(lines[0][:4], "ffff") + "\n" + lines[1] + "\n")
    (source / "version").write_text("2024.2\n")
    with session_scope(db) as session, pytest.raises(InputError, match="checksum mismatch") as caught:
        add_bundle(session, source, tmp_path / "data_dir")
    assert caught.value.file == str((data / "mydb.vcf.gz").absolute())


def test_activation_is_exclusive_and_rolls_back(db: str, tmp_path: Path) -> None:
    add_two_bundles(db, tmp_path)

    with session_scope(db) as session:
        assert activate_bundle(session, "2024.1").active
    with session_scope(db) as session:
        activate_bundle(session, "2024.2")
    assert stored_rows(db) == [("2024.1", False), ("2024.2", True)]
    with session_scope(db) as session:
        activate_bundle(session, "2024.1")  # roll back
        info = active_bundle(session)
    assert info is not None and info.version == "2024.1" and info.date_activated is not None
    assert stored_rows(db) == [("2024.1", True), ("2024.2", False)]

    with session_scope(db) as session, pytest.raises(InputError, match="no annotation bundle with version"):
        activate_bundle(session, "1999")
    # The database itself refuses a second active bundle.
    with pytest.raises(sa.exc.IntegrityError), session_scope(db) as session:
        session.execute(sa.update(AnnotationBundle).values(active=True))


def test_activating_a_bundle_whose_folder_is_gone_is_refused(db: str, tmp_path: Path) -> None:
    with session_scope(db) as session:
        info, _ = add_bundle(session, make_bundle(tmp_path / "incoming"), tmp_path / "data")
    shutil.rmtree(info.path)
    with session_scope(db) as session, pytest.raises(InputError, match="folder is gone"):
        activate_bundle(session, "2024.1")


@pytest.fixture
def cli_env(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DB_URL", db)
    monkeypatch.setenv("ANNOSTREAM_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        cli_main(list(args))
    return int(exited.value.code or 0)


def test_cli_add_list_activate(cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_bundle(tmp_path / "incoming")

    assert run_cli("bundle", "add", str(source), "--copy") == 0
    assert "bundle 2024.1 added" in capsys.readouterr().out
    assert (cli_env / "bundles" / "2024.1" / "data" / "mydb.vcf.gz").stat().st_ino != (
        source / "data" / "mydb.vcf.gz"
    ).stat().st_ino  # --copy: not a hard link
    assert run_cli("bundle", "activate", "2024.1") == 0
    assert run_cli("bundle", "list") == 0
    out = capsys.readouterr().out
    assert "bundle 2024.1 is active" in out
    assert "* 2024.1\tadded " in out and "mydb 1.0" in out

    assert run_cli("bundle", "activate", "nope") == 2
    assert "no annotation bundle with version 'nope'" in capsys.readouterr().err
    os.remove(source / "version")
    assert run_cli("bundle", "add", str(source)) == 2
    assert "no version file" in capsys.readouterr().err


def test_api_lists_bundles_and_marks_the_active_one(db: str, tmp_path: Path) -> None:
    add_two_bundles(db, tmp_path)
    app = FastAPI()
    app.state.sessions = session_factory(db)
    install_error_handlers(app)
    app.include_router(bundles_route.router)

    with TestClient(app) as client:
        empty = client.get("/api/v1/bundles").json()
        with session_scope(db) as session:
            activate_bundle(session, "2024.2")
        body = client.get("/api/v1/bundles").json()

    assert empty["active_version"] is None and [b["active"] for b in empty["items"]] == [False, False]
    assert body["active_version"] == "2024.2"
    assert [(b["version"], b["active"]) for b in body["items"]] == [("2024.1", False), ("2024.2", True)]
    assert body["items"][1]["datasets"] == [{"name": "mydb", "version": "1.0"}]
    assert body["items"][1]["date_activated"] is not None and body["items"][0]["date_activated"] is None
