"""Read API latency and throughput on PostgreSQL, side by side with plain SQL as the floor.

    .venv/bin/python bench/api_bench.py [--variants 1000000] [--db-url postgresql://...]

1. Writes one trio analysis of N synthetic variants (bench/deposit_bench.py's generator).
2. Starts `annostream api` (gunicorn, ANNOSTREAM_API_WORKERS: --workers, default the engine's
   own, half the cores) on a free port; no broker
   and no worker run (the stack is idle).
3. Allele pages (`per_page=100`): the first request (which builds the analysis's allele list and
   counts it once), then N requests each at the first page, the middle and the last page, by
   keyset cursor and by page number, reporting p50/p95/max; and the same rows by one plain SQL
   query (allele columns, genotype sample data, current annotation) through psycopg2 as the floor.
4. Light endpoints with 20 concurrent keep-alive connections for --seconds each: requests/s,
   p50/p99/max, twice: from a Python load generator (httpx threads, which takes much of the CPU
   from the server on this machine: a lower bound) and from wrk (C, one thread; Debian `wrk`,
   skipped with a note when it is not installed), whose numbers are the server's.

PostgreSQL runs with its durable defaults (a throwaway cluster unless --db-url).

Prints `uptime` first: the machine is shared; state the load with every number.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from deposit_bench import SAMPLES, synthetic_variants  # noqa: E402

from engine.broker import free_port, wait_for_port  # noqa: E402
from engine.config import default_api_workers  # noqa: E402
from engine.db import migrate  # noqa: E402
from engine.db.models import Genepanel  # noqa: E402
from engine.db.session import session_scope  # noqa: E402
from engine.deposit.specs import AnalysisSpec  # noqa: E402
from engine.deposit.writer import write_analysis  # noqa: E402

PER_PAGE = 100
FLOOR_SQL = """
SELECT a.*, gsd.*, an.annotations
FROM (SELECT allele_id FROM analysis_allele WHERE analysis_id = %(analysis)s AND allele_id > %(after)s
      ORDER BY allele_id LIMIT %(limit)s) page
JOIN allele a ON a.id = page.allele_id
JOIN genotype g ON g.allele_id = a.id
JOIN genotypesampledata gsd ON gsd.genotype_id = g.id
LEFT JOIN annotation an ON an.allele_id = a.id AND an.date_superceeded IS NULL
ORDER BY a.id
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def describe(label: str, seconds: list[float]) -> str:
    ms = [value * 1000 for value in seconds]
    return (
        f"  {label:<42} n={len(ms):<4} p50 {statistics.median(ms):7.1f} ms"
        f"  p95 {percentile(ms, 0.95):7.1f} ms"
        f"  max {max(ms):7.1f} ms"
    )


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def write_bench_analysis(db_url: str, n: int) -> int:
    migrate.upgrade(db_url)
    with session_scope(db_url) as session:
        if session.get(Genepanel, ("Bench", "v1")) is None:
            session.add(Genepanel(name="Bench", version="v1"))
    spec = AnalysisSpec(
        name=f"apibench-{uuid.uuid4().hex[:8]}",
        genepanel_name="Bench",
        genepanel_version="v1",
        folder=Path("bench"),
    )
    started = time.perf_counter()
    with session_scope(db_url) as session:
        result = write_analysis(session, spec, SAMPLES, synthetic_variants(n))
        analysis_id = int(result.analysis_id)
    print(
        f"wrote analysis {analysis_id} with {result.n_variants} variants "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return analysis_id


def start_api(db_url: str, workers: int, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KAFKA_BOOTSTRAP_SERVERS", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(
        DB_URL=db_url,
        PORT=str(port),
        ANNOSTREAM_API_WORKERS=str(workers),
        LOG_LEVEL="WARNING",
        ANNOSTREAM_DATA_DIR=str(data_dir),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if not wait_for_port("127.0.0.1", port, 60):
        process.kill()
        raise SystemExit("the API did not start")
    return process, f"http://127.0.0.1:{port}"


def allele_pages(base: str, db_url: str, analysis_id: int, repeat: int) -> None:
    client = httpx.Client(base_url=base, timeout=120)
    warm_up(base, "/api/v1/analyses", 4)
    url = f"/api/v1/analyses/{analysis_id}/alleles"
    started = time.perf_counter()
    first = client.get(url, params={"per_page": PER_PAGE}).json()
    total = first["total"]
    print(
        f"first request (builds the allele list, counts it once): {time.perf_counter() - started:.2f} s, "
        f"total {total}"
    )
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:

        def cursor_at(offset: int) -> int:
            if offset == 0:
                return 0
            return int(
                connection.execute(
                    sa.text(
                        "SELECT allele_id FROM analysis_allele WHERE analysis_id = :a ORDER BY allele_id "
                        "OFFSET :o LIMIT 1"
                    ),
                    {"a": analysis_id, "o": offset - 1},
                ).scalar_one()
            )

        depths = {
            "first page": 0,
            "middle": (total // 2 // PER_PAGE) * PER_PAGE,
            "last page": max(0, ((total - 1) // PER_PAGE) * PER_PAGE),
        }
        raw = engine.raw_connection()
        try:
            for name, offset in depths.items():
                after = cursor_at(offset)
                params = {"per_page": PER_PAGE, "cursor": after} if offset else {"per_page": PER_PAGE}
                body = client.get(url, params=params).json()
                assert len(body["items"]) == min(PER_PAGE, total - offset), (name, len(body["items"]))
                print(
                    describe(
                        f"API  cursor  {name} (offset {offset})",
                        timed(lambda p=params: client.get(url, params=p).raise_for_status(), repeat),
                    )
                )
                page = {"per_page": PER_PAGE, "page": offset // PER_PAGE + 1}
                print(
                    describe(f"API  page=   {name}", timed(lambda p=page: client.get(url, params=p), repeat))
                )

                def floor(after: int = after) -> None:
                    with raw.cursor() as cursor:
                        cursor.execute(
                            FLOOR_SQL, {"analysis": analysis_id, "after": after, "limit": PER_PAGE}
                        )
                        cursor.fetchall()

                print(describe(f"SQL  floor   {name}", timed(floor, repeat)))
        finally:
            raw.close()
    engine.dispose()
    client.close()


def warm_up(base: str, path: str, connections: int) -> None:
    """Reach every gunicorn worker (each loads the app and opens its pool on first use)."""

    def hit() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            for _ in range(5):
                client.get(path)

    threads = [threading.Thread(target=hit) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def load_with_wrk(base: str, path: str, connections: int, seconds: float) -> None:
    """The same load from wrk (C, one thread, epoll): it leaves the CPU to the server, so the
    numbers are the server's, not the load generator's. Latency percentiles and max are wrk's."""
    warm_up(base, path, connections)
    retransmitted = tcp_retransmits()
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "--timeout", "5s", base + path],
        capture_output=True,
        text=True,
        check=True,
    )
    fields = _wrk_fields(result.stdout)
    print(
        f"  {path:<40} {fields['rps']:7.0f} req/s  p50 {fields['50%']:6.1f} ms  p99 {fields['99%']:6.1f} ms  "
        f"max {fields['max']:7.1f} ms  errors {fields['errors']:.0f}  (wrk)"
        f"  TCP retransmits {tcp_retransmits() - retransmitted}"
    )


def tcp_retransmits() -> int:
    """The machine's count of retransmitted TCP segments (Linux), printed beside each wrk run.
    On loopback nothing is lost; on the VM measured here the kernel still retransmits (tail loss
    probes, answered by duplicate SACKs: the ACK came late, the machine's cores being saturated),
    and the runs with latency maxima above a few hundred ms were the runs where it did."""
    try:
        lines = [
            line.split()
            for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Tcp:")
        ]
        return int(lines[1][lines[0].index("RetransSegs")])
    except (OSError, IndexError, ValueError):
        return 0


def _wrk_fields(output: str) -> dict[str, float]:
    """Requests/s, latency percentiles and max (ms) and non-2xx/socket errors from wrk's report."""

    def ms(text: str) -> float:
        for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)):
            if text.endswith(unit):
                return float(text[: -len(unit)]) * factor
        return float(text)

    fields: dict[str, float] = {"errors": 0.0}
    for line in output.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "Latency" and len(parts) >= 4:
            fields["max"] = ms(parts[3])
        elif parts[0] in ("50%", "75%", "90%", "99%") and len(parts) == 2:
            fields[parts[0]] = ms(parts[1])
        elif parts[0] == "Requests/sec:":
            fields["rps"] = float(parts[1])
        elif parts[0] == "Non-2xx":
            fields["errors"] += float(parts[-1])
        elif parts[0] == "Socket" and "errors:" in parts:
            fields["errors"] += sum(float(p.strip(",")) for p in parts if p.strip(",").isdigit())
    return fields


def load(base: str, path: str, connections: int, seconds: float) -> None:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def run() -> None:
        mine: list[float] = []
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = client.get(path)
                mine.append(time.perf_counter() - started)
                if response.status_code != 200:
                    with lock:
                        errors.append(str(response.status_code))
        with lock:
            latencies.extend(mine)

    warm_up(base, path, connections)
    threads = [threading.Thread(target=run) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ms = [value * 1000 for value in latencies]
    print(
        f"  {path:<40} {len(ms) / elapsed:7.0f} req/s  p50 {statistics.median(ms):6.1f} ms  "
        f"p99 {percentile(ms, 0.99):6.1f} ms  max {max(ms):7.1f} ms  errors {len(errors)}"
    )


def run(db_url: str, variants: int, workers: int, repeat: int, seconds: float, data_dir: Path) -> None:
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    analysis_id = write_bench_analysis(db_url, variants)
    process, base = start_api(db_url, workers, data_dir)
    try:
        print(f"API with {workers} gunicorn workers at {base}; allele pages, per_page={PER_PAGE}:")
        allele_pages(base, db_url, analysis_id, repeat)
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        paths = (
            "/healthz",
            "/api/v1/analyses",
            f"/api/v1/analyses/{analysis_id}",
            "/api/v1/import/jobs",
            "/api/v1/bundles",
        )
        print(
            f"light endpoints, 20 connections, {seconds:.0f} s each, Python load generator (httpx threads):"
        )
        for path in paths:
            load(base, path, 20, seconds)
        if shutil.which("wrk"):
            print(f"light endpoints, 20 connections, {seconds:.0f} s each, wrk:")
            for path in paths:
                load_with_wrk(base, path, 20, seconds)
        else:
            print("wrk is not installed (apt-get install wrk): only the Python load generator was measured")
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", "-n", type=int, default=1_000_000)
    parser.add_argument("--db-url", help="PostgreSQL URL (default: a throwaway cluster, durable defaults)")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_api_workers(),
        help="ANNOSTREAM_API_WORKERS (default: half the cores)",
    )
    parser.add_argument("--repeat", type=int, default=40, help="requests per allele-page measurement")
    parser.add_argument("--seconds", type=float, default=15.0, help="load duration per light endpoint")
    args = parser.parse_args()
    data_dir = Path(f"/tmp/annostream-api-bench-{uuid.uuid4().hex[:6]}")
    data_dir.mkdir(parents=True)
    if args.db_url:
        run(args.db_url, args.variants, args.workers, args.repeat, args.seconds, data_dir)
        return
    from tests.support.pgcluster import ThrowawayCluster

    cluster = ThrowawayCluster(durable=True)  # PostgreSQL's durable defaults, as a lab runs it
    try:
        run(cluster.start(), args.variants, args.workers, args.repeat, args.seconds, data_dir)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
