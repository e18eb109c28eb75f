"""Scale-out: several workers in one consumer group share the work, a worker added from outside
`up` joins it, a SIGKILLed worker's partitions are taken over and its in-flight event is redone
idempotently (every analysis imported exactly once). Plus the pieces that make that safe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.config import EMBEDDED_GROUP_TIMEOUT_S, load_settings
from engine.pipeline.locks import analysis_lock
from engine.supervisor import Supervisor, default_children
from tests.support.analyses import drop_synthetic
from tests.support.stack import Stack, make_stack, wait_until
from tests.test_e2e import GENEPANEL, read_topic

# --- the lock that keeps two workers off the same analysis ----------------------------------------


def test_analysis_lock_is_exclusive_and_released(db_url: str, tmp_path: Path) -> None:
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with analysis_lock(db_url, tmp_path / "locks", "Diag-1"):
            order.append("first in")
            held.set()
            time.sleep(0.5)
            order.append("first out")

    def second() -> None:
        held.wait(5)
        with analysis_lock(db_url, tmp_path / "locks", "Diag-1"):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    held.wait(5)
    # Another analysis is not blocked by the one being held.
    with analysis_lock(db_url, tmp_path / "locks", "Diag-2"):
        order.append("other")
    for thread in threads:
        thread.join(10)
    assert order == ["first in", "other", "first out", "second in"]


def test_analysis_lock_dies_with_its_holder(pg_url: str, tmp_path: Path) -> None:
    """A SIGKILLed worker never leaves its analysis locked (the server drops its session)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\n"
                "from engine.pipeline.locks import analysis_lock\n"
                f"with analysis_lock({pg_url!r}, __import__('pathlib').Path({str(tmp_path)!r}), 'Diag-9'):\n"
                "    print('held', flush=True)\n"
                "    time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        started = time.monotonic()
        with analysis_lock(pg_url, tmp_path, "Diag-9"):
            pass
        assert time.monotonic() - started < 10
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


# --- consumer-group settings: short ones only for the embedded broker ----------------------------


def test_group_timeouts_are_kafka_defaults_unless_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in (
        "ANNOSTREAM_KAFKA_SESSION_TIMEOUT",
        "ANNOSTREAM_KAFKA_REBALANCE_TIMEOUT",
        "KAFKA_BOOTSTRAP_SERVERS",
    ):
        monkeypatch.delenv(variable, raising=False)
    production = load_settings(KAFKA_BOOTSTRAP_SERVERS="kafka1:9092")
    assert production.group_timeouts == (45.0, 300.0, 3.0)
    assert load_settings(ANNOSTREAM_KAFKA_SESSION_TIMEOUT="10").group_timeouts == (10.0, 300.0, 10 / 6)
    # The old single knob still sets both.
    assert load_settings(ANNOSTREAM_KAFKA_REBALANCE_TIMEOUT="30").group_timeouts[:2] == (30.0, 30.0)

    # `up` with its embedded broker gives its children the short timeouts...
    embedded = Supervisor(load_settings(ANNOSTREAM_DATA_DIR=str(tmp_path)), [])
    embedded.broker = type("Broker", (), {"bootstrap_servers": "127.0.0.1:1"})()  # type: ignore[assignment]
    env = embedded._base_env()
    assert env["ANNOSTREAM_KAFKA_SESSION_TIMEOUT"] == str(EMBEDDED_GROUP_TIMEOUT_S)
    assert load_settings(
        **{
            key: env[key]
            for key in ("ANNOSTREAM_KAFKA_SESSION_TIMEOUT", "ANNOSTREAM_KAFKA_REBALANCE_TIMEOUT")
        }
    ).group_timeouts[:2] == (EMBEDDED_GROUP_TIMEOUT_S, EMBEDDED_GROUP_TIMEOUT_S)
    # ... but with KAFKA_BOOTSTRAP_SERVERS (real Kafka) it passes nothing of the kind.
    real = Supervisor(load_settings(ANNOSTREAM_DATA_DIR=str(tmp_path), KAFKA_BOOTSTRAP_SERVERS="k:9092"), [])
    assert "ANNOSTREAM_KAFKA_SESSION_TIMEOUT" not in real._base_env()


def test_up_runs_n_workers_with_their_own_ids(tmp_path: Path) -> None:
    settings = load_settings(ANNOSTREAM_DATA_DIR=str(tmp_path), ANNOSTREAM_WORKERS="3")
    workers = [child for child in default_children(settings) if "worker" in child.argv]
    assert [child.env["ANNOSTREAM_WORKER_ID"] for child in workers] == ["worker-1", "worker-2", "worker-3"]
    assert len([c for c in default_children(settings, workers=2) if "worker" in c.argv]) == 2


# --- the real thing: two workers, one killed mid-backlog ------------------------------------------


def start_extra_worker(stack: Stack, worker_id: str) -> subprocess.Popen[bytes]:
    """An `annostream worker` outside `up`, as on another machine: same broker, database, group."""
    env = {**stack.env, "ANNOSTREAM_WORKER_ID": worker_id}
    with open(stack.root / f"{worker_id}.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "engine", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def jobs_of(stack: Stack, name: str) -> list[dict]:
    return stack.get("/api/v1/import/jobs", analysis=name)["items"]


def visible(stack: Stack, names: list[str]) -> bool:
    return all(stack.get("/api/v1/analyses", name=name)["total"] == 1 for name in names)


@pytest.mark.timeout(600)  # three group joins and a session timeout; slow on a loaded machine
def test_two_workers_share_the_work_and_survive_a_sigkill(
    tmp_path: Path, pg_url: str, broker, topic_prefix: str
) -> None:
    stack = make_stack(tmp_path, db_url=pg_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    stack.env["ANNOSTREAM_TOPIC_PARTITIONS"] = "4"
    stack.cli("db", "upgrade")
    stack.cli("deposit", "genepanel", "--folder", str(GENEPANEL))
    stack.start("--workers", "1", timeout_s=180)
    assigned = "partitions assigned to worker"  # consumers/worker.py logs it after each group join
    wait_until(
        lambda: assigned in stack.log_tail(400),
        timeout_s=90,
        what="the first worker's join",
        on_timeout=stack.log_tail,
    )
    extra = start_extra_worker(stack, "extra")
    try:
        # The second join makes the group rebalance: both workers get partitions.
        wait_until(
            lambda: (
                assigned in (stack.root / "extra.log").read_text(errors="replace")
                and stack.log_tail(2000).count(assigned) >= 2
            ),
            timeout_s=90,
            what="the extra worker's join",
            on_timeout=stack.log_tail,
        )
        # 1. Both workers import: Kafka spread the partitions (keys are analysis names) over them.
        first = [f"Scale-{number:02d}" for number in range(12)]
        for name in first:
            drop_synthetic(stack.incoming, name, variants=200)
        wait_until(
            lambda: visible(stack, first), timeout_s=120, what="the first batch", on_timeout=stack.log_tail
        )
        imported = read_topic(broker.bootstrap_servers, f"{topic_prefix}analysis.imported", expect=12)
        producers = {event["producer"].split("@")[0] for event in imported}
        assert producers == {"worker-1", "extra"}, producers

        # 2. A backlog; the extra worker is SIGKILLed while imports are in flight.
        second = [f"Fail-{number:02d}" for number in range(10)]
        for name in second:
            drop_synthetic(stack.incoming, name, variants=10_000)

        def done() -> int:
            return sum(job["status"] == "DONE" for name in second for job in jobs_of(stack, name))

        wait_until(
            lambda: done() >= 2, timeout_s=120, what="two imports of the backlog", on_timeout=stack.log_tail
        )
        os.killpg(extra.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        extra.wait(10)
        wait_until(
            lambda: visible(stack, second),
            timeout_s=180,
            what="the backlog after the kill",
            on_timeout=stack.log_tail,
        )
        print(f"backlog drained {time.monotonic() - killed_at:.1f} s after the SIGKILL")

        # 3. Exactly once: one analysis and one DONE job per folder, every folder imported.
        for name in first + second:
            assert stack.get("/api/v1/analyses", name=name)["total"] == 1
            jobs = jobs_of(stack, name)
            assert [job["status"] for job in jobs] == ["DONE"], (name, jobs)
            assert (stack.imported / name).is_dir() and not (stack.incoming / name).exists()
        assert not any(stack.failed.iterdir())
        late = read_topic(broker.bootstrap_servers, f"{topic_prefix}analysis.imported", expect=22)
        survivors = {event["producer"].split("@")[0] for event in late if event["analysis"] in second}
        assert "worker-1" in survivors
    finally:
        if extra.poll() is None:
            os.killpg(extra.pid, signal.SIGKILL)
        stack.stop()
