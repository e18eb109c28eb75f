"""Benchmark a data release: N stored alleles re-annotated with a new bundle through real workers.

    .venv/bin/python bench/reannotate_bench.py [--alleles 1000000] [--workers 2] [--db-url postgresql://...]

Setup (not timed): the alleles of bench/data/query.vcf.gz (topped up with synthetic SNVs) are
COPYed into ``allele`` with an old annotation document each (with a bundle-owned value, so
every document changes); a bundle is built from
bench/data/source.vcf.gz (fields AF, AC, AN, GENE, CLNSIG) and activated; an annotation config
maps those fields into the document. Then ``annostream worker`` processes (embedded broker) are
started and given time to join their consumer group, and ``annostream reannotate`` is timed
until every batch is done. Per-step seconds (export, annotate, convert+write) are summed from
the workers' batch log lines (they overlap across workers, so they add up to more than the wall
time when --workers > 1).

Generate the data first if missing:
    python3 bench/gen_bench.py --out bench/data --compress
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.broker import EmbeddedBroker  # noqa: E402
from engine.bundles import activate_bundle, add_bundle  # noqa: E402
from engine.db import migrate  # noqa: E402
from engine.db.session import get_engine, session_scope  # noqa: E402
from engine.deposit.annotation_config import store_annotation_config  # noqa: E402

DATA = ROOT / "bench" / "data"
FIELDS = ("AF", "AC", "AN", "GENE", "CLNSIG")
ANNOTATION_CONFIG = {
    "deposit": [{"name": "keyvalue", "converter_config": {"elements": [
        {"source": "BENCH_AF", "target": "frequencies.BENCH.freq.G", "target_type": "float"},
        {"source": "BENCH_AC", "target": "frequencies.BENCH.count.G", "target_type": "int"},
        {"source": "BENCH_AN", "target": "frequencies.BENCH.num.G", "target_type": "int"},
        {"source": "BENCH_GENE", "target": "external.BENCH.gene"},
        {"source": "BENCH_CLNSIG", "target": "external.BENCH.clnsig"},
    ]}}],
    "view": [],
}
# Every old document holds a value the bundle owns (replaced or withdrawn: the worst case, every
# allele gets a new row) and one it does not (kept).
OLD_DOCUMENT = {"release": "old", "external": {"BENCH": {"clnsig": "old"}}}
STEP_LINE = re.compile(r"batch \d+: re-annotated (\d+) alleles .*\((export [\d.]+s.*)\)$")


def allele_rows(n: int) -> Iterator[str]:
    """COPY text rows for ``allele`` (query.vcf.gz sites, then synthetic SNVs up to n)."""
    written = 0
    with gzip.open(DATA / "query.vcf.gz", "rt") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            if written >= n:
                return
            chrom, pos_text, _id, ref, alt = line.split("\t", 5)[:5]
            pos = int(pos_text)
            kind = "SNP" if len(ref) == len(alt) == 1 else ("del" if len(ref) > len(alt) else "ins")
            end = pos - 1 + len(ref)
            yield (f"{chrom}\t{pos - 1}\t{end}\t{ref}\t{alt}\t{kind}\t{pos}\t{ref}\t{alt}\t{len(ref)}"
                   "\tGRCh37\tsnv\n")
            written += 1
    for i in range(n - written):
        pos = 1_000 + 7 * i
        yield f"chr22\t{pos - 1}\t{pos}\tA\tC\tSNP\t{pos}\tA\tC\t1\tGRCh37\tsnv\n"


def load_alleles(url: str, n: int) -> None:
    columns = ("chromosome, start_position, open_end_position, change_from, change_to, change_type, "
               "vcf_pos, vcf_ref, vcf_alt, length, genome_reference, caller_type")
    raw = get_engine(url).raw_connection()
    try:
        cursor = raw.cursor()
        buffer = io.StringIO("".join(allele_rows(n)))
        cursor.copy_expert(f"COPY allele ({columns}) FROM STDIN", buffer)
        cursor.execute("INSERT INTO annotation (allele_id, annotations, schema_version, date_created, "
                       "bundle_version) SELECT id, %s::jsonb, 1, now(), 'old' "
                       "FROM allele", (json.dumps(OLD_DOCUMENT),))
        cursor.execute("ANALYZE allele")
        cursor.execute("ANALYZE annotation")
        raw.commit()
    finally:
        raw.close()


def make_bundle(folder: Path, version: str) -> Path:
    data = folder / "data"
    data.mkdir(parents=True)
    for name in ("source.vcf.gz", "source.vcf.gz.tbi"):
        os.link(DATA / name, data / name) if _same_fs(DATA, data) else shutil.copy(DATA / name, data / name)
    names = ", ".join(f'"BENCH_{field}"' for field in FIELDS)
    fields = ", ".join(f'"{field}"' for field in FIELDS)
    ops = ", ".join('"self"' for _ in FIELDS)
    (folder / "vcfanno_config.toml").write_text(
        f'[[annotation]]\nfile = "data/source.vcf.gz"\nfields = [{fields}]\nnames = [{names}]\n'
        f"ops = [{ops}]\n")
    files = {f"data/{name}": hashlib.sha256((data / name).read_bytes()).hexdigest()
             for name in ("source.vcf.gz", "source.vcf.gz.tbi")}
    (folder / "sources.json").write_text(json.dumps({"bench": {"version": "1", "files": files}}))
    (folder / "version").write_text(version + "\n")
    return folder


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alleles", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--db-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    args = parser.parse_args()
    if not (DATA / "source.vcf.gz").exists():
        sys.exit("bench/data/source.vcf.gz is missing: python3 bench/gen_bench.py "
                 "--out bench/data --compress")
    cluster = None
    url = args.db_url
    if url is None:
        from tests.support.pgcluster import ThrowawayCluster

        cluster = ThrowawayCluster()
        server = cluster.start()
        name = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="reannotate-bench-"))
    try:
        run(args, url, workdir)
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
        if cluster is not None:
            cluster.stop()


def run(args: argparse.Namespace, url: str, workdir: Path) -> None:
    data_dir = workdir / "data"
    migrate.upgrade(url)
    started = time.perf_counter()
    load_alleles(url, args.alleles)
    setup_s = time.perf_counter() - started
    print(f"setup: {args.alleles} alleles with an old annotation each in {setup_s:.1f} s")
    with session_scope(url) as session:
        store_annotation_config(session, ANNOTATION_CONFIG)
        add_bundle(session, make_bundle(workdir / "bundle", "bench.2"), data_dir)
        activate_bundle(session, "bench.2")
    prefix = f"b{uuid.uuid4().hex[:6]}."
    with EmbeddedBroker() as broker:
        env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
        env.update({"DB_URL": url, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                    "ANNOSTREAM_TOPIC_PREFIX": prefix, "ANNOSTREAM_APP_ID": f"bench-{prefix.strip('.')}",
                    "ANNOSTREAM_DATA_DIR": str(data_dir), "ANALYSES_INCOMING": str(data_dir / "in"),
                    "ANALYSES_PATH": str(data_dir / "done"), "ANALYSES_FAILED": str(data_dir / "failed"),
                    "ANNOSTREAM_TOPIC_PARTITIONS": str(max(4, args.workers))})
        logs = [workdir / f"worker-{i}.log" for i in range(args.workers)]
        workers = [subprocess.Popen([sys.executable, "-m", "engine", "worker"], env=env,
                                    stdout=log.open("wb"), stderr=subprocess.STDOUT) for log in logs]
        try:
            time.sleep(20)  # the consumer group forms (Tansu waits the rebalance timeout on a join)
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "engine", "reannotate", "--bundle", "bench.2",
                                     "--batch-size", str(args.batch_size)], env=env, text=True,
                                    capture_output=True)
            wall = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
    print(result.stdout.strip())
    if result.returncode != 0:
        print(result.stderr[-3000:])
        for log in logs:
            print(log.read_text()[-3000:])
        sys.exit(1)
    steps: dict[str, float] = {}
    alleles = 0
    for log in logs:
        for line in log.read_text().splitlines():
            match = STEP_LINE.search(line.rstrip())
            if match:
                alleles += int(match.group(1))
                for part in match.group(2).split(", "):
                    step, seconds = part.rsplit(" ", 1)
                    steps[step] = steps.get(step, 0.0) + float(seconds.rstrip("s"))
    print(f"reannotate: {alleles} alleles in {wall:.1f} s wall ({alleles / wall:,.0f} alleles/s) "
          f"with {args.workers} worker(s)")
    print("summed over batches: " + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in steps.items()))


if __name__ == "__main__":
    main()
