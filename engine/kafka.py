"""Kafka plumbing shared by producers: topic creation, a synchronous producer, group-less reading.

Topic names live in the registry ``engine.events.Topics``.

Plain kafka-python, so the same code runs against the embedded Tansu broker and against
Apache Kafka or Redpanda. Idempotent produce (``enable_idempotence``) works on all three.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError

from engine.config import Settings
from engine.errors import BrokerUnavailable
from engine.events.base import Event
from engine.events.codec import encode
from engine.events.topics import Topics, topic_config

log = logging.getLogger(__name__)

# Defaults of the clients below are the settings' defaults; services pass their settings' values.
DEFAULT_TIMEOUT_S: float = Settings.model_fields["kafka_timeout_s"].default
DEFAULT_FETCH_MAX_WAIT_MS: int = Settings.model_fields["kafka_fetch_max_wait_ms"].default


def require_bootstrap(settings: Settings, command: str) -> str:
    """KAFKA_BOOTSTRAP_SERVERS, or a BrokerUnavailable saying in one line how to set it."""
    from engine.runtime import no_broker_message

    if not settings.kafka_bootstrap_servers:
        raise BrokerUnavailable(no_broker_message(settings, command))
    return settings.kafka_bootstrap_servers


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    replication_factor: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Create the topics that do not exist yet (existing ones are left as they are)."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    admin = _admin(bootstrap, timeout_s)
    try:
        missing = [name for name in wanted if name not in set(admin.list_topics())]
        if not missing:
            return
        response = admin.create_topics(
            [
                NewTopic(name, partitions, replication_factor, topic_configs=topic_config(name))
                for name in missing
            ],
            timeout_ms=int(timeout_s * 1000),
            raise_errors=False,
        )
        _raise_topic_errors(response, bootstrap)
        log.info("created topics %s on %s", ", ".join(missing), bootstrap)
    finally:
        admin.close()


def ensure_engine_topics(settings: Settings, *, command: str, extra: Iterable[str] = ()) -> str:
    """Create every topic of the registry (and ``extra`` ones) that does not exist yet; returns
    the bootstrap servers.

    With ANNOSTREAM_TOPIC_PARTITIONS and ANNOSTREAM_TOPIC_REPLICATION_FACTOR and each topic's
    configs (e.g. the compacted status topic), rather than leaving topics to broker
    auto-creation. ``command`` names the service in the message when no broker is configured.
    """
    bootstrap = require_bootstrap(settings, command)
    ensure_topics(
        bootstrap,
        [*Topics.from_settings(settings).all(), *extra],
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        timeout_s=settings.kafka_timeout_s,
    )
    return bootstrap


def publish_messages(
    settings: Settings,
    messages: Sequence[tuple[str, str | bytes | None, bytes]],
    *,
    client_id: str,
    command: str,
) -> int:
    """Publish already encoded (topic, key, value) messages (e.g. from the work ledger), each
    acknowledged by the broker, after creating the topics; returns how many were sent."""
    if not messages:
        return 0
    bootstrap = ensure_engine_topics(settings, command=command, extra={topic for topic, _k, _v in messages})
    with EventProducer(bootstrap, client_id=client_id, timeout_s=settings.kafka_timeout_s) as producer:
        for topic, key, value in messages:
            producer.send(topic, key, value)
    return len(messages)


def _admin(bootstrap: str, timeout_s: float) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="annostream-admin",
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as error:
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {error}") from None


def _raise_topic_errors(response: object, bootstrap: str) -> None:
    # kafka-python returns the raw CreateTopics response as a dict when raise_errors=False.
    results = response.get("topics", []) if isinstance(response, dict) else []
    for result in results:
        code = result.get("error_code", 0)
        if code and code != TopicAlreadyExistsError.errno:  # a concurrent creator won the race
            raise BrokerUnavailable(
                f"cannot create topic {result.get('name')} on {bootstrap}: "
                f"error {code} {result.get('error_message') or ''}".rstrip()
            )


class EventProducer:
    """A synchronous producer: ``send`` returns once the broker has the event (acks=all).

    Idempotent, so the client's own retries never write an event twice.
    """

    def __init__(
        self, bootstrap: str, *, client_id: str = "annostream", timeout_s: float = DEFAULT_TIMEOUT_S
    ):
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                acks="all",
                enable_idempotence=True,
                retries=5,
                linger_ms=2,  # events are sent one by one; batching must not add latency
                bootstrap_timeout_ms=int(timeout_s * 1000),
                max_block_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000),
                delivery_timeout_ms=int(timeout_s * 2000),
            )
        except KafkaError as error:
            raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {error}") from None

    def send(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        """Write one event and wait for the broker's acknowledgement (raw key bytes are kept as is)."""
        raw_key = key.encode() if isinstance(key, str) else key
        try:
            future = self._producer.send(
                topic, key=raw_key, value=value, headers=list(headers) if headers else None
            )
            future.get(timeout=self.timeout_s * 2)
        except KafkaError as error:
            raise BrokerUnavailable(
                f"could not publish to {topic} on Kafka at {self.bootstrap}: {error}"
            ) from None

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventPublisher:
    """Publishes events to the topic the registry gives their class, each acknowledged by the broker.

    One per process (e.g. the API's, shared by every request): the producer is opened, and the
    topics created, on first use, so a process starts without a reachable broker and never
    opens a connection before a fork. Thread-safe (kafka-python's producer is).
    """

    def __init__(self, settings: Settings, *, client_id: str, command: str):
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.client_id = client_id
        self.command = command
        self._producer: EventProducer | None = None
        self._lock = threading.Lock()

    def publish(self, events: Iterable[Event]) -> None:
        """Send each event (keyed by its partition key) and wait for the broker's acknowledgement."""
        producer = self._open()
        for event in events:
            producer.send(self.topics.carrying(type(event)), event.key, encode(event))

    def _open(self) -> EventProducer:
        with self._lock:
            if self._producer is None:
                bootstrap = ensure_engine_topics(self.settings, command=self.command)
                self._producer = EventProducer(
                    bootstrap, client_id=self.client_id, timeout_s=self.settings.kafka_timeout_s
                )
            return self._producer

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- reading without a consumer group (operations: lag, replay) -----------------------------


def open_reader(
    bootstrap: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
) -> KafkaConsumer:
    """A consumer outside any group: partitions are assigned by hand, nothing is committed."""
    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="annostream-reader",
            group_id=None,
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms,
            request_timeout_ms=int(timeout_s * 1000) + 1000,
        )
    except KafkaError as error:
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {error}") from None


def topic_partitions(reader: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, ascending (empty when the topic does not exist)."""
    return [TopicPartition(topic, number) for number in sorted(reader.partitions_for_topic(topic))]


def poll_until_idle(
    reader: KafkaConsumer, *, idle_s: float = 1.0, timeout_s: float = 60.0
) -> Iterator[tuple[TopicPartition, list[ConsumerRecord]]]:
    """Batches from the assigned partitions until none arrives for ``idle_s`` (or ``timeout_s``).

    How far a partition goes is found by reading, not by asking for its end offset: some brokers
    (the embedded Tansu) answer ListOffsets "latest" wrongly, and reading also skips the gaps a
    compacted topic has.
    """
    deadline = time.monotonic() + timeout_s
    idle_until = time.monotonic() + idle_s
    while time.monotonic() < min(deadline, idle_until):
        batches = reader.poll(timeout_ms=min(200, int(idle_s * 1000)))
        for partition, records in batches.items():
            if records:
                idle_until = time.monotonic() + idle_s
                yield partition, records
