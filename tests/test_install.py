"""The package installs whole, the way a user installs it: a wheel built from the tree,
installed WITHOUT extras into a fresh virtualenv; every command's --help runs, and
`annostream up` + `annostream smoke` from that install pass against the test broker and
PostgreSQL. Catches runtime code importing a test-only dependency and files missing from the
wheel (templates, demo data, schemas)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import ROOT, make_stack

# Installing every dependency into a fresh venv takes minutes (downloads unless pip's cache has them).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

LIST_COMMANDS = """
import json
import typer.main
from engine.cli import register_commands, app
register_commands()
def walk(command, path):
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield [*path, name]
        yield from walk(sub, [*path, name])
print(json.dumps(list(walk(typer.main.get_command(app), []))))
"""


def run(
    argv: list[str], *, timeout: float = 900, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{output}"
    return result


def test_wheel_installs_without_extras_and_runs(
    tmp_path: Path, pg_url: str, broker, topic_prefix: str
) -> None:
    # Built from a clean copy: an in-tree build would leave build/ behind, whose stale files
    # a later build could package.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "data",
            "bench",
            "test-artifacts",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
        ),
    )
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)])
    wheel = next(wheels.glob("annostream-*.whl"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)])
    python, annostream = str(venv / "bin" / "python"), str(venv / "bin" / "annostream")
    for test_only in ("httpx", "pytest", "selenium", "psutil"):
        probe = subprocess.run([python, "-c", f"import {test_only}"], capture_output=True, cwd=tmp_path)
        assert probe.returncode != 0, f"{test_only} is installed without extras: the test proves nothing"

    # cwd=tmp_path: the installed package, not the source tree, must be imported.
    commands = json.loads(run([python, "-c", LIST_COMMANDS], cwd=tmp_path).stdout)
    assert ["smoke"] in commands and ["retry"] in commands and ["bundle", "add"] in commands
    for command in [[], *commands]:
        shown = run([annostream, *command, "--help"], timeout=60, cwd=tmp_path)
        assert "usage:" in shown.stdout.lower(), command

    stack = make_stack(tmp_path, db_url=pg_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    stack.command = (annostream,)
    stack.cwd = tmp_path
    stack.cli("db", "upgrade")
    stack.start()
    try:
        smoke = stack.cli("smoke", "--timeout", "150", check=False)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr + stack.log_tail()
        assert smoke.stdout.startswith("smoke PASS")
        page = stack.cli("status", "--json")
        assert json.loads(page.stdout)["ok"] is True
    finally:
        stack.stop()
    assert stack.process is not None and stack.process.returncode == 0, stack.log_tail()
