"""``annostream smoke`` against a real ``annostream up`` stack (broker, worker, watcher, API on
PostgreSQL): it passes, reports the stages, and leaves nothing behind; a wrong API URL fails
clearly and still cleans up."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.broker import free_port
from engine.db.models import Analysis, Genepanel, ImportJob
from tests.support.env import topics_for
from tests.support.events import read_topic
from tests.support.stack import Stack, make_stack, wait_until


@pytest.fixture
def stack(tmp_path: Path, pg_url: str, broker, topic_prefix: str) -> Iterator[Stack]:
    running = make_stack(tmp_path, db_url=pg_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    running.cli("db", "upgrade")
    yield running
    running.stop()


def rows(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                model.__tablename__: connection.scalar(sa.select(sa.func.count()).select_from(model)) or 0
                for model in (Analysis, ImportJob, Genepanel)
            }
    finally:
        engine.dispose()


def leftovers(stack: Stack) -> list[Path]:
    places = (stack.incoming, stack.imported, stack.failed, Path(stack.env["ANNOSTREAM_DATA_DIR"]) / "work")
    return [path for place in places if place.is_dir() for path in place.iterdir()]


def test_smoke_passes_and_cleans_up(stack: Stack, pg_url: str) -> None:
    stack.start()
    result = stack.cli("smoke", "--api", stack.api, "--json", "--timeout", "120", check=False)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{stack.log_tail()}"
    report = json.loads(result.stdout)
    assert report["passed"] and report["name"].startswith("Smoke-")
    statuses = [stage["status"] for stage in report["stages"]]
    assert statuses == ["SUBMITTED", "ANNOTATING", "ANNOTATED", "PERSISTING", "DONE"]
    times = [stage["after_s"] for stage in report["stages"]]
    assert times == sorted(times) and 0 < times[-1] <= report["visible_after_s"] <= report["total_s"]
    print(f"smoke: visible after {report['visible_after_s']:.2f} s, stages {times}")
    # Everything it created is gone, including the demo panel it had to deposit.
    assert "gene panel HBOC v1.0.0" in report["cleaned"]
    assert rows(pg_url) == {"analysis": 0, "import_job": 0, "genepanel": 0}
    assert leftovers(stack) == []
    assert stack.get("/api/v1/analyses", name=report["name"])["items"] == []

    # The real worker published every transition on the status topic, keyed by analysis name.
    topic = topics_for(stack.env["ANNOSTREAM_TOPIC_PREFIX"]).status
    records = read_topic(stack.env["KAFKA_BOOTSTRAP_SERVERS"], topic, expect=5)
    published = [json.loads(r.value) for r in records if r.key == report["name"].encode()]
    assert [event["status"] for event in published] == statuses

    # `annostream status` sees the worker's group caught up (faust commits shortly after).
    def caught_up() -> dict | None:
        health = json.loads(stack.cli("status", "--json").stdout)
        return health if health["lag"] and sum(item["lag"] for item in health["lag"]) == 0 else None

    health = wait_until(caught_up, timeout_s=30, what="zero consumer lag", interval_s=1)
    assert {item["committed"] for item in health["lag"]} != {None}
    assert health["failures"] == [] and health["incoming_ready"] == []

    # The table form; a gene panel that was already there stays.
    stack.cli("deposit", "genepanel", "--folder", str(Path("engine/demo/genepanels/HBOC_v1.0.0").resolve()))
    text = stack.cli("smoke", "--api", stack.api, "--timeout", "120").stdout
    assert text.startswith("smoke PASS: Smoke-") and "DONE" in text and "gene panel" not in text
    assert rows(pg_url) == {"analysis": 0, "import_job": 0, "genepanel": 1}


def test_wrong_api_url_fails_clearly(stack: Stack, pg_url: str) -> None:
    wrong = f"http://127.0.0.1:{free_port()}"
    result = stack.cli("smoke", "--api", wrong, "--timeout", "5", check=False)
    assert result.returncode == 1
    assert "smoke FAIL: Smoke-" in result.stdout and f"cannot reach the API at {wrong}" in result.stdout
    assert rows(pg_url) == {"analysis": 0, "import_job": 0, "genepanel": 0}
    assert leftovers(stack) == []


def test_no_pipeline_behind_the_api_times_out_with_a_reason(stack: Stack, pg_url: str) -> None:
    # Only the API runs: the folder is dropped but nothing publishes or imports it.
    log = open(stack.root / "api.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "api"],
        env=stack.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: stack.healthy(), timeout_s=60, what="the API")
        result = stack.cli("smoke", "--api", stack.api, "--timeout", "4", check=False)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert result.returncode == 1
    assert "was not imported within 4 s: no import job appeared" in result.stdout
    assert leftovers(stack) == []
    assert rows(pg_url)["genepanel"] == 0
