"""Priority lanes, throughput with 1 and 2 workers, failover: the issue 12 benchmarks.

Each scenario runs the real process tree (`annostream up`: watcher, faust worker(s), API) against
an embedded Kafka-protocol broker and a throwaway PostgreSQL with durable settings (fsync,
synchronous_commit, full_page_writes on), a fresh database per run, and synthetic single-sample
analyses (tests/support/analyses.py, HBOC v1.0.0 panel). Folders are written beside incoming first
and moved in all at once, READY last.

    .venv/bin/python bench/lanes_bench.py priority [--backlog 20] [--variants 100000]
                                                   [--urgent-variants 1000]
    .venv/bin/python bench/lanes_bench.py throughput [--analyses 100] [--variants 50000] [--workers 1 2]
    .venv/bin/python bench/lanes_bench.py failover   [--analyses 20] [--variants 50000]

priority: READY -> visible in the API of an urgent analysis dropped after the backlog started
(target <= 3 s). throughput: analyses per minute per worker count, CPU seconds of the workers and
of PostgreSQL, API response times while the backlog drains. failover: two workers (one under
`up`, one started beside it as on another machine), the second SIGKILLed mid-backlog; every
analysis must be imported exactly once; reports when the survivor was assigned the partitions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.broker import EmbeddedBroker  # noqa: E402
from tests.support.analyses import drop_synthetic  # noqa: E402
from tests.support.pgcluster import ThrowawayCluster  # noqa: E402
from tests.support.stack import Stack, make_stack, wait_until  # noqa: E402

PANEL = ROOT / "tests" / "data" / "genepanels" / "HBOC_v1.0.0"


def load() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


# --- harness ------------------------------------------------------------------------------------------


class Bench:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="annostream-lanes-"))
        self.cluster = ThrowawayCluster(durable=True)
        self.broker = EmbeddedBroker(log_file=self.root / "broker.log")
        self.server_url = ""

    def __enter__(self) -> Bench:
        self.server_url = self.cluster.start()
        self.broker.start()
        engine = sa.create_engine(self.server_url)
        with engine.connect() as connection:
            settings = {
                name: connection.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("fsync", "synchronous_commit", "full_page_writes")
            }
        engine.dispose()
        print(f"PostgreSQL (throwaway, durable): {settings}; {load()}", flush=True)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.broker.stop()
        self.cluster.stop()
        if not os.environ.get("KEEP_BENCH_DIR"):
            shutil.rmtree(self.root, ignore_errors=True)

    @contextmanager
    def stack(self, name: str, *up_args: str) -> Iterator[Stack]:
        database = f"bench_{name}_{uuid.uuid4().hex[:6]}"
        admin = sa.create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {database}")
        admin.dispose()
        url = sa.engine.make_url(self.server_url).set(database=database).render_as_string(hide_password=False)
        folder = self.root / name
        folder.mkdir()
        stack = make_stack(
            folder,
            db_url=url,
            bootstrap=self.broker.bootstrap_servers,
            prefix=f"{name}{uuid.uuid4().hex[:4]}.",
        )
        stack.env["LOG_LEVEL"] = "INFO"
        stack.env["ANNOSTREAM_API_WORKERS"] = "2"
        stack.cli("db", "upgrade")
        stack.cli("deposit", "genepanel", "--folder", str(PANEL))
        stack.start(*up_args, timeout_s=300)  # a loaded machine starts gunicorn slowly
        try:
            drop_synthetic(stack.incoming, "Warm-Up", variants=10)
            wait_until(
                lambda: visible(stack, "Warm-Up"),
                timeout_s=180,
                what="the warm-up analysis",
                on_timeout=stack.log_tail,
            )
            yield stack
        finally:
            stack.stop()


def visible(stack: Stack, name: str) -> bool:
    try:
        return bool(stack.get("/api/v1/analyses", name=name)["total"] == 1)
    except httpx.HTTPError:
        return False


def jobs(stack: Stack, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        body = stack.get("/api/v1/import/jobs", page=page, per_page=200, **params)
        found += body["items"]
        if len(found) >= body["total"] or not body["items"]:
            return found
        page += 1


def done_count(stack: Stack, names: set[str]) -> int:
    return sum(job["analysis_name"] in names for job in jobs(stack, status="DONE"))


def all_done(stack: Stack, names: set[str], expected: int) -> bool:
    return done_count(stack, names) == expected


def stage_folders(stack: Stack, names: list[str], variants: int, priority: int = 1) -> Path:
    """Write the analyses beside incoming (not yet visible to the watcher)."""
    staging = stack.root / "staging"
    staging.mkdir(exist_ok=True)
    for name in names:
        drop_synthetic(staging, name, variants=variants, priority=priority, ready=False)
    return staging


def drop_all(stack: Stack, staging: Path, names: list[str]) -> float:
    """Move every staged analysis into incoming, then write each READY; returns the time."""
    for name in names:
        (staging / name).rename(stack.incoming / name)
    for name in names:
        (stack.incoming / name / "READY").touch()
    return time.time()


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if with_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def processes(match: Callable[[str], bool]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
            except OSError:
                continue
            if match(argv):
                found.append(int(entry.name))
    return found


def workers_of(stack: Stack) -> list[int]:
    data = stack.env["ANNOSTREAM_DATA_DIR"]
    return [
        pid
        for pid in processes(lambda argv: "-m engine worker" in argv)
        if data in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    ]


def postgres_cpu(cluster: ThrowawayCluster) -> float:
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    # Only this cluster's backends: other PostgreSQL servers may run on the machine.
    backends = processes(lambda argv: argv.startswith("postgres:"))
    children = [pid for pid in backends if parent(pid) == postmaster]
    return cpu_seconds(postmaster, with_children=True) + sum(cpu_seconds(pid) for pid in children)


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class ApiProbe(threading.Thread):
    """GET /api/v1/analyses every 0.5 s while the backlog drains: is the API starved?"""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.times: list[float] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.5):
            started = time.perf_counter()
            try:
                httpx.get(f"{self.stack.api}/api/v1/analyses", params={"per_page": 20}, timeout=30)
            except httpx.HTTPError:
                continue
            self.times.append(time.perf_counter() - started)

    def summary(self) -> str:
        self.stop_event.set()
        self.join()
        if not self.times:
            return "no API answers"
        ordered = sorted(self.times)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return (
            f"API GET /api/v1/analyses during the backlog: {len(ordered)} requests, "
            f"median {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
            f"max {ordered[-1] * 1000:.0f} ms"
        )


# --- scenarios ----------------------------------------------------------------------------------------


def priority(bench: Bench, backlog: int, variants: int, urgent_variants: int) -> None:
    with bench.stack("priority") as stack:
        names = [f"Normal-{number:03d}" for number in range(backlog)]
        staging = stage_folders(stack, names, variants)
        stage_folders(stack, ["Urgent-1"], urgent_variants, priority=3)
        drop_all(stack, staging, names)
        wait_until(lambda: done_count(stack, set(names)) >= 1, timeout_s=600, what="the backlog to start")
        before = done_count(stack, set(names))
        (staging / "Urgent-1").rename(stack.incoming / "Urgent-1")
        (stack.incoming / "Urgent-1" / "READY").touch()
        ready = time.perf_counter()
        wait_until(
            lambda: visible(stack, "Urgent-1"), timeout_s=600, what="the urgent analysis", interval_s=0.05
        )
        seconds = time.perf_counter() - ready
        after = done_count(stack, set(names))
        job = jobs(stack, analysis="Urgent-1")[0]
        history = stack.get(f"/api/v1/import/jobs/{job['id']}")["history"]
        ready_wall = time.time() - (time.perf_counter() - ready)
        steps = ", ".join(
            f"{entry['status']} +{dt.datetime.fromisoformat(entry['at']).timestamp() - ready_wall:.2f}"
            for entry in history
        )
        print(f"urgent job timeline after READY (s): {steps}", flush=True)
        print(
            f"priority: {backlog} normal analyses of {variants} variants queued ({before} done when the "
            f"urgent one was dropped, {after} when it was visible); urgent analysis of {urgent_variants} "
            f"variants READY -> visible in the API {seconds:.2f} s (target <= 3 s); {load()}",
            flush=True,
        )


def throughput(bench: Bench, analyses: int, variants: int, worker_counts: list[int]) -> None:
    for count in worker_counts:
        with bench.stack(f"throughput{count}", "--workers", str(count)) as stack:
            names = [f"Exome-{number:03d}" for number in range(analyses)]
            staging = stage_folders(stack, names, variants)
            workers = workers_of(stack)
            cpu_before = sum(cpu_seconds(pid) for pid in workers), postgres_cpu(bench.cluster)
            probe = ApiProbe(stack)
            probe.start()
            dropped = drop_all(stack, staging, names)
            wait_until(
                partial(all_done, stack, set(names), analyses),
                timeout_s=7200,
                interval_s=1,
                what="the whole backlog",
            )
            finished = max(
                dt.datetime.fromisoformat(job["date_updated"]).timestamp()
                for job in jobs(stack, status="DONE")
                if job["analysis_name"] in set(names)
            )
            seconds = finished - dropped
            cpu = (
                sum(cpu_seconds(pid) for pid in workers) - cpu_before[0],
                postgres_cpu(bench.cluster) - cpu_before[1],
            )
            print(
                f"throughput, {count} worker(s): {analyses} analyses of {variants} variants in "
                f"{seconds:.1f} s = {analyses * 60 / seconds:.1f} analyses/min; CPU workers "
                f"{cpu[0]:.0f} s, PostgreSQL {cpu[1]:.0f} s; {probe.summary()}; {load()}",
                flush=True,
            )


# The worker's own line after each rebalance (consumers/worker.py: log_assignments).
ASSIGNED_TEXT = "partitions assigned to worker"
ASSIGNED = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) INFO annostream\.worker: " + ASSIGNED_TEXT)


def failover(bench: Bench, analyses: int, variants: int) -> None:
    with bench.stack("failover", "--workers", "1") as stack:
        log = open(stack.root / "extra.log", "wb")  # noqa: SIM115
        extra = subprocess.Popen(
            [sys.executable, "-m", "engine", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**stack.env, "ANNOSTREAM_WORKER_ID": "extra"},
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: ASSIGNED_TEXT in (stack.root / "extra.log").read_text(errors="replace"),
                timeout_s=180,
                what="the second worker's join",
            )
            time.sleep(2 * float(stack.env["ANNOSTREAM_KAFKA_SESSION_TIMEOUT"]))  # the rebalance settles
            names = [f"Backlog-{number:03d}" for number in range(analyses)]
            staging = stage_folders(stack, names, variants)
            drop_all(stack, staging, names)
            wait_until(
                lambda: done_count(stack, set(names)) >= analyses // 4,
                timeout_s=3600,
                interval_s=0.5,
                what="a quarter of the backlog",
            )
            os.killpg(extra.pid, signal.SIGKILL)
            killed = time.time()
            extra.wait(10)
            done_at_kill = done_count(stack, set(names))
            wait_until(
                partial(all_done, stack, set(names), analyses),
                timeout_s=3600,
                interval_s=1,
                what="the rest of the backlog",
                on_timeout=stack.log_tail,
            )
            drained = time.time() - killed
        finally:
            if extra.poll() is None:
                os.killpg(extra.pid, signal.SIGKILL)
        text = (stack.root / "up.log").read_text(errors="replace")
        assigned = [
            dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC).timestamp()
            for stamp in ASSIGNED.findall(text)
        ]
        takeover = min((moment for moment in assigned if moment > killed), default=None)
        all_jobs = [job for job in jobs(stack) if job["analysis_name"] in set(names)]
        per_name = {name: [job for job in all_jobs if job["analysis_name"] == name] for name in names}
        exactly_once = all(len(found) == 1 and found[0]["status"] == "DONE" for found in per_name.values())
        rows = sum(stack.get("/api/v1/analyses", name=name)["total"] for name in names)
        redone = sum(job["attempts"] > 2 for job in all_jobs)  # one claim per stage = 2
        failed = list((stack.failed).iterdir())
        print(
            f"failover: 2 workers, {analyses} analyses of {variants} variants, the second worker SIGKILLed "
            f"after {done_at_kill} were done; survivor assigned the partitions "
            f"{'%.1f s' % (takeover - killed) if takeover else 'NOT SEEN'} after the kill (session timeout "
            f"{stack.env['ANNOSTREAM_KAFKA_SESSION_TIMEOUT']} s); backlog drained {drained:.1f} s after the "
            f"kill; {rows} analyses stored for {analyses} folders, "
            f"exactly one DONE job each: {exactly_once}; "
            f"jobs claimed more than once per stage (attempts > 2): {redone}; "
            f"failed folders: {len(failed)}; {load()}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="scenario", required=True)
    one = sub.add_parser("priority")
    one.add_argument("--backlog", type=int, default=20)
    one.add_argument("--variants", type=int, default=100_000)
    one.add_argument("--urgent-variants", type=int, default=1_000)
    two = sub.add_parser("throughput")
    two.add_argument("--analyses", type=int, default=100)
    two.add_argument("--variants", type=int, default=50_000)
    two.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    three = sub.add_parser("failover")
    three.add_argument("--analyses", type=int, default=20)
    three.add_argument("--variants", type=int, default=50_000)
    args = parser.parse_args()
    with Bench() as bench:
        if args.scenario == "priority":
            priority(bench, args.backlog, args.variants, args.urgent_variants)
        elif args.scenario == "throughput":
            throughput(bench, args.analyses, args.variants, args.workers)
        else:
            failover(bench, args.analyses, args.variants)


if __name__ == "__main__":
    main()
