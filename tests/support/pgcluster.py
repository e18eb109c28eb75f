"""A throwaway PostgreSQL cluster (initdb + pg_ctl on a free port) for the test session.

``TEST_DATABASE_URL`` points the tests at an existing server instead. PostgreSQL refuses to
run as root, so as root the cluster runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from engine.broker import free_port, wait_for_port


class PostgresUnavailable(RuntimeError):
    pass


def _server_bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()],
    )
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; run 'make test' (it installs them "
        "as root) or set TEST_DATABASE_URL to an existing server"
    )


#: What the test clusters trade for speed; no lab runs a database like this.
NON_DURABLE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class ThrowawayCluster:
    def __init__(self, *, durable: bool = False, options: tuple[str, ...] = ()) -> None:
        # durable: PostgreSQL's defaults (fsync, synchronous_commit, full_page_writes on), for
        # benchmarks; tests trade durability for speed. options: extra ``-c`` settings.
        self.durable = durable
        self.options = options
        self.bin_dir = _server_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="annostream-pg-"))
        self.data_dir = self.root / "data"
        self.run_as: list[str] = []
        self.user = "postgres"
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as error:
                raise PostgresUnavailable("running as root needs a 'postgres' system user") from error
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.run_as, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> str:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = self._options()
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )
        if not wait_for_port("127.0.0.1", self.port, 30):
            raise PostgresUnavailable(f"throwaway PostgreSQL did not listen on port {self.port}")
        time.sleep(0.1)
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/postgres"

    def pause(self) -> None:
        """Stop the server but keep its data (an outage); :meth:`resume` starts it again."""
        self._run(*self._pg_ctl(), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        options = self._options()
        self._run(*self._pg_ctl(), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")
        if not wait_for_port("127.0.0.1", self.port, 30):
            raise PostgresUnavailable(f"throwaway PostgreSQL did not listen on port {self.port}")

    def _options(self) -> str:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            options += " " + " ".join(f"-c {setting}" for setting in NON_DURABLE)
        return options + "".join(f" -c {setting}" for setting in self.options)

    def _pg_ctl(self) -> list[str]:
        return [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir)]

    def stop(self) -> None:
        subprocess.run(
            [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
