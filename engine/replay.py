"""Re-drive past events through the pipeline (``annostream replay``).

The selected messages are written again to the topic they came from, with their exact key and
value bytes: the pipeline is idempotent end to end (jobs are keyed by event id, finished work is
recognised), so replaying finished work changes nothing and unfinished work is picked up again.
Positions are found by reading message timestamps from the start of every partition; the end of
a partition is where reading stops returning records (never ListOffsets, see engine.kafka).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import orjson
from kafka.consumer.fetcher import ConsumerRecord

from engine.errors import InputError
from engine.kafka import DEFAULT_TIMEOUT_S, EventProducer, open_reader, poll_until_idle, topic_partitions
from engine.timeutil import iso_utc, utcnow

#: Header added to every replayed message: where the original is (``topic/partition/offset``).
REPLAYED_FROM = "annostream.replayed-from"
_RELATIVE = re.compile(r"^(?P<amount>[0-9]+)(?P<unit>[smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class Selected:
    """One message chosen for replay."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp_ms / 1000, dt.UTC)

    @property
    def key_text(self) -> str:
        return "" if self.key is None else self.key.decode("utf-8", errors="replace")

    @property
    def event_id(self) -> str | None:
        try:
            document = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return None
        value = document.get("event_id") if isinstance(document, dict) else None
        return value if isinstance(value, str) else None

    def describe(self) -> str:
        when = iso_utc(self.time, timespec="milliseconds")
        return (
            f"{self.topic}[{self.partition}]@{self.offset}  {when}  key={self.key_text!r}  "
            f"event_id={self.event_id or '-'}"
        )


def parse_moment(text: str, *, now: dt.datetime | None = None, option: str = "--since") -> dt.datetime:
    """An ISO 8601 date/time (naive = UTC) or a duration ago (``30m``, ``2h``, ``1d``)."""
    now = now or utcnow()
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - dt.timedelta(**{_UNITS[relative["unit"]]: int(relative["amount"])})
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"{option} {text!r} is not a date/time",
            expected="ISO 8601 like 2024-05-02T09:00:00Z (naive = UTC), or 30m / 2h / 1d ago",
        ) from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def select(
    bootstrap: str,
    topic: str,
    *,
    since: dt.datetime,
    until: dt.datetime | None = None,
    analysis: str | None = None,
    idle_s: float = 1.0,
    timeout_s: float = 300.0,
) -> list[Selected]:
    """Messages of ``topic`` with since <= timestamp < until (and key == analysis, if given),
    in partition and offset order. Reads every partition from its beginning to its current end."""
    if until is not None and until <= since:
        raise InputError(
            f"--until {until.isoformat()} is not after --since {since.isoformat()}",
            expected="a time window whose end is after its start",
        )
    low = int(since.timestamp() * 1000)
    high = int(until.timestamp() * 1000) if until is not None else None
    wanted_key = analysis.encode() if analysis is not None else None
    reader = open_reader(bootstrap)
    try:
        partitions = topic_partitions(reader, topic)
        if not partitions:
            raise InputError(
                f"topic {topic!r} does not exist on Kafka at {bootstrap}",
                expected="one of the engine's topics, with ANNOSTREAM_TOPIC_PREFIX as set",
            )
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        chosen: list[Selected] = []
        for _partition, records in poll_until_idle(reader, idle_s=idle_s, timeout_s=timeout_s):
            chosen.extend(
                _selected(record)
                for record in records
                if _in_window(record, low, high) and (wanted_key is None or record.key == wanted_key)
            )
    finally:
        reader.close()
    return sorted(chosen, key=lambda item: (item.partition, item.offset))


def _in_window(record: ConsumerRecord, low: int, high: int | None) -> bool:
    return record.timestamp >= low and (high is None or record.timestamp < high) and record.value is not None


def _selected(record: ConsumerRecord) -> Selected:
    return Selected(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value,
        headers=tuple((name, bytes(value)) for name, value in record.headers or ()),
    )


def republish(bootstrap: str, messages: list[Selected], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """Write ``messages`` again (same topic, key and value; original headers plus REPLAYED_FROM)."""
    with EventProducer(bootstrap, client_id="annostream-replay", timeout_s=timeout_s) as producer:
        for message in messages:
            origin = f"{message.topic}/{message.partition}/{message.offset}".encode()
            kept = [item for item in message.headers if item[0] != REPLAYED_FROM]
            producer.send(message.topic, message.key, message.value, headers=[*kept, (REPLAYED_FROM, origin)])
    return len(messages)
