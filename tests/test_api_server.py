"""``annostream api``: the real gunicorn server in a subprocess, over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.broker import free_port
from engine.db.migrate import upgrade
from tests.api_data import Ids, populate

START_TIMEOUT_S = 30


def api_env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PROMETHEUS_MULTIPROC_DIR", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env.update(
        DB_URL=url,
        ANNOSTREAM_DATA_DIR=str(tmp_path / "data"),
        ANNOSTREAM_API_WORKERS="2",
        LOG_LEVEL="INFO",
        **extra,
    )
    return env


def start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "engine", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"api exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"api did not answer within {START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture
def running_api(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, Ids, subprocess.Popen[bytes], Path]]:
    upgrade(pg_url)
    ids = populate(pg_url)
    port = free_port()
    log = tmp_path / "api.log"
    process = start_api(api_env(pg_url, tmp_path), port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, process, log)
        yield base, ids, process, log
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=40)


def test_gunicorn_serves_the_api_and_stops_gracefully(
    running_api: tuple[str, Ids, subprocess.Popen[bytes], Path],
) -> None:
    base, ids, process, log = running_api
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        analyses = client.get("/api/v1/analyses").json()
        assert analyses["total"] == 3
        assert analyses["items"][0]["name"] == "Trio-1"
        alleles = client.get(f"/api/v1/analyses/{ids.trio}/alleles").json()
        assert alleles["total"] == 3
        # A new connection per request, so both workers are likely to answer some of them;
        # /metrics must merge their counts whichever worker answers it.
        for _ in range(10):
            assert httpx.get(f"{base}/api/v1/analyses/{ids.trio}", timeout=10).status_code == 200
        metrics = client.get("/metrics").text
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith(
            'annostream_api_requests_total{method="GET",route="/api/v1/analyses/{analysis_id}",status="200"}'
        )
    )
    assert float(line.split()[-1]) == 10
    process.terminate()
    assert process.wait(timeout=40) == 0
    output = log.read_text()
    # gunicorn's start-up lines (the worker class among them) show only at DEBUG (engine/logs.py).
    assert '"GET /api/v1/analyses HTTP/1.1" 200' in output  # access log


def test_refuses_to_start_on_unmigrated_database(pg_url: str, tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    process = start_api(api_env(pg_url, tmp_path), free_port(), log)
    assert process.wait(timeout=60) != 0
    output = log.read_text()
    assert "schema revision <empty>" in output
    assert "run 'annostream db upgrade'" in output
    assert "Traceback" not in output
