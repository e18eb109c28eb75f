"""ELLA's TestAnalysis-001 through the real pipeline stages into the database: exact allele,
genotype, sample-data, family and analysis rows, as ELLA's deposit stores them (PostgreSQL and
SQLite)."""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import undefer

from engine.config import Settings
from engine.db.models import Allele, Analysis, Annotation, Genotype, GenotypeSampleData, Sample
from engine.db.session import session_scope
from engine.events import Topics, build_ready_event, encode
from engine.pipeline import Pipeline
from tests.conftest import DATA

SOURCE = DATA / "analyses" / "TestAnalysis-001"


@pytest.fixture
def imported(settings: Settings) -> Settings:
    folder = settings.analyses_incoming / "TestAnalysis-001"
    shutil.copytree(SOURCE, folder)
    pipeline = Pipeline(settings)
    annotated = pipeline.annotate(
        encode(build_ready_event(folder, settings.analyses_incoming, producer="test"))
    )
    pipeline.persist(next(m for m in annotated if m.topic == Topics.from_settings(settings).annotated).value)
    return settings


def allele_row(session, pos: int, ref: str, alt: str) -> Allele:  # type: ignore[no-untyped-def]
    return session.scalars(
        sa.select(Allele).where(Allele.vcf_pos == pos, Allele.vcf_ref == ref, Allele.vcf_alt == alt)
    ).one()


@pytest.mark.parametrize(
    "pos,ref,alt,expected",
    [
        (
            32893344,
            "A",
            "G",
            dict(
                start_position=32893343,
                open_end_position=32893344,
                change_from="A",
                change_to="G",
                change_type="SNP",
                length=1,
            ),
        ),
        # suffix first (none), then the shared prefix G: a 2-base deletion starting after it
        (
            32890645,
            "GAC",
            "G",
            dict(
                start_position=32890645,
                open_end_position=32890647,
                change_from="AC",
                change_to="",
                change_type="del",
                length=2,
            ),
        ),
    ],
)
def test_alleles_as_ella_computes_them(
    imported: Settings, pos: int, ref: str, alt: str, expected: dict
) -> None:
    with session_scope(imported.database_url) as session:
        allele = allele_row(session, pos, ref, alt)
        assert {key: getattr(allele, key) for key in expected} == expected
        assert (allele.chromosome, allele.caller_type, allele.genome_reference) == ("13", "snv", "GRCh37")


def test_genotypes_and_sample_data(imported: Settings) -> None:
    with session_scope(imported.database_url) as session:
        allele = allele_row(session, 32893344, "A", "G")
        genotype = session.scalars(sa.select(Genotype).where(Genotype.allele_id == allele.id)).one()
        site = (genotype.secondallele_id, genotype.filter_status, genotype.variant_quality)
        assert site == (None, "PASS", 5000)
        rows = session.execute(
            sa.select(Sample.identifier, GenotypeSampleData)
            .join(GenotypeSampleData, GenotypeSampleData.sample_id == Sample.id)
            .where(GenotypeSampleData.genotype_id == genotype.id)
            .order_by(Sample.identifier)
        ).all()
        assert [identifier for identifier, _ in rows] == [f"TestSample-00{n}" for n in (1, 2, 3)]
        for _identifier, data in rows:
            assert data.type == "Heterozygous"
            assert (data.multiallelic, data.secondallele) == (False, False)
            assert (data.genotype_quality, data.sequencing_depth) == (99, 187)
            assert data.allele_depth == {"REF (A)": 107, "G": 80}
            assert data.allele_ratio == pytest.approx(80 / 187)
            assert data.genotype_likelihood == [2048, 0, 2917]
            assert data.copy_number is None
        total = session.scalar(sa.select(sa.func.count()).select_from(Genotype))
        assert total == 6


def test_family_analysis_report_and_annotation(imported: Settings) -> None:
    with session_scope(imported.database_url) as session:
        analysis = session.scalars(sa.select(Analysis).options(undefer(Analysis.priority))).one()
        assert (analysis.name, analysis.genepanel_name, analysis.genepanel_version, analysis.priority) == (
            "TestAnalysis-001",
            "HBOC",
            "v1.0.0",
            1,
        )
        assert analysis.report == (SOURCE / "report.txt").read_text()
        assert analysis.warnings == (SOURCE / "warnings.txt").read_text()
        samples = {s.identifier: s for s in session.scalars(sa.select(Sample))}
        proband, father, mother = (samples[f"TestSample-00{n}"] for n in (1, 2, 3))
        assert (proband.proband, proband.affected, proband.sex) == (True, True, "Male")
        assert (proband.father_id, proband.mother_id, proband.family_id) == (father.id, mother.id, "TestFam")
        assert (father.proband, father.affected, father.sex) == (False, False, "Male")
        assert (mother.proband, mother.affected, mother.sex) == (False, False, "Female")
        assert {s.sample_type for s in samples.values()} == {"HTS"}
        allele = allele_row(session, 32893344, "A", "G")
        annotation = session.scalars(
            sa.select(Annotation).where(
                Annotation.allele_id == allele.id, Annotation.date_superceeded.is_(None)
            )
        ).one()
        assert annotation.annotation_config_id is not None
        symbols = {t["symbol"] for t in annotation.annotations["transcripts"]}
        assert "BRCA2" in symbols
