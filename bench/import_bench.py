"""Import speed: one large analysis from READY to visible in the API, on a durable PostgreSQL.

Starts the real process tree (``annostream up``: embedded broker, watcher, faust worker, API)
with ``DB_URL`` on PostgreSQL (a throwaway cluster with PostgreSQL's durable defaults -- fsync,
synchronous_commit and full_page_writes on -- unless ``--db-url``; ``--fast-cluster`` turns them
off to compare), deposits the demo gene panel HBOC v1.0.0, builds an analysis folder from
``bench/data/query.vcf.gz`` (the 1M-record, 3-sample VCF of ``bench/gen_bench.py``; override
with ``--vcf``) with a PED (first sample proband, the others its parents) and a modern
``.analysis`` file, writes ``READY`` and polls the API until the analysis is listed.

Reports the server's durability settings, the total, the time per pipeline stage (from the
import job's history), the writer's time per step (from the worker's log), the WAL the import
wrote, the CPU of worker and PostgreSQL and the worker's peak RSS (VmHWM of the worker process
and its children). Then, in the same run, the **database floor**: the allele, annotation,
genotype and sample-data rows the import stored are dumped and COPYed into a fresh database with
the same schema (same tables, same indexes, same server settings) in one committed transaction,
and once more into copies of those tables without indexes (the difference is index
maintenance). Targets (issue 12): READY->visible <= 1.5x the floor, worker RSS <= 1 GB.

    .venv/bin/python bench/import_bench.py [--vcf bench/data/query.vcf.gz] [--db-url postgresql://...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.broker import free_port  # noqa: E402
from engine.vcf.header import read_header  # noqa: E402

PANEL = ROOT / "engine" / "demo" / "genepanels" / "HBOC_v1.0.0"
DEFAULT_VCF = ROOT / "bench" / "data" / "query.vcf.gz"
STAGES = ("SUBMITTED", "ANNOTATING", "ANNOTATED", "PERSISTING", "DONE")
DURABILITY = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "wal_compression",
)
RSS_TARGET_MB = 1024
FLOOR_FACTOR = 1.5
# The rows an import stores, in an order that satisfies the foreign keys (annotation -> allele).
ELLA_TARGET_S = 60.0  # issue 9: the 1M-record trio into an ELLA database
FLOOR_TABLES = ("allele", "annotation", "genotype", "genotypesampledata")
_SAMPLES = "SELECT id FROM sample WHERE analysis_id = {id}"
_GENOTYPES = f"SELECT id FROM genotype WHERE sample_id IN ({_SAMPLES})"
_ALLELES = (
    f"SELECT allele_id FROM genotype WHERE sample_id IN ({_SAMPLES}) "
    f"UNION SELECT secondallele_id FROM genotype WHERE sample_id IN ({_SAMPLES})"
)
FLOOR_ROWS = {
    "allele": f"SELECT * FROM allele WHERE id IN ({_ALLELES})",
    "annotation": f"SELECT * FROM annotation WHERE date_superceeded IS NULL AND allele_id IN ({_ALLELES})",
    "genotype": f"SELECT * FROM genotype WHERE sample_id IN ({_SAMPLES})",
    "genotypesampledata": f"SELECT * FROM genotypesampledata WHERE genotype_id IN ({_GENOTYPES})",
}

# In ELLA's schema genotype and genotypesampledata reference sample, sample references analysis,
# analysis references genepanel: copied into the floor database first, in this order, untimed.
ELLA_PARENT_ROWS = {
    "genepanel": "SELECT * FROM genepanel WHERE (name, version) IN "
    "(SELECT genepanel_name, genepanel_version FROM analysis WHERE id = {id})",
    "analysis": "SELECT * FROM analysis WHERE id = {id}",
    "sample": "SELECT * FROM sample WHERE analysis_id = {id}",
}


def server_settings(url: str) -> dict[str, str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {name: str(connection.exec_driver_sql(f"SHOW {name}").scalar()) for name in DURABILITY}
    finally:
        engine.dispose()


def wal_position(url: str) -> dict[str, float]:
    """Where the WAL is and what pg_stat_wal counted so far (times need track_wal_io_timing)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            lsn = connection.exec_driver_sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").scalar()
            row = (
                connection.exec_driver_sql(
                    "SELECT wal_bytes, wal_write, wal_sync, wal_write_time, wal_sync_time FROM pg_stat_wal"
                )
                .mappings()
                .first()
                or {}
            )
            return {"lsn": float(lsn or 0), **{key: float(value or 0) for key, value in row.items()}}
    finally:
        engine.dispose()


def wal_delta(before: dict[str, float], after: dict[str, float]) -> str:
    written = (after["lsn"] - before["lsn"]) / 1e6
    parts = [f"{written:.0f} MB of WAL"]
    if "wal_sync" in after:
        parts.append(
            f"{after['wal_write'] - before['wal_write']:.0f} writes, "
            f"{after['wal_sync'] - before['wal_sync']:.0f} syncs"
        )
        if after["wal_write_time"] or after["wal_sync_time"]:
            parts.append(
                f"write {(after['wal_write_time'] - before['wal_write_time']) / 1000:.2f} s, "
                f"sync {(after['wal_sync_time'] - before['wal_sync_time']) / 1000:.2f} s"
            )
    return ", ".join(parts)


def build_folder(incoming: Path, name: str, vcf: Path) -> None:
    """The analysis folder, assembled beside incoming and moved in whole; READY last."""
    staging = incoming.parent / f".{name}"
    staging.mkdir(parents=True)
    shutil.copyfile(vcf, staging / f"{name}.vcf.gz")
    samples = read_header(vcf).samples
    proband, *others = samples
    parents = [*others, "0", "0"][:2]
    lines = [f"FAM\t{proband}\t{parents[0]}\t{parents[1]}\t1\t2\t1"]
    lines += [f"FAM\t{sample}\t0\t0\t{1 + i % 2}\t1\t0" for i, sample in enumerate(others)]
    (staging / f"{name}.ped").write_text("\n".join(lines) + "\n")
    analysis = {
        "name": name,
        "genepanel_name": "HBOC",
        "genepanel_version": "v1.0.0",
        "priority": 1,
        "data": [{"vcf": f"{name}.vcf.gz", "ped": f"{name}.ped", "technology": "HTS"}],
    }
    (staging / f"{name}.analysis").write_text(json.dumps(analysis, indent=2))
    staging.rename(incoming / name)
    (incoming / name / "READY").touch()


def get_json(url: str, **params: str) -> dict | None:  # type: ignore[type-arg]
    try:
        response = httpx.get(url, params=params, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def warm_up(api: str, incoming: Path) -> None:
    """Import one small analysis first: a running lab's worker has long joined its consumer
    group, so the first join (several seconds on the embedded broker) is not what we measure."""
    demo = ROOT / "engine" / "demo" / "analyses" / "Demo-Single"
    staging = incoming.parent / ".warm-up"
    shutil.copytree(demo, staging)
    config = staging / "Demo-Single.analysis"
    config.write_text(config.read_text().replace('"Demo-Single"', '"Warm-Up"'))
    staging.rename(incoming / "Warm-Up")
    (incoming / "Warm-Up" / "READY").touch()
    # The import job (Annostream's own table) says DONE in both database modes.
    seconds = wait(
        lambda: (
            (get_json(f"{api}/api/v1/import/jobs", analysis="Warm-Up", status="DONE") or {}).get("total") == 1
        ),
        300,
        "the warm-up analysis",
    )
    print(f"warm-up analysis imported in {seconds:.1f} s (includes the worker's first group join)")


def wait(condition, timeout_s: float, what: str, interval: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if condition():
            return time.perf_counter() - started
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")


def descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (from /proc; no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakMemory(threading.Thread):
    """Samples VmHWM of the worker and of every process below it until stopped."""

    def __init__(self, worker: int) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.peaks: dict[int, tuple[int, str]] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(0.2)

    def sample(self) -> None:
        for pid in [self.worker, *descendants(self.worker)]:
            hwm = status_kb(pid, "VmHWM")
            if hwm > self.peaks.get(pid, (0, ""))[0]:
                self.peaks[pid] = (hwm, " ".join(cmdline(pid))[:60])

    def stop(self) -> None:
        self.stop_event.set()
        self.join()
        self.sample()


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float:
    """utime+stime of a process (all threads); optionally plus its reaped children's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu(postmaster: int | None) -> float:
    """CPU of a PostgreSQL server: the postmaster, its reaped and its living backends."""
    if postmaster is None:
        return float("nan")
    return cpu_seconds(postmaster, with_reaped_children=True) + sum(
        cpu_seconds(pid) for pid in descendants(postmaster)
    )


def find_worker(up_pid: int) -> int:
    for pid in descendants(up_pid):
        argv = cmdline(pid)
        if "engine" in argv and "worker" in argv:
            return pid
    raise SystemExit("no 'python -m engine worker' process under annostream up")


def stage_seconds(
    history: list[dict],
    ready_at: dt.datetime,  # type: ignore[type-arg]
    visible_at: dt.datetime,
) -> list[tuple[str, float]]:
    times = [("READY", ready_at)]
    times += [(entry["status"], dt.datetime.fromisoformat(entry["at"])) for entry in history]
    times.append(("visible", visible_at))
    return [(f"{a}->{b}", (tb - ta).total_seconds()) for (a, ta), (b, tb) in itertools.pairwise(times)]


def checkpoint(url: str) -> None:
    """Start timed phases from a clean checkpoint (needs superuser; skipped otherwise)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CHECKPOINT")
    except sa.exc.SQLAlchemyError as error:
        print(f"(no CHECKPOINT before the timed phase: {str(error).splitlines()[0]})")
    finally:
        engine.dispose()


def writer_seconds(log_path: Path, name: str) -> str:
    """The persist stage's per-step wall time, from the worker's log line for ``name``."""
    marker = f"imported {name}:"
    for line in reversed(log_path.read_text(errors="replace").splitlines()):
        if marker in line and "writer seconds" in line:
            return line.split("writer seconds", 1)[1].strip()
    return "(not in the log)"


def run(
    db_url: str, vcf: Path, timeout_s: float, postmaster: int | None = None, *, ella: bool = False
) -> dict[str, object]:
    """The import from READY to visible; returns what the floor measurement and the verdict need.
    ``ella``: ``db_url`` is an ELLA database (ELLA database mode), where visible means the import
    job is DONE (Annostream's read API lists analyses of its own schema only) and ELLA's worklist
    lists the analysis."""
    work = Path(tempfile.mkdtemp(prefix="annostream-import-"))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(
        {
            "ANNOSTREAM_DATA_DIR": str(work / "data"),
            "PORT": str(port),
            "LOG_LEVEL": "INFO",
            "DB_URL": db_url,
            "ANALYSES_INCOMING": str(work / "data/analyses/incoming"),
            "ANALYSES_PATH": str(work / "data/analyses/imported"),
            "ANALYSES_FAILED": str(work / "data/analyses/failed"),
        }
    )
    api = f"http://127.0.0.1:{port}"
    log_path = work / "up.log"
    log = open(log_path, "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "up"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    incoming = work / "data/analyses/incoming"
    name = "Import-Bench"
    try:
        wait(lambda: get_json(f"{api}/api/v1/import/jobs") is not None, 300, "the API")
        subprocess.run(
            [sys.executable, "-m", "engine", "deposit", "genepanel", "--folder", str(PANEL)],
            env=env,
            check=True,
            capture_output=True,
        )
        warm_up(api, incoming)
        worker = find_worker(process.pid)
        checkpoint(db_url)
        memory = PeakMemory(worker)
        memory.start()
        cpu_before = cpu_seconds(worker), postgres_cpu(postmaster)
        wal_before = wal_position(db_url)
        started = time.perf_counter()
        build_folder(incoming, name, vcf)
        ready_written = time.perf_counter()
        ready_at = dt.datetime.now(dt.UTC)

        def visible() -> bool:
            # Listed by the read API; in ELLA database mode also on ELLA's own worklist.
            page = get_json(f"{api}/api/v1/analyses", name=name)
            listed = bool(page and page["total"] == 1)
            return listed and (not ella or in_ella_worklist(db_url, name))

        def failed() -> bool:
            page = get_json(f"{api}/api/v1/import/jobs", analysis=name, status="FAILED")
            return bool(page and page["total"])

        wait(lambda: visible() or failed(), timeout_s, f"{name} in the API", interval=0.1)
        total = time.perf_counter() - ready_written
        visible_at = dt.datetime.now(dt.UTC)
        memory.stop()
        cpu = cpu_seconds(worker) - cpu_before[0], postgres_cpu(postmaster) - cpu_before[1]
        wal = wal_delta(wal_before, wal_position(db_url))
        jobs = get_json(f"{api}/api/v1/import/jobs", analysis=name) or {"items": []}
        job = get_json(f"{api}/api/v1/import/jobs/{jobs['items'][0]['id']}") if jobs["items"] else None
        report(name, vcf, total, ready_written - started, job, memory, ready_at, visible_at)
        print(f"  persist stage, writer wall time per step (s): {writer_seconds(log_path, name)}")
        print(f"  WAL written by the import: {wal}")
        print(
            f"CPU from READY to visible: worker {cpu[0]:.1f} s, PostgreSQL {cpu[1]:.1f} s "
            f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
        analysis = get_json(f"{api}/api/v1/analyses", name=name) or {"items": []}
        worker_kb = memory.peaks.get(memory.worker, (0, ""))[0]
        return {
            "total": total,
            "rss_mb": worker_kb / 1024,
            "analysis_id": analysis["items"][0]["id"] if analysis["items"] else None,
        }
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        if os.environ.get("KEEP_BENCH_DIR"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def in_ella_worklist(db_url: str, name: str) -> bool:
    """ELLA's worklist (src/datalayer/queries.py: workflow_analyses_interpretation_not_started)
    lists the analysis: its latest interpretation is 'Not started' in 'Interpretation'."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return (
                conn.execute(
                    sa.text(
                        "SELECT 1 FROM (SELECT DISTINCT ON (analysis_id) analysis_id, status, "
                        "workflow_status FROM analysisinterpretation "
                        "ORDER BY analysis_id, date_created DESC) latest "
                        "JOIN analysis a ON a.id = latest.analysis_id WHERE a.name = :name "
                        "AND latest.status = 'Not started' AND latest.workflow_status = 'Interpretation'"
                    ),
                    {"name": name},
                ).first()
                is not None
            )
    finally:
        engine.dispose()


def report(
    name: str,
    vcf: Path,
    total: float,
    copy_s: float,
    job: dict | None,  # type: ignore[type-arg]
    memory: PeakMemory,
    ready_at: dt.datetime,
    visible_at: dt.datetime,
) -> None:
    print(f"{name}: {vcf} ({vcf.stat().st_size / 1e6:.1f} MB), folder built in {copy_s:.2f} s")
    if job is None:
        print("no import job found")
    else:
        print(f"job {job['id']}: {job['status']} - {job.get('message') or ''}")
        for transition, seconds in stage_seconds(job["history"], ready_at, visible_at):
            print(f"  {transition:<26} {seconds:7.2f} s")
    print(f"READY -> visible in the API: {total:.2f} s")
    worker_kb = memory.peaks.get(memory.worker, (0, ""))[0]
    print(f"worker peak RSS (VmHWM): {worker_kb / 1024:.0f} MB (target <= {RSS_TARGET_MB} MB)")
    for pid, (kb, argv) in sorted(memory.peaks.items()):
        if pid != memory.worker:
            print(f"  child {pid} peak RSS {kb / 1024:.0f} MB: {argv}")


# --- the database floor ---------------------------------------------------------------------------


def dump_rows(url: str, analysis_id: int, *, ella: bool = False) -> dict[str, bytes]:
    """COPY text of every row the import stored in the big tables (plus the annotation configs
    its annotation rows refer to, and with ``ella`` the rows ELLA's foreign keys need)."""
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        dumps: dict[str, bytes] = {}
        parents = ELLA_PARENT_ROWS if ella else {}
        queries = {
            **{table: query.format(id=analysis_id) for table, query in FLOOR_ROWS.items()},
            **{table: query.format(id=analysis_id) for table, query in parents.items()},
            "annotationconfig": "SELECT * FROM annotationconfig",
        }
        for table, query in queries.items():
            buffer = io.BytesIO()
            cursor.copy_expert(f"COPY ({query}) TO STDOUT", buffer)
            dumps[table] = buffer.getvalue()
        raw.rollback()
        return dumps
    finally:
        raw.close()
        engine.dispose()


def copy_rows(url: str, dumps: dict[str, bytes], target: dict[str, str]) -> dict[str, float]:
    """COPY the dumps into ``target[table]`` in one transaction; seconds per table and commit."""
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    times: dict[str, float] = {}
    try:
        cursor = raw.cursor()
        started = time.perf_counter()
        for table in FLOOR_TABLES:
            begun = time.perf_counter()
            cursor.copy_expert(f"COPY {target[table]} FROM STDIN", io.BytesIO(dumps[table]))
            times[table] = time.perf_counter() - begun
        begun = time.perf_counter()
        raw.commit()
        times["commit"] = time.perf_counter() - begun
        times["total"] = time.perf_counter() - started
        return times
    finally:
        raw.close()
        engine.dispose()


def measure_floor(db_url: str, analysis_id: int, *, ella: bool = False) -> float:
    """COPY of the import's rows into a fresh database of the same schema on the same server.

    ``ella``: the fresh database is made from ELLA 1.17.2's DDL, so ELLA's triggers on
    ``annotation`` (JSON-schema validation, the shadow tables) run in the floor as in the import;
    the analysis, its samples and gene panel go in first (untimed: ELLA's foreign keys need them).
    """
    dumps = dump_rows(db_url, analysis_id, ella=ella)
    rows = {table: dumps[table].count(b"\n") for table in FLOOR_TABLES}
    megabytes = sum(len(dumps[table]) for table in FLOOR_TABLES) / 1e6
    admin = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    if ella:
        from tests.support.ella import create_ella_database

        floor_url = create_ella_database(db_url)
        floor_name = str(sa.engine.make_url(floor_url).database)
    else:
        floor_name = f"annostream_floor_{os.getpid()}"
        floor_url = sa.engine.make_url(db_url).set(database=floor_name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {floor_name}")
            connection.exec_driver_sql(f"CREATE DATABASE {floor_name}")
    try:
        if not ella:
            subprocess.run(
                [sys.executable, "-m", "engine", "db", "upgrade"],
                check=True,
                capture_output=True,
                env={**os.environ, "DB_URL": floor_url},
            )
        engine = sa.create_engine(floor_url)
        with engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE annotationconfig CASCADE")
            for table in FLOOR_TABLES:  # the same columns, NOT NULLs, no keys, indexes or triggers
                connection.exec_driver_sql(f"CREATE TABLE noindex_{table} (LIKE {table})")
        raw = engine.raw_connection()
        try:
            for table in (*(ELLA_PARENT_ROWS if ella else ()), "annotationconfig"):
                raw.cursor().copy_expert(f"COPY {table} FROM STDIN", io.BytesIO(dumps[table]))
            raw.commit()
        finally:
            raw.close()
        engine.dispose()
        checkpoint(floor_url)
        before = wal_position(floor_url)
        indexed = copy_rows(floor_url, dumps, {table: table for table in FLOOR_TABLES})
        wal = wal_delta(before, wal_position(floor_url))
        checkpoint(floor_url)
        bare = copy_rows(floor_url, dumps, {table: f"noindex_{table}" for table in FLOOR_TABLES})
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {floor_name}")
        admin.dispose()
    print(
        f"Database floor: COPY of the same rows ({', '.join(f'{table} {rows[table]}' for table in rows)}; "
        f"{megabytes:.0f} MB of COPY text) into a fresh database, one transaction:"
    )
    for label, times in (("same tables and indexes", indexed), ("same columns, no indexes", bare)):
        steps = ", ".join(f"{key} {value:.2f}" for key, value in times.items() if key != "total")
        print(f"  {label:<26} {times['total']:7.2f} s  ({steps})")
    print(
        f"  index maintenance          {indexed['total'] - bare['total']:7.2f} s; "
        f"WAL of the indexed COPY: {wal}"
    )
    return indexed["total"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vcf", type=Path, default=DEFAULT_VCF)
    parser.add_argument("--db-url", help="PostgreSQL URL (default: a throwaway cluster, durable settings)")
    parser.add_argument(
        "--fast-cluster",
        action="store_true",
        help="throwaway cluster with fsync, synchronous_commit and full_page_writes off "
        "(what the test suite uses; no lab runs this), to compare",
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--mode",
        choices=("standalone", "ella", "both"),
        default="standalone",
        help="standalone database, an ELLA 1.17.2 database made from ELLA's DDL "
        "(ELLA database mode), or both in one run on the same cluster",
    )
    args = parser.parse_args()
    if not args.vcf.exists():
        parser.error(f"{args.vcf} is missing: python3 bench/gen_bench.py --out bench/data --compress")
    print(f"machine: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if args.db_url:
        measure(args.db_url, args.vcf.resolve(), args.timeout, None, ella=args.mode == "ella")
        return
    from tests.support.ella import create_ella_database
    from tests.support.pgcluster import ThrowawayCluster

    # track_wal_io_timing only adds timings to pg_stat_wal; it changes no durability setting.
    cluster = ThrowawayCluster(durable=not args.fast_cluster, options=("track_wal_io_timing=on",))
    try:
        url = cluster.start()
        postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
        if args.mode in ("standalone", "both"):
            print("== standalone mode (Annostream's own database)")
            measure(url, args.vcf.resolve(), args.timeout, postmaster)
        if args.mode in ("ella", "both"):
            print("== ELLA database mode (a database made from ELLA 1.17.2's DDL, ELLA's triggers on)")
            measure(create_ella_database(url), args.vcf.resolve(), args.timeout, postmaster, ella=True)
    finally:
        cluster.stop()


def measure(url: str, vcf: Path, timeout_s: float, postmaster: int | None, *, ella: bool = False) -> None:
    settings = server_settings(url)
    print("PostgreSQL: " + ", ".join(f"{key}={value}" for key, value in settings.items()))
    result = run(url, vcf, timeout_s, postmaster, ella=ella)
    if result["analysis_id"] is None:
        raise SystemExit("the analysis was not imported: no floor to compare with")
    floor = measure_floor(url, int(str(result["analysis_id"])), ella=ella)
    total, rss = float(str(result["total"])), float(str(result["rss_mb"]))
    print(
        f"READY -> visible {total:.2f} s = {total / floor:.2f}x the floor {floor:.2f} s "
        f"(target <= {FLOOR_FACTOR}x: {'met' if total <= FLOOR_FACTOR * floor else 'MISSED'}); "
        f"worker RSS {rss:.0f} MB (target <= {RSS_TARGET_MB} MB: "
        f"{'met' if rss <= RSS_TARGET_MB else 'MISSED'}); durability: "
        + ", ".join(f"{key}={settings[key]}" for key in DURABILITY[1:4])
    )
    if ella:
        print(
            f"ELLA database mode: READY -> visible {total:.2f} s (issue 9 target <= {ELLA_TARGET_S:.0f} s: "
            f"{'met' if total <= ELLA_TARGET_S else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
