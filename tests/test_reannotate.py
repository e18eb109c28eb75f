"""Data releases and reanalysis through the real stages on PostgreSQL (no faust): import an
analysis annotated with bundle 1, re-annotate with bundle 2 (a ClinVar-like change), roll back,
replay events, and read the result through the API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from engine.broker import EmbeddedBroker
from engine.bundles import activate_bundle, add_bundle
from engine.config import Settings
from engine.db.models import Allele, Annotation, Genotype, GenotypeSampleData, ImportJob, Sample
from engine.db.session import session_scope
from engine.deposit.annotation_config import store_annotation_config
from engine.events import ReanalysisRequested, build_ready_event, encode
from engine.pipeline import Pipeline
from engine.reannotate.runs import plan_run
from engine.reannotate.stages import ReleaseStages
from tests.support.bundles import make_bundle
from tests.support.env import engine_settings, prepare_database, topics_for

DATA = Path(__file__).parent / "data"
ANALYSIS = "Release-001"
# Maps the test bundle's fields (tests/support/bundles.py) into ELLA's document.
ANNOTATION_CONFIG = {
    "deposit": [
        {
            "name": "keyvalue",
            "converter_config": {
                "elements": [
                    {"source": "MYDB_AF", "target": "frequencies.MYDB.freq.G", "target_type": "float"},
                    {"source": "MYDB_CLNSIG", "target": "clinvar.CLNSIG"},
                ]
            },
        }
    ],
    "view": [],
}
TOKEN = "s3cret-token"


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    configured = engine_settings(tmp_path / "data", db_url=pg_url, ANNOSTREAM_API_TOKENS=TOKEN)
    prepare_database(pg_url)
    with session_scope(pg_url) as session:
        store_annotation_config(session, ANNOTATION_CONFIG)
        add_bundle(session, make_bundle(tmp_path / "b1", "2024.1"), configured.data_dir)
        # Release 2: every AF changes (0.0001 -> 90.0001), CLNSIG stays.
        add_bundle(session, make_bundle(tmp_path / "b2", "2024.2", af_scale="9"), configured.data_dir)
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
    published = pipeline.persist(annotated_event.value)
    assert "t.analysis.imported" in [m.topic for m in published], published


def reannotate(settings: Settings, bundle: str, batch_size: int = 2, *, full: bool = False) -> list[bytes]:
    """Plan a run and feed its batch events to the stage, as the worker does; returns the events."""
    with session_scope(settings.database_url) as session:
        _run, events = plan_run(session, bundle=bundle, analyses=None, batch_size=batch_size, full=full)
    raws = [encode(event) for event in events]
    stages = ReleaseStages(settings)
    for raw in raws:
        assert {message.topic for message in stages.reannotate(raw)} <= {"t.annotation.changed"}
    return raws


def changed_payloads(stages: ReleaseStages, raws: list[bytes]) -> list[dict[str, object]]:
    """The annotation.changed events the batches publish, without their time stamps."""
    return [
        {key: value for key, value in orjson.loads(message.value).items() if key != "time"}
        for raw in raws
        for message in stages.reannotate(raw)
    ]


def snapshot(url: str) -> dict[str, object]:
    """Row counts and the current annotation per allele."""
    with session_scope(url) as session:
        counts = {
            model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (Allele, Sample, Genotype, GenotypeSampleData, Annotation)
        }
        current = dict(
            session.execute(
                sa.select(Annotation.allele_id, Annotation.annotations).where(
                    Annotation.date_superceeded.is_(None)
                )
            ).all()
        )
        bundles = dict(
            session.execute(
                sa.select(Annotation.allele_id, Annotation.bundle_version).where(
                    Annotation.date_superceeded.is_(None)
                )
            ).all()
        )
    return {"counts": counts, "current": current, "bundles": bundles}


def allele_at(url: str, vcf_pos: int, alt: str) -> int:
    with session_scope(url) as session:
        return session.scalar(sa.select(Allele.id).where(Allele.vcf_pos == vcf_pos, Allele.vcf_alt == alt))


def test_release_rollback_and_replay(settings: Settings) -> None:
    url = settings.database_url
    import_analysis(settings)
    before = snapshot(url)
    pathogenic = allele_at(url, 32890607, "T")
    assert before["current"][pathogenic]["frequencies"]["MYDB"]["freq"]["G"] == 0.0001

    with session_scope(url) as session:
        activate_bundle(session, "2024.2")
    events = reannotate(settings, "2024.2")
    after = snapshot(url)
    n_alleles = before["counts"]["allele"]
    assert after["current"][pathogenic] == {
        "frequencies": {"MYDB": {"freq": {"G": 90.0001}}},
        "clinvar": {"CLNSIG": "Pathogenic"},
    }
    # Every imported allele has a current row from the import ({} without bundle values, as ELLA's
    # deposit writes one for every allele); the release changes the two with values, the empty
    # documents stay as they are (identical documents are not superseded).
    annotated = {a for a, doc in before["current"].items() if doc}
    assert len(before["current"]) == n_alleles and len(annotated) == 2
    assert {after["bundles"][a] for a in annotated} == {"2024.2"} and len(after["current"]) == n_alleles
    assert all(after["current"][a] == {} for a in set(after["current"]) - annotated)
    # No duplicate alleles, samples, genotypes; every changed allele got a new current row.
    for table in ("allele", "sample", "genotype", "genotypesampledata"):
        assert after["counts"][table] == before["counts"][table]
    assert after["counts"]["annotation"] == before["counts"]["annotation"] + len(annotated)

    # Replaying every batch event changes nothing, and republishes the same annotation.changed
    # events (same ids), one per changed allele.
    stages = ReleaseStages(settings)
    replayed = changed_payloads(stages, events)
    assert snapshot(url) == after
    assert changed_payloads(stages, events) == replayed
    changed = {event["allele_id"]: event for event in replayed}
    assert set(changed) == {
        allele_id
        for allele_id in after["current"]
        if after["current"][allele_id] != before["current"].get(allele_id, {})
    }
    assert changed[pathogenic]["changes"] == [
        {"target": "frequencies.MYDB.freq.G", "old": 0.0001, "new": 90.0001}
    ]
    assert changed[pathogenic]["analyses"] == [ANALYSIS]

    client = TestClient(create_app(settings))
    detail = client.get(f"/api/v1/alleles/{pathogenic}").json()
    assert detail["annotation"]["annotations"]["frequencies"]["MYDB"]["freq"]["G"] == 90.0001
    history = detail["annotation_history"]
    assert len(history) == 2 and sum(1 for row in history if row["date_superceeded"] is None) == 1
    runs = client.get("/api/v1/reannotations").json()
    assert runs["total"] == 1 and runs["items"][0]["status"] == "DONE"
    run = client.get(f"/api/v1/reannotations/{runs['items'][0]['run_id']}").json()
    # Incremental: only the two alleles whose source records changed are re-annotated (the others
    # were stamped with 2024.1 at import and nothing the release changed touches them).
    annotated_before = len(annotated)
    assert run["mode"] == "incremental"
    assert run["done_batches"] == run["total_batches"] == len(events)
    assert run["alleles_done"] == annotated_before
    assert (run["created"], run["superseded"], run["unchanged"]) == (annotated_before, annotated_before, 0)

    # Roll back: activate the previous bundle and reannotate with it.
    with session_scope(url) as session:
        activate_bundle(session, "2024.1")
    reannotate(settings, "2024.1")
    rolled_back = snapshot(url)
    assert rolled_back["current"][pathogenic] == {
        "frequencies": {"MYDB": {"freq": {"G": 0.0001}}},
        "clinvar": {"CLNSIG": "Pathogenic"},
    }
    assert sorted(rolled_back["bundles"].values()) == ["2024.1"] * n_alleles
    # Only the two documents the release changed change back; the empty ones stay as they are.
    assert rolled_back["counts"]["annotation"] == after["counts"]["annotation"] + annotated_before
    for allele_id, document in before["current"].items():
        assert rolled_back["current"][allele_id] == document
    assert len(client.get(f"/api/v1/alleles/{pathogenic}").json()["annotation_history"]) == 3


def test_reanalysis_request_needs_token_and_runs_once(
    settings: Settings, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    url = settings.database_url
    import_analysis(settings)
    settings = settings.model_copy(
        update={"kafka_bootstrap_servers": broker.bootstrap_servers, "topic_prefix": topic_prefix}
    )
    client = TestClient(create_app(settings))
    body = {"analysis": ANALYSIS, "bundle": "2024.2"}

    refused = client.post("/api/v1/reanalyses", json=body)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert "message" in refused.json()
    wrong = client.post("/api/v1/reanalyses", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert client.get("/api/v1/reannotations").status_code == 200  # reads stay open
    unknown = client.post(
        "/api/v1/reanalyses", json={"analysis": "Nope"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert unknown.status_code == 404

    no_bundle = client.post(
        "/api/v1/reanalyses",
        json={"analysis": ANALYSIS, "bundle": "9.9"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert no_bundle.status_code == 422 and "9.9" in no_bundle.json()["message"]

    accepted = client.post("/api/v1/reanalyses", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert accepted.status_code == 202, accepted.text
    event_id = accepted.json()["event_id"]
    raw = consume_one(broker.bootstrap_servers, topics_for(topic_prefix).reanalysis)
    event = orjson.loads(raw)
    assert event["event_id"] == event_id and event["bundle"] == "2024.2" and event["analysis"] == ANALYSIS

    stages = ReleaseStages(settings)
    changed = stages.reanalyse(raw)
    first = snapshot(url)
    # Documents with bundle values come from 2024.2; the {} rows of the import stay as they are.
    assert {first["bundles"][a] for a, doc in first["current"].items() if doc} == {"2024.2"}
    # The reanalysis has a change report (a run of mode "reanalysis" whose run id is the event id)
    # and publishes one annotation.changed event per allele whose AF changed.
    changed_topic = topics_for(topic_prefix).changed
    assert changed and {m.topic for m in changed} == {changed_topic}
    events = [orjson.loads(m.value) for m in changed]
    assert {e["run_id"] for e in events} == {event_id}
    annotated = {a for a, doc in first["current"].items() if doc}
    assert {e["allele_id"] for e in events} == annotated
    assert all(
        [c["target"] for c in e["changes"]] == ["frequencies.MYDB.freq.G"] and e["analyses"] == [ANALYSIS]
        for e in events
    )
    report = client.get(f"/api/v1/reannotations/{event_id}/changes", params={"per_page": 100}).json()
    assert report["total"] == len(events)
    runs = client.get("/api/v1/reannotations").json()["items"]
    assert [(r["run_id"], r["mode"], r["status"]) for r in runs] == [(event_id, "reanalysis", "DONE")]
    # The same request again changes nothing, and publishes the same events again (same ids).
    again = [(m.topic, m.key, orjson.loads(m.value)["event_id"]) for m in stages.reanalyse(raw)]
    assert again == [(m.topic, m.key, e["event_id"]) for m, e in zip(changed, events, strict=True)]
    assert snapshot(url) == first
    with session_scope(url) as session:
        job = session.scalar(sa.select(ImportJob).where(ImportJob.event_id == event_id))
        assert job.status == "DONE" and job.stage == "reanalyse" and job.attempts == 1
    status = client.get(f"/api/v1/reanalyses/{event_id}").json()
    assert status["status"] == "DONE" and "superseded" in status["message"]


def test_reanalysis_of_unknown_analysis_is_a_dead_letter(settings: Settings) -> None:
    raw = encode(ReanalysisRequested(producer="test", analysis="Missing-1", bundle=None))
    published = ReleaseStages(settings).reanalyse(raw)
    assert [m.topic for m in published] == ["t.analysis.failed"]
    assert "no stored analysis named 'Missing-1'" in orjson.loads(published[0].value)["error"]["message"]


def test_read_auth_when_enabled(settings: Settings) -> None:
    client = TestClient(create_app(settings.model_copy(update={"api_read_auth": True})))
    assert client.get("/api/v1/reannotations").status_code == 401
    authorised = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/v1/reannotations", headers=authorised).status_code == 200
    assert client.get("/healthz").status_code == 200


def consume_one(bootstrap: str, topic: str) -> bytes:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=15000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        for message in consumer:
            return bytes(message.value)
    finally:
        consumer.close()
    raise AssertionError(f"nothing on {topic}")
