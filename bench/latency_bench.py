"""READY-to-API latency: 20 small analyses in a row through ``annostream up`` (embedded mode).

Starts the real process tree (embedded broker, watcher, faust worker, gunicorn API) on a
throwaway data directory with the embedded SQLite default, imports one warm-up analysis (the
first consumer-group join is not what a lab waits for day to day), then drops analyses one at a
time: copy the folder, write ``READY`` last, poll the API until the analysis is listed.
Reports p50/p95/max. ELLA's watcher polls every 30 s; the target is p50 <= 1.5 s.

    .venv/bin/python bench/latency_bench.py [--count 20] [--db-url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.broker import free_port  # noqa: E402

DEMO = ROOT / "engine" / "demo"
TEMPLATE = DEMO / "analyses" / "Demo-Trio"


def drop(incoming: Path, name: str) -> None:
    staging = incoming.parent / f".{name}"
    shutil.copytree(TEMPLATE, staging)
    config = staging / "Demo-Trio.analysis"
    document = json.loads(config.read_text())
    document["name"] = name
    config.write_text(json.dumps(document))
    staging.rename(incoming / name)
    (incoming / name / "READY").touch()


def visible(api: str, name: str) -> bool:
    try:
        response = httpx.get(f"{api}/api/v1/analyses", params={"name": name}, timeout=2)
        return response.status_code == 200 and response.json()["total"] == 1
    except httpx.HTTPError:
        return False


def wait(condition, timeout_s: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if condition():
            return time.perf_counter() - started
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--db-url", default=None, help="default: embedded SQLite in the temp data dir")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="annostream-latency-"))
    port = free_port()
    inherited = ("KAFKA_BOOTSTRAP_SERVERS", "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env.update(
        {
            "ANNOSTREAM_DATA_DIR": str(work / "data"),
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "ANALYSES_INCOMING": str(work / "data/analyses/incoming"),
            "ANALYSES_PATH": str(work / "data/analyses/imported"),
            "ANALYSES_FAILED": str(work / "data/analyses/failed"),
        }
    )
    if args.db_url:
        env["DB_URL"] = args.db_url
    api = f"http://127.0.0.1:{port}"
    log = open(work / "up.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "up", "--demo"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    incoming = work / "data/analyses/incoming"
    try:
        startup = wait(lambda: visible(api, "__none__") or _healthy(api), 60, "the API")
        warm = wait(
            lambda: httpx.get(f"{api}/api/v1/analyses", timeout=2).json()["total"] >= 2,
            120,
            "the demo analyses (warm-up)",
        )
        print(f"start-up {startup:.1f} s; demo analyses imported {warm:.1f} s later (includes group join)")
        latencies = []
        for number in range(args.count):
            name = f"Latency-{number:03d}"
            started = time.perf_counter()
            drop(incoming, name)
            wait(lambda n=name: visible(api, n), 60, name)
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        p50 = statistics.median(latencies)
        p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
        print(
            f"READY -> visible in API, {len(latencies)} analyses in a row: "
            f"p50 {p50:.2f} s, p95 {p95:.2f} s, max {latencies[-1]:.2f} s (target p50 <= 1.5 s)"
        )
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
