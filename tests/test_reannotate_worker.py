"""A real ``annostream worker`` process killed with SIGKILL in the middle of a reannotation run:
after a restart every batch is done exactly once and every allele has exactly one new current
annotation (PostgreSQL, embedded broker, the CLI publishing the run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from engine.broker import EmbeddedBroker
from engine.bundles import activate_bundle, add_bundle
from engine.db.migrate import upgrade
from engine.db.models import Annotation, ReannotationBatch
from engine.db.session import session_scope
from engine.deposit.annotation_config import store_annotation_config
from engine.deposit.writer import write_annotations
from engine.vcf.records import AlleleRecord
from tests.support.bundles import make_bundle
from tests.support.env import engine_env, subprocess_env
from tests.support.stack import wait_until

N_ALLELES = 30_000
BATCH = 1_000
ANNOTATION_CONFIG = {
    "deposit": [
        {
            "name": "keyvalue",
            "converter_config": {"elements": [{"source": "MYDB_CLNSIG", "target": "clinvar.CLNSIG"}]},
        }
    ],
    "view": [],
}
OLD_DOCUMENT = {"release": "old", "clinvar": {"CLNSIG": "withdrawn"}}


def synthetic_alleles(count: int) -> list[AlleleRecord]:
    # Includes the test bundle's two chr13 sites, so some documents have values.
    records = [
        AlleleRecord("13", 32890606, 32890607, "G", "T", "SNP", 32890607, "G", "T", 1),
        AlleleRecord("13", 32893343, 32893344, "A", "G", "SNP", 32893344, "A", "G", 1),
    ]
    for i in range(count - len(records)):
        pos = 1_000_000 + 10 * i
        records.append(AlleleRecord("1", pos - 1, pos, "A", "C", "SNP", pos, "A", "C", 1))
    return records


def batch_states(url: str) -> list[tuple[str, int]]:
    with session_scope(url) as session:
        return list(
            session.execute(
                sa.select(ReannotationBatch.status, ReannotationBatch.attempts).order_by(
                    ReannotationBatch.batch_index
                )
            )
        )


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "engine", "worker"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_sigkill_mid_run_resumes_exactly_once(
    tmp_path: Path, pg_url: str, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    data = tmp_path / "data"
    upgrade(pg_url)
    with session_scope(pg_url) as session:
        add_bundle(session, make_bundle(tmp_path / "b1", "2024.1"), data)
        activate_bundle(session, "2024.1")
        store_annotation_config(session, ANNOTATION_CONFIG)
        # Every old document holds a value the bundle owns, so every allele gets a new row.
        write_annotations(
            session, ((record, OLD_DOCUMENT) for record in synthetic_alleles(N_ALLELES)), bundle_version="old"
        )
    env = subprocess_env(
        engine_env(
            data,
            db_url=pg_url,
            bootstrap=broker.bootstrap_servers,
            topic_prefix=topic_prefix,
            app_id=f"w-{topic_prefix.strip('.')}",
        )
    )
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        published = subprocess.run(
            [
                sys.executable,
                "-m",
                "engine",
                "reannotate",
                "--bundle",
                "2024.1",
                "--batch-size",
                str(BATCH),
                "--no-wait",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert published.returncode == 0, published.stderr
        assert f"{N_ALLELES} alleles in {N_ALLELES // BATCH} batches" in published.stdout

        def some_done_some_pending() -> bool:
            states = [status for status, _ in batch_states(pg_url)]
            return states.count("DONE") >= 3 and "PENDING" in states

        wait_until(
            some_done_some_pending,
            timeout_s=120,
            interval_s=0.05,
            what="batches in flight",
            on_timeout=lambda: log.read_text()[-3000:],
        )
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        killed_at = [status for status, _ in batch_states(pg_url)]
        assert "PENDING" in killed_at

        worker = start_worker(env, log)
        wait_until(
            lambda: all(status == "DONE" for status, _ in batch_states(pg_url)),
            timeout_s=240,
            interval_s=0.2,
            what="all batches done after the restart",
            on_timeout=lambda: log.read_text()[-3000:],
        )
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)

    with session_scope(pg_url) as session:
        rows_per_allele = (
            session.execute(sa.select(sa.func.count()).select_from(Annotation).group_by(Annotation.allele_id))
            .scalars()
            .all()
        )
        current = session.execute(
            sa.select(Annotation.bundle_version, sa.func.count())
            .where(Annotation.date_superceeded.is_(None))
            .group_by(Annotation.bundle_version)
        ).all()
        documents = session.execute(
            sa.select(Annotation.annotations, sa.func.count())
            .where(Annotation.date_superceeded.is_(None))
            .group_by(Annotation.annotations)
        ).all()
    # Exactly one new row per allele (old one superseded): nothing lost, nothing applied twice.
    assert len(rows_per_allele) == N_ALLELES and set(rows_per_allele) == {2}
    assert current == [("2024.1", N_ALLELES)]
    # The bundle's part replaced (two sites have a classification), the rest of the document kept.
    assert sorted(documents, key=repr) == [
        ({"clinvar": {"CLNSIG": "Benign"}, "release": "old"}, 1),
        ({"clinvar": {"CLNSIG": "Pathogenic"}, "release": "old"}, 1),
        ({"release": "old"}, N_ALLELES - 2),
    ]
    assert len(batch_states(pg_url)) == N_ALLELES // BATCH
