"""Run the real ``annostream up`` process tree against the test broker and database."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from engine.broker import free_port
from tests.support.env import engine_env, subprocess_env

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


@dataclass
class Stack:
    env: dict[str, str]
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    cwd: Path | None = None
    # How to run `annostream`: this interpreter by default, or an installed entry point.
    command: tuple[str, ...] = (sys.executable, "-m", "engine")

    @property
    def incoming(self) -> Path:
        return Path(self.env["ANALYSES_INCOMING"])

    @property
    def imported(self) -> Path:
        return Path(self.env["ANALYSES_PATH"])

    @property
    def failed(self) -> Path:
        return Path(self.env["ANALYSES_FAILED"])

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.command, *args], env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=180
        )
        if check and result.returncode != 0:
            raise AssertionError(f"annostream {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def start(self, *extra: str, timeout_s: float = 120) -> Stack:
        # The child writes to its own copy of the descriptor; ours closes at once.
        with open(self.root / "up.log", "wb") as log:
            self.process = subprocess.Popen(
                [*self.command, "up", *extra],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(
                lambda: self.healthy(),
                timeout_s=timeout_s,
                what="the API to answer /healthz",
                on_timeout=self.log_tail,
            )
        except BaseException:
            self.stop()  # a failed start must not leave an `up` tree running after the test
            raise
        return self

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"annostream up exited early:\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.api}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 80) -> str:
        path = self.root / "up.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def drop(self, source: Path, name: str | None = None, *, ready: bool = True) -> Path:
        """Copy an analysis folder into incoming the way pipelines do: READY last."""
        target = self.incoming / (name or source.name)
        staging = self.incoming.parent / f"staging-{uuid.uuid4().hex[:6]}"
        shutil.copytree(source, staging)
        (staging / "READY").unlink(missing_ok=True)
        staging.rename(target)
        if ready:
            (target / "READY").touch()
        return target

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.api}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()


def make_stack(tmp_path: Path, *, db_url: str, bootstrap: str, prefix: str) -> Stack:
    port = free_port()
    variables = engine_env(
        tmp_path / "data",
        db_url=db_url,
        bootstrap=bootstrap,
        topic_prefix=prefix,
        PORT=str(port),
        ANNOSTREAM_API_WORKERS="1",
        LOG_LEVEL="INFO",
    )
    env = subprocess_env(variables)
    for key in ("ANALYSES_INCOMING", "ANALYSES_PATH", "ANALYSES_FAILED"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return Stack(env=env, root=tmp_path, port=port)


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
    on_timeout: Callable[[], str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    detail = f"\n{on_timeout()}" if on_timeout else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")
