"""Database outages on a PostgreSQL server of the test's own: the API answers 503 and /readyz
fails while it is down; an import started during the outage waits, retries and finishes, with
nothing failed or dead-lettered."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from engine.config import Settings, load_settings
from engine.db import session as session_module
from engine.db.migrate import upgrade
from engine.db.models import ImportJob, ParkedEvent
from engine.db.session import get_engine, session_scope
from engine.deposit.genepanel import deposit_genepanel, read_genepanel_folder
from engine.pipeline import Outgoing, Pipeline
from tests.support.env import engine_settings, prepare_database
from tests.support.pgcluster import ThrowawayCluster
from tests.test_guard import folder_for, import_through_guard, ready_bytes

DATA = Path(__file__).parent / "data"


@pytest.fixture
def own_cluster() -> Iterator[tuple[ThrowawayCluster, str]]:
    cluster = ThrowawayCluster()
    url = cluster.start()
    try:
        yield cluster, url
    finally:
        get_engine.cache_clear()
        cluster.stop()


def test_api_answers_503_while_the_database_is_down(own_cluster: tuple[ThrowawayCluster, str]) -> None:
    cluster, url = own_cluster
    upgrade(url)
    with TestClient(create_app(Settings(DB_URL=url, KAFKA_BOOTSTRAP_SERVERS=""))) as client:
        assert client.get("/api/v1/analyses").status_code == 200
        cluster.pause()
        try:
            down = client.get("/api/v1/analyses")
            assert down.status_code == 503, down.text
            assert down.json()["message"].startswith("database unavailable"), down.json()
            assert down.headers["Retry-After"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "database" in ready.json()["message"]
        finally:
            cluster.resume()
        assert client.get("/api/v1/analyses").status_code == 200


def _terminate_other_connections(url: str) -> int:
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            return len(
                connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
            )
    finally:
        admin.dispose()


def test_a_pooled_connection_that_died_while_idle_is_replaced_before_use(
    own_cluster: tuple[ThrowawayCluster, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API pings a pooled connection only when it sat idle (engine/db/session.py): one that
    died meanwhile is replaced and the request succeeds; one that dies between two requests in
    quick succession fails one request with 503, and that failure empties the pool."""
    _cluster, url = own_cluster
    upgrade(url)
    monkeypatch.setattr(session_module, "PING_AFTER_IDLE_SECONDS", 0.5)
    with TestClient(create_app(Settings(DB_URL=url, KAFKA_BOOTSTRAP_SERVERS=""))) as client:
        assert client.get("/api/v1/analyses").status_code == 200
        assert _terminate_other_connections(url) >= 1
        time.sleep(0.6)
        assert client.get("/api/v1/analyses").status_code == 200  # pinged, replaced

        assert _terminate_other_connections(url) >= 1
        unlucky = client.get("/api/v1/analyses")  # used at once: not pinged
        assert unlucky.status_code == 503 and unlucky.json()["message"].startswith("database unavailable")
        assert client.get("/api/v1/analyses").status_code == 200


def test_an_import_waits_out_a_database_outage(
    own_cluster: tuple[ThrowawayCluster, str], tmp_path: Path
) -> None:
    cluster, url = own_cluster
    root = tmp_path / "data"
    settings = load_settings(
        ANNOSTREAM_DATA_DIR=root,
        DB_URL=url,
        ANALYSES_INCOMING=root / "incoming",
        ANALYSES_PATH=root / "imported",
        ANALYSES_FAILED=root / "failed",
        ANNOSTREAM_TOPIC_PREFIX="t.",
        ANNOSTREAM_RETRY_MAX_DELAY=1,
    )
    settings.ensure_folders()
    upgrade(url)
    with session_scope(url) as session:
        deposit_genepanel(session, read_genepanel_folder(DATA / "genepanels" / "HBOC_v1.0.0"))
    folder = folder_for(settings, "Outage-1")
    raw = ready_bytes(settings, folder)
    pipeline = Pipeline(settings)

    cluster.pause()
    result: list[list[Outgoing]] = []
    worker = threading.Thread(target=lambda: result.append(import_through_guard(settings, pipeline, raw)))
    worker.start()
    time.sleep(8)  # the stage keeps retrying meanwhile
    assert worker.is_alive() and folder.is_dir()
    cluster.resume()
    worker.join(timeout=120)

    assert not worker.is_alive()
    assert [message.topic for message in result[0]] == ["t.analysis.imported"]
    assert (settings.analyses_path / "Outage-1").is_dir() and not any(settings.analyses_failed.iterdir())
    with session_scope(url) as session:
        assert session.scalars(sa.select(ImportJob.status)).all() == ["DONE"]
        assert session.scalars(sa.select(ParkedEvent)).all() == []


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[None]:
    """A tmpfs of ``size`` mounted on ``path`` (root only: the test skips with the reason otherwise)."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"a full disk is simulated with a small tmpfs, which needs root: {mounted.stderr.strip()}"
        )
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_is_waited_out_and_nothing_is_half_written(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The annotate stage writes the normalised VCF into the work folder; on a full disk it retries
    (naming the error) instead of failing the analysis, and finishes once space is freed."""
    settings = engine_settings(tmp_path / "data", db_url=sqlite_url, ANNOSTREAM_RETRY_MAX_DELAY="1")
    prepare_database(sqlite_url)
    work = settings.work_dir
    work.mkdir(parents=True, exist_ok=True)
    folder = folder_for(settings, "DiskFull-1")
    raw = ready_bytes(settings, folder)
    with small_disk(work, "4k"):
        result: list[list[Outgoing]] = []
        worker = threading.Thread(
            target=lambda: result.append(import_through_guard(settings, Pipeline(settings), raw))
        )
        worker.start()
        time.sleep(3)  # the stage keeps retrying meanwhile
        assert worker.is_alive() and folder.is_dir()
        assert not any(settings.analyses_failed.iterdir())
        subprocess.run(["mount", "-o", "remount,size=64m", str(work)], check=True)
        worker.join(timeout=120)
        assert not worker.is_alive()
        assert [message.topic for message in result[0]] == ["t.analysis.imported"]
        leftovers = [p.name for p in work.rglob("*") if p.is_file() and ".tmp" in p.name]
        assert leftovers == [], leftovers
    assert "No space left on device" in caplog.text
    assert (settings.analyses_path / "DiskFull-1").is_dir() and not any(settings.analyses_failed.iterdir())
    with session_scope(sqlite_url) as session:
        assert session.scalars(sa.select(ImportJob.status)).all() == ["DONE"]
        assert session.scalars(sa.select(ParkedEvent)).all() == []
