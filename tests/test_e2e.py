"""End to end: analysis folders dropped into incoming flow through the real broker, the faust
worker and the database, and come out of the read API served by gunicorn (``annostream up``)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cyvcf2 import VCF
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.support.env import topics_for
from tests.support.stack import DATA, Stack, make_stack, wait_until

TEST_ANALYSIS = DATA / "analyses" / "TestAnalysis-001"
GENEPANEL = DATA / "genepanels" / "HBOC_v1.0.0"
IMPORT_BOUND_S = 90  # includes the first consumer-group join on the embedded broker


@pytest.fixture
def stack(tmp_path: Path, db_url: str, broker, topic_prefix: str) -> Iterator[Stack]:
    running = make_stack(tmp_path, db_url=db_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    running.cli("db", "upgrade")
    running.cli("deposit", "genepanel", "--folder", str(GENEPANEL))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def proband_variant_count(vcf_path: Path, proband: str) -> int:
    vcf = VCF(str(vcf_path))
    index = vcf.samples.index(proband)
    # gt_types: 0 hom-ref, 1 het, 2 unknown, 3 hom-alt
    return sum(1 for record in vcf if record.gt_types[index] in (1, 3))


def analysis_named(stack: Stack, name: str) -> dict | None:
    items = stack.get("/api/v1/analyses", name=name)["items"]
    return items[0] if items else None


def read_topic(bootstrap: str, topic: str, *, expect: int, timeout_s: float = 20) -> list[dict]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    messages: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < expect and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            messages.extend(orjson.loads(record.value) for record in batch)
    consumer.close()
    return messages


def test_folder_flows_to_api_and_failures_are_explained(stack: Stack, broker, topic_prefix: str) -> None:
    # 1. ELLA's own fixture is imported with all proband variants and three samples.
    started = time.monotonic()
    stack.drop(TEST_ANALYSIS)
    analysis = wait_until(
        lambda: analysis_named(stack, "TestAnalysis-001"),
        timeout_s=IMPORT_BOUND_S,
        what="TestAnalysis-001 in the API",
        on_timeout=stack.log_tail,
    )
    print(f"TestAnalysis-001 visible after {time.monotonic() - started:.1f} s")
    detail = stack.get(f"/api/v1/analyses/{analysis['id']}")
    assert sorted(s["identifier"] for s in detail["samples"]) == [
        "TestSample-001",
        "TestSample-002",
        "TestSample-003",
    ]
    proband = next(s for s in detail["samples"] if s["proband"])
    assert proband["identifier"] == "TestSample-001"
    alleles = stack.get(f"/api/v1/analyses/{analysis['id']}/alleles", per_page=100)
    expected = proband_variant_count(TEST_ANALYSIS / "TestAnalysis-001.vcf", "TestSample-001")
    assert alleles["total"] == expected > 0
    assert all("TestSample-001" in item["genotypes"] for item in alleles["items"])
    assert (stack.imported / "TestAnalysis-001").is_dir()
    assert not (stack.incoming / "TestAnalysis-001").exists()
    jobs = stack.get("/api/v1/import/jobs", analysis="TestAnalysis-001")["items"]
    assert [job["status"] for job in jobs] == ["DONE"]

    # 2. A corrupt VCF ends in failed/ with error.json and a dead-letter event ...
    broken = stack.drop(TEST_ANALYSIS, "Broken-002", ready=False)
    (broken / "TestAnalysis-001.analysis").write_text(
        json.dumps({"params": {"genepanel": "HBOC_v1.0.0"}, "name": "Broken-002", "priority": "1"})
    )
    vcf = broken / "TestAnalysis-001.vcf"
    lines = vcf.read_text().splitlines()
    body_start = next(i for i, line in enumerate(lines) if line.startswith("#CHROM")) + 1
    fields = lines[body_start + 1].split("\t")
    fields[1] = "not-a-number"
    lines[body_start + 1] = "\t".join(fields)
    vcf.write_text("\n".join(lines) + "\n")
    (broken / "READY").touch()

    # ... and the next good folder still imports.
    stack.drop(TEST_ANALYSIS, "Good-003", ready=False)
    good_config = stack.incoming / "Good-003" / "TestAnalysis-001.analysis"
    good_config.write_text(
        json.dumps({"params": {"genepanel": "HBOC_v1.0.0"}, "name": "Good-003", "priority": "1"})
    )
    (stack.incoming / "Good-003" / "READY").touch()

    error_file = wait_until(
        lambda: next(stack.failed.glob("Broken-002*/error.json"), None),
        timeout_s=60,
        what="Broken-002 in failed/",
        on_timeout=stack.log_tail,
    )
    error = json.loads(error_file.read_text())
    assert error["stage"] == "annotate"  # normalisation reads every record first
    assert error["file"].endswith("TestAnalysis-001.vcf")
    assert error["line"] == body_start + 2  # 1-based line of the broken record
    assert "POS" in error["message"]
    wait_until(
        lambda: analysis_named(stack, "Good-003"),
        timeout_s=60,
        what="Good-003 imported",
        on_timeout=stack.log_tail,
    )
    failed_jobs = stack.get("/api/v1/import/jobs", analysis="Broken-002", status="FAILED")["items"]
    assert len(failed_jobs) == 1 and "POS" in failed_jobs[0]["message"]
    dead = read_topic(broker.bootstrap_servers, topics_for(topic_prefix).failed, expect=1)
    assert [(d["analysis"], d["stage"]) for d in dead] == [("Broken-002", "annotate")]
    assert dead[0]["error"]["line"] == body_start + 2


def test_duplicated_event_imports_once(stack: Stack, broker, topic_prefix: str) -> None:
    folder = stack.incoming / "Dup-004"
    shutil.copytree(TEST_ANALYSIS, folder)
    (folder / "READY").unlink(missing_ok=True)
    (folder / "TestAnalysis-001.analysis").write_text(
        json.dumps({"params": {"genepanel": "HBOC_v1.0.0"}, "name": "Dup-004", "priority": "1"})
    )
    # Publish one event by hand (no READY, so the watcher stays out of it) and send it twice.
    from engine.events import build_ready_event, encode

    event = encode(build_ready_event(folder, stack.incoming, producer="test", analysis="Dup-004"))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    for _ in range(2):
        producer.send(topics_for(topic_prefix).ready, key=b"Dup-004", value=event).get(10)
    producer.close()
    wait_until(
        lambda: analysis_named(stack, "Dup-004"),
        timeout_s=IMPORT_BOUND_S,
        what="Dup-004",
        on_timeout=stack.log_tail,
    )
    imported = read_topic(broker.bootstrap_servers, topics_for(topic_prefix).imported, expect=2)
    assert {message["analysis"] for message in imported} == {"Dup-004"}
    assert len(stack.get("/api/v1/analyses", name="Dup-004")["items"]) == 1
    jobs = stack.get("/api/v1/import/jobs", analysis="Dup-004")["items"]
    assert len(jobs) == 1 and jobs[0]["status"] == "DONE"
    assert (stack.imported / "Dup-004").is_dir() and not folder.exists()
