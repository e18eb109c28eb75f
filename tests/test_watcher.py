"""The folder watcher against a real broker and a real file system watch."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from engine.broker import EmbeddedBroker
from engine.config import Settings, load_settings
from engine.errors import ConfigError
from engine.events import Topics, decode
from engine.kafka import EventProducer, ensure_topics
from producers.watcher import NameFilter, Watcher
from tests.support.env import engine_env, subprocess_env
from tests.support.events import make_analysis, make_broken_analysis, read_topic

ROOT = Path(__file__).resolve().parent.parent


def watcher_env(tmp_path: Path, broker: EmbeddedBroker, topic_prefix: str) -> dict[str, str]:
    return engine_env(
        tmp_path / "data",
        bootstrap=broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        ANNOSTREAM_TOPIC_PARTITIONS="1",
    )


@pytest.fixture
def make_settings(tmp_path: Path, broker: EmbeddedBroker, topic_prefix: str):
    def make(**extra: object) -> Settings:
        settings = load_settings(**watcher_env(tmp_path, broker, topic_prefix), **extra)
        settings.analyses_incoming.mkdir(parents=True, exist_ok=True)
        return settings

    return make


@contextmanager
def running(settings: Settings) -> Iterator[Watcher]:
    assert settings.kafka_bootstrap_servers
    ensure_topics(settings.kafka_bootstrap_servers, Topics.from_settings(settings).all())
    producer = EventProducer(settings.kafka_bootstrap_servers)
    watcher = Watcher(settings, producer, producer_name="watcher@test")
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert watcher.ready.wait(15), "watcher did not start"
        yield watcher
    finally:
        watcher.stop()
        thread.join(10)
        producer.close()
    assert not thread.is_alive()


def ready_events(settings: Settings, *, expect: int, settle_s: float = 0.0, timeout_s: float = 10.0) -> list:
    assert settings.kafka_bootstrap_servers
    records = read_topic(
        settings.kafka_bootstrap_servers,
        Topics.from_settings(settings).ready,
        expect=expect,
        settle_s=settle_s,
        timeout_s=timeout_s,
    )
    return [(r.key.decode(), decode(r.value, incoming=settings.analyses_incoming), r) for r in records]


def test_folders_present_at_start_are_published_once(make_settings) -> None:
    settings = make_settings()
    incoming = settings.analyses_incoming
    make_analysis(incoming, "Diag-start-1")
    make_analysis(incoming, "Diag-start-2")
    make_analysis(incoming, "Diag-unready", ready=False)
    with running(settings):
        events = ready_events(settings, expect=2, settle_s=1.0)
    assert sorted(key for key, _, _ in events) == ["Diag-start-1", "Diag-start-2"]
    key, event, _ = events[0]
    assert event.analysis == key and event.folder == key
    assert event.producer == "watcher@test"
    assert event.genepanel is not None
    assert (event.genepanel.name, event.genepanel.version) == ("HBOC", "v1.0.0")
    assert {entry.path for entry in event.files} == {
        f"{key}.analysis",
        f"{key}.ped",
        f"{key}.vcf",
        "report.txt",
        "warnings.txt",
    }


def test_publishes_only_after_ready(make_settings) -> None:
    # How fast READY -> published is, is measured by bench/latency_bench.py, not asserted here:
    # a wall-clock bound in a unit test fails on a loaded CI machine without a defect.
    settings = make_settings()
    with running(settings):
        folder = make_analysis(settings.analyses_incoming, "Diag-late", ready=False)
        assert ready_events(settings, expect=1, timeout_s=1.0) == []  # no READY: nothing
        (folder / "READY").touch()
        events = ready_events(settings, expect=1, settle_s=0.5)
    assert [key for key, _, _ in events] == ["Diag-late"]


def test_hidden_staging_folder_is_published_once_renamed_into_place(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    incoming = settings.analyses_incoming
    with running(settings):
        staging = make_analysis(tmp_path / "pipeline-out", "Diag-staged")  # complete, READY included
        staging = staging.rename(incoming / ".Diag-staged.partial")
        assert ready_events(settings, expect=1, timeout_s=1.0) == []
        staging.rename(incoming / "Diag-staged")
        events = ready_events(settings, expect=1, settle_s=0.5)
    assert [(key, event.folder) for key, event, _ in events] == [("Diag-staged", "Diag-staged")]


def test_unchanged_content_is_not_republished_changed_content_is(make_settings) -> None:
    settings = make_settings()
    folder = make_analysis(settings.analyses_incoming, "Diag-same")
    with running(settings):
        first = ready_events(settings, expect=1)
        (folder / "READY").write_text("rewritten marker")  # touches the folder, not its content
        (folder / "tmp.part").write_text("scratch")
        (folder / "tmp.part").unlink()
        assert len(ready_events(settings, expect=2, timeout_s=1.5)) == 1
        with (folder / "report.txt").open("a") as report:
            report.write("amended\n")
        events = ready_events(settings, expect=2, settle_s=0.5)
    assert len(first) == 1 and len(events) == 2
    assert events[0][1].event_id == first[0][1].event_id
    assert events[1][1].fingerprint != events[0][1].fingerprint


def test_deny_and_allow_lists(make_settings) -> None:
    settings = make_settings(ANALYSES_DENY="Diag-skip.*, .*-test", ANALYSES_ALLOW="Diag-.*")
    incoming = settings.analyses_incoming
    for name in ("Diag-skip-1", "Diag-keep-1", "Other-1", "Diag-keep-test"):
        make_analysis(incoming, name)
    with running(settings):
        events = ready_events(settings, expect=1, settle_s=1.0)
    assert [key for key, _, _ in events] == ["Diag-keep-1"]
    assert all((incoming / name).is_dir() for name in ("Diag-skip-1", "Other-1"))  # left alone


def test_deny_file_is_reread_without_restart(make_settings, tmp_path: Path) -> None:
    deny_file = tmp_path / "deny.txt"
    deny_file.write_text("# paused projects\nDiag-paused.*\n")
    settings = make_settings(ANALYSES_DENY_FILE=deny_file)
    make_analysis(settings.analyses_incoming, "Diag-paused-1")
    with running(settings):
        assert ready_events(settings, expect=1, timeout_s=1.0) == []
        deny_file.write_text("# nothing paused\n")
        events = ready_events(settings, expect=1, timeout_s=5.0)
    assert [key for key, _, _ in events] == ["Diag-paused-1"]


def test_invalid_pattern_is_a_config_error(make_settings) -> None:
    with pytest.raises(ConfigError, match=r"ANALYSES_DENY: invalid regular expression 'Diag-\('"):
        NameFilter.from_settings(make_settings(ANALYSES_DENY="Diag-("))


def test_broken_folder_is_moved_to_failed_with_error_json(make_settings) -> None:
    settings = make_settings()
    make_broken_analysis(settings.analyses_incoming, "Diag-broken")
    make_analysis(settings.analyses_incoming, "Diag-fine")
    with running(settings):
        events = ready_events(settings, expect=1, settle_s=0.5)
        assert settings.kafka_bootstrap_servers
        dead = read_topic(settings.kafka_bootstrap_servers, Topics.from_settings(settings).failed, expect=1)
    assert [key for key, _, _ in events] == ["Diag-fine"]
    assert not (settings.analyses_incoming / "Diag-broken").exists()
    error = orjson.loads((settings.analyses_failed / "Diag-broken" / "error.json").read_bytes())
    assert error["stage"] == "watch" and error["message"] and error["event_id"]
    assert len(dead) == 1 and dead[0].key == b"Diag-broken"
    failed = decode(dead[0].value, incoming=settings.analyses_incoming)
    assert failed.stage == "watch" and failed.event_id == error["event_id"]  # type: ignore[union-attr]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_watch_command_publishes_and_stops_on_signal(
    tmp_path: Path, broker: EmbeddedBroker, topic_prefix: str, stop_signal: signal.Signals
) -> None:
    env = subprocess_env({**watcher_env(tmp_path, broker, topic_prefix), "LOG_LEVEL": "INFO"})
    settings = load_settings(**watcher_env(tmp_path, broker, topic_prefix))
    make_analysis(settings.analyses_incoming, "Diag-cli")
    command = [
        sys.executable,
        "-c",
        "import typer; from engine.cli.produce import register; app = typer.Typer(); register(app); app()",
        "watch",
        "--producer",
        "pipeline-x",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        events = ready_events(settings, expect=1, timeout_s=20.0)
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert [(key, event.producer) for key, event, _ in events] == [("Diag-cli", "pipeline-x")]
    assert process.returncode == 0, stderr.decode()
    assert b"watcher stopped" in stderr
