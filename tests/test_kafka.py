"""Kafka plumbing against the real embedded broker."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient

from engine.broker import EmbeddedBroker, free_port
from engine.config import load_settings
from engine.errors import BrokerUnavailable
from engine.events import ReanalysisRequested, Topics, decode
from engine.kafka import EventProducer, EventPublisher, ensure_topics, require_bootstrap
from tests.support.env import topics_for
from tests.support.events import read_topic


def test_topics_carry_the_prefix(topic_prefix: str) -> None:
    topics = Topics.from_settings(load_settings(ANNOSTREAM_TOPIC_PREFIX=topic_prefix))
    assert topics.ready == f"{topic_prefix}analysis.ready"
    assert topics.reanalysis == f"{topic_prefix}reanalysis.requested"
    assert topics.all() == tuple(f"{topic_prefix}{spec.name}" for spec in Topics.specs())


def test_ensure_topics_is_idempotent(broker: EmbeddedBroker, topic_prefix: str) -> None:
    names = [f"{topic_prefix}a", f"{topic_prefix}b"]
    ensure_topics(broker.bootstrap_servers, names, partitions=3)
    ensure_topics(broker.bootstrap_servers, [*names, f"{topic_prefix}c"], partitions=3)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        described = {item["name"]: item for item in admin.describe_topics([*names, f"{topic_prefix}c"])}
    finally:
        admin.close()
    assert set(described) == {*names, f"{topic_prefix}c"}
    assert all(len(item["partitions"]) == 3 for item in described.values())


def test_send_waits_for_the_ack_and_keeps_key_and_value(broker: EmbeddedBroker, topic_prefix: str) -> None:
    topic = topics_for(topic_prefix).ready
    ensure_topics(broker.bootstrap_servers, [topic])
    with EventProducer(broker.bootstrap_servers) as producer:
        producer.send(topic, "Diag-ÆØÅ-1", b'{"n": 1}', headers=[("schema", b"analysis.ready/v1")])
        producer.send(topic, "Diag-2", b'{"n": 2}')
    records = read_topic(broker.bootstrap_servers, topic, expect=2)
    assert [(r.key.decode(), r.value) for r in records] == [
        ("Diag-ÆØÅ-1", b'{"n": 1}'),
        ("Diag-2", b'{"n": 2}'),
    ]
    assert records[0].headers == [("schema", b"analysis.ready/v1")]


def test_unreachable_broker_is_named_in_the_error() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerUnavailable, match=f"cannot reach Kafka at {address}"):
        EventProducer(address, timeout_s=1.0)
    with pytest.raises(BrokerUnavailable, match=address):
        ensure_topics(address, ["x"], timeout_s=1.0)


def test_broker_gone_after_connect_fails_send_clearly(topic_prefix: str) -> None:
    with EmbeddedBroker() as short_lived:
        topic = f"{topic_prefix}gone"
        ensure_topics(short_lived.bootstrap_servers, [topic])
        producer = EventProducer(short_lived.bootstrap_servers, timeout_s=1.0)
        producer.send(topic, "k", b"before")
        short_lived.stop()
        expected = f"could not publish to {topic} on Kafka at {short_lived.bootstrap_servers}"
        with pytest.raises(BrokerUnavailable, match=expected):
            producer.send(topic, "k", b"after")
        producer.close(timeout_s=1.0)


def test_missing_bootstrap_says_how_to_set_it() -> None:
    with pytest.raises(BrokerUnavailable, match=r"KAFKA_BOOTSTRAP_SERVERS is not set.*annostream up"):
        require_bootstrap(load_settings(KAFKA_BOOTSTRAP_SERVERS=""), "watch")


def test_event_publisher_routes_by_registry_and_opens_one_producer(
    broker: EmbeddedBroker, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[EventProducer] = []
    real_init = EventProducer.__init__

    def counting_init(self: EventProducer, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(EventProducer, "__init__", counting_init)
    settings = load_settings(
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers, ANNOSTREAM_TOPIC_PREFIX=topic_prefix
    )
    publisher = EventPublisher(settings, client_id="test", command="test")
    assert opened == []  # nothing is opened before the first event
    with publisher:
        publisher.publish([ReanalysisRequested(producer="test", analysis="A-1", bundle="b1")])
        publisher.publish([ReanalysisRequested(producer="test", analysis="A-2", bundle=None)])
    assert len(opened) == 1
    topics = Topics.from_settings(settings)
    records = read_topic(broker.bootstrap_servers, topics.reanalysis, expect=2)
    assert sorted(r.key.decode() for r in records) == ["A-1", "A-2"]
    decoded = [decode(r.value, ReanalysisRequested) for r in records]
    assert sorted(event.analysis for event in decoded) == ["A-1", "A-2"]
    # Every registry topic exists afterwards, the status topic compacted.
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        assert set(topics.all()) <= set(admin.list_topics())
    finally:
        admin.close()


def test_event_publisher_without_broker_says_how_to_set_it() -> None:
    publisher = EventPublisher(load_settings(KAFKA_BOOTSTRAP_SERVERS=""), client_id="t", command="reanalyse")
    with pytest.raises(BrokerUnavailable, match=r"`annostream reanalyse` needs a Kafka broker"):
        publisher.publish([ReanalysisRequested(producer="test", analysis="A", bundle=None)])
