"""The runtime file of ``annostream up``: how commands in a second terminal find the running stack.

``up`` writes ``$ANNOSTREAM_DATA_DIR/annostream.runtime.json`` once its services are started
(and again whenever a child is restarted, so the pids stay true) and removes it on a clean exit.
It records the settings the services run with (broker bootstrap address, database URL, folders,
topic prefix, consumer group, port), the API URL and the process ids.

Commands that need the broker or the API (``status``, ``replay``, ``smoke``, ``retry``,
``reanalyse``, ``reannotate``) call :func:`cli_settings`: a variable set in the environment wins,
then the runtime file fills what is unset. A file whose supervisor process is gone (``up`` was
killed) is stale and ignored.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engine.config import Settings, load_settings

RUNTIME_FILE = "annostream.runtime.json"

#: Environment variables of the services that the runtime file records, and the Settings field
#: each one fills when it is unset in the caller's environment.
RECORDED = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
    "DB_URL": "db_url",
    "ANALYSES_INCOMING": "analyses_incoming",
    "ANALYSES_PATH": "analyses_path",
    "ANALYSES_FAILED": "analyses_failed",
    "ANNOSTREAM_TOPIC_PREFIX": "topic_prefix",
    "ANNOSTREAM_APP_ID": "worker_name",
    "PORT": "port",
}


@dataclass
class Runtime:
    """What a running ``annostream up`` tells other commands."""

    supervisor_pid: int
    data_dir: str
    api_url: str | None
    settings: dict[str, str]  # environment variable -> value the services run with
    pids: dict[str, int] = field(default_factory=dict)
    started: str = ""

    @property
    def bootstrap(self) -> str | None:
        return self.settings.get("KAFKA_BOOTSTRAP_SERVERS") or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "supervisor_pid": self.supervisor_pid,
            "data_dir": self.data_dir,
            "api_url": self.api_url,
            "bootstrap": self.bootstrap,
            "settings": self.settings,
            "pids": self.pids,
            "started": self.started,
        }


def runtime_path(data_dir: Path) -> Path:
    return data_dir.resolve() / RUNTIME_FILE


def write_runtime(runtime: Runtime) -> Path:
    """Write atomically (readers never see half a file)."""
    path = runtime_path(Path(runtime.data_dir))
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(orjson.dumps(runtime.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(partial, path)
    return path


def remove_runtime(data_dir: Path, supervisor_pid: int) -> None:
    """Remove the file if it is ours (another ``up`` may have taken the data dir over)."""
    found = read_runtime(data_dir, check_alive=False)
    if found is not None and found.supervisor_pid == supervisor_pid:
        runtime_path(data_dir).unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_runtime(data_dir: Path, *, check_alive: bool = True) -> Runtime | None:
    """The runtime file of a live ``up`` under ``data_dir``; None if absent, unreadable or stale."""
    path = runtime_path(data_dir)
    try:
        document = orjson.loads(path.read_bytes())
        runtime = Runtime(
            supervisor_pid=int(document["supervisor_pid"]),
            data_dir=str(document["data_dir"]),
            api_url=document.get("api_url"),
            settings={str(k): str(v) for k, v in dict(document.get("settings") or {}).items()},
            pids={str(k): int(v) for k, v in dict(document.get("pids") or {}).items()},
            started=str(document.get("started") or ""),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_alive and not process_alive(runtime.supervisor_pid):
        return None
    return runtime


def runtime_for(
    settings: Settings, env: dict[str, str], *, api_url: str | None, pids: dict[str, int]
) -> Runtime:
    return Runtime(
        supervisor_pid=os.getpid(),
        data_dir=str(settings.data_dir.resolve()),
        api_url=api_url,
        settings={name: env[name] for name in RECORDED if env.get(name)},
        pids=pids,
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def cli_settings(environ: dict[str, str] | None = None) -> tuple[Settings, Runtime | None]:
    """Settings for a command run beside ``up``: the environment first, then the runtime file.

    Returns the settings and the runtime that filled them (None when there was none).
    """
    environ = dict(os.environ) if environ is None else environ
    settings = load_settings()
    runtime = read_runtime(settings.data_dir)
    if runtime is None:
        return settings, None
    overrides: dict[str, object] = {
        field_name: runtime.settings[variable]
        for variable, field_name in RECORDED.items()
        if variable in runtime.settings and not environ.get(variable)
    }
    if not overrides:
        return settings, runtime
    return load_settings(**overrides), runtime


def no_broker_message(settings: Settings, command: str) -> str:
    """One line: how to point ``command`` at a broker."""
    return (
        f"`annostream {command}` needs a Kafka broker: KAFKA_BOOTSTRAP_SERVERS is not set and no running "
        f"`annostream up` was found in {runtime_path(settings.data_dir)} "
        "(set KAFKA_BOOTSTRAP_SERVERS=host:9092, or ANNOSTREAM_DATA_DIR to the data dir of "
        "`annostream up`)"
    )
