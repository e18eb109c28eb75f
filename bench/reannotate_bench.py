"""Benchmark a monthly data release: incremental and full re-annotation side by side, in one run.

    .venv/bin/python bench/reannotate_bench.py [--alleles 1000000] [--workers 2] [--db-url postgresql://...]

Setup (not timed):
* ``allele`` gets N alleles (bench/data/query.vcf.gz sites, topped up with synthetic SNVs);
* bundle bench.1 is built from bench/data/source.vcf.gz (2M ClinVar-like records: AF, AC, AN, GENE,
  CLNSIG) and bench.2 from a copy in which 1% of the records change a value (CLNSIG or AF),
  0.2% are removed and 0.2% added (a new ALT at an existing site); both are added (their
  indexes compiled) and every allele is annotated with bench.1 (a full run, in process);
* bench.2 is compared with bench.1 as ``annostream bundle add`` does once alleles are annotated
  (the comparison is kept beside the compiled indexes; its time is printed, not counted below);
* the database is copied (``CREATE DATABASE ... TEMPLATE``), so both modes start from the same
  state.

Timed, each through real ``annostream worker`` processes (embedded broker) and the real CLI,
from starting ``annostream reannotate --bundle bench.2`` (once the workers have their partitions)
until every batch is done:
1. incremental (the default) on the first database;
2. the same release again on the first database (nothing changed: nothing to do);
3. ``--all`` (every allele) on the copy (last: autovacuum of its 1M re-stamped rows would
   otherwise run beside the other two).

Checked: every current document is equal in both databases (md5 of the jsonb text per allele),
and the same alleles got a new annotation row. PostgreSQL runs with its durable defaults.

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
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.broker import EmbeddedBroker  # noqa: E402
from engine.bundles import activate_bundle, add_bundle  # noqa: E402
from engine.db import migrate  # noqa: E402
from engine.db.session import get_engine, session_scope  # noqa: E402
from engine.deposit.annotation_config import store_annotation_config  # noqa: E402

DATA = ROOT / "bench" / "data"
ASSIGNED_TEXT = "partitions assigned to worker"  # a worker's log line once it has its partitions
FIELDS = ("AF", "AC", "AN", "GENE", "CLNSIG")
ANNOTATION_CONFIG = {
    "deposit": [
        {
            "name": "keyvalue",
            "converter_config": {
                "elements": [
                    {"source": "BENCH_AF", "target": "frequencies.BENCH.freq.G", "target_type": "float"},
                    {"source": "BENCH_AC", "target": "frequencies.BENCH.count.G", "target_type": "int"},
                    {"source": "BENCH_AN", "target": "frequencies.BENCH.num.G", "target_type": "int"},
                    {"source": "BENCH_GENE", "target": "external.BENCH.gene"},
                    {"source": "BENCH_CLNSIG", "target": "external.BENCH.clnsig"},
                ]
            },
        }
    ],
    "view": [],
}
# Every old document holds a value the bundle owns (replaced or withdrawn: the worst case, every
# allele gets a new row) and one it does not (kept).
OLD_DOCUMENT = {"release": "old", "external": {"BENCH": {"clnsig": "old"}}}
# The worker's batch line, e.g. "... batch 3: re-annotated 50000 alleles ... (export 0.41s, ...)"
# followed by the log context ("[event=...]").
STEP_LINE = re.compile(r"batch \d+: re-annotated (\d+) alleles .*\((export [\d.]+s[^)]*)\)")


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
            yield (
                f"{chrom}\t{pos - 1}\t{end}\t{ref}\t{alt}\t{kind}\t{pos}\t{ref}\t{alt}\t{len(ref)}"
                "\tGRCh37\tsnv\n"
            )
            written += 1
    for i in range(n - written):
        pos = 1_000 + 7 * i
        yield f"chr22\t{pos - 1}\t{pos}\tA\tC\tSNP\t{pos}\tA\tC\t1\tGRCh37\tsnv\n"


def load_alleles(url: str, n: int) -> None:
    columns = (
        "chromosome, start_position, open_end_position, change_from, change_to, change_type, "
        "vcf_pos, vcf_ref, vcf_alt, length, genome_reference, caller_type"
    )
    raw = get_engine(url).raw_connection()
    try:
        cursor = raw.cursor()
        buffer = io.StringIO("".join(allele_rows(n)))
        cursor.copy_expert(f"COPY allele ({columns}) FROM STDIN", buffer)
        cursor.execute(
            "INSERT INTO annotation (allele_id, annotations, schema_version, date_created, "
            "bundle_version) SELECT id, %s::jsonb, 1, now(), 'old' "
            "FROM allele",
            (json.dumps(OLD_DOCUMENT),),
        )
        cursor.execute("ANALYZE allele")
        cursor.execute("ANALYZE annotation")
        raw.commit()
    finally:
        raw.close()


def derive_release(
    source: Path, target: Path, *, change: float, add: float, remove: float, seed: int
) -> dict[str, int]:
    """``target`` (bgzipped, tabix-indexed): ``source`` with some records changed, removed, added."""
    import random

    import pysam

    rng = random.Random(seed)
    counts = {"changed": 0, "removed": 0, "added": 0}
    plain = target.with_suffix("")  # .vcf
    with gzip.open(source, "rt") as reader, plain.open("w") as writer:
        previous_site: tuple[str, str] | None = None
        for line, next_line in _with_next(reader):
            if line.startswith("#"):
                writer.write(line)
                continue
            site = tuple(line.split("\t", 2)[:2])
            next_site = tuple(next_line.split("\t", 2)[:2]) if next_line else None
            # A record is added only at a site with one record: a new ALT beside a second one
            # could repeat that ALT, and two records of one allele are not a release change.
            lone_site = site != previous_site and site != next_site
            previous_site = site  # type: ignore[assignment]
            roll = rng.random()
            if roll < remove:
                counts["removed"] += 1
                continue
            fields = line.rstrip("\n").split("\t")
            if roll < remove + change:
                counts["changed"] += 1
                info = fields[7]
                if rng.random() < 0.5 and "CLNSIG=" in info:
                    head, _, tail = info.partition("CLNSIG=")
                    value, sep, rest = tail.partition(";")
                    new = "Pathogenic" if value != "Pathogenic" else "Benign"
                    fields[7] = f"{head}CLNSIG={new}{sep}{rest}"
                else:
                    head, _, tail = info.partition("AF=")
                    _value, sep, rest = tail.partition(";")
                    fields[7] = f"{head}AF={rng.random():.6f}{sep}{rest}"
            writer.write("\t".join(fields) + "\n")
            ref, alt = fields[3], fields[4]
            if rng.random() < add and lone_site and len(ref) == 1 and len(alt) == 1:
                new_alt = next(base for base in "ACGT" if base not in (ref, alt))
                writer.write(
                    "\t".join(
                        [
                            fields[0],
                            fields[1],
                            ".",
                            ref,
                            new_alt,
                            ".",
                            "PASS",
                            "AC=1;AN=100;AF=0.01;GENE=NEW;CLNSIG=Uncertain_significance",
                        ]
                    )
                    + "\n"
                )
                counts["added"] += 1
    pysam.tabix_index(str(plain), preset="vcf", force=True)
    return counts


def _with_next(lines: Iterator[str]) -> Iterator[tuple[str, str | None]]:
    """Each line with the one after it (None after the last)."""
    previous = next(lines, None)
    for line in lines:
        assert previous is not None
        yield previous, line
        previous = line
    if previous is not None:
        yield previous, None


def make_bundle(folder: Path, version: str, source: Path, dataset_version: str) -> Path:
    data = folder / "data"
    data.mkdir(parents=True)
    for name, suffix in (("source.vcf.gz", ""), ("source.vcf.gz.tbi", ".tbi")):
        origin = Path(str(source) + suffix)
        os.link(origin, data / name) if _same_fs(origin.parent, data) else shutil.copy(origin, data / name)
    names = ", ".join(f'"BENCH_{field}"' for field in FIELDS)
    fields = ", ".join(f'"{field}"' for field in FIELDS)
    ops = ", ".join('"self"' for _ in FIELDS)
    (folder / "vcfanno_config.toml").write_text(
        f'[[annotation]]\nfile = "data/source.vcf.gz"\nfields = [{fields}]\nnames = [{names}]\n'
        f"ops = [{ops}]\n"
    )
    files = {f"data/{name}": _sha256(data / name) for name in ("source.vcf.gz", "source.vcf.gz.tbi")}
    (folder / "sources.json").write_text(json.dumps({"bench": {"version": dataset_version, "files": files}}))
    (folder / "version").write_text(version + "\n")
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alleles", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--change", type=float, default=0.01, help="fraction of records whose values change")
    parser.add_argument("--add", type=float, default=0.002, help="fraction of records added")
    parser.add_argument("--remove", type=float, default=0.002, help="fraction of records removed")
    parser.add_argument("--db-url", help="a PostgreSQL server URL (default: a throwaway cluster)")
    args = parser.parse_args()
    if not (DATA / "source.vcf.gz").exists():
        sys.exit(
            "bench/data/source.vcf.gz is missing: python3 bench/gen_bench.py --out bench/data --compress"
        )
    cluster = None
    server = args.db_url
    if server is None:
        from tests.support.pgcluster import ThrowawayCluster

        cluster = ThrowawayCluster(durable=True)  # fsync, synchronous_commit, full_page_writes on
        server = cluster.start()
    workdir = Path(tempfile.mkdtemp(prefix="reannotate-bench-"))
    try:
        run(args, server, workdir)
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
        if cluster is not None:
            cluster.stop()


def _database(server: str, name: str, template: str | None = None) -> str:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    admin.dispose()
    return sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)


def _checkpoint(server: str) -> None:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("CHECKPOINT"))
    admin.dispose()


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run(args: argparse.Namespace, server: str, workdir: Path) -> None:
    from engine.bundles import resolve_bundle
    from engine.db.session import get_engine
    from engine.events import encode
    from engine.reannotate.runs import plan_run
    from engine.reannotate.select import compare_ahead
    from engine.reannotate.stages import ReleaseStages

    data_dir = workdir / "data"
    name = f"bench_{uuid.uuid4().hex[:8]}"
    url = _database(server, name)
    migrate.upgrade(url)
    started = time.perf_counter()
    load_alleles(url, args.alleles)
    counts = derive_release(
        DATA / "source.vcf.gz",
        workdir / "source2.vcf.gz",
        change=args.change,
        add=args.add,
        remove=args.remove,
        seed=7,
    )
    print(
        f"setup: {args.alleles} alleles; release bench.2 changes {counts['changed']}, removes "
        f"{counts['removed']}, adds {counts['added']} records of bench/data/source.vcf.gz "
        f"({time.perf_counter() - started:.1f} s)"
    )
    started = time.perf_counter()
    with session_scope(url) as session:
        store_annotation_config(session, ANNOTATION_CONFIG)
        add_bundle(session, make_bundle(workdir / "b1", "bench.1", DATA / "source.vcf.gz", "1"), data_dir)
        add_bundle(session, make_bundle(workdir / "b2", "bench.2", workdir / "source2.vcf.gz", "2"), data_dir)
        activate_bundle(session, "bench.1")
    print(f"setup: both bundles added, indexes compiled ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    env_settings = _settings(url, data_dir)
    with session_scope(url) as session:
        _run, events = plan_run(
            session, bundle="bench.1", analyses=None, batch_size=args.batch_size, full=True
        )
    stages = ReleaseStages(env_settings)
    for event in events:
        stages.reannotate(encode(event))
    with session_scope(url) as session:
        activate_bundle(session, "bench.2")
    # What autovacuum does within a minute of a bulk load this size (its insert threshold): the
    # visibility map lets the plan count annotations from an index alone.
    with get_engine(url).connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE annotation, allele")
        )
    print(f"setup: every allele annotated with bench.1 ({time.perf_counter() - started:.1f} s)")
    # What 'annostream bundle add bench.2' does once the stored alleles are annotated by bench.1:
    # compare the two bundles then, so the release reads the differences (engine.reannotate.select).
    started = time.perf_counter()
    with session_scope(url) as session:
        differences = compare_ahead(session, resolve_bundle(session, "bench.2"))
    print(
        f"bundle add's comparison with {', '.join(d.old for d in differences)}: "
        f"{time.perf_counter() - started:.2f} s (not part of the release's time)"
    )
    get_engine(url).dispose()
    get_engine.cache_clear()
    copy_url = _database(server, f"{name}_full", template=name)
    # CREATE DATABASE ... TEMPLATE writes the whole copy (1.4 GB) through the WAL: checkpoint now,
    # not during the first timed release.
    _checkpoint(server)
    since = _now(url)

    with EmbeddedBroker() as broker:
        results = {}
        for label, db, extra in (
            # The full run last: it re-stamps 1M annotation rows of the copy, and autovacuum of
            # that copy would otherwise share the two cores with the nothing-changed run.
            ("incremental", url, []),
            ("nothing changed", url, []),
            ("full (--all)", copy_url, ["--all"]),
        ):
            wall, output = timed_release(args, broker, db, data_dir, workdir, label, extra)
            results[label] = wall
            print(f"{label}: {wall:.2f} s wall ({load()})")
            print("  " + output.strip().replace("\n", "\n  "))
    inc, full = fingerprints(url, since), fingerprints(copy_url, since)
    same_documents = inc[0] == full[0]
    same_alleles = inc[1] == full[1]
    print(
        f"documents equal in both databases: {same_documents} ({len(inc[0])} alleles); "
        f"same alleles with a new annotation row: {same_alleles} ({len(inc[1])})"
    )
    if not (same_documents and same_alleles):
        sys.exit(1)


def _settings(url: str, data_dir: Path) -> Any:
    from engine.config import load_settings

    return load_settings(
        DB_URL=url,
        ANNOSTREAM_DATA_DIR=data_dir,
        ANALYSES_INCOMING=data_dir / "in",
        ANALYSES_PATH=data_dir / "done",
        ANALYSES_FAILED=data_dir / "failed",
    )


def _now(url: str) -> Any:
    with session_scope(url) as session:
        return session.scalar(sa.text("SELECT now()"))


def fingerprints(url: str, since: Any) -> tuple[dict[int, str], set[int]]:
    with session_scope(url) as session:
        documents: dict[int, str] = dict(
            session.execute(
                sa.text(
                    "SELECT allele_id, md5(annotations::text) FROM annotation WHERE date_superceeded IS NULL"
                )
            ).all()
        )
        renewed = set(
            session.scalars(sa.text("SELECT allele_id FROM annotation WHERE date_created > :t"), {"t": since})
        )
    return documents, renewed


def timed_release(
    args: argparse.Namespace,
    broker: EmbeddedBroker,
    url: str,
    data_dir: Path,
    workdir: Path,
    label: str,
    extra: list[str],
) -> tuple[float, str]:
    prefix = f"b{uuid.uuid4().hex[:6]}."
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "DB_URL": url,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "ANNOSTREAM_TOPIC_PREFIX": prefix,
            "ANNOSTREAM_APP_ID": f"bench-{prefix.strip('.')}",
            "ANNOSTREAM_DATA_DIR": str(data_dir),
            "ANALYSES_INCOMING": str(data_dir / "in"),
            "ANALYSES_PATH": str(data_dir / "done"),
            "ANALYSES_FAILED": str(data_dir / "failed"),
            "ANNOSTREAM_TOPIC_PARTITIONS": str(max(4, args.workers)),
        }
    )
    logs = [workdir / f"worker-{label.split()[0]}-{i}.log" for i in range(args.workers)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "engine", "worker"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    try:
        # The clock starts once the consumer group has formed: the embedded broker (Tansu) waits
        # out the rebalance timeout on every join (about 25 s here), which a real Kafka cluster's
        # long-running workers do not pay per release.
        deadline = time.monotonic() + 120
        while not all(ASSIGNED_TEXT in log.read_text() for log in logs):
            if time.monotonic() > deadline:
                raise SystemExit("the workers' consumer group did not form within 120 s")
            time.sleep(0.5)
        time.sleep(1)
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "engine",
                "reannotate",
                "--bundle",
                "bench.2",
                "--batch-size",
                str(args.batch_size),
                *extra,
            ],
            env=env,
            text=True,
            capture_output=True,
        )
        wall = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    if result.returncode != 0:
        print(result.stdout, result.stderr[-3000:])
        for log in logs:
            print(log.read_text()[-3000:])
        sys.exit(1)
    steps: dict[str, float] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            match = STEP_LINE.search(line.rstrip())
            if match:
                for part in match.group(2).split(", "):
                    step, seconds = part.rsplit(" ", 1)
                    steps[step] = steps.get(step, 0.0) + float(seconds.rstrip("s"))
    summed = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in steps.items())
    if os.environ.get("BENCH_VERBOSE"):
        print(f"--- CLI stderr, started at {time.strftime('%H:%M:%S', time.localtime(time.time() - wall))}")
        print(result.stderr[-4000:])
        for log in logs:
            print(f"--- {log.name}")
            print("\n".join(log.read_text().splitlines()[-25:]))
    lines = [line for line in result.stdout.splitlines() if "reannotate:" not in line]
    lines += [line[line.index("planned in") :] for line in result.stderr.splitlines() if "planned in" in line]
    return wall, "\n".join(lines) + (f"\nsummed over batches: {summed}" if summed else "")


if __name__ == "__main__":
    main()
