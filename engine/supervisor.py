"""``annostream up``: one supervised process tree (broker, watcher, worker, API).

Each service runs as its own child process so a crash in one (say, the worker hitting an
unrecoverable infrastructure error and fail-stopping on purpose) never takes the others down;
a crashed child is restarted with exponential backoff, and Ctrl-C stops everything in reverse
start order.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.broker import EmbeddedBroker
from engine.config import EMBEDDED_GROUP_TIMEOUT_S, Settings
from engine.runtime import remove_runtime, runtime_for, write_runtime

log = logging.getLogger("annostream.up")

MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0


@dataclass
class Child:
    """A supervised service: how to start it and its restart bookkeeping."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    def start(self, base_env: dict[str, str]) -> None:
        self.process = subprocess.Popen(self.argv, env={**base_env, **self.env})
        self.started_at = time.monotonic()
        log.info("started %s (pid %s)", self.name, self.process.pid)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killing it", self.name, timeout_s)
            self.process.kill()
            self.process.wait()

    def schedule_restart(self) -> float:
        """Backoff doubles per quick crash and resets once the child stayed up a while."""
        if time.monotonic() - self.started_at > STABLE_AFTER_S:
            self.restarts = 0
        delay = min(MAX_BACKOFF_S, 0.5 * 2**self.restarts)
        self.restarts += 1
        self.next_start_at = time.monotonic() + delay
        self.process = None
        return delay


def service_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def default_children(settings: Settings, *, with_api: bool = True, workers: int | None = None) -> list[Child]:
    """Workers (``workers``, default ANNOSTREAM_WORKERS), the watcher and the API.

    Workers share the consumer group, so Kafka spreads the topics' partitions over them; each
    gets its own ANNOSTREAM_WORKER_ID (its faust data directory).
    """
    count = workers or settings.workers
    children = [
        Child(
            "worker" if count == 1 else f"worker-{number}",
            service_argv("worker"),
            env={"ANNOSTREAM_WORKER_ID": f"worker-{number}"},
        )
        for number in range(1, count + 1)
    ]
    children.append(Child("watcher", service_argv("watch")))
    if with_api:
        children.append(Child("api", service_argv("api")))
    return children


def prepare_metrics_dir(settings: Settings) -> Path:
    """Prometheus multiprocess files must start empty, or dead processes' counters linger."""
    metrics_dir = settings.data_dir.resolve() / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    return metrics_dir


#: Children holding Kafka connections, restarted with a restarted embedded broker.
BROKER_CLIENTS = frozenset({"watcher", "worker"})


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        children: list[Child],
        *,
        on_ready: Callable[[dict[str, str]], None] | None = None,
        api_url: str | None = None,
    ):
        self.settings = settings
        self.children = children
        self.on_ready = on_ready
        self.api_url = api_url
        self.broker: EmbeddedBroker | None = None
        self._stopping = False

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        resolved = {
            "ANNOSTREAM_DATA_DIR": self.settings.data_dir.resolve(),
            "ANALYSES_INCOMING": self.settings.analyses_incoming.resolve(),
            "ANALYSES_PATH": self.settings.analyses_path.resolve(),
            "ANALYSES_FAILED": self.settings.analyses_failed.resolve(),
        }
        env.update({key: str(value) for key, value in resolved.items()})
        env["DB_URL"] = self.settings.database_url
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prepare_metrics_dir(self.settings))
        if self.broker is not None:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.broker.bootstrap_servers
            # Only for the embedded broker (which waits the full rebalance timeout on every
            # group join); with KAFKA_BOOTSTRAP_SERVERS set, Kafka's defaults apply unless the
            # operator sets these.
            for variable in ("ANNOSTREAM_KAFKA_SESSION_TIMEOUT", "ANNOSTREAM_KAFKA_REBALANCE_TIMEOUT"):
                env.setdefault(variable, str(EMBEDDED_GROUP_TIMEOUT_S))
        return env

    def _write_runtime(self, env: dict[str, str]) -> None:
        """Tell commands in other terminals where the stack is (engine/runtime.py)."""
        pids = {child.name: child.process.pid for child in self.children if child.process is not None}
        if self.broker is not None and self.broker.pid is not None:
            pids["broker"] = self.broker.pid
        write_runtime(runtime_for(self.settings, env, api_url=self.api_url, pids=pids))

    def _request_stop(self, signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        if self.settings.embedded_broker:
            self.broker = EmbeddedBroker(log_file=self.settings.data_dir / "broker.log").start()
            # A fresh memory-only broker holds nothing: publish the unfinished work again.
            self._reconcile()
        env = self._base_env()
        try:
            for child in self.children:
                child.start(env)
            self._write_runtime(env)
            if self.on_ready:
                self.on_ready(env)
            self._watch(env)
        finally:
            remove_runtime(self.settings.data_dir, os.getpid())
            for child in reversed(self.children):
                child.stop()
            if self.broker is not None:
                self.broker.stop()
        log.info("all services stopped")
        return 0

    def _reconcile(self) -> None:
        from engine.ledger import reconcile_through_kafka

        assert self.broker is not None
        try:
            count = reconcile_through_kafka(self.settings, self.broker.bootstrap_servers, silent_for_s=0)
        except Exception as error:  # the worker's own reconciler tries again later
            log.warning("could not publish unfinished work from the ledger: %s", error)
            return
        if count:
            log.info("published %d unfinished work event(s) from the ledger", count)

    def _watch(self, env: dict[str, str]) -> None:
        while not self._stopping:
            now = time.monotonic()
            for child in self.children:
                if child.process is None:
                    if now >= child.next_start_at:
                        child.start(env)
                        self._write_runtime(env)
                    continue
                code = child.exited()
                if code is not None:
                    delay = child.schedule_restart()
                    log.error("%s exited with code %s: restarting in %.1f s", child.name, code, delay)
            if self.broker is not None and self.broker.poll() is not None:
                log.error(
                    "embedded broker exited: restarting it, publishing unfinished work again from "
                    "the ledger and restarting the services that talk to it"
                )
                self.broker.start()
                self._write_runtime(env)
                self._reconcile()
                for child in self.children:
                    if child.name in BROKER_CLIENTS and child.process is not None:
                        # Their consumer group and topics are gone; a clean start rejoins, and the
                        # watcher's start-up scan publishes whatever is waiting in incoming.
                        child.stop()
                        child.next_start_at = time.monotonic()
            time.sleep(0.2)
