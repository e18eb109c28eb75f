"""ops/compose.yaml: no Docker engine runs here, so the file cannot be started; this checks its
structure instead (YAML, services, KRaft settings, that every Annostream service points at the
same broker, database and shared data, and that no short embedded-broker timeout is set)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config import load_settings

OPS = Path(__file__).resolve().parents[1] / "ops"
ANNOSTREAM = ("migrate", "watcher", "worker", "api")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((OPS / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def test_services_and_kraft(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "postgres", "migrate", "watcher", "worker", "api", "prometheus"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    environment = kafka["environment"]
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "zookeeper" not in str(compose).lower()
    assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{environment['KAFKA_NODE_ID']}@kafka:")
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["api"]["ports"] == ["3114:3114"]


def test_annostream_services_share_broker_database_and_data(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ANNOSTREAM:
        service = services[name]
        environment = service["environment"]
        assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        url = environment["DB_URL"]
        assert url.startswith("postgresql://ella:") and url.endswith("@postgres:5432/vardb"), name
        assert "annostream-data:/data" in service["volumes"], name
        # Every value is one the engine accepts (an invalid one would stop the service at start).
        settings = load_settings(**{key: value for key, value in environment.items() if "${" not in value})
        assert settings.topic_partitions == 12 and settings.topic_replication_factor == 1
        # Kafka's own group timeouts: the embedded broker's 6 s must not leak into production.
        assert settings.group_timeouts[:2] == (45.0, 300.0), name
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["api"]["environment"]["PORT"] == "3114"


def test_prometheus_scrapes_the_api(compose: dict[str, Any]) -> None:
    mount = compose["services"]["prometheus"]["volumes"][0].split(":")[0]
    config = OPS / mount
    scrape = yaml.safe_load(config.read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["api:3114"]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (ops/scripts/ensure-tools.sh installs it)")
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
