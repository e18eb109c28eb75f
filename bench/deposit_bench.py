"""Benchmark the bulk writer: N synthetic variants for a trio into PostgreSQL.

    .venv/bin/python bench/deposit_bench.py --variants 1000000 [--db-url postgresql://...]

Without --db-url a throwaway PostgreSQL cluster is started (as the tests do) and removed
afterwards. Records are generated lazily, so memory stays bounded by the writer's chunk size;
their generation time is reported separately from the writer's stages.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.db import migrate
from engine.db.models import Genepanel
from engine.db.session import session_scope
from engine.deposit.specs import AnalysisSpec, SampleRecord
from engine.deposit.writer import write_analysis
from engine.vcf.records import AlleleRecord, SampleGenotypeRecord, VariantRecord

SAMPLES = [
    SampleRecord(
        "PROBAND",
        affected=True,
        proband=True,
        family_id="F",
        father_identifier="FATHER",
        mother_identifier="MOTHER",
    ),
    SampleRecord("FATHER", affected=False, proband=False, sex="Male", family_id="F"),
    SampleRecord("MOTHER", affected=False, proband=False, sex="Female", family_id="F"),
]
BASES = "ACGT"


class GenerationClock:
    """Seconds spent producing records (the writer pulls them lazily)."""

    seconds = 0.0


def synthetic_variants(
    n: int, batch_size: int = 10_000, clock: type[GenerationClock] = GenerationClock
) -> Iterator[list[VariantRecord]]:
    """n distinct SNVs (three alts per position) with trio genotypes and a small INFO annotation."""
    started = time.perf_counter()
    batch: list[VariantRecord] = []
    for i in range(n):
        pos = 10_000 + i // 3
        ref = BASES[pos % 4]
        alt = BASES[(pos + 1 + i % 3) % 4]
        allele = AlleleRecord(
            chromosome=str(1 + i // 400_000),
            start_position=pos - 1,
            open_end_position=pos,
            change_from=ref,
            change_to=alt,
            change_type="SNP",
            vcf_pos=pos,
            vcf_ref=ref,
            vcf_alt=alt,
            length=1,
        )
        depth = 20 + i % 40
        samples = {
            "PROBAND": SampleGenotypeRecord(
                type="Heterozygous",
                genotype_quality=99,
                sequencing_depth=depth,
                allele_depth={"REF": depth // 2, alt: depth - depth // 2},
                allele_ratio=0.5,
                genotype_likelihood=[200, 0, 300],
            ),
            "FATHER": SampleGenotypeRecord(
                type="Reference",
                genotype_quality=60,
                sequencing_depth=depth,
                allele_depth={"REF": depth, alt: 0},
                allele_ratio=0.0,
            ),
            "MOTHER": SampleGenotypeRecord(
                type="Heterozygous",
                genotype_quality=80,
                sequencing_depth=depth,
                allele_depth={"REF": depth // 2, alt: depth - depth // 2},
                allele_ratio=0.5,
            ),
        }
        batch.append(
            VariantRecord(
                allele=allele,
                secondallele=None,
                filter_status="PASS",
                variant_quality=float(100 + i % 900),
                samples=samples,
                annotation={"AF": round((i % 1000) / 1000, 3)},
                source_line=i + 1,
            )
        )
        if len(batch) == batch_size:
            clock.seconds += time.perf_counter() - started
            yield batch
            started = time.perf_counter()
            batch = []
    clock.seconds += time.perf_counter() - started
    if batch:
        yield batch


def run(db_url: str, n: int) -> None:
    migrate.upgrade(db_url)
    with session_scope(db_url) as session:
        if session.get(Genepanel, ("Bench", "v1")) is None:
            session.add(Genepanel(name="Bench", version="v1"))
    spec = AnalysisSpec(
        name=f"bench-{uuid.uuid4().hex[:8]}",
        genepanel_name="Bench",
        genepanel_version="v1",
        folder=Path("bench"),
    )
    GenerationClock.seconds = 0.0
    started = time.perf_counter()
    with session_scope(db_url) as session:
        result = write_analysis(session, spec, SAMPLES, synthetic_variants(n))
        commit_started = time.perf_counter()
    committed = time.perf_counter()
    total = committed - started
    writer_seconds = total - GenerationClock.seconds
    gsd_rows = 3 * result.n_genotypes
    print(
        f"variants={result.n_variants} alleles_new={result.n_alleles_new} "
        f"alleles_reused={result.n_alleles_reused} genotypes={result.n_genotypes} "
        f"genotypesampledata={gsd_rows} annotations_created={result.annotations.created}"
    )
    for stage, seconds in result.seconds.items():
        print(f"  {stage:<12} {seconds:8.2f} s")
    print(f"  {'commit':<12} {committed - commit_started:8.2f} s")
    print(f"  {'generation':<12} {GenerationClock.seconds:8.2f} s  (synthetic records, not the writer)")
    print(
        f"writer total {writer_seconds:.2f} s: {result.n_variants / writer_seconds:,.0f} variants/s, "
        f"{(result.n_alleles_new + result.n_genotypes + gsd_rows) / writer_seconds:,.0f} rows/s "
        "(alleles + genotypes + genotypesampledata)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", "-n", type=int, default=100_000)
    parser.add_argument("--db-url", help="PostgreSQL URL (default: a throwaway cluster)")
    args = parser.parse_args()
    if args.db_url:
        if sa.engine.make_url(args.db_url).get_backend_name() != "postgresql":
            parser.error("--db-url must be a PostgreSQL URL")
        run(args.db_url, args.variants)
        return
    from tests.support.pgcluster import ThrowawayCluster

    cluster = ThrowawayCluster()
    try:
        run(cluster.start(), args.variants)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
