"""Test helpers for the event producers: analysis folders from the ELLA test data, and a
group-less Kafka reader (assigns partitions; a group join is slow on the embedded broker)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

TEMPLATE = Path(__file__).parent.parent / "data" / "events" / "TestAnalysis-001"
BROKEN_TEMPLATE = Path(__file__).parent.parent / "data" / "events" / "TestAnalysis-003"


def make_analysis(incoming: Path, name: str, *, ready: bool = True) -> Path:
    """A valid analysis folder ``incoming/name`` (ELLA's TestAnalysis-001, renamed)."""
    folder = incoming / name
    folder.mkdir(parents=True)
    for source in sorted(TEMPLATE.iterdir()):
        if source.name == "READY":
            continue
        target = folder / source.name.replace(TEMPLATE.name, name)
        if source.suffix == ".analysis":
            document = orjson.loads(source.read_bytes())
            document["name"] = name
            target.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        else:
            shutil.copyfile(source, target)
    if ready:
        (folder / "READY").touch()
    return folder


def make_broken_analysis(incoming: Path, name: str) -> Path:
    """ELLA's rejected TestAnalysis-003 (multi-sample VCF without PED), with a READY marker."""
    folder = incoming / name
    shutil.copytree(BROKEN_TEMPLATE, folder)
    (folder / "READY").touch()
    return folder


def read_topic(
    bootstrap: str, topic: str, *, expect: int = 1, timeout_s: float = 10.0, settle_s: float = 0.0
) -> list[ConsumerRecord]:
    """Records of ``topic`` from the beginning: waits until ``expect`` arrived (or timeout),
    then keeps reading ``settle_s`` longer to catch any unexpected extra record."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    try:
        deadline = time.monotonic() + timeout_s
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.05)
        if not partitions:
            return []
        consumer.assign([TopicPartition(topic, number) for number in sorted(partitions)])
        records: list[ConsumerRecord] = []
        settle_deadline: float | None = None
        while True:
            now = time.monotonic()
            if len(records) >= expect and settle_deadline is None:
                settle_deadline = now + settle_s
            if (settle_deadline is not None and now >= settle_deadline) or now >= deadline:
                return records
            for batch in consumer.poll(timeout_ms=100).values():
                records.extend(batch)
    finally:
        consumer.close()


def is_lane_topic(topic: str, base: str) -> bool:
    """Whether ``topic`` is ``base`` or one of its priority lanes (``base.high``, ``base.urgent``),
    whatever the test's topic prefix."""
    return any(topic.endswith(name) for name in (base, f"{base}.high", f"{base}.urgent"))
