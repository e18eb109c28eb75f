"""Re-annotation replaces only the part of a document the bundle owns: an analysis imported with
VEP transcripts (its VCF's CSQ) and bundle values keeps its transcripts after a release, while a
value the new release withdrew disappears (PostgreSQL and SQLite, real stages, no faust)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pysam
import pytest
import sqlalchemy as sa

from engine.annotate import load_config
from engine.bundles import activate_bundle, add_bundle
from engine.config import Settings
from engine.db.models import Allele, Annotation
from engine.db.session import session_scope
from engine.deposit.annotation_config import store_annotation_config
from engine.deposit.converters import targets_by_source
from engine.events import build_ready_event, encode
from engine.pipeline import Pipeline
from engine.reannotate.merge import bundle_info_fields, merge_document, owned_targets
from engine.reannotate.runs import plan_run
from engine.reannotate.stages import ReleaseStages
from tests.support.bundles import make_bundle, sha256
from tests.support.env import engine_settings, prepare_database

DATA = Path(__file__).parent / "data"
ANALYSIS = "Merge-001"
ANNOTATION_CONFIG = {
    "deposit": [
        {"name": "vep", "converter_config": {"elements": [{"source": "CSQ", "target": "transcripts"}]}},
        {
            "name": "keyvalue",
            "converter_config": {
                "elements": [
                    {"source": "MYDB_AF", "target": "frequencies.MYDB.freq.G", "target_type": "float"},
                    {"source": "MYDB_CLNSIG", "target": "clinvar.CLNSIG"},
                ]
            },
        },
    ],
    "view": [],
}
PATHOGENIC = (32890607, "T")  # CLNSIG=Pathogenic in release 1, withdrawn in release 2
BENIGN = (32893344, "G")  # CLNSIG=Benign in both


def withdraw_pathogenic_clnsig(folder: Path) -> Path:
    """Release 2 of the test bundle: the Pathogenic classification is gone, AFs changed."""
    plain = folder / "data" / "mydb.vcf"
    with gzip.open(plain.with_suffix(".vcf.gz"), "rt") as released:
        plain.write_text(released.read().replace(";CLNSIG=Pathogenic", ""))
    pysam.tabix_index(str(plain), preset="vcf", force=True)
    manifest = json.loads((folder / "sources.json").read_text())
    manifest["mydb"]["files"] = {
        f"data/{name}": sha256(folder / "data" / name) for name in ("mydb.vcf.gz", "mydb.vcf.gz.tbi")
    }
    (folder / "sources.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    configured = engine_settings(tmp_path / "data", db_url=db_url)
    prepare_database(db_url)
    with session_scope(db_url) as session:
        store_annotation_config(session, ANNOTATION_CONFIG)
        add_bundle(session, make_bundle(tmp_path / "b1", "2024.1"), configured.data_dir)
        release_2 = withdraw_pathogenic_clnsig(make_bundle(tmp_path / "b2", "2024.2", af_scale="9"))
        add_bundle(session, release_2, configured.data_dir)
        activate_bundle(session, "2024.1")
    return configured


def import_analysis(settings: Settings) -> None:
    folder = settings.analyses_incoming / ANALYSIS
    shutil.copytree(DATA / "analyses" / "TestAnalysis-001", folder)
    (folder / "READY").unlink(missing_ok=True)
    (folder / "TestAnalysis-001.analysis").write_text(
        json.dumps({"params": {"genepanel": "HBOC_v1.0.0"}, "name": ANALYSIS, "priority": "1"})
    )
    pipeline = Pipeline(settings)
    annotated = pipeline.annotate(
        encode(build_ready_event(folder, settings.analyses_incoming, producer="test", analysis=ANALYSIS))
    )
    [annotated_event] = [m for m in annotated if m.topic == "t.analysis.annotated"]
    assert "t.analysis.imported" in [m.topic for m in pipeline.persist(annotated_event.value)]


def reannotate(settings: Settings, bundle: str) -> None:
    with session_scope(settings.database_url) as session:
        _run, events = plan_run(session, bundle=bundle, analyses=None, batch_size=3)
    stages = ReleaseStages(settings)
    for event in events:
        # A batch publishes only the change report: one annotation.changed event per allele
        # whose owned targets changed (engine/reannotate/changes.py).
        outgoing = stages.reannotate(encode(event))
        assert {m.topic for m in outgoing} <= {"t.annotation.changed"}


def current_document(url: str, site: tuple[int, str]) -> dict[str, object]:
    with session_scope(url) as session:
        return session.scalar(
            sa.select(Annotation.annotations)
            .join(Allele, Allele.id == Annotation.allele_id)
            .where(
                Allele.vcf_pos == site[0], Allele.vcf_alt == site[1], Annotation.date_superceeded.is_(None)
            )
        )


def history_length(url: str, site: tuple[int, str]) -> int:
    with session_scope(url) as session:
        return session.scalar(
            sa.select(sa.func.count())
            .select_from(Annotation)
            .join(Allele, Allele.id == Annotation.allele_id)
            .where(Allele.vcf_pos == site[0], Allele.vcf_alt == site[1])
        )


def test_release_keeps_transcripts_and_drops_withdrawn_values(settings: Settings) -> None:
    url = settings.database_url
    import_analysis(settings)
    imported = current_document(url, PATHOGENIC)
    assert imported["clinvar"] == {"CLNSIG": "Pathogenic"}
    assert imported["frequencies"] == {"MYDB": {"freq": {"G": 0.0001}}}
    transcripts = imported["transcripts"]
    assert transcripts and all("transcript" in entry for entry in transcripts)
    benign_transcripts = current_document(url, BENIGN)["transcripts"]

    with session_scope(url) as session:
        activate_bundle(session, "2024.2")
    reannotate(settings, "2024.2")

    released = current_document(url, PATHOGENIC)
    assert released == {"transcripts": transcripts, "frequencies": {"MYDB": {"freq": {"G": 90.0001}}}}
    assert current_document(url, BENIGN) == {
        "transcripts": benign_transcripts,
        "clinvar": {"CLNSIG": "Benign"},
        "frequencies": {"MYDB": {"freq": {"G": 90.002}}},
    }
    assert history_length(url, PATHOGENIC) == 2

    # The same release again: every document is already what it would produce, nothing new.
    reannotate(settings, "2024.2")
    assert history_length(url, PATHOGENIC) == 2 and current_document(url, PATHOGENIC) == released


def test_owned_targets_come_from_the_bundle_outputs(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", "1")
    config = bundle / "vcfanno_config.toml"
    config.write_text(
        config.read_text() + '[[postannotation]]\nfields = ["MYDB_AF"]\nop = "max"\n'
        'name = "MYDB_MAX_AF"\ntype = "Float"\n'
    )
    fields = bundle_info_fields(load_config(config, bundle))
    assert fields == {"MYDB_AF", "MYDB_CLNSIG", "MYDB_MAX_AF"}
    deposit = {
        "deposit": [
            *ANNOTATION_CONFIG["deposit"],
            {
                "name": "keyvalue",
                "converter_config": {
                    "elements": [
                        {"source": "MYDB_MAX_AF", "target": "frequencies.MYDB.max", "target_type": "float"}
                    ]
                },
            },
        ]
    }
    assert targets_by_source(deposit)["MYDB_AF"] == ("frequencies.MYDB.freq.G",)
    assert owned_targets(deposit, sorted(fields)) == (
        ("frequencies", "MYDB", "freq", "G"),
        ("clinvar", "CLNSIG"),
        ("frequencies", "MYDB", "max"),
    )


def test_merge_document_removes_owned_targets_and_empty_parents() -> None:
    owned = (("clinvar", "CLNSIG"), ("frequencies", "MYDB", "freq", "G"))
    current = {
        "transcripts": [{"transcript": "NM_1"}],
        "clinvar": {"CLNSIG": "Pathogenic"},
        "frequencies": {"MYDB": {"freq": {"G": 0.1}}, "OTHER": {"freq": {"G": 0.2}}},
    }
    merged = merge_document(current, {"frequencies": {"MYDB": {"freq": {"G": 0.3}}}}, owned)
    assert merged == {
        "transcripts": [{"transcript": "NM_1"}],
        "frequencies": {"MYDB": {"freq": {"G": 0.3}}, "OTHER": {"freq": {"G": 0.2}}},
    }
    assert merge_document({"clinvar": {"CLNSIG": "x", "other": 1}}, None, owned) == {"clinvar": {"other": 1}}
    assert merge_document(None, None, owned) == {}
    assert merge_document(None, {"clinvar": {"CLNSIG": "y"}}, owned) == {"clinvar": {"CLNSIG": "y"}}
