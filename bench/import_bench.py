"""Import speed: one large analysis from READY to visible in the API, on PostgreSQL, per stage.

Starts the real process tree (``annostream up``: embedded broker, watcher, faust worker, API)
with ``DB_URL`` on PostgreSQL (a throwaway cluster unless ``--db-url``), deposits the demo gene
panel HBOC v1.0.0, builds an analysis folder from ``bench/data/query.vcf.gz`` (the 1M-record,
3-sample VCF of ``bench/gen_bench.py``; override with ``--vcf``) with a PED (first
sample proband, the others its parents) and a modern ``.analysis`` file, writes ``READY`` and
polls the API until the analysis is listed. Reports the total, the time per pipeline stage
(from the import job's history) and the worker's peak RSS (VmHWM of the worker process and of
any children it started). Target (issue 3 §7): <= 30 s and <= 1.5 GB.

    .venv/bin/python bench/import_bench.py [--vcf bench/data/query.vcf.gz] [--db-url postgresql://...]
"""

from __future__ import annotations

import argparse
import datetime as dt
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.broker import free_port  # noqa: E402
from engine.vcf.header import read_header  # noqa: E402

PANEL = ROOT / "engine" / "demo" / "genepanels" / "HBOC_v1.0.0"
DEFAULT_VCF = ROOT / "bench" / "data" / "query.vcf.gz"
STAGES = ("SUBMITTED", "ANNOTATING", "ANNOTATED", "PERSISTING", "DONE")


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
    analysis = {"name": name, "genepanel_name": "HBOC", "genepanel_version": "v1.0.0", "priority": 1,
                "data": [{"vcf": f"{name}.vcf.gz", "ped": f"{name}.ped", "technology": "HTS"}]}
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
    seconds = wait(lambda: (get_json(f"{api}/api/v1/analyses", name="Warm-Up") or {}).get("total") == 1,
                   120, "the warm-up analysis")
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
        cpu_seconds(pid) for pid in descendants(postmaster))


def find_worker(up_pid: int) -> int:
    for pid in descendants(up_pid):
        argv = cmdline(pid)
        if "engine" in argv and "worker" in argv:
            return pid
    raise SystemExit("no 'python -m engine worker' process under annostream up")


def stage_seconds(history: list[dict], ready_at: dt.datetime,  # type: ignore[type-arg]
                  visible_at: dt.datetime) -> list[tuple[str, float]]:
    times = [("READY", ready_at)]
    times += [(entry["status"], dt.datetime.fromisoformat(entry["at"])) for entry in history]
    times.append(("visible", visible_at))
    return [(f"{a}->{b}", (tb - ta).total_seconds()) for (a, ta), (b, tb) in itertools.pairwise(times)]


def run(db_url: str, vcf: Path, timeout_s: float, postmaster: int | None = None, *,
        ella: bool = False) -> float:
    """One import; returns the seconds from READY to done. ``ella``: ``db_url`` is an ELLA
    database (ELLA database mode), where done means the import job is DONE (Annostream's read
    API lists analyses of its own schema only) and ELLA's worklist lists the analysis."""
    work = Path(tempfile.mkdtemp(prefix="annostream-import-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "PROMETHEUS_MULTIPROC_DIR")}
    env.update({"ANNOSTREAM_DATA_DIR": str(work / "data"), "PORT": str(port), "LOG_LEVEL": "WARNING",
                "DB_URL": db_url, "ANALYSES_INCOMING": str(work / "data/analyses/incoming"),
                "ANALYSES_PATH": str(work / "data/analyses/imported"),
                "ANALYSES_FAILED": str(work / "data/analyses/failed")})
    api = f"http://127.0.0.1:{port}"
    log_path = work / "up.log"
    log = open(log_path, "wb")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "engine", "up"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    incoming = work / "data/analyses/incoming"
    try:
        wait(lambda: get_json(f"{api}/api/v1/import/jobs") is not None, 90, "the API")
        subprocess.run([sys.executable, "-m", "engine", "deposit", "genepanel", "--folder", str(PANEL)],
                       env=env, check=True, capture_output=True)
        warm_up(api, incoming)
        worker = find_worker(process.pid)
        memory = PeakMemory(worker)
        memory.start()
        cpu_before = cpu_seconds(worker), postgres_cpu(postmaster)
        name = "Import-Bench"
        started = time.perf_counter()
        build_folder(incoming, name, vcf)
        ready_written = time.perf_counter()
        ready_at = dt.datetime.now(dt.UTC)

        def visible() -> bool:
            if ella:
                page = get_json(f"{api}/api/v1/import/jobs", analysis=name, status="DONE")
                return bool(page and page["total"]) and in_ella_worklist(db_url, name)
            page = get_json(f"{api}/api/v1/analyses", name=name)
            return bool(page and page["total"] == 1)

        def failed() -> bool:
            page = get_json(f"{api}/api/v1/import/jobs", analysis=name, status="FAILED")
            return bool(page and page["total"])

        wait(lambda: visible() or failed(), timeout_s, f"{name} in the API", interval=0.1)
        total = time.perf_counter() - ready_written
        visible_at = dt.datetime.now(dt.UTC)
        memory.stop()
        cpu = cpu_seconds(worker) - cpu_before[0], postgres_cpu(postmaster) - cpu_before[1]
        jobs = get_json(f"{api}/api/v1/import/jobs", analysis=name) or {"items": []}
        job = get_json(f"{api}/api/v1/import/jobs/{jobs['items'][0]['id']}") if jobs["items"] else None
        report(name, vcf, total, ready_written - started, job, memory, ready_at, visible_at)
        print(f"CPU from READY to visible: worker {cpu[0]:.1f} s, PostgreSQL {cpu[1]:.1f} s "
              f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        return total
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


def durability(db_url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return ", ".join(f"{name}={conn.execute(sa.text(f'SHOW {name}')).scalar()}"
                             for name in ("fsync", "synchronous_commit", "full_page_writes"))
    finally:
        engine.dispose()


def in_ella_worklist(db_url: str, name: str) -> bool:
    """ELLA's worklist (src/datalayer/queries.py: workflow_analyses_interpretation_not_started)
    lists the analysis: its latest interpretation is 'Not started' in 'Interpretation'."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT 1 FROM (SELECT DISTINCT ON (analysis_id) analysis_id, status, workflow_status "
                "FROM analysisinterpretation ORDER BY analysis_id, date_created DESC) latest "
                "JOIN analysis a ON a.id = latest.analysis_id WHERE a.name = :name "
                "AND latest.status = 'Not started' AND latest.workflow_status = 'Interpretation'"),
                {"name": name}).first() is not None
    finally:
        engine.dispose()


def report(name: str, vcf: Path, total: float, copy_s: float, job: dict | None,  # type: ignore[type-arg]
           memory: PeakMemory, ready_at: dt.datetime, visible_at: dt.datetime) -> None:
    print(f"{name}: {vcf} ({vcf.stat().st_size / 1e6:.1f} MB), folder built in {copy_s:.2f} s")
    if job is None:
        print("no import job found")
    else:
        print(f"job {job['id']}: {job['status']} - {job.get('message') or ''}")
        for transition, seconds in stage_seconds(job["history"], ready_at, visible_at):
            print(f"  {transition:<26} {seconds:7.2f} s")
    print(f"READY -> visible in the API: {total:.2f} s (target <= 30 s)")
    worker_kb = memory.peaks.get(memory.worker, (0, ""))[0]
    print(f"worker peak RSS (VmHWM): {worker_kb / 1024:.0f} MB (target <= 1536 MB)")
    for pid, (kb, argv) in sorted(memory.peaks.items()):
        if pid != memory.worker:
            print(f"  child {pid} peak RSS {kb / 1024:.0f} MB: {argv}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vcf", type=Path, default=DEFAULT_VCF)
    parser.add_argument("--db-url", help="PostgreSQL URL (default: a throwaway cluster)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--mode", choices=("standalone", "ella", "both"), default="standalone",
                        help="standalone database, an ELLA 1.17.2 database made from ELLA's DDL "
                             "(ELLA database mode), or both in one run on the same cluster")
    args = parser.parse_args()
    if not args.vcf.exists():
        parser.error(f"{args.vcf} is missing: python3 bench/gen_bench.py --out bench/data "
                     "--compress")
    if args.db_url:
        run(args.db_url, args.vcf.resolve(), args.timeout, ella=args.mode == "ella")
        return
    from tests.support.ella import create_ella_database
    from tests.support.pgcluster import ThrowawayCluster

    cluster = ThrowawayCluster(durable=True)
    try:
        url = cluster.start()
        postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
        print(f"PostgreSQL {durability(url)}; load average {os.getloadavg()} on {os.cpu_count()} cores")
        totals: dict[str, float] = {}
        if args.mode in ("standalone", "both"):
            print("== standalone mode (Annostream's own database)")
            totals["standalone"] = run(url, args.vcf.resolve(), args.timeout, postmaster)
        if args.mode in ("ella", "both"):
            print("== ELLA database mode (a database made from ELLA 1.17.2's DDL)")
            totals["ella"] = run(create_ella_database(url), args.vcf.resolve(), args.timeout, postmaster,
                                 ella=True)
        print("summary: " + ", ".join(f"{mode} {seconds:.2f} s" for mode, seconds in totals.items()))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
