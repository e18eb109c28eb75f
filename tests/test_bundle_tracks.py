"""IGV tracks follow the active bundle, and bundle housekeeping (deactivate, remove, diff), through
the CLI and the worker's tracks stage, on real files and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.bundles import activate_bundle, add_bundle, list_bundles
from engine.config import Settings, load_settings
from engine.db.migrate import upgrade
from engine.db.session import session_scope
from engine.errors import InputError
from engine.events import BundleActivated, encode
from engine.reannotate.runs import plan_run
from engine.reannotate.stages import ReleaseStages
from engine.tracks import apply_tracks
from tests.support.bundles import make_bundle

TRACK_CONFIG = {
    "{STATIC}/*": {"url": "/api/v1/igv/tracks/static/{TRACK_FILEPATH}"},
    "{STATIC}/*.vcf.gz": {"igv": {"format": "vcf", "order": 200}},
    "{STATIC}/mydb-current.vcf.gz": {
        "limit_to_groups": None,
        "description": "MyDB release 1.0",
        "igv": {"name": "MyDB"},
    },
}


def tracked_bundle(folder: Path, version: str, dataset_version: str, af_scale: str = "") -> Path:
    make_bundle(folder, version, af_scale=af_scale)
    manifest = json.loads((folder / "sources.json").read_text())
    manifest["mydb"].update(version=dataset_version, igv_track="mydb-current.vcf.gz")
    (folder / "sources.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    root = tmp_path / "data"
    igv = tmp_path / "igv-data"
    (igv / "tracks").mkdir(parents=True)
    (igv / "track_config.json").write_text(json.dumps(TRACK_CONFIG, indent=4))
    configured = load_settings(
        ANNOSTREAM_DATA_DIR=root,
        DB_URL=pg_url,
        ANALYSES_INCOMING=root / "in",
        ANALYSES_PATH=root / "done",
        ANALYSES_FAILED=root / "failed",
        IGV_DATA=igv,
    )
    configured.ensure_folders()
    upgrade(pg_url)
    with session_scope(pg_url) as session:
        add_bundle(session, tracked_bundle(tmp_path / "b1", "2024.1", "1.0"), root)
        add_bundle(session, tracked_bundle(tmp_path / "b2", "2024.2", "2.0", af_scale="9"), root)
    return configured


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(
        DB_URL=settings.database_url,
        ANNOSTREAM_DATA_DIR=str(settings.data_dir),
        IGV_DATA=str(settings.igv_data),
    )
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], env=env, text=True, capture_output=True, timeout=120
    )


def state(igv: Path) -> tuple[str, str, str, list[str]]:
    tracks = igv / "tracks"
    config = json.loads((igv / "track_config.json").read_text())
    backups = sorted(path.name for path in igv.glob("track_config.json.*.bak"))
    return (
        os.readlink(tracks / "mydb-current.vcf.gz"),
        os.readlink(tracks / "mydb-current.vcf.gz.tbi"),
        config["{STATIC}/mydb-current.vcf.gz"]["description"],
        backups,
    )


def test_tracks_follow_activation_and_rollback(settings: Settings) -> None:
    igv = settings.igv_data
    assert igv is not None
    activated = cli(settings, "bundle", "activate", "2024.1")
    assert activated.returncode == 0, activated.stderr
    assert "2 track(s) repointed" in activated.stdout
    assert state(igv) == ("mydb_1.0.vcf.gz", "mydb_1.0.vcf.gz.tbi", "MyDB release 1.0", [])
    track = igv / "tracks" / "mydb_1.0.vcf.gz"
    bundle_file = settings.data_dir / "bundles" / "2024.1" / "data" / "mydb.vcf.gz"
    assert track.read_bytes() == bundle_file.read_bytes() and track.stat().st_ino == bundle_file.stat().st_ino

    # A new release: new files and links, the description's version changed, the old config kept.
    assert cli(settings, "bundle", "activate", "2024.2").returncode == 0
    link, index, description, backups = state(igv)
    assert (link, index, description) == ("mydb_2.0.vcf.gz", "mydb_2.0.vcf.gz.tbi", "MyDB release 2.0")
    assert len(backups) == 1
    previous = json.loads((igv / backups[0]).read_text())
    assert previous["{STATIC}/mydb-current.vcf.gz"]["description"] == "MyDB release 1.0"
    config = json.loads((igv / "track_config.json").read_text())
    assert config["{STATIC}/*.vcf.gz"] == TRACK_CONFIG["{STATIC}/*.vcf.gz"]  # other entries untouched
    assert (igv / "tracks" / "mydb_1.0.vcf.gz").exists()  # ELLA sessions still reading it keep working

    # The worker's stage (bundle.activated) does the same and is idempotent: nothing changes.
    stages = ReleaseStages(settings)
    assert stages.tracks(encode(BundleActivated(producer="test", bundle="2024.2"))) == []
    assert state(igv) == (link, index, description, backups)
    # An older activation event arriving late does not undo the newer one: the active bundle wins.
    stages.tracks(encode(BundleActivated(producer="test", bundle="2024.1")))
    assert state(igv)[0] == "mydb_2.0.vcf.gz"

    # Rolling back restores the older bundle's tracks.
    assert cli(settings, "bundle", "activate", "2024.1").returncode == 0
    assert state(igv)[:3] == ("mydb_1.0.vcf.gz", "mydb_1.0.vcf.gz.tbi", "MyDB release 1.0")


def test_missing_igv_data_is_a_warning(settings: Settings, tmp_path: Path) -> None:
    with session_scope(settings.database_url) as session:
        bundle = activate_bundle(session, "2024.1")
    result = apply_tracks(bundle, tmp_path / "nowhere")
    assert not result.linked
    assert "does not exist" in result.warnings[0] and "mydb-current.vcf.gz" in result.warnings[0]
    unset = cli(settings.model_copy(update={"igv_data": None}), "bundle", "activate", "2024.2")
    assert unset.returncode == 0  # the release is not failed ...
    assert "warning: IGV_DATA" in unset.stderr or "warning: IGV_DATA" in unset.stdout  # ... but it says so


def test_a_track_on_a_dataset_without_its_file_is_refused_at_add(settings: Settings, tmp_path: Path) -> None:
    folder = tracked_bundle(tmp_path / "b3", "2024.3", "3.0")
    manifest = json.loads((folder / "sources.json").read_text())
    manifest["mydb"]["igv_track"] = "mydb-current.bed.gz"
    (folder / "sources.json").write_text(json.dumps(manifest))
    with (
        session_scope(settings.database_url) as session,
        pytest.raises(InputError, match=r"0 \.bed\.gz files"),
    ):
        add_bundle(session, folder, settings.data_dir)


def test_deactivate_remove_and_diff(settings: Settings) -> None:
    diff = cli(settings, "bundle", "diff", "2024.1", "2024.2")
    assert diff.returncode == 0, diff.stderr
    assert "dataset mydb (1.0 -> 2.0): changed" in diff.stdout
    assert "data/mydb.vcf.gz: 0 added, 0 removed, 3 changed records" in diff.stdout

    assert cli(settings, "bundle", "activate", "2024.2").returncode == 0
    refused = cli(settings, "bundle", "remove", "2024.2")
    assert refused.returncode == 2 and "is the active bundle" in refused.stderr
    # A run that still has batches to do holds its bundle.
    with session_scope(settings.database_url) as session:
        session.execute(
            sa.text(
                "INSERT INTO allele (chromosome, start_position, open_end_position, change_from, change_to, "
                "change_type, vcf_pos, vcf_ref, vcf_alt, length, genome_reference, caller_type) "
                "VALUES ('13', 100, 101, 'A', 'C', 'SNP', 101, 'A', 'C', 1, 'GRCh37', 'snv')"
            )
        )
        run, _events = plan_run(session, bundle="2024.1", analyses=None, full=True)
        assert run is not None
    held = cli(settings, "bundle", "remove", "2024.1")
    assert held.returncode == 2 and "still running" in held.stderr and run.run_id in held.stderr
    with session_scope(settings.database_url) as session:
        session.execute(sa.text("UPDATE reannotation_batch SET status = 'DONE'"))

    removed = cli(settings, "bundle", "remove", "2024.1")
    assert removed.returncode == 0, removed.stderr
    assert not (settings.data_dir / "bundles" / "2024.1").exists()
    listed = cli(settings, "bundle", "list").stdout
    assert "2024.1" in listed and "removed" in listed  # the record stays
    again = cli(settings, "bundle", "activate", "2024.1")
    assert again.returncode == 2 and "folder is gone" in again.stderr

    deactivated = cli(settings, "bundle", "deactivate")
    assert deactivated.returncode == 0 and "2024.2 deactivated" in deactivated.stdout
    with session_scope(settings.database_url) as session:
        assert not any(bundle.active for bundle in list_bundles(session))
    assert "no bundle was active" in cli(settings, "bundle", "deactivate").stdout
