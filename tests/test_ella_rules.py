"""ELLA 1.17.2 deposit rules that need the whole pipeline and the database (the shared ELLA cases
in test_ella_cases.py cover most; these are the rules they do not isolate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import undefer

from api.allele_data import analysis_allele_page
from api.deps import Pagination
from engine.config import Settings
from engine.db.models import Analysis, Genotype, GenotypeSampleData, ImportJob, Sample
from engine.db.session import session_scope
from engine.events import build_ready_event, encode
from engine.pipeline import Pipeline
from producers.publish import prepare_ready_event
from tests.support.events import is_lane_topic

HEADER = "\n".join(
    [
        "##fileformat=VCFv4.2",
        "##contig=<ID=13,length=115169878>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">',
    ]
)


def vcf(samples: list[str], rows: list[str]) -> str:
    columns = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples)
    return "\n".join([HEADER, columns, *rows]) + "\n"


def import_folder(settings: Settings, name: str, files: dict[str, str]) -> tuple[list[Any], str]:
    folder = settings.analyses_incoming / name
    folder.mkdir(parents=True)
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    ready = prepare_ready_event(folder, settings, producer="test")
    pipeline = Pipeline(settings)
    forward = [m for m in pipeline.annotate(encode(ready)) if is_lane_topic(m.topic, "analysis.annotated")]
    messages = pipeline.persist(forward[0].value) if forward else []
    return messages, ready.event_id


def test_each_vcf_has_its_own_sample_rows(settings: Settings) -> None:
    # ELLA's DepositAnalysis.import_vcf: for data in analysis_config_data["data"]:
    # SampleImporter.process(vcf_sample_names, db_analysis, sample_type=data["technology"], ...):
    # an HTS trio plus a Sanger confirmation of the proband is two P1 rows, each with its genotypes.
    analysis = {
        "name": "Fam-9",
        "genepanel_name": "HBOC",
        "genepanel_version": "v1.0.0",
        "priority": 1,
        "data": [
            {"vcf": "trio.vcf", "ped": "trio.ped", "technology": "HTS"},
            {"vcf": "sanger.vcf", "technology": "Sanger"},
        ],
    }
    files = {
        "Fam-9.analysis": json.dumps(analysis),
        "trio.vcf": vcf(
            ["P1", "F1", "M1"],
            [
                "13\t32890607\t.\tG\tT\t50\tPASS\t.\tGT:DP\t0/1:30\t0/0:30\t0/1:30",
                "13\t32890650\t.\tC\tA\t50\tPASS\t.\tGT:DP\t1/1:30\t0/1:30\t0/1:30",
            ],
        ),
        "trio.ped": "FAM\tP1\tF1\tM1\t1\t2\t1\nFAM\tF1\t0\t0\t1\t1\t0\nFAM\tM1\t0\t0\t2\t1\t0\n",
        "sanger.vcf": vcf(["P1"], ["13\t32890607\t.\tG\tT\t.\t.\t.\tGT\t0/1"]),
    }
    messages, _ = import_folder(settings, "Fam-9", files)
    assert any(m.topic.endswith("analysis.imported") for m in messages)
    with session_scope(settings.database_url) as session:
        samples = session.scalars(sa.select(Sample).order_by(Sample.id)).all()
        assert [(s.identifier, s.sample_type, s.proband) for s in samples] == [
            ("P1", "HTS", True),
            ("F1", "HTS", False),
            ("M1", "HTS", False),
            ("P1", "Sanger", True),
        ]
        hts, sanger = samples[0], samples[3]
        assert (hts.father_id, hts.mother_id) == (samples[1].id, samples[2].id)
        assert sanger.father_id is None and sanger.family_id is None
        per_proband = {
            sample_id: n
            for sample_id, n in session.execute(
                sa.select(Genotype.sample_id, sa.func.count()).group_by(Genotype.sample_id)
            )
        }
        assert per_proband == {hts.id: 2, sanger.id: 1}
        sanger_data = session.scalars(
            sa.select(GenotypeSampleData.sample_id)
            .join(Genotype, Genotype.id == GenotypeSampleData.genotype_id)
            .where(Genotype.sample_id == sanger.id)
        ).all()
        assert sanger_data == [sanger.id]
        # The read API shows both P1 calls: keyed "<identifier> (<sample type>)" where samples
        # share an identifier, each with its sample id and type.
        items, total = analysis_allele_page(session, hts.analysis_id, Pagination(page=1, per_page=10))
        assert total == 2
        first = {
            key: (gt["sample_id"], gt["sample_type"], gt["type"]) for key, gt in items[0]["genotypes"].items()
        }
        assert first == {
            "P1 (HTS)": (hts.id, "HTS", "Heterozygous"),
            "F1": (samples[1].id, "HTS", "Reference"),
            "M1": (samples[2].id, "HTS", "Heterozygous"),
            "P1 (Sanger)": (sanger.id, "Sanger", "Heterozygous"),
        }
        assert set(items[1]["genotypes"]) == {"P1 (HTS)", "F1", "M1"}


def test_empty_data_imports_an_analysis_without_samples(settings: Settings) -> None:
    # ELLA's AnalysisConfigData.DEFAULTS "data": [] -> import_vcf creates the analysis (and its
    # interpretation) and loops over no VCF.
    analysis = {
        "name": "Empty-1",
        "genepanel_name": "HBOC",
        "genepanel_version": "v1.0.0",
        "priority": 2,
        "data": [],
    }
    messages, event_id = import_folder(settings, "Empty-1", {"Empty-1.analysis": json.dumps(analysis)})
    assert any(m.topic.endswith("analysis.imported") for m in messages)
    with session_scope(settings.database_url) as session:
        stored = session.scalars(
            sa.select(Analysis).options(undefer(Analysis.priority)).where(Analysis.name == "Empty-1")
        ).one()
        assert stored.priority == 2
        assert session.scalar(sa.select(sa.func.count()).select_from(Sample)) == 0
        job = session.scalars(sa.select(ImportJob).where(ImportJob.event_id == event_id)).one()
        assert job.status == "DONE"


def test_any_integer_priority_is_stored_and_the_event_lane_clamped(
    settings: Settings, tmp_path: Path
) -> None:
    # ELLA's schema: "priority": {"type": "integer"}; AnalysisInterpretationImporter.process keeps
    # it on the interpretation log. Annostream stores it on analysis.priority; the event's
    # priority (a processing lane, 1..3) is clamped.
    analysis = {
        "name": "Prio-7",
        "genepanel_name": "HBOC",
        "genepanel_version": "v1.0.0",
        "priority": 7,
        "data": [{"vcf": "p.vcf", "technology": "HTS"}],
    }
    folder = settings.analyses_incoming / "Prio-7"
    folder.mkdir(parents=True)
    (folder / "Prio-7.analysis").write_text(json.dumps(analysis))
    (folder / "p.vcf").write_text(vcf(["P1"], ["13\t32890607\t.\tG\tT\t50\tPASS\t.\tGT\t0/1"]))
    ready = prepare_ready_event(folder, settings, producer="test")
    assert ready.priority == 3
    raw = build_ready_event(folder, settings.analyses_incoming, producer="test")
    assert raw.priority == 1
    pipeline = Pipeline(settings)
    forward = [m for m in pipeline.annotate(encode(ready)) if is_lane_topic(m.topic, "analysis.annotated")]
    pipeline.persist(forward[0].value)
    with session_scope(settings.database_url) as session:
        assert session.scalar(sa.select(Analysis.priority).where(Analysis.name == "Prio-7")) == 7
