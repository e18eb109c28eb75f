"""The event contract is complete: every schema file has one event class and one topic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import orjson
import pytest

import schemas
from engine.config import load_settings
from engine.events import (
    Event,
    EventRejected,
    FileEntry,
    ReadyEvent,
    ReanalysisRequested,
    Topics,
    decode,
    encode,
    event_class,
    event_classes,
    topic_config,
)


def test_every_schema_version_has_exactly_one_event_class() -> None:
    declared = {(name, version) for name, versions in schemas.available().items() for version in versions}
    assert set(event_classes()) == declared
    for (name, version), kind in event_classes().items():
        assert (name, version) == (kind.SCHEMA, kind.VERSION)


def test_every_schema_has_exactly_one_main_topic_and_every_topic_a_schema() -> None:
    main_topics = [spec for spec in Topics.specs() if spec.lane_of is None]
    carried = [spec.carries.SCHEMA for spec in main_topics]
    assert sorted(carried) == sorted(schemas.available()), "one main topic per event schema"
    names = [spec.name for spec in Topics.specs()]
    assert len(names) == len(set(names)), "topic names are unique"
    for spec in Topics.specs():
        assert event_class(spec.carries.SCHEMA, spec.carries.VERSION) is spec.carries
        if spec.lane_of is not None:
            main = next(item for item in main_topics if item.name == spec.lane_of)
            assert main.carries is spec.carries, f"lane {spec.name} carries what {main.name} carries"


def test_topics_registry_names_and_configs() -> None:
    topics = Topics.from_settings(load_settings(ANNOSTREAM_TOPIC_PREFIX="p."))
    assert topics.ready == "p.analysis.ready"
    assert topics.reannotation == "p.reannotation.batch"
    assert len(topics.all()) == len(Topics.specs())
    assert topic_config("p.analysis.status") == {"cleanup.policy": "compact"}
    assert topic_config("p.analysis.ready") == {}
    assert topic_config("something.else") == {}


def test_a_second_class_for_the_same_schema_version_is_refused() -> None:
    with pytest.raises(TypeError, match=r"two event classes for reanalysis.requested v1"):

        @dataclass(frozen=True, kw_only=True)
        class Again(Event):
            SCHEMA: ClassVar[str] = "reanalysis.requested"


def test_decode_names_the_expected_kind() -> None:
    raw = encode(ReanalysisRequested(producer="test", analysis="A", bundle=None))
    assert decode(raw, ReanalysisRequested) == decode(raw)
    with pytest.raises(EventRejected, match=r"^reanalysis.requested v1 event where analysis.ready events"):
        decode(raw, ReadyEvent)


def test_violations_have_one_wording_for_every_event() -> None:
    raw = encode(ReanalysisRequested(producer="test", analysis="A", bundle=None)).replace(b'"A"', b"7")
    with pytest.raises(EventRejected, match=r"^reanalysis.requested v1: field analysis: 7 is not of type"):
        decode(raw, ReanalysisRequested)
    with pytest.raises(EventRejected, match=r"^reanalysis.requested v1: field analysis: "):
        encode(ReanalysisRequested(producer="test", analysis=7, bundle=None))  # type: ignore[arg-type]


def test_events_naming_folders_cannot_be_decoded_without_incoming() -> None:
    files = (FileEntry(path="A.vcf", sha256="0" * 64, size=1),)
    raw = encode(ReadyEvent(producer="p", analysis="A", folder="A", files=files, fingerprint="0" * 64))
    assert orjson.loads(raw)["folder"] == "A"
    with pytest.raises(TypeError, match="needs incoming"):
        decode(raw)
