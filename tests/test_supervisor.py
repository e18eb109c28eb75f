"""``annostream up`` supervises its children: a killed worker is restarted and imports go on;
Ctrl-C stops the whole tree cleanly."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.support.stack import make_stack, wait_until
from tests.test_e2e import GENEPANEL, TEST_ANALYSIS, analysis_named


def child_running(parent_pid: int, command: str) -> psutil.Process | None:
    for child in psutil.Process(parent_pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and command in " ".join(child.cmdline()):
                return child
        except psutil.Error:  # exited (or became a zombie) while we looked
            continue
    return None


def test_crashed_worker_is_restarted_and_ctrl_c_stops_everything(
    tmp_path: Path, pg_url: str, broker, topic_prefix: str
) -> None:
    stack = make_stack(tmp_path, db_url=pg_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    stack.cli("db", "upgrade")
    stack.cli("deposit", "genepanel", "--folder", str(GENEPANEL))
    stack.start()
    try:
        assert stack.process is not None
        worker = wait_until(
            lambda: child_running(stack.process.pid, "engine worker"), timeout_s=10, what="the worker child"
        )
        os.kill(worker.pid, signal.SIGKILL)
        restarted = wait_until(
            lambda: (
                (found := child_running(stack.process.pid, "engine worker"))
                and found.pid != worker.pid
                and found
            ),
            timeout_s=20,
            what="a restarted worker",
            on_timeout=stack.log_tail,
        )
        assert restarted.pid != worker.pid
        stack.drop(TEST_ANALYSIS)
        wait_until(
            lambda: analysis_named(stack, "TestAnalysis-001"),
            timeout_s=90,
            what="an import after the restart",
            on_timeout=stack.log_tail,
        )
        children = psutil.Process(stack.process.pid).children(recursive=True)
    finally:
        stack.stop()
    assert stack.process.returncode == 0, stack.log_tail()
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"children left running: {alive}"
    assert "exited with code -9: restarting" in stack.log_tail(400)


@pytest.mark.parametrize(
    "variable,value,expected",
    [
        ("PORT", "not-a-port", "invalid PORT='not-a-port'"),
        ("ANNOSTREAM_TOPIC_PARTITIONS", "0", "invalid ANNOSTREAM_TOPIC_PARTITIONS"),
        ("LOG_LEVEL", "loud", "invalid LOG_LEVEL"),
    ],
)
def test_invalid_setting_stops_start_up_with_one_line(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    stack = make_stack(tmp_path, db_url=f"sqlite:///{tmp_path}/x.db", bootstrap="127.0.0.1:1", prefix="x.")
    stack.env[variable] = value
    result = stack.cli("up", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_services_refuse_an_old_database(tmp_path: Path) -> None:
    stack = make_stack(
        tmp_path, db_url=f"sqlite:///{tmp_path}/empty.db", bootstrap="127.0.0.1:1", prefix="x."
    )
    result = stack.cli("worker", check=False)
    assert result.returncode != 0
    assert "annostream db upgrade" in result.stderr
