"""The annotate stage's ``EngineAnnotator`` on a real analysis folder, with and without a bundle."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pysam
import pytest

from engine.bundles import activate_bundle, add_bundle
from engine.config import Settings
from engine.db.session import session_scope
from engine.deposit.ped import resolve_samples
from engine.deposit.specs import VcfSpec
from engine.events import AnnotatedEvent, Topics, build_ready_event, decode, encode
from engine.normalise.vcf import OLD_MULTIALLELIC_LINE
from engine.pipeline import Pipeline
from engine.pipeline.annotation import EngineAnnotator
from engine.vcf.header import read_header
from engine.vcf.reader import iter_variant_batches
from tests.support.bundles import make_bundle
from tests.support.env import engine_settings, prepare_database

ANALYSIS = Path(__file__).parent / "data" / "analyses" / "TestAnalysis-001"
# Proband TestSample-001 is 1/2 at a multi-allelic site; the parents carry one ALT each.
MULTIALLELIC = (
    "13\t32900100\t.\tC\tA,T\t500\tPASS\tAC=1,1;AF=0.5,0.5;AN=2\tGT:AD:DP:GQ:PL\t"
    "1/2:1,10,9:20:99:900,300,600,200,0,700\t0/1:10,10,0:20:99:300,0,300,900,900,900\t"
    "0/2:10,0,10:20:99:300,900,900,0,900,300"
)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    prepare_database(db_url, genepanel=False)
    return engine_settings(tmp_path / "data", db_url=db_url)


@pytest.fixture
def folder(settings: Settings) -> Path:
    target = settings.analyses_incoming / ANALYSIS.name
    shutil.copytree(ANALYSIS, target)
    vcf = target / f"{ANALYSIS.name}.vcf"
    vcf.write_text(vcf.read_text() + MULTIALLELIC + "\n")
    return target


def records(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]


def run_annotator(settings: Settings, folder: Path) -> tuple:
    ready = build_ready_event(folder, settings.analyses_incoming, producer="test")
    out_dir = settings.work_dir / ready.analysis / ready.event_id
    return EngineAnnotator(settings).run(ready, folder, out_dir), out_dir


def test_without_a_bundle_the_vcf_is_normalised_only(settings: Settings, folder: Path) -> None:
    outcome, out_dir = run_annotator(settings, folder)

    artifact = out_dir / f"{ANALYSIS.name}.vcf"
    assert outcome.artifacts == [artifact]
    original = records(folder / f"{ANALYSIS.name}.vcf")
    normalised = records(artifact)
    assert normalised[:6] == original[:6]  # biallelic records untouched
    assert [(r[1], r[3], r[4]) for r in normalised[6:]] == [("32900100", "C", "A"), ("32900100", "C", "T")]
    assert [r[9].split(":")[0] for r in normalised[6:]] == ["1/.", "./1"]
    assert OLD_MULTIALLELIC_LINE in artifact.read_text()
    assert "MYDB_AF" not in artifact.read_text()
    assert outcome.info is not None
    assert outcome.info["annotated"] is False and outcome.info["bundle_version"] is None
    assert outcome.info["normalised"] is True
    assert (outcome.info["records_in"], outcome.info["records_out"], outcome.info["split"]) == (7, 8, 1)
    assert outcome.message is not None
    assert "nothing was annotated: no annotation bundle is active" in outcome.message


def test_with_an_active_bundle_the_vcf_is_normalised_then_annotated(
    settings: Settings, folder: Path, tmp_path: Path
) -> None:
    with session_scope(settings.database_url) as session:
        add_bundle(session, make_bundle(tmp_path / "bundle", "2024.1"), settings.data_dir)
        activate_bundle(session, "2024.1")

    outcome, out_dir = run_annotator(settings, folder)

    artifact = out_dir / f"{ANALYSIS.name}.vcf"
    assert outcome.artifacts == [artifact]
    by_site = {(r[1], r[4]): r[7] for r in records(artifact)}
    assert by_site[("32893344", "G")].endswith(";MYDB_AF=0.002;MYDB_CLNSIG=Benign")
    assert by_site[("32890607", "T")].endswith(";MYDB_AF=0.0001;MYDB_CLNSIG=Pathogenic")
    assert "MYDB_" not in by_site[("32890645", "G")]
    assert by_site[("32900100", "A")] == "AC=1;AF=0.5;AN=2;OLD_MULTIALLELIC=13:32900100:C/A/T"
    assert "##INFO=<ID=MYDB_AF," in artifact.read_text()
    assert list(out_dir.iterdir()) == [artifact]  # the normalised scratch file is gone
    assert outcome.info is not None
    assert (outcome.info["annotated"], outcome.info["bundle_version"]) == (True, "2024.1")
    assert (outcome.info["records_out"], outcome.info["records_annotated"]) == (8, 2)
    assert outcome.message is not None and "annotated with bundle 2024.1" in outcome.message

    # The import reads the artifact: the 1/2 proband is one genotype with two alleles.
    header = read_header(artifact)
    samples = resolve_samples(artifact, header.samples, folder / f"{ANALYSIS.name}.ped", "HTS")
    variants = [v for batch in iter_variant_batches(VcfSpec(path=artifact), samples) for v in batch]
    compound = [v for v in variants if v.allele.vcf_pos == 32900100]
    assert len(compound) == 1 and compound[0].secondallele is not None
    assert (compound[0].allele.vcf_alt, compound[0].secondallele.vcf_alt) == ("A", "T")


def test_the_pipeline_uses_the_engine_annotator_by_default(settings: Settings) -> None:
    assert isinstance(Pipeline(settings).annotator, EngineAnnotator)


def test_the_annotate_stage_records_the_bundle_in_the_event(
    settings: Settings, folder: Path, tmp_path: Path
) -> None:
    with session_scope(settings.database_url) as session:
        add_bundle(session, make_bundle(tmp_path / "bundle", "2024.1"), settings.data_dir)
        activate_bundle(session, "2024.1")
    ready = build_ready_event(folder, settings.analyses_incoming, producer="test")

    published = Pipeline(settings).annotate(encode(ready))
    topics = Topics.from_settings(settings)
    [outgoing] = [message for message in published if message.topic == topics.annotated]

    event = decode(outgoing.value, incoming=settings.analyses_incoming)
    assert isinstance(event, AnnotatedEvent)
    assert event.annotation is not None
    assert (event.annotation["annotated"], event.annotation["bundle_version"]) == (True, "2024.1")
    assert [entry.path for entry in event.artifacts] == [
        f"{ready.analysis}/{ready.event_id}/{ANALYSIS.name}.vcf"
    ]
    artifact = settings.work_dir / event.artifacts[0].path
    assert "MYDB_CLNSIG=Pathogenic" in artifact.read_text()


def test_a_bgzipped_vcf_gives_a_bgzipped_artifact_at_the_same_path(
    settings: Settings, folder: Path, tmp_path: Path
) -> None:
    with session_scope(settings.database_url) as session:
        add_bundle(session, make_bundle(tmp_path / "bundle", "2024.1"), settings.data_dir)
        activate_bundle(session, "2024.1")
    vcf = folder / f"{ANALYSIS.name}.vcf"
    pysam.tabix_compress(str(vcf), str(vcf) + ".gz")
    vcf.unlink()

    outcome, out_dir = run_annotator(settings, folder)

    artifact = out_dir / f"{ANALYSIS.name}.vcf.gz"
    assert outcome.artifacts == [artifact]
    with gzip.open(artifact, "rt") as handle:
        text = handle.read()
    assert "MYDB_CLNSIG=Benign" in text and "OLD_MULTIALLELIC=13:32900100:C/A/T" in text
    assert list(out_dir.iterdir()) == [artifact]
