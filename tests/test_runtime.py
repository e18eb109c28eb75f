"""A second terminal finds the stack of `annostream up` with no settings at all: `up` (embedded
broker, default data dir) writes its runtime file; status, smoke, replay, reanalyse and retry
read it; a clean exit removes it and the commands then say in one line how to find a broker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

from engine.broker import free_port
from engine.runtime import RUNTIME_FILE
from tests.support.stack import Stack, wait_until
from tests.test_e2e import GENEPANEL

ANNOSTREAM_VARIABLES = (
    "DB_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "ANNOSTREAM_",
    "ANALYSES_",
    "PORT",
    "PROMETHEUS_MULTIPROC_DIR",
    "LOG_LEVEL",
)


def bare_environment() -> dict[str, str]:
    """The environment of a new terminal: nothing Annostream-specific set."""
    return {key: value for key, value in os.environ.items() if not key.startswith(ANNOSTREAM_VARIABLES)}


@pytest.mark.timeout(900)  # a whole stack plus seven CLI runs: ~150 s idle, over 300 s at load 40
def test_second_terminal_uses_the_runtime_file_of_up(tmp_path: Path, pg_url: str) -> None:
    port = free_port()
    # `up` itself gets only a database and a free port; broker, data dir and folders are defaults
    # (the embedded broker, ./data under the working directory), as after `make run`.
    stack = Stack(
        env={**bare_environment(), "DB_URL": pg_url, "PORT": str(port), "ANNOSTREAM_API_WORKERS": "1"},
        root=tmp_path,
        port=port,
        cwd=tmp_path,
    )
    second = Stack(env=bare_environment(), root=tmp_path, port=port, cwd=tmp_path)
    runtime_file = tmp_path / "data" / RUNTIME_FILE
    stack.cli("db", "upgrade")
    stack.cli("deposit", "genepanel", "--folder", str(GENEPANEL))
    stack.start()
    try:
        wait_until(runtime_file.is_file, timeout_s=30, what="the runtime file")
        runtime = orjson.loads(runtime_file.read_bytes())
        assert runtime["api_url"] == f"http://localhost:{port}"
        assert runtime["bootstrap"].startswith("127.0.0.1:")
        assert set(runtime["pids"]) >= {"worker", "watcher", "api", "broker"}
        assert runtime["settings"]["DB_URL"] == pg_url

        status = second.cli("status", "--json", check=False)
        report = json.loads(status.stdout)
        assert report["kafka_error"] is None, status.stdout + status.stderr
        assert report["db_error"] is None
        assert status.returncode == 0

        smoke = second.cli("smoke", "--timeout", "120", check=False)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr + stack.log_tail()
        assert smoke.stdout.startswith("smoke PASS")

        replay = second.cli("replay", "--since", "1h", "--dry-run")
        assert "would be replayed (dry run)" in replay.stdout

        refused = second.cli("reanalyse", "--analysis", "No-Such-Analysis", check=False)
        assert refused.returncode != 0 and "No-Such-Analysis" in refused.stderr, refused.stderr
        assert "KAFKA_BOOTSTRAP_SERVERS" not in refused.stderr

        retry = second.cli("retry", "No-Such-Analysis", check=False)
        assert retry.returncode == 1 and "No-Such-Analysis" in retry.stderr, retry.stdout + retry.stderr
    finally:
        stack.stop()
    assert stack.process is not None and stack.process.returncode == 0, stack.log_tail()
    assert not runtime_file.exists(), "a clean exit removes the runtime file"

    after = second.cli("status", check=False)
    assert after.returncode == 1
    assert "KAFKA_BOOTSTRAP_SERVERS is not set and no running `annostream up` was found" in after.stdout
    replay = second.cli("replay", "--since", "1h", "--dry-run", check=False)
    assert replay.returncode == 1
    lines = replay.stderr.strip().splitlines()
    assert len(lines) == 1 and "set KAFKA_BOOTSTRAP_SERVERS=host:9092" in lines[0], replay.stderr


def test_a_stale_runtime_file_is_ignored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # pid 2**22 + 1 is above Linux's default pid_max: no such process.
    (data / RUNTIME_FILE).write_bytes(
        orjson.dumps(
            {
                "supervisor_pid": 2**22 + 1,
                "data_dir": str(data),
                "api_url": "http://localhost:1",
                "settings": {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
                "pids": {},
            }
        )
    )
    second = Stack(env=bare_environment(), root=tmp_path, port=1, cwd=tmp_path)
    result = second.cli("replay", "--since", "1h", "--dry-run", check=False)
    assert result.returncode == 1
    assert "no running `annostream up` was found" in result.stderr
