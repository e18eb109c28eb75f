"""Rows for the read API tests, inserted through the models on a migrated database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine.db.models import (
    Allele,
    Analysis,
    Annotation,
    Genepanel,
    Genotype,
    GenotypeSampleData,
    ImportJob,
    Sample,
)
from engine.db.session import session_scope

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


@dataclass
class Ids:
    trio: int
    single: int
    other: int
    proband: int
    father: int
    mother: int
    snv: int  # in both analyses, two annotations (one superseded)
    first_of_pair: int  # 1/2 genotype: first allele
    second_of_pair: int  # 1/2 genotype: second allele (no annotation)
    single_only: int  # only in the single analysis
    old_annotation: int
    current_annotation: int
    job_done: int
    job_failed: int
    job_submitted: int


def _allele(pos: int, ref: str, alt: str, chromosome: str = "17") -> Allele:
    return Allele(
        chromosome=chromosome,
        start_position=pos - 1,
        open_end_position=pos,
        change_from=ref,
        change_to=alt,
        change_type="SNP",
        vcf_pos=pos,
        vcf_ref=ref,
        vcf_alt=alt,
        length=1,
        genome_reference="GRCh37",
        caller_type="snv",
    )


def _sample_data(genotype: Genotype, sample: Sample, type_: str, **fields: object) -> GenotypeSampleData:
    return GenotypeSampleData(genotype_id=genotype.id, sample_id=sample.id, type=type_, **fields)


def populate(url: str) -> Ids:
    with session_scope(url) as session:
        session.add(Genepanel(name="HBOC", version="v01", genome_reference="GRCh37"))
        session.flush()
        trio = Analysis(
            name="Trio-1",
            genepanel_name="HBOC",
            genepanel_version="v01",
            priority=2,
            date_requested=T0,
            date_deposited=T0 + dt.timedelta(days=2),
            warnings="low coverage in BRCA2",
            report="trio report",
        )
        single = Analysis(
            name="Single-2",
            genepanel_name="HBOC",
            genepanel_version="v01",
            date_deposited=T0 + dt.timedelta(days=1),
        )
        other = Analysis(name="other_50%", genepanel_name="HBOC", genepanel_version="v01", date_deposited=T0)
        session.add_all([trio, single, other])
        session.flush()

        proband = Sample(
            identifier="P1", analysis_id=trio.id, affected=True, proband=True, sex="Female", family_id="fam1"
        )
        father = Sample(
            identifier="F1", analysis_id=trio.id, affected=False, proband=False, sex="Male", family_id="fam1"
        )
        mother = Sample(
            identifier="M1", analysis_id=trio.id, affected=True, proband=False, sex="Female", family_id="fam1"
        )
        lone = Sample(identifier="S2", analysis_id=single.id, affected=True, proband=True, sex="Male")
        session.add_all([proband, father, mother, lone])
        session.flush()
        proband.father_id, proband.mother_id = father.id, mother.id

        snv, first, second, single_only = (
            _allele(41_000_100, "A", "G"),
            _allele(41_000_200, "C", "T"),
            _allele(41_000_200, "C", "A"),
            _allele(32_000_000, "G", "A", chromosome="13"),
        )
        session.add_all([snv, first, second, single_only])
        session.flush()

        g_snv = Genotype(allele_id=snv.id, sample_id=proband.id, filter_status="PASS", variant_quality=500.0)
        g_pair = Genotype(
            allele_id=first.id,
            secondallele_id=second.id,
            sample_id=proband.id,
            filter_status="LowQual",
            variant_quality=42.5,
        )
        g_single_snv = Genotype(
            allele_id=snv.id, sample_id=lone.id, filter_status="PASS", variant_quality=90.0
        )
        g_single_only = Genotype(
            allele_id=single_only.id, sample_id=lone.id, filter_status="PASS", variant_quality=77.0
        )
        session.add_all([g_snv, g_pair, g_single_snv, g_single_only])
        session.flush()

        session.add_all(
            [
                _sample_data(
                    g_snv,
                    proband,
                    "Heterozygous",
                    genotype_quality=99,
                    sequencing_depth=40,
                    allele_depth={"REF (A)": 20, "A": 20},
                    allele_ratio=0.5,
                    genotype_likelihood=[500, 0, 600],
                ),
                _sample_data(g_snv, father, "Reference", genotype_quality=80, sequencing_depth=30),
                _sample_data(
                    g_snv, mother, "Heterozygous", genotype_quality=70, sequencing_depth=35, allele_ratio=0.45
                ),
                _sample_data(
                    g_pair, proband, "Heterozygous", multiallelic=True, sequencing_depth=50, copy_number=2
                ),
                _sample_data(
                    g_pair,
                    proband,
                    "Heterozygous",
                    multiallelic=True,
                    secondallele=True,
                    sequencing_depth=50,
                    allele_ratio=0.3,
                ),
                _sample_data(g_pair, father, "Heterozygous", sequencing_depth=20),
                _sample_data(g_pair, father, "Reference", secondallele=True, sequencing_depth=20),
                _sample_data(g_pair, mother, "Reference", sequencing_depth=25),
                _sample_data(g_pair, mother, "Homozygous", secondallele=True, sequencing_depth=25),
                _sample_data(g_single_snv, lone, "Homozygous", sequencing_depth=12),
                _sample_data(g_single_only, lone, "Heterozygous", sequencing_depth=11),
            ]
        )

        old = Annotation(
            allele_id=snv.id,
            annotations={"frequencies": {"gnomad": 0.1}},
            date_created=T0,
            date_superceeded=T0 + dt.timedelta(days=5),
        )
        session.add(old)
        session.flush()
        current = Annotation(
            allele_id=snv.id,
            annotations={"frequencies": {"gnomad": 0.2}, "version": 2},
            date_created=T0 + dt.timedelta(days=5),
            previous_annotation_id=old.id,
            bundle_version="2024.1",
        )
        session.add_all(
            [current, Annotation(allele_id=first.id, annotations={"transcripts": []}, date_created=T0)]
        )
        session.flush()

        history = [
            {"status": "SUBMITTED", "at": "2024-03-01T12:00:00+00:00"},
            {"status": "DONE", "at": "2024-03-01T12:05:00+00:00"},
        ]
        done = ImportJob(
            analysis_name="Trio-1",
            event_id="ev-1",
            fingerprint="abc",
            status="DONE",
            stage="persist",
            attempts=1,
            history=history,
            analysis_id=trio.id,
            date_created=T0,
        )
        failed = ImportJob(
            analysis_name="Single-2",
            event_id="ev-2",
            status="FAILED",
            stage="annotate",
            message="Single-2.vcf:12: bad GT",
            attempts=3,
            history=[],
            date_created=T0 + dt.timedelta(hours=1),
        )
        submitted = ImportJob(
            analysis_name="Trio-1",
            event_id="ev-3",
            status="SUBMITTED",
            history=[],
            date_created=T0 + dt.timedelta(hours=2),
        )
        session.add_all([done, failed, submitted])
        session.flush()
        return Ids(
            trio=trio.id,
            single=single.id,
            other=other.id,
            proband=proband.id,
            father=father.id,
            mother=mother.id,
            snv=snv.id,
            first_of_pair=first.id,
            second_of_pair=second.id,
            single_only=single_only.id,
            old_annotation=old.id,
            current_annotation=current.id,
            job_done=done.id,
            job_failed=failed.id,
            job_submitted=submitted.id,
        )
