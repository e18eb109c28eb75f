"""``annostream publish FOLDER``: check, publish one analysis.ready, print its id."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from engine.broker import EmbeddedBroker
from engine.cli.produce import register
from engine.events import ReadyEvent, decode
from tests.support.env import engine_env, topics_for
from tests.support.events import make_analysis, make_broken_analysis, read_topic


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)
    return application


@pytest.fixture
def env(tmp_path: Path, broker: EmbeddedBroker, topic_prefix: str) -> dict[str, str]:
    variables = engine_env(
        tmp_path / "data",
        bootstrap=broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        ANNOSTREAM_TOPIC_PARTITIONS="1",
    )
    Path(variables["ANALYSES_INCOMING"]).mkdir(parents=True)
    return variables


def invoke(app: typer.Typer, env: dict[str, str], *args: str):
    return CliRunner().invoke(app, ["publish", *args], env=env)


def test_publish_prints_the_event_id_of_the_published_event(
    app, env, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    incoming = Path(env["ANALYSES_INCOMING"])
    folder = make_analysis(incoming, "Diag-pub-1", ready=False)  # READY is not needed here
    result = invoke(app, env, str(folder), "--producer", "pipeline-wgs@hpc")
    assert result.exit_code == 0, result.output
    event_id = result.stdout.strip()
    records = read_topic(broker.bootstrap_servers, topics_for(topic_prefix).ready, expect=1, settle_s=0.3)
    assert len(records) == 1 and records[0].key == b"Diag-pub-1"
    event = decode(records[0].value, incoming=incoming)
    assert isinstance(event, ReadyEvent)
    assert (event.event_id, event.producer, event.folder) == (event_id, "pipeline-wgs@hpc", "Diag-pub-1")
    assert folder.is_dir()  # publishing never moves the folder


def test_publish_rejects_a_broken_folder_in_one_line(
    app, env, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    folder = make_broken_analysis(Path(env["ANALYSES_INCOMING"]), "Diag-broken")
    result = invoke(app, env, str(folder))
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith("annostream: ") and "\n" not in message
    assert "Diag-broken" in message  # names the file at fault
    assert folder.is_dir()
    assert read_topic(broker.bootstrap_servers, topics_for(topic_prefix).ready, expect=1, timeout_s=1) == []


def test_publish_refuses_folders_outside_incoming(app, env, tmp_path: Path) -> None:
    stray = make_analysis(tmp_path / "elsewhere", "Diag-stray")
    result = invoke(app, env, str(stray))
    assert result.exit_code == 1
    assert "not inside ANALYSES_INCOMING" in result.stderr


def test_publish_without_bootstrap_servers_says_so(app, env) -> None:
    folder = make_analysis(Path(env["ANALYSES_INCOMING"]), "Diag-nobroker")
    result = invoke(app, {**env, "KAFKA_BOOTSTRAP_SERVERS": ""}, str(folder))
    assert result.exit_code == 1
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in result.stderr
