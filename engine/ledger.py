"""The work ledger: the database, not the broker, remembers every event that starts work.

A transactional outbox (``annostream_work_ledger``): ``analysis.ready``,
``reanalysis.requested`` and ``reannotation.batch`` events are recorded before (or, for events a
pipeline published itself, as soon as a worker sees) them; the stages mark progress and the
outcome (DONE, FAILED) in the same transactions as their own work. The reconciler publishes
again what is recorded, not finished and silent for ``ANNOSTREAM_RECONCILE_AFTER`` seconds: the
memory-only embedded broker may have lost it in a restart, or Kafka's retention expired.
Publishing the same event twice is harmless: every stage is idempotent per event id.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine import metrics
from engine.config import Settings
from engine.db.models import LedgerEntry, LedgerState
from engine.db.session import session_scope
from engine.errors import BrokerUnavailable, is_retriable
from engine.events import Event, Topics, encode
from engine.timeutil import utcnow

log = logging.getLogger("annostream.ledger")

#: (topic, key, value) of one message to publish.
Message = tuple[str, str, bytes]


@dataclass(frozen=True)
class WorkEvent:
    """What the ledger needs to know about an event that starts work."""

    event_id: str
    schema: str
    topic: str
    key: str
    value: bytes
    analysis: str | None = None

    @classmethod
    def of(cls, event: Event, topics: Topics) -> WorkEvent:
        """The entry for ``event``, published to the topic the registry gives its class."""
        return cls.from_message(topics.carrying(type(event)), event.key, encode(event))

    @classmethod
    def from_message(cls, topic: str, key: str, value: bytes) -> WorkEvent:
        document = orjson.loads(value)
        analysis = document.get("analysis")
        return cls(
            event_id=str(document["event_id"]),
            schema=str(document["schema"]),
            topic=topic,
            key=key,
            value=value,
            analysis=analysis if isinstance(analysis, str) else None,
        )


def record(session: Session, event: WorkEvent) -> None:
    """Record ``event`` as PENDING unless it is recorded already (inside the caller's transaction)."""
    if session.get(LedgerEntry, event.event_id) is not None:
        return
    try:
        with session.begin_nested():  # a concurrent recorder may win; that is the same entry
            session.add(
                LedgerEntry(
                    event_id=event.event_id,
                    schema=event.schema,
                    topic=event.topic,
                    key=event.key,
                    value=event.value,
                    analysis=event.analysis,
                    state=LedgerState.PENDING.value,
                    publish_count=0,
                    date_created=utcnow(),
                    date_progress=utcnow(),
                )
            )
    except sa.exc.IntegrityError:
        pass


def record_raw(session: Session, topic: str, key: str | None, value: bytes) -> None:
    """Record a consumed work event the publisher did not record (e.g. a pipeline published it)."""
    try:
        event = WorkEvent.from_message(topic, key or "", value)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return  # not an event: the stage dead-letters it
    record(session, event)


def progress(session: Session, event_id: str) -> None:
    """A stage made progress on ``event_id`` (picked it up, finished a step)."""
    session.execute(
        sa.update(LedgerEntry).where(LedgerEntry.event_id == event_id).values(date_progress=utcnow())
    )


def finish(session: Session, event_id: str, state: LedgerState) -> None:
    """The work of ``event_id`` ended (DONE or FAILED): the reconciler leaves it alone."""
    session.execute(
        sa.update(LedgerEntry)
        .where(LedgerEntry.event_id == event_id)
        .values(state=state.value, date_progress=utcnow())
    )


def record_then_publish(
    settings: Settings, events: Sequence[WorkEvent], publish: Callable[[list[Message]], None]
) -> bool:
    """The outbox step for publishers: commit the ledger entries, then publish.

    If the database is unreachable the events are still published (and the worker records
    them when it picks them up); if the broker is unreachable the entries stay PENDING, so the
    reconciler publishes them once the broker is back, and the BrokerUnavailable says so.
    Returns whether the events are in the ledger.
    """
    recorded = True
    try:
        with session_scope(settings.database_url) as session:
            for event in events:
                record(session, event)
    except Exception as error:
        if not is_retriable(error):
            raise
        recorded = False
        log.warning(
            "database unavailable, publishing %d event(s) without a ledger entry: %s",
            len(events),
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
        )
    try:
        publish([(event.topic, event.key, event.value) for event in events])
    except BrokerUnavailable as error:
        if not recorded:
            raise
        raise BrokerUnavailable(
            f"{error}; the work is recorded in the database's work ledger and will be published "
            "when the broker is back (or run 'annostream replay --from-ledger')"
        ) from None
    return recorded


def pending(
    session: Session,
    *,
    silent_for_s: float,
    schema: str | None = None,
    analysis: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    include_finished: bool = False,
) -> list[LedgerEntry]:
    """Ledger entries to publish again: not finished and without progress for ``silent_for_s``."""
    query = sa.select(LedgerEntry).order_by(LedgerEntry.date_created, LedgerEntry.event_id)
    if not include_finished:
        query = query.where(LedgerEntry.state == LedgerState.PENDING.value)
    if silent_for_s > 0:
        query = query.where(LedgerEntry.date_progress < utcnow() - dt.timedelta(seconds=silent_for_s))
    if schema is not None:
        query = query.where(LedgerEntry.schema == schema)
    if analysis is not None:
        query = query.where(LedgerEntry.analysis == analysis)
    if since is not None:
        query = query.where(LedgerEntry.date_created >= since)
    if until is not None:
        query = query.where(LedgerEntry.date_created < until)
    return list(session.scalars(query))


def reconcile(
    settings: Settings, publish: Callable[[list[Message]], None], *, silent_for_s: float | None = None
) -> int:
    """Publish again the recorded work that is not finished and silent; returns how many."""
    silent = settings.reconcile_after_s if silent_for_s is None else silent_for_s
    with session_scope(settings.database_url) as session:
        entries = pending(session, silent_for_s=silent)
        messages = [(entry.topic, entry.key, entry.value) for entry in entries]
        schemas = [entry.schema for entry in entries]
        ids = [entry.event_id for entry in entries]
    if not messages:
        return 0
    publish(messages)
    with session_scope(settings.database_url) as session:
        session.execute(
            sa.update(LedgerEntry)
            .where(LedgerEntry.event_id.in_(ids))
            .values(date_progress=utcnow(), publish_count=LedgerEntry.publish_count + 1)
        )
    for schema in schemas:
        metrics.LEDGER_REPUBLISHED.labels(schema=schema).inc()
    log.warning(
        "reconciler: published %d unfinished work event(s) again (%s)",
        len(messages),
        ", ".join(sorted(set(schemas))),
    )
    return len(messages)


def counts(session: Session) -> dict[str, int]:
    """Ledger entries per state (for status, the API and metrics)."""
    rows = session.execute(sa.select(LedgerEntry.state, sa.func.count()).group_by(LedgerEntry.state))
    return {str(state): int(number) for state, number in rows}


def reconcile_through_kafka(settings: Settings, bootstrap: str, *, silent_for_s: float | None = None) -> int:
    """:func:`reconcile` with a producer of its own (creating the topics a fresh broker lacks)."""
    from engine.kafka import publish_messages

    def publish(messages: list[Message]) -> None:
        configured = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
        publish_messages(configured, messages, client_id="annostream-reconciler", command="worker")

    return reconcile(settings, publish, silent_for_s=silent_for_s)
