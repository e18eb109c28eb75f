"""Serving the read API: gunicorn (process manager) with uvicorn workers, started from Python.

Gunicorn forks ``settings.api_workers`` worker processes; each builds its own app (and so its
own database connection pool) after the fork, because pooled connections must never be shared
across processes.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication

from engine.config import Settings
from engine.db.migrate import require_current
from engine.logs import logging_config

log = logging.getLogger("annostream.api")

DEFAULT_HOST = "0.0.0.0"  # a service listens on all interfaces
WORKER_CLASS = "uvicorn_worker.UvicornWorker"
GRACEFUL_TIMEOUT_S = 30
WORKER_TIMEOUT_S = 120
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _child_exit(_server: Any, worker: Any) -> None:
    from engine.metrics import mark_process_dead

    mark_process_dead(worker.pid)


class ApiServer(BaseApplication):
    """Gunicorn configured in code: no gunicorn.conf.py, no command-line parsing."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.options: dict[str, Any] = {
            "bind": f"{host}:{port}",
            "workers": settings.api_workers,
            "worker_class": WORKER_CLASS,
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "timeout": WORKER_TIMEOUT_S,
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
            "logconfig_dict": logging_config(settings.log_level, settings.log_format),
            "proc_name": "annostream-api",
            "child_exit": _child_exit,
            # gunicorn >= 25 opens one fixed-path control socket per user: several servers on
            # one machine (tests, `annostream up` next to a manual `annostream api`) would clash.
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # older gunicorn lacks some settings
                self.cfg.set(key, value)

    def load(self) -> Any:
        from api.app import create_app

        return create_app(self.settings)


def _private_metrics_dir(workers: int) -> str | None:
    """With several workers and no shared metrics folder, give the workers a private one.

    Without it each worker would answer /metrics with only its own counts. Must run before
    prometheus-client is first imported, since it chooses its storage at import time.
    """
    if workers < 2 or os.environ.get(MULTIPROC_ENV):
        return None
    if "prometheus_client" in sys.modules:
        log.warning(
            "%s is unset and metrics are already loaded: /metrics shows one worker's counts; "
            "set %s to a folder to merge them",
            MULTIPROC_ENV,
            MULTIPROC_ENV,
        )
        return None
    folder = tempfile.mkdtemp(prefix="annostream-api-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    return folder


def serve(settings: Settings, host: str = DEFAULT_HOST, port: int | None = None) -> None:
    """Run the API until SIGTERM/SIGINT (graceful: in-flight requests finish).

    Raises ``DatabaseNotCurrentError`` before binding if the schema is not at the latest
    migration, so a misconfigured deployment fails at once with a clear message.
    """
    require_current(settings.database_url)
    private_dir = _private_metrics_dir(settings.api_workers)
    try:
        ApiServer(settings, host, port or settings.port).run()
    finally:
        if private_dir:
            shutil.rmtree(private_dir, ignore_errors=True)
