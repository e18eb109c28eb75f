"""Incremental releases against full ones on PostgreSQL: the same alleles get new documents, every
document is equal, the change report equals a brute-force diff of the documents, and a release
that changes nothing writes nothing.

Two databases with identical content (one a template copy of the other) are released side by
side: one incrementally, one with every allele (``full``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pysam
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from engine.broker import EmbeddedBroker
from engine.bundles import activate_bundle, add_bundle, list_bundles
from engine.config import Settings, load_settings
from engine.db.migrate import upgrade
from engine.db.models import Annotation, ReannotationRun
from engine.db.session import get_engine, session_scope
from engine.deposit.annotation_config import store_annotation_config
from engine.deposit.writer import write_annotations
from engine.events import encode
from engine.reannotate import diff as diff_module
from engine.reannotate.changes import list_changes
from engine.reannotate.runs import find_run, missing_batches, plan_run, preview_run, run_progress
from engine.reannotate.stages import ReleaseStages
from engine.vcf.alleles import allele_from_vcf

ANNOTATION_CONFIG = {
    "deposit": [
        {
            "name": "keyvalue",
            "converter_config": {
                "elements": [
                    {"source": "DB_AF", "target": "frequencies.DB.freq.G", "target_type": "float"},
                    {"source": "DB_CLNSIG", "target": "clinvar.CLNSIG"},
                    {"source": "REGION", "target": "external.REGION.name"},
                ]
            },
        }
    ],
    "view": [],
}
CONFIG = """[[annotation]]
file = "data/db.vcf.gz"
fields = ["AF", "CLNSIG"]
names = ["DB_AF", "DB_CLNSIG"]
ops = ["self", "self"]

[[annotation]]
file = "data/regions.bed.gz"
columns = [4]
names = ["REGION"]
ops = ["uniq"]
"""
HEADER = """##fileformat=VCFv4.2
##contig=<ID=13,length=115169878>
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##INFO=<ID=CLNSIG,Number=1,Type=String,Description="Clinical significance">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
"""
BASES = "ACGT"
Record = tuple[int, str, str, str, str]  # pos, ref, alt, AF, CLNSIG


def source_records(rng: random.Random, n: int) -> list[Record]:
    records: list[Record] = []
    for i in range(n):
        pos = 10_000 + 10 * i
        ref = BASES[i % 4]
        alts = [BASES[(i + 1) % 4]] + ([BASES[(i + 2) % 4]] if i % 17 == 0 else [])  # some multi-allelic
        if i % 23 == 0:
            alts = [ref + "T"]  # an insertion
        for alt in alts:
            records.append((pos, ref, alt, f"{rng.random():.4f}", rng.choice(["Benign", "Pathogenic"])))
    return records


def next_release(rng: random.Random, records: list[Record]) -> list[Record]:
    """1% of records change a value, 0.5% are removed, 0.5% added (some at stored alleles' sites)."""
    out = []
    for record in records:
        roll = rng.random()
        if roll < 0.005:
            continue
        if roll < 0.015:
            pos, ref, alt, af, clnsig = record
            record = (
                (pos, ref, alt, af, "Likely_pathogenic")
                if rng.random() < 0.5
                else (pos, ref, alt, f"{rng.random():.4f}", clnsig)
            )
        out.append(record)
    positions = sorted({r[0] for r in records})
    for pos in rng.sample(positions, len(records) // 200):
        ref = BASES[((pos - 10_000) // 10) % 4]
        out.append((pos, ref, BASES[(BASES.index(ref) + 3) % 4], "0.0100", "Uncertain_significance"))
    return sorted(set(out))


def make_bundle(
    folder: Path, version: str, records: list[Record], regions: list[tuple[int, int, str]]
) -> Path:
    data = folder / "data"
    data.mkdir(parents=True)
    vcf = data / "db.vcf"
    vcf.write_text(
        HEADER
        + "".join(
            f"13\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\tAF={af};CLNSIG={cl}\n"
            for pos, ref, alt, af, cl in sorted(records)
        )
    )
    pysam.tabix_index(str(vcf), preset="vcf", force=True)
    bed = data / "regions.bed"
    bed.write_text("".join(f"13\t{start}\t{end}\t{name}\n" for start, end, name in sorted(regions)))
    pysam.tabix_index(str(bed), preset="bed", force=True)
    (folder / "vcfanno_config.toml").write_text(CONFIG)

    def files(*names: str) -> dict[str, str]:
        return {f"data/{name}": hashlib.sha256((data / name).read_bytes()).hexdigest() for name in names}

    (folder / "sources.json").write_text(
        json.dumps(
            {
                "db": {"version": version, "files": files("db.vcf.gz", "db.vcf.gz.tbi")},
                "regions": {"version": "1", "files": files("regions.bed.gz", "regions.bed.gz.tbi")},
            }
        )
    )
    (folder / "version").write_text(version + "\n")
    return folder


@pytest.fixture
def twin_urls(pg_server_url: str, tmp_path: Path) -> Iterator[tuple[str, str, Settings]]:
    """Database A prepared (alleles annotated by bundle r1, bundles r2 and r3 added), and B its copy."""
    rng = random.Random(11)
    names = [f"inc_{uuid.uuid4().hex[:10]}", f"full_{uuid.uuid4().hex[:10]}"]
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    urls = [
        sa.engine.make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
        for name in names
    ]
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{names[0]}"'))
    root = tmp_path / "data"
    settings = load_settings(
        ANNOSTREAM_DATA_DIR=root,
        DB_URL=urls[0],
        ANALYSES_INCOMING=root / "in",
        ANALYSES_PATH=root / "done",
        ANALYSES_FAILED=root / "failed",
    )
    settings.ensure_folders()
    upgrade(urls[0])
    r1 = source_records(rng, 3000)
    r2 = next_release(rng, r1)
    regions = [(10_000 + 2000 * k, 10_000 + 2000 * k + 500, f"region{k}") for k in range(15)]
    # r3: the regions change (one moved, one renamed, one added); the variants stay as in r2.
    regions3 = [
        *regions[:3],
        (regions[3][0] + 100, regions[3][1] + 100, "region3"),
        (regions[4][0], regions[4][1], "renamed"),
        *regions[5:],
        (40_000, 40_050, "new"),
    ]
    with session_scope(urls[0]) as session:
        store_annotation_config(session, ANNOTATION_CONFIG)
        for version, records, bed in (("r1", r1, regions), ("r2", r2, regions), ("r3", r2, regions3)):
            add_bundle(session, make_bundle(tmp_path / version, version, records, bed), root)
        activate_bundle(session, "r1")
        # Stored alleles: most at source sites (same or other ALT), some elsewhere.
        alleles = []
        for pos, ref, alt, _af, _cl in rng.sample(r1, 1200):
            alleles.append(allele_from_vcf("13", pos, ref, alt))
        for pos in rng.sample(range(10_000, 40_000, 10), 300):
            ref = BASES[((pos - 10_000) // 10) % 4]
            alleles.append(allele_from_vcf("13", pos, ref, BASES[(BASES.index(ref) + 3) % 4]))
        unique = {allele.identity(): allele for allele in alleles}
        kept = {"kept": "from the analysis VCF"}
        write_annotations(session, [(allele, dict(kept)) for allele in unique.values()])
    release(settings, urls[0], "r1", full=True)
    get_engine(urls[0]).dispose()
    get_engine.cache_clear()
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{names[1]}" TEMPLATE "{names[0]}"'))
    try:
        yield urls[0], urls[1], settings
    finally:
        for url in urls:
            get_engine(url).dispose()
        get_engine.cache_clear()
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def release(settings: Settings, url: str, bundle: str, *, full: bool) -> str | None:
    """Plan a run and feed its batches to the stage as the worker does; returns the run id."""
    with session_scope(url) as session:
        run, events = plan_run(session, bundle=bundle, analyses=None, batch_size=300, full=full)
        run_id = run.run_id if run is not None else None
    stages = ReleaseStages(settings.model_copy(update={"db_url": url}))
    for event in events:
        stages.reannotate(encode(event))
    return run_id


def documents(url: str) -> tuple[dict[int, Any], dict[int, int]]:
    """Current document and number of annotation rows per allele."""
    with session_scope(url) as session:
        current = dict(
            session.execute(
                sa.select(Annotation.allele_id, Annotation.annotations).where(
                    Annotation.date_superceeded.is_(None)
                )
            ).all()
        )
        rows = dict(
            session.execute(
                sa.select(Annotation.allele_id, sa.func.count()).group_by(Annotation.allele_id)
            ).all()
        )
    return current, rows


def leaves(document: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(document, dict) and document:
        found: dict[str, Any] = {}
        for key, value in document.items():
            found.update(leaves(value, f"{prefix}.{key}" if prefix else key))
        return found
    return {prefix: document}


def brute_force_diff(before: dict[int, Any], after: dict[int, Any]) -> set[tuple[int, str, str, str]]:
    changes = set()
    for allele_id, document in after.items():
        old, new = leaves(before.get(allele_id, {})), leaves(document)
        for path in old.keys() | new.keys():
            if old.get(path) != new.get(path):
                changes.add((allele_id, path, json.dumps(old.get(path)), json.dumps(new.get(path))))
    return changes


def reported(url: str, run_id: str) -> set[tuple[int, str, str, str]]:
    with session_scope(url) as session:
        run = find_run(session, run_id)
        assert run is not None
        _total, rows = list_changes(session, run)
    return {(row.allele_id, row.target, json.dumps(row.old), json.dumps(row.new)) for row in rows}


def test_incremental_equals_full_and_the_report_equals_the_document_diff(
    twin_urls: tuple[str, str, Settings],
) -> None:
    incremental_url, full_url, settings = twin_urls
    for bundle in ("r2", "r3"):  # r2 changes the variant dataset, r3 only the regions
        before, before_rows = documents(incremental_url)
        assert before == documents(full_url)[0]
        with session_scope(incremental_url) as session:
            plan = preview_run(session, bundle=bundle, analyses=None)
        incremental_run = release(settings, incremental_url, bundle, full=False)
        full_run = release(settings, full_url, bundle, full=True)
        assert incremental_run is not None and full_run is not None
        after, after_rows = documents(incremental_url)
        full_after, full_rows = documents(full_url)
        # Every document equal, and the same alleles got a new annotation row.
        assert after == full_after
        assert {a for a in after_rows if after_rows[a] != before_rows[a]} == {
            a for a in full_rows if full_rows[a] != before_rows[a]
        }
        changed = {allele_id for allele_id in after if after[allele_id] != before[allele_id]}
        assert changed, f"release {bundle} changed nothing: the test data is too small"
        # Only a small part was re-annotated, and the dry run announced exactly that.
        with session_scope(incremental_url) as session:
            run = find_run(session, incremental_run)
            assert run is not None and run.mode == "incremental"
            assert changed <= set(
                session.scalars(
                    sa.text("SELECT allele_id FROM reannotation_target WHERE run_id = :r"), {"r": run.id}
                )
            )
            assert run.total_alleles == plan.selected < len(after) // 4
        # The change report lists exactly the changed values (the 'kept' part never changes).
        expected = brute_force_diff(before, after)
        assert {path for _a, path, _o, _n in expected} <= {
            "frequencies.DB.freq.G",
            "clinvar.CLNSIG",
            "external.REGION.name",
        }
        assert reported(incremental_url, incremental_run) == expected
        assert reported(full_url, full_run) == expected


def test_a_release_that_changes_nothing_writes_nothing(twin_urls: tuple[str, str, Settings]) -> None:
    url, _full_url, settings = twin_urls
    with session_scope(url) as session:
        runs_before = session.scalar(sa.select(sa.func.count()).select_from(ReannotationRun))
    # How fast this is, is bench/reannotate_bench.py's "nothing changed" case, not asserted here.
    assert release(settings, url, "r1", full=False) is None  # every allele is annotated by r1 already
    with session_scope(url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ReannotationRun)) == runs_before
        plan = preview_run(session, bundle="r1", analyses=None)
    assert plan.selected == 0 and [group.action for group in plan.groups] == ["skip"]


def cli(settings: Settings, url: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DB_URL": url,
        "ANNOSTREAM_DATA_DIR": str(settings.data_dir),
        "ANALYSES_INCOMING": str(settings.analyses_incoming),
        "ANALYSES_PATH": str(settings.analyses_path),
        **extra,
    }
    if "KAFKA_BOOTSTRAP_SERVERS" not in extra:
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], env=env, text=True, capture_output=True, timeout=120
    )


def test_report_through_api_and_cli_dry_run_and_resume(
    twin_urls: tuple[str, str, Settings], broker: EmbeddedBroker
) -> None:
    url, _full_url, settings = twin_urls
    dry = cli(settings, url, "reannotate", "--bundle", "r2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "annotated by r1" in dry.stdout and "dataset db (r1 -> r2): changed" in dry.stdout
    assert "dataset regions (1 -> 1): unchanged" in dry.stdout
    assert re.search(r"data/db\.vcf\.gz: \d+ added, \d+ removed, \d+ changed records; \d+ stored", dry.stdout)
    assert re.search(r"planned in [\d.]+ s \(groups [\d.]+ s, compare [\d.]+ s, match [\d.]+ s", dry.stdout)
    with session_scope(url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ReannotationRun)) == 1  # r1 only

    # A run whose first batch is done, second failed, the rest never delivered: --resume
    # republishes exactly the missing ones.
    with session_scope(url) as session:
        run, events = plan_run(session, bundle="r2", analyses=None, batch_size=4)
        assert run is not None and len(events) >= 3
        run_id = run.run_id
    stages = ReleaseStages(settings.model_copy(update={"db_url": url}))
    stages.reannotate(encode(events[0]))
    with session_scope(url) as session:
        session.execute(
            sa.text(
                "UPDATE reannotation_batch SET status = 'FAILED', message = 'worker lost' "
                "WHERE batch_index = 1 AND run_id = (SELECT id FROM reannotation_run "
                "WHERE run_id = :r)"
            ),
            {"r": run_id},
        )
    prefix = f"r{uuid.uuid4().hex[:6]}."
    resumed = cli(
        settings,
        url,
        "reannotate",
        "--resume",
        run_id,
        "--no-wait",
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        ANNOSTREAM_TOPIC_PREFIX=prefix,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"republished {len(events) - 1} of {len(events)} batches" in resumed.stdout
    with session_scope(url) as session:
        found = find_run(session, run_id)
        assert found is not None
        republished = missing_batches(session, found)
        assert [event.batch_index for event in republished] == list(range(1, len(events)))
    for event in republished:
        stages.reannotate(encode(event))
    with session_scope(url) as session:
        found = find_run(session, run_id)
        assert found is not None and run_progress(session, found).status == "DONE"
        _total, rows = list_changes(session, found)
        assert not missing_batches(session, found)
    assert rows

    # The report, filtered, through the API and the CLI.
    client = TestClient(create_app(settings.model_copy(update={"db_url": url})))
    page = client.get(f"/api/v1/reannotations/{run_id}/changes", params={"target": "clinvar", "per_page": 5})
    assert page.status_code == 200, page.text
    body = page.json()
    clinvar_rows = [row for row in rows if row.target.startswith("clinvar")]
    assert body["total"] == len(clinvar_rows) and len(body["items"]) == min(5, len(clinvar_rows))
    assert body["items"][0] == clinvar_rows[0].as_dict()
    unknown = client.get(f"/api/v1/reannotations/{run_id}/changes", params={"analysis": "nope"})
    assert unknown.status_code == 404
    assert client.get("/api/v1/reannotations/999999/changes").status_code == 404
    # ... and on the web page's run list and change report, with the same filter.
    assert f'href="/ui/reannotations/{found.id}"' in client.get("/ui/reannotations").text
    report = client.get(f"/ui/reannotations/{run_id}", params={"target": "clinvar"})
    assert report.status_code == 200, report.text
    assert f">{len(clinvar_rows)} change" in report.text
    first = clinvar_rows[0]
    assert f"{first.chromosome}:{first.vcf_pos} {first.vcf_ref}&gt;{first.vcf_alt}" in report.text
    assert "no stored analysis" in client.get(f"/ui/reannotations/{run_id}", params={"analysis": "nope"}).text
    as_csv = cli(settings, url, "release", "changes", run_id, "--format", "csv", "--target", "clinvar")
    assert as_csv.returncode == 0, as_csv.stderr
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(parsed) == len(clinvar_rows)
    assert parsed[0]["target"] == "clinvar.CLNSIG"
    assert int(parsed[0]["allele_id"]) == clinvar_rows[0].allele_id
    as_json = cli(settings, url, "release", "changes", run_id, "--format", "json")
    assert json.loads(as_json.stdout)["total"] == len(rows)
    table = cli(settings, url, "release", "changes", run_id)
    assert table.stdout.strip().endswith(f"{len(rows)} change(s)")


def test_an_import_racing_a_batch_on_the_same_allele_does_not_fail_it(
    twin_urls: tuple[str, str, Settings],
) -> None:
    url, _full_url, settings = twin_urls
    # An allele with no current annotation: the batch will create its first one.
    with session_scope(url) as session:
        allele_id = session.scalar(sa.text("SELECT MIN(allele_id) FROM annotation"))
        session.execute(
            sa.text(
                "UPDATE annotation SET date_superceeded = now() WHERE allele_id = :a "
                "AND date_superceeded IS NULL"
            ),
            {"a": allele_id},
        )
        run, events = plan_run(session, bundle="r2", analyses=None, batch_size=100_000)
        assert run is not None and len(events) == 1
    # The "import" creates that allele's current annotation and holds its transaction open while
    # the batch writes; then commits. The batch waits on the index entry, then keeps the import's.
    importer = get_engine(url).connect()
    transaction = importer.begin()
    importer.execute(
        sa.text(
            "INSERT INTO annotation (allele_id, annotations, schema_version, date_created) "
            'VALUES (:a, \'{"from": "import"}\', 1, now())'
        ),
        {"a": allele_id},
    )
    stages = ReleaseStages(settings.model_copy(update={"db_url": url}))
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(stages.reannotate(encode(events[0]))))
    worker.start()
    time.sleep(2.0)
    assert worker.is_alive()  # waiting for the import's uncommitted row
    transaction.commit()
    importer.close()
    worker.join(60)
    assert outcome and all(message.topic.endswith("annotation.changed") for message in outcome[0])
    with session_scope(url) as session:
        assert (
            session.scalar(
                sa.text(
                    "SELECT status FROM reannotation_batch b JOIN reannotation_run r "
                    "ON r.id = b.run_id WHERE r.run_id = :r"
                ),
                {"r": run.run_id},
            )
            == "DONE"
        )
        assert session.scalar(
            sa.text("SELECT annotations FROM annotation WHERE allele_id = :a AND date_superceeded IS NULL"),
            {"a": allele_id},
        ) == {"from": "import"}


def count_comparisons(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose record-level difference is computed (not read from the cache) from now on."""
    compared: list[str] = []
    compare = diff_module._compare_block

    def counting(*args: Any) -> Any:
        compared.append(args[-1])
        return compare(*args)

    monkeypatch.setattr(diff_module, "_compare_block", counting)
    return compared


def test_a_bundle_pair_is_compared_once_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record-level difference of two bundles is kept beside the compiled indexes: a second
    plan between the same files reads it (same counts, same touched keys, same dtypes); a changed
    source file is compared again."""
    rng = random.Random(5)
    r1 = source_records(rng, 400)
    r2 = next_release(rng, r1)
    regions = [(10_000 + 2000 * k, 10_500 + 2000 * k, f"region{k}") for k in range(5)]
    moved = [*regions[:2], (regions[2][0] + 50, regions[2][1] + 50, "region2"), *regions[3:]]
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    root = tmp_path / "data"
    with session_scope(url) as session:
        add_bundle(session, make_bundle(tmp_path / "a", "a", r1, regions), root)
        add_bundle(session, make_bundle(tmp_path / "b", "b", r2, moved), root)
        bundles = {info.version: info for info in list_bundles(session)}
    compared = count_comparisons(monkeypatch)
    first = diff_module.diff_bundles(bundles["a"], bundles["b"])
    assert sorted(compared) == ["data/db.vcf.gz", "data/regions.bed.gz"]
    second = diff_module.diff_bundles(bundles["a"], bundles["b"])
    assert sorted(compared) == ["data/db.vcf.gz", "data/regions.bed.gz"]  # nothing compared again
    assert [b.summary() for b in second.changed_blocks] == [b.summary() for b in first.changed_blocks]
    assert first.changed_blocks[0].added + first.changed_blocks[0].changed > 0
    for before, after in zip(first.changed_blocks, second.changed_blocks, strict=True):
        assert before.touched.keys() == after.touched.keys()
        for chrom, arrays in before.touched.items():
            for old, new in zip(arrays, after.touched[chrom], strict=True):
                assert old.dtype == new.dtype and np.array_equal(old, new)

    source = bundles["b"].path / "data" / "db.vcf.gz"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 1_000_000_000))
    diff_module.diff_bundles(bundles["a"], bundles["b"])
    assert compared.count("data/db.vcf.gz") == 2  # the changed file's pair is compared again


def test_bundle_add_compares_with_the_annotating_bundles_so_the_release_does_not(
    twin_urls: tuple[str, str, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bundle add`` compares the new bundle with every bundle the current annotations came from
    (here r1) and keeps the difference; the release plan then compares nothing."""
    url, _full_url, settings = twin_urls
    rng = random.Random(17)
    records = next_release(rng, source_records(random.Random(11), 3000))
    regions = [(10_000 + 2000 * k, 10_000 + 2000 * k + 500, f"region{k}") for k in range(15)]
    added = cli(settings, url, "bundle", "add", str(make_bundle(tmp_path / "r4", "r4", records, regions)))
    assert added.returncode == 0, added.stderr
    assert re.search(r"compared with r1: \d+ records differ in ", added.stdout), added.stdout
    assert "kept for 'annostream reannotate'" in added.stdout
    compared = count_comparisons(monkeypatch)
    with session_scope(url) as session:
        plan = preview_run(session, bundle="r4", analyses=None)
    assert compared == []  # read from what bundle add kept
    assert plan.selected > 0 and [group.action for group in plan.groups] == ["incremental"]
