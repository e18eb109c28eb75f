"""Alert rules and metrics: promtool checks and unit-tests ops/prometheus/alerts.yml; a real
Prometheus scrapes a live stack and counts the imported analyses right; every metric the
Grafana dashboard and the alert rules name is exported by /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.broker import free_port, wait_for_port
from tests.support.stack import ROOT, Stack, make_stack, wait_until
from tests.test_e2e import GENEPANEL, TEST_ANALYSIS, analysis_named
from tests.test_retry import drop_broken, failed_job

ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "ops" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "annostream-dashboard.json"
METRIC_NAME = re.compile(r"\bannostream_[a-z0-9_]+\b")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} not found: install Debian's prometheus package (make test does it as root: "
            "ops/scripts/ensure-tools.sh)"
        )
    return found


def test_alert_rules_pass_promtool() -> None:
    promtool = tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name], cwd=ALERT_TESTS.parent, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def named_metrics() -> set[str]:
    """Metric names in the dashboard's queries and the alert rules' expressions."""
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    names.update(METRIC_NAME.findall(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(DASHBOARD.read_text()))
    for line in ALERTS.read_text().splitlines():
        if line.strip().startswith("expr:") or line.startswith("          "):
            names.update(METRIC_NAME.findall(line.split("#")[0]))
    return names


def exported_samples(body: str) -> set[str]:
    samples = (line for line in body.splitlines() if line and not line.startswith("#"))
    return {line.split("{")[0].split(" ")[0] for line in samples}


@pytest.fixture
def stack(tmp_path: Path, pg_url: str, broker, topic_prefix: str) -> Iterator[Stack]:
    running = make_stack(tmp_path, db_url=pg_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    running.cli("db", "upgrade")
    running.cli("deposit", "genepanel", "--folder", str(GENEPANEL))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def prometheus(tmp_path: Path, stack: Stack) -> Iterator[str]:
    binary = tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {ALERTS}\n"
        "scrape_configs:\n  - job_name: annostream\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{stack.port}']\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port("127.0.0.1", port, 30), (tmp_path / "prometheus.log").read_text()[-2000:]
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def query(prometheus: str, promql: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def test_prometheus_counts_imported_analyses_and_every_named_metric_is_exported(
    stack: Stack, prometheus: str
) -> None:
    stack.drop(TEST_ANALYSIS)
    drop_broken(stack, "Broken-P1")
    wait_until(
        lambda: analysis_named(stack, "TestAnalysis-001"),
        timeout_s=90,
        what="the import",
        on_timeout=stack.log_tail,
    )
    failed_job(stack, "Broken-P1")
    for path in ("/api/v1/analyses", "/api/v1/import/jobs", "/"):
        httpx.get(f"{stack.api}{path}", timeout=10).raise_for_status()

    def imported() -> float | None:
        result = query(prometheus, "sum(annostream_analyses_imported_total)")
        return float(result[0]["value"][1]) if result else None

    wait_until(
        lambda: imported() == 1.0,
        timeout_s=60,
        what="Prometheus to count 1 imported analysis",
        interval_s=1.0,
    )
    done = query(prometheus, 'annostream_import_jobs{status="DONE"}')
    assert [float(item["value"][1]) for item in done] == [1.0]
    failed = query(prometheus, 'annostream_import_jobs{status="FAILED"}')
    assert [float(item["value"][1]) for item in failed] == [1.0]

    def beating() -> bool:
        age = query(prometheus, "time() - max(annostream_worker_heartbeat_timestamp_seconds)")
        return bool(age) and float(age[0]["value"][1]) < 60

    wait_until(beating, timeout_s=60, what="the worker's heartbeat in Prometheus", interval_s=1.0)
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert sum(len(group["rules"]) for group in rules) == 9
    time.sleep(2)  # one more evaluation round with the heartbeat present
    firing = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert not [alert for alert in firing if alert["labels"]["alertname"] == "AnnostreamWorkerDown"]

    exported = exported_samples(httpx.get(f"{stack.api}/metrics", timeout=30).text)
    named = named_metrics()
    assert len(named) >= 12
    assert named <= exported, f"named but not exported: {sorted(named - exported)}"
