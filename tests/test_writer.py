"""Bulk writer on real PostgreSQL (COPY path) and SQLite (executemany path)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db import migrate
from engine.db.models import (
    Allele,
    Analysis,
    Annotation,
    AnnotationConfig,
    Genepanel,
    Genotype,
    GenotypeSampleData,
    Sample,
)
from engine.db.session import session_factory, session_scope
from engine.deposit import writer
from engine.deposit.specs import AnalysisSpec, SampleRecord, VcfSpec
from engine.deposit.writer import write_analysis, write_annotations
from engine.errors import DuplicateAnalysisError, InputError, MissingGenepanelError
from engine.vcf.records import AlleleRecord, SampleGenotypeRecord, VariantRecord

TRIO = [
    SampleRecord(
        "P1",
        affected=True,
        proband=True,
        sex="Female",
        family_id="FAM1",
        father_identifier="F1",
        mother_identifier="M1",
    ),
    SampleRecord("F1", affected=False, proband=False, sex="Male", family_id="FAM1"),
    SampleRecord("M1", affected=False, proband=False, sex="Female", family_id="FAM1"),
]


@pytest.fixture
def url(db_url: str) -> str:
    migrate.upgrade(db_url)
    with session_scope(db_url) as session:
        session.add(Genepanel(name="HBOC", version="v1.0.0", genome_reference="GRCh37"))
    return db_url


def spec(name: str) -> AnalysisSpec:
    folder = Path("/analyses") / name
    return AnalysisSpec(
        name=name,
        genepanel_name="HBOC",
        genepanel_version="v1.0.0",
        folder=folder,
        vcfs=[VcfSpec(path=folder / f"{name}.vcf")],
    )


def snv(pos: int, alt: str = "T", chrom: str = "1") -> AlleleRecord:
    return AlleleRecord(
        chromosome=chrom,
        start_position=pos - 1,
        open_end_position=pos,
        change_from="A",
        change_to=alt,
        change_type="SNP",
        vcf_pos=pos,
        vcf_ref="A",
        vcf_alt=alt,
        length=1,
    )


def deletion(pos: int) -> AlleleRecord:
    # ELLA stores a deletion's change_to as the empty string: it must not become NULL.
    return AlleleRecord(
        chromosome="2",
        start_position=pos,
        open_end_position=pos + 2,
        change_from="CT",
        change_to="",
        change_type="del",
        vcf_pos=pos,
        vcf_ref="ACT",
        vcf_alt="A",
        length=2,
    )


def het(**extra: Any) -> SampleGenotypeRecord:
    return SampleGenotypeRecord(
        type="Heterozygous",
        genotype_quality=99,
        sequencing_depth=40,
        allele_depth={"REF": 20, "A": 20},
        allele_ratio=0.5,
        genotype_likelihood=[120, 0, 240],
        **extra,
    )


def trio_variant(
    allele: AlleleRecord,
    *,
    annotation: dict[str, Any] | None = None,
    line: int = 1,
    secondallele: AlleleRecord | None = None,
) -> VariantRecord:
    samples = {
        "P1": het(),
        "F1": SampleGenotypeRecord(type="Reference", sequencing_depth=30),
        "M1": het(multiallelic=secondallele is not None),
    }
    second_samples = None
    if secondallele is not None:
        second_samples = {
            "P1": het(secondallele=True),
            "F1": SampleGenotypeRecord(type="Reference"),
            "M1": SampleGenotypeRecord(type="No coverage", secondallele=True),
        }
    return VariantRecord(
        allele=allele,
        secondallele=secondallele,
        filter_status="PASS",
        variant_quality=512.5,
        samples=samples,
        secondallele_samples=second_samples,
        annotation=annotation,
        secondallele_annotation={"source": "second"} if secondallele else None,
        source_line=line,
    )


def count(session: Session, model: type) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_trio_rows_family_ids_and_sample_data(url: str) -> None:
    variants = [
        trio_variant(snv(100), annotation={"csq": "missense"}),
        trio_variant(deletion(200), secondallele=snv(201, "G")),
    ]
    with session_scope(url) as session:
        result = write_analysis(session, spec("Trio"), TRIO, [variants], properties={"fingerprint": "abc"})
    counts = (result.n_variants, result.n_genotypes, result.n_alleles_new, result.n_alleles_reused)
    assert counts == (2, 2, 3, 0)
    with session_scope(url) as session:
        analysis = session.get(Analysis, result.analysis_id)
        assert analysis is not None and analysis.properties == {"fingerprint": "abc"}
        samples = {s.identifier: s for s in session.scalars(sa.select(Sample))}
        proband = samples["P1"]
        assert proband.father_id == samples["F1"].id and proband.mother_id == samples["M1"].id
        assert samples["F1"].father_id is None and proband.family_id == "FAM1" and proband.sex == "Female"
        genotypes = session.scalars(sa.select(Genotype).order_by(Genotype.id)).all()
        assert [g.sample_id for g in genotypes] == [proband.id, proband.id]
        assert genotypes[0].secondallele_id is None and genotypes[1].secondallele_id is not None
        assert genotypes[0].filter_status == "PASS" and genotypes[0].variant_quality == 512.5
        stored_del = session.get(Allele, genotypes[1].allele_id)
        assert stored_del is not None and stored_del.change_to == "" and stored_del.change_type == "del"
        rows = session.scalars(sa.select(GenotypeSampleData)).all()
        # 3 samples for the first genotype, 3 + 3 (second allele) for the multiallelic one.
        assert len(rows) == 9
        first = {r.sample_id: r for r in rows if r.genotype_id == genotypes[0].id}
        assert first[proband.id].type == "Heterozygous"
        assert first[proband.id].allele_depth == {"REF": 20, "A": 20}
        assert first[proband.id].genotype_likelihood == [120, 0, 240]
        assert first[proband.id].allele_ratio == 0.5 and first[proband.id].genotype_quality == 99
        assert first[samples["F1"].id].type == "Reference" and first[samples["F1"].id].allele_depth is None
        second = [r for r in rows if r.genotype_id == genotypes[1].id and r.secondallele]
        assert sorted(r.type for r in second) == ["Heterozygous", "No coverage", "Reference"]
        documents = [a.annotations for a in session.scalars(sa.select(Annotation))]
        assert sorted(map(str, documents)) == ["{'csq': 'missense'}", "{'source': 'second'}"]


def test_alleles_are_shared_between_analyses(url: str) -> None:
    with session_scope(url) as session:
        first = write_analysis(session, spec("A1"), TRIO, [[trio_variant(snv(100)), trio_variant(snv(101))]])
    with session_scope(url) as session:
        second = write_analysis(
            session, spec("A2"), TRIO, [[trio_variant(snv(101))], [trio_variant(snv(102))]]
        )
    assert (first.n_alleles_new, first.n_alleles_reused) == (2, 0)
    assert (second.n_alleles_new, second.n_alleles_reused) == (1, 1)
    with session_scope(url) as session:
        assert count(session, Allele) == 3
        assert count(session, Genotype) == 4
        shared = session.scalar(sa.select(Allele.id).where(Allele.vcf_pos == 101))
        owners = session.scalars(
            sa.select(Sample.analysis_id)
            .join(Genotype, Genotype.sample_id == Sample.id)
            .where(Genotype.allele_id == shared)
        ).all()
        assert sorted(owners) == sorted([first.analysis_id, second.analysis_id])


def current_annotations(session: Session) -> dict[int, Annotation]:
    rows = session.scalars(sa.select(Annotation).where(Annotation.date_superceeded.is_(None))).all()
    return {row.allele_id: row for row in rows}


def test_annotation_reused_when_equal_and_superseded_when_different(url: str) -> None:
    with session_scope(url) as session:
        result = write_analysis(
            session,
            spec("A1"),
            TRIO,
            [
                [
                    trio_variant(snv(100), annotation={"csq": "missense", "freq": {"gnomad": 0.01}}),
                    trio_variant(snv(101), annotation={"csq": "synonymous"}),
                ]
            ],
        )
    assert result.annotations.created == 2
    with session_scope(url) as session:
        before = current_annotations(session)
        result = write_analysis(
            session,
            spec("A2"),
            TRIO,
            [
                [
                    # Same document with keys in another order: reused, not versioned.
                    trio_variant(snv(100), annotation={"freq": {"gnomad": 0.01}, "csq": "missense"}),
                    trio_variant(snv(101), annotation={"csq": "stop_gained"}),
                    trio_variant(snv(102), annotation=None),
                ]
            ],
        )
    versions = result.annotations
    assert (versions.unchanged, versions.superseded, versions.created) == (1, 1, 1)
    with session_scope(url) as session:
        after = current_annotations(session)
        id_100, id_101 = (session.scalar(sa.select(Allele.id).where(Allele.vcf_pos == p)) for p in (100, 101))
        assert after[id_100].id == before[id_100].id
        assert after[id_101].id != before[id_101].id
        assert after[id_101].previous_annotation_id == before[id_101].id
        assert after[id_101].annotations == {"csq": "stop_gained"}
        old = session.get(Annotation, before[id_101].id)
        assert old is not None and old.date_superceeded is not None
        assert count(session, Annotation) == 3
        for allele_id in (id_100, id_101):
            current = session.scalar(
                sa.select(sa.func.count())
                .select_from(Annotation)
                .where(Annotation.allele_id == allele_id, Annotation.date_superceeded.is_(None))
            )
            assert current == 1


def test_write_annotations_alone_for_ids_and_records(url: str) -> None:
    with session_scope(url) as session:
        write_analysis(session, spec("A1"), TRIO, [[trio_variant(snv(100), annotation={"v": 1})]])
    with session_scope(url) as session:
        config = AnnotationConfig(deposit=[], view=[], sha256="0" * 64)
        session.add(config)
        session.flush()
        config_id = config.id
        allele_id = session.scalar(sa.select(Allele.id))
        assert allele_id is not None
        result = write_annotations(
            session,
            [(allele_id, {"v": 2}), (snv(500), {"v": 1})],
            annotation_config_id=config_id,
            bundle_version="2024.1",
        )
    assert (result.created, result.superseded, result.unchanged) == (2, 1, 0)
    with session_scope(url) as session:
        current = current_annotations(session)
        assert current[allele_id].annotations == {"v": 2}
        assert current[allele_id].bundle_version == "2024.1"
        assert current[allele_id].annotation_config_id == config_id
        # write_analysis records the config/bundle too.
        result_2 = write_analysis(
            session,
            spec("A2"),
            TRIO,
            [[trio_variant(snv(600), annotation={"v": 3})]],
            annotation_config_id=config_id,
            bundle_version="2024.2",
        )
        assert result_2.annotations.created == 1
        stored = session.scalars(sa.select(Annotation).where(Annotation.bundle_version == "2024.2")).one()
        assert stored.annotation_config_id == config_id and stored.annotations == {"v": 3}
        new_allele = session.scalar(sa.select(Allele.id).where(Allele.vcf_pos == 500))
        assert new_allele is not None and current[new_allele].previous_annotation_id is None
        again = write_annotations(session, [(allele_id, {"v": 2})])
        assert (again.created, again.unchanged) == (0, 1)


def test_rollback_leaves_nothing_behind_but_merged_alleles(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two chunks: the first is merged and written, then the reader dies.
    monkeypatch.setattr(writer, "CHUNK_SIZE", 30)

    def failing_stream() -> Iterator[list[VariantRecord]]:
        yield [trio_variant(snv(p), annotation={"p": p}) for p in range(100, 150)]
        raise RuntimeError("VCF reader died half-way")

    with pytest.raises(RuntimeError, match="half-way"), session_scope(url) as session:
        write_analysis(session, spec("A1"), TRIO, failing_stream())
    postgres = url.startswith("postgresql")
    with session_scope(url) as session:
        for model in (Analysis, Sample, Genotype, GenotypeSampleData):
            assert count(session, model) == 0, model.__name__
        # PostgreSQL commits each chunk's new alleles and their annotation on their own (so that
        # concurrent imports do not wait for each other); they are shared rows, reused by the
        # retry. SQLite has one writer at a time and merges in the import's transaction.
        assert count(session, Allele) == (30 if postgres else 0)
        assert count(session, Annotation) == (30 if postgres else 0)
    # The same session's connection is usable again and the analysis can now be written.
    with session_scope(url) as session:
        result = write_analysis(
            session, spec("A1"), TRIO, [[trio_variant(snv(p), annotation={"p": p}) for p in range(100, 150)]]
        )
    assert (result.n_alleles_new, result.n_alleles_reused) == ((20, 30) if postgres else (50, 0))
    with session_scope(url) as session:
        assert count(session, Allele) == 50 and count(session, Genotype) == 50
        assert count(session, Annotation) == 50


def test_an_open_import_does_not_hold_up_another_sharing_its_alleles(pg_url: str) -> None:
    # Before the merge was committed apart, the second import's INSERT INTO allele waited on the
    # first import's open transaction (ucAllele), so concurrent imports ran one after the other.
    migrate.upgrade(pg_url)
    with session_scope(pg_url) as session:
        session.add(Genepanel(name="HBOC", version="v1.0.0", genome_reference="GRCh37"))
    shared = [trio_variant(snv(p), annotation={"p": p}) for p in range(100, 140)]
    factory = session_factory(pg_url)
    with factory() as first:
        write_analysis(first, spec("Open"), TRIO, [shared])  # not committed yet
        second_done = threading.Event()
        errors: list[BaseException] = []

        def second_import() -> None:
            try:
                with session_scope(pg_url) as session:
                    session.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
                    result = write_analysis(session, spec("Other"), TRIO, [[*shared, trio_variant(snv(500))]])
                    assert (result.n_alleles_new, result.n_alleles_reused) == (1, 40)
                second_done.set()
            except BaseException as error:  # reported in the main thread
                errors.append(error)

        thread = threading.Thread(target=second_import)
        thread.start()
        thread.join(90)
        assert not errors, errors
        assert second_done.is_set(), "the second import waited for the first import's transaction"
        first.commit()
    with session_scope(pg_url) as session:
        assert count(session, Analysis) == 2 and count(session, Allele) == 41
        assert count(session, Genotype) == 81


def test_bad_input_gets_a_specific_error(url: str) -> None:
    with pytest.raises(InputError) as duplicate, session_scope(url) as session:
        write_analysis(
            session, spec("A1"), TRIO, [[trio_variant(snv(100), line=7), trio_variant(snv(100), line=8)]]
        )
    assert duplicate.value.line == 8 and duplicate.value.file == "/analyses/A1/A1.vcf"
    assert "1:100 A>T appears twice" in str(duplicate.value)
    bad_family = [SampleRecord("P1", affected=True, proband=True, father_identifier="NOPE")]
    with pytest.raises(InputError, match="father NOPE is not a sample"), session_scope(url) as session:
        write_analysis(session, spec("A1"), bad_family, [])
    with pytest.raises(InputError, match="no proband"), session_scope(url) as session:
        write_analysis(session, spec("A1"), [SampleRecord("S", affected=True, proband=False)], [])
    unknown = trio_variant(snv(100), line=3)
    unknown.samples["X9"] = het()
    with pytest.raises(InputError, match="unknown sample X9") as raised, session_scope(url) as session:
        write_analysis(session, spec("A1"), TRIO, [[unknown]])
    assert raised.value.line == 3
    other_panel = spec("A1")
    other_panel.genepanel_version = "v9"
    with pytest.raises(MissingGenepanelError, match="HBOC_v9"), session_scope(url) as session:
        write_analysis(session, other_panel, TRIO, [])
    with session_scope(url) as session:
        write_analysis(session, spec("A1"), TRIO, [[trio_variant(snv(100))]])
    with pytest.raises(DuplicateAnalysisError, match="A1 is already stored"), session_scope(url) as session:
        write_analysis(session, spec("A1"), TRIO, [[trio_variant(snv(100))]])


def synthetic(n: int, offset: int = 0) -> Iterator[list[VariantRecord]]:
    """n distinct SNVs in batches of 7,000 (not a multiple of the writer's chunk size)."""
    bases = "CGT"
    batch: list[VariantRecord] = []
    for i in range(offset, offset + n):
        allele = snv(1_000 + i // 3, bases[i % 3], chrom=str(1 + i // 40_000))
        batch.append(trio_variant(allele, annotation={"i": i} if i % 10 == 0 else None, line=i + 1))
        if len(batch) == 7_000:
            yield batch
            batch = []
    if batch:
        yield batch


def test_100k_variants_across_chunks(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks so the 100k variants cross many chunk boundaries, like 1M would with the default.
    monkeypatch.setattr(writer, "CHUNK_SIZE", 30_000)
    with session_scope(url) as session:
        first = write_analysis(session, spec("Big1"), TRIO, synthetic(100_000))
    assert (first.n_variants, first.n_genotypes, first.n_alleles_new, first.n_alleles_reused) == (
        100_000,
        100_000,
        100_000,
        0,
    )
    assert first.annotations.created == 10_000
    with session_scope(url) as session:
        # Half overlapping: 50k alleles reused, 50k new.
        second = write_analysis(session, spec("Big2"), TRIO, synthetic(100_000, offset=50_000))
    assert (second.n_alleles_new, second.n_alleles_reused) == (50_000, 50_000)
    assert (second.annotations.unchanged, second.annotations.created) == (5_000, 5_000)
    factory = session_factory(url)
    with factory() as session:
        assert count(session, Allele) == 150_000
        assert count(session, Genotype) == 200_000
        assert count(session, GenotypeSampleData) == 600_000
        assert count(session, Annotation) == 15_000
        orphans = session.scalar(
            sa.select(sa.func.count())
            .select_from(GenotypeSampleData)
            .outerjoin(Genotype, Genotype.id == GenotypeSampleData.genotype_id)
            .where(Genotype.id.is_(None))
        )
        assert orphans == 0
        last = session.scalars(sa.select(Genotype).order_by(Genotype.id.desc()).limit(1)).one()
        allele = session.get(Allele, last.allele_id)
        assert allele is not None and allele.vcf_pos == 1_000 + 149_999 // 3


def test_delete_analysis_keeps_shared_alleles(url: str) -> None:
    with session_scope(url) as session:
        first = write_analysis(session, spec("A1"), TRIO, [[trio_variant(snv(100), annotation={"x": 1})]])
        write_analysis(session, spec("A2"), TRIO, [[trio_variant(snv(100))]])
    with session_scope(url) as session:
        writer.delete_analysis(session, first.analysis_id)
    with session_scope(url) as session:
        assert count(session, Analysis) == 1 and count(session, Sample) == 3
        assert count(session, Genotype) == 1 and count(session, GenotypeSampleData) == 3
        assert count(session, Allele) == 1 and count(session, Annotation) == 1
        remaining = session.scalars(sa.select(Sample.id)).all()
        assert set(session.scalars(sa.select(GenotypeSampleData.sample_id)).all()) <= set(remaining)


def test_a_variant_repeated_in_another_chunk_is_rejected(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Per-chunk checks cannot see it; the unique constraint does not either (NULL secondallele_id).
    monkeypatch.setattr(writer, "CHUNK_SIZE", 2)
    variants = [trio_variant(snv(100 + i), line=i + 1) for i in range(4)] + [trio_variant(snv(100), line=5)]
    with pytest.raises(InputError, match="1:100 A>T occurs more than once"), session_scope(url) as session:
        write_analysis(session, spec("Dup"), TRIO, [variants[:2], variants[2:4], variants[4:]])
    with session_scope(url) as session:
        assert count(session, Analysis) == 0 and count(session, Genotype) == 0
