"""Chaos: the real ``annostream up`` tree (embedded memory-only broker) on a PostgreSQL server of
the test's own, while analyses flow in: the worker is SIGKILLed at random moments, the embedded
broker is killed once (and restarted by ``up``), and the database is stopped and started once.
Then a re-annotation run and a reanalysis go through another broker kill.

At the end every analysis is DONE exactly once with the row counts of a clean import of the same
folder, no folder is in two places or left in incoming, every re-annotation batch is DONE, and
nothing is parked. The randomness is seeded (``CHAOS_SEED`` to repeat a run); the seed is in every
failure message.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.config import load_settings
from engine.db.migrate import upgrade
from engine.db.models import Genotype, ImportJob, LedgerEntry, ParkedEvent, ReannotationBatch, Sample
from engine.db.session import get_engine, session_scope
from engine.deposit.genepanel import deposit_genepanel, read_genepanel_folder
from engine.events import build_ready_event, encode
from engine.pipeline import Pipeline
from tests.support.bundles import make_bundle
from tests.support.pgcluster import ThrowawayCluster
from tests.support.stack import DATA, ROOT, Stack, make_stack, wait_until
from tests.test_guard import import_through_guard

SMALL = DATA / "analyses" / "TestAnalysis-001"
GENEPANEL = DATA / "genepanels" / "HBOC_v1.0.0"
N_SMALL, N_BIG, BIG_VARIANTS = 18, 2, 110_000  # ~110k records each
WORKER_KILLS = 5


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def find_child(stack: Stack, *words: str) -> int | None:
    assert stack.process is not None
    for pid in descendants(stack.process.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if all(word in argv for word in words):
            return pid
    return None


def kill(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def embedded_bootstrap(stack: Stack) -> str:
    # The fault schedule may have killed the broker just now: `up` restarts it within seconds.
    deadline = time.monotonic() + 60
    pid = find_child(stack, "broker", "--storage-engine")
    while pid is None and time.monotonic() < deadline:
        time.sleep(0.5)
        pid = find_child(stack, "broker", "--storage-engine")
    assert pid is not None, "no embedded broker under annostream up for 60 s"
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return argv[argv.index("--listener-url") + 1].removeprefix("tcp://")


def big_vcf(root: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gen_bench.py"),
            "--out",
            str(root),
            "--n-source",
            "2000",
            "--frac-exact",
            "0.01",
            "--frac-samepos",
            "0.005",
            "--n-query",
            str(BIG_VARIANTS),
            "--n-bed",
            "10",
            "--seed",
            "7",
        ],
        check=True,
        capture_output=True,
    )
    return root / "query.vcf"


def build_big(target_root: Path, name: str, vcf: Path) -> Path:
    """A folder for the 3-sample benchmark VCF (bench/import_bench.py's layout), not yet READY."""
    folder = target_root / name
    folder.mkdir(parents=True)
    shutil.copyfile(vcf, folder / f"{name}.vcf")
    with vcf.open() as lines:
        samples = next(line for line in lines if line.startswith("#CHROM")).rstrip("\n").split("\t")[9:]
    proband, *others = samples
    parents = [*others, "0", "0"][:2]
    lines = [f"FAM\t{proband}\t{parents[0]}\t{parents[1]}\t1\t2\t1"]
    lines += [f"FAM\t{sample}\t0\t0\t{1 + i % 2}\t1\t0" for i, sample in enumerate(others)]
    (folder / f"{name}.ped").write_text("\n".join(lines) + "\n")
    analysis = {
        "name": name,
        "genepanel_name": "HBOC",
        "genepanel_version": "v1.0.0",
        "priority": 1,
        "data": [{"vcf": f"{name}.vcf", "ped": f"{name}.ped", "technology": "HTS"}],
    }
    (folder / f"{name}.analysis").write_text(json.dumps(analysis))
    return folder


def build_small(target_root: Path, name: str) -> Path:
    folder = target_root / name
    shutil.copytree(SMALL, folder)
    (folder / "READY").unlink(missing_ok=True)
    (folder / "TestAnalysis-001.analysis").write_text(
        json.dumps({"params": {"genepanel": "HBOC_v1.0.0"}, "name": name, "priority": "1"})
    )
    return folder


def row_counts(url: str, name: str) -> tuple[int, int, int]:
    """(samples, genotypes, genotype sample data rows) of the analysis called ``name``."""
    from engine.db.models import Analysis, GenotypeSampleData

    with session_scope(url) as session:
        samples = (
            sa.select(Sample.id)
            .join(Analysis, Analysis.id == Sample.analysis_id)
            .where(Analysis.name == name)
        )
        n_samples = session.scalar(sa.select(sa.func.count()).select_from(samples.subquery()))
        genotypes = sa.select(Genotype.id).where(Genotype.sample_id.in_(samples))
        n_genotypes = session.scalar(sa.select(sa.func.count()).select_from(genotypes.subquery()))
        n_data = session.scalar(
            sa.select(sa.func.count())
            .select_from(GenotypeSampleData)
            .where(GenotypeSampleData.genotype_id.in_(genotypes))
        )
    return int(n_samples or 0), int(n_genotypes or 0), int(n_data or 0)


def clean_counts(server_url: str, tmp_path: Path, big: Path) -> dict[str, tuple[int, int]]:
    """Row counts of a clean import of one small and one big folder, straight through the stages."""
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text("CREATE DATABASE clean"))
    engine.dispose()
    url = server_url.rsplit("/", 1)[0] + "/clean"
    root = tmp_path / "clean"
    settings = load_settings(
        ANNOSTREAM_DATA_DIR=root,
        DB_URL=url,
        ANALYSES_INCOMING=root / "incoming",
        ANALYSES_PATH=root / "imported",
        ANALYSES_FAILED=root / "failed",
        ANNOSTREAM_TOPIC_PREFIX="t.",
    )
    settings.ensure_folders()
    upgrade(url)
    with session_scope(url) as session:
        deposit_genepanel(session, read_genepanel_folder(GENEPANEL))
    pipeline = Pipeline(settings)
    counts = {}
    for kind, folder in (
        ("small", build_small(settings.analyses_incoming, "Clean-small")),
        ("big", build_big(settings.analyses_incoming, "Clean-big", big)),
    ):
        raw = encode(
            build_ready_event(folder, settings.analyses_incoming, producer="test", analysis=folder.name)
        )
        out = import_through_guard(settings, pipeline, raw)
        assert [message.topic for message in out] == ["t.analysis.imported"], out
        counts[kind] = row_counts(url, folder.name)
        assert min(counts[kind]) > 0, counts
    get_engine.cache_clear()
    return counts


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    own = ThrowawayCluster()
    own.start()
    try:
        yield own
    finally:
        get_engine.cache_clear()
        own.stop()


@pytest.mark.timeout(870)  # ~4 min on an idle 2-core machine; the shared CI machine is slower
def test_nothing_lost_nothing_stuck(tmp_path: Path, cluster: ThrowawayCluster) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
    rng = random.Random(seed)
    print(f"chaos seed: {seed} (CHAOS_SEED={seed} repeats this run)")
    server_url = f"postgresql+psycopg2://{cluster.user}@127.0.0.1:{cluster.port}/postgres"
    big = big_vcf(tmp_path / "gen")
    expected = clean_counts(server_url, tmp_path, big)

    stack = make_stack(tmp_path, db_url=server_url, bootstrap="", prefix="")
    stack.env.pop("KAFKA_BOOTSTRAP_SERVERS")  # the embedded, memory-only broker of `up`
    stack.env.update(
        {
            "ANNOSTREAM_RECONCILE_AFTER": "20",
            "ANNOSTREAM_RECONCILE_EVERY": "5",
            "ANNOSTREAM_RETRY_MAX_DELAY": "2",
            "ANNOSTREAM_MAX_ATTEMPTS": "10",
            "ANNOSTREAM_TOPIC_PARTITIONS": "2",
        }
    )
    staging = tmp_path / "staging"
    names = [f"Chaos-{n:02d}" for n in range(1, N_SMALL + 1)]
    bigs = [f"Chaos-big-{n}" for n in range(1, N_BIG + 1)]
    folders = {name: build_small(staging, name) for name in names}
    folders |= {name: build_big(staging, name, big) for name in bigs}
    order = list(folders)
    rng.shuffle(order)

    def where(context: str) -> str:
        return f"[seed {seed}] {context}\n{stack.log_tail(60)}"

    stack.start(timeout_s=180)
    try:
        stack.cli("deposit", "genepanel", "--folder", str(GENEPANEL))
        # Faults at random moments while the folders arrive: 5 worker SIGKILLs, one broker
        # kill, one database outage of a few seconds.
        faults = ["worker"] * WORKER_KILLS + ["broker", "database"]
        rng.shuffle(faults)
        deadline = started = time.monotonic()
        deadline += 60
        dropped = 0
        while faults or dropped < len(order):
            if dropped < len(order):
                name = order[dropped]
                target = stack.incoming / name
                folders[name].rename(target)
                (target / "READY").touch()
                dropped += 1
            time.sleep(rng.uniform(0.5, 2.5))
            if faults and rng.random() < 0.5:
                fault = faults.pop()
                at = time.monotonic() - started
                if fault == "database":
                    outage = rng.uniform(3, 8)
                    cluster.pause()
                    time.sleep(outage)
                    cluster.resume()
                    print(f"chaos: database stopped at {at:.1f} s for {outage:.1f} s")
                elif kill(
                    find_child(
                        stack,
                        *(["engine", "worker"] if fault == "worker" else ["broker", "--storage-engine"]),
                    )
                ):
                    print(f"chaos: {fault} SIGKILLed at {at:.1f} s")
                else:
                    faults.append(fault)  # not running right now (being restarted): later
            assert time.monotonic() < deadline + 60, where("the fault schedule overran")

        def all_done() -> bool:
            try:
                with session_scope(server_url) as session:
                    done = set(
                        session.scalars(sa.select(ImportJob.analysis_name).where(ImportJob.status == "DONE"))
                    )
            except sa.exc.OperationalError:
                return False
            return done >= set(order) and not any(stack.incoming.iterdir())

        wait_until(
            all_done,
            timeout_s=420,
            interval_s=1,
            what="every analysis DONE",
            on_timeout=lambda: where(f"incoming: {sorted(p.name for p in stack.incoming.iterdir())}"),
        )

        print(
            f"chaos: all {len(order)} analyses DONE {time.monotonic() - started:.0f} s after the first drop"
        )
        # A re-annotation run and a reanalysis through another broker kill. The CLI talks to the
        # broker `up` embeds, found from its command line.
        stack.env["KAFKA_BOOTSTRAP_SERVERS"] = embedded_bootstrap(stack)
        stack.cli("bundle", "add", str(make_bundle(tmp_path / "bundle", "2030.1")))
        stack.cli("bundle", "activate", "2030.1")
        # The worker is paused while they are published and the broker is killed, so the broker
        # loses them for sure: only the database's work ledger still has them.
        worker = find_child(stack, "engine", "worker")
        assert worker is not None, where("no worker")
        os.kill(worker, signal.SIGSTOP)
        try:
            stack.cli("reannotate", "--bundle", "2030.1", "--batch-size", "20000", "--no-wait")
            stack.cli("reanalyse", "--analysis", names[0])
            assert kill(find_child(stack, "broker", "--storage-engine")), where("no embedded broker to kill")
        finally:
            os.kill(worker, signal.SIGCONT)

        def releases_done() -> bool:
            with session_scope(server_url) as session:
                batches = list(session.scalars(sa.select(ReannotationBatch.status)))
                reanalysis = list(
                    session.scalars(sa.select(ImportJob.status).where(ImportJob.stage == "reanalyse"))
                )
            return bool(batches) and set(batches) == {"DONE"} and reanalysis == ["DONE"]

        released = time.monotonic()
        wait_until(
            releases_done,
            timeout_s=300,
            interval_s=1,
            what="re-annotation and reanalysis DONE",
            on_timeout=lambda: where("releases"),
        )
        print(
            f"chaos: re-annotation and reanalysis DONE {time.monotonic() - released:.0f} s after the "
            "broker kill"
        )
    finally:
        stack.stop()

    with session_scope(server_url) as session:
        jobs = session.execute(
            sa.select(ImportJob.analysis_name, ImportJob.status, ImportJob.stage, ImportJob.message)
        ).all()
        parked = session.scalars(sa.select(ParkedEvent.reason)).all()
        pending = session.scalars(sa.select(LedgerEntry.event_id).where(LedgerEntry.state == "PENDING")).all()
        batches = session.execute(
            sa.select(ReannotationBatch.status, sa.func.count()).group_by(ReannotationBatch.status)
        ).all()
    for name in order:
        imports = [job for job in jobs if job.analysis_name == name and job.stage != "reanalyse"]
        done = [job for job in imports if job.status == "DONE" and job.stage == "persist"]
        assert len(done) == 1, where(f"{name}: imports {imports}")
        assert all(job.status in ("DONE", "FAILED") for job in imports), where(f"{name}: stuck job {imports}")
        kind = "big" if name.startswith("Chaos-big") else "small"
        assert row_counts(server_url, name) == expected[kind], where(
            f"{name}: row counts differ from a clean import"
        )
        assert [
            p.name for p in stack.imported.iterdir() if p.name.startswith(name + ".") or p.name == name
        ] == [name], where(f"{name}: folder not exactly once in imported")
    assert not any(stack.failed.iterdir()), where(f"failed: {sorted(p.name for p in stack.failed.iterdir())}")
    assert not any(stack.incoming.iterdir())
    assert parked == [], where(f"parked: {parked}")
    assert pending == [], where(f"ledger entries never finished: {pending}")
    assert [status for status, _count in batches] == ["DONE"], where(f"batches: {batches}")
