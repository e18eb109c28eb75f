"""The stage boundary: the one place that decides, for every consumed event, retry, give up or park.

- Infrastructure errors (:func:`engine.errors.is_retriable`) are retried in place with
  exponential backoff and full jitter, without limit: an outage delays work, it never fails it.
  They count in ``annostream_stage_retries``, not as failures.
- Each start of a stage on an event is counted in ``annostream_event_attempt`` *before* the work
  begins, so a worker killed mid-event (OOM, SIGKILL) counts too. After ``max_attempts`` starts
  that crashed or raised an unexpected error (a bug), the event is failed as an internal error
  (traceback logged) through the stage's own failure path: FAILED job, error.json, dead letter.
- If that failure path itself fails (ANALYSES_FAILED not writable, disk full, folder gone) a
  few times, the event is *parked* in ``annostream_parked_event`` with its bytes and the reason,
  and the partition moves on. ``annostream parked list|retry|drop`` handles it later.

Nothing here restarts the worker: a poison event costs at most ``max_attempts`` tries.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import orjson
import sqlalchemy as sa

from engine import metrics
from engine.config import Settings
from engine.db.models import EventAttempt, ParkedEvent
from engine.db.session import session_scope
from engine.errors import (
    FailureNotRecorded,
    GaveUp,
    InputError,
    describe_internal,
    is_retriable,
)
from engine.timeutil import utcnow

log = logging.getLogger("annostream.guard")
T = TypeVar("T")

#: Tries of a stage's failure path (error.json, folder move, dead letter) before parking.
FAILURE_PATH_TRIES = 3


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message a stage wants published once it has finished."""

    topic: str
    key: str
    value: bytes


@dataclass(frozen=True)
class StageHandler:
    """One consumed topic: ``work`` handles an event, ``fail`` records that it cannot be handled.

    ``work`` turns bad input into a recorded failure itself and raises
    :class:`FailureNotRecorded` when recording it failed; ``fail`` records an ``InputError`` for
    raw event bytes (job FAILED, folder moved, dead letter) and returns the messages to publish.
    """

    name: str
    topic: str
    work: Callable[[bytes], list[Outgoing]]
    fail: Callable[[bytes, InputError], list[Outgoing]]


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog): sleep in [0, min(cap, base*2^n)]."""

    def __init__(self, cap_s: float, base_s: float = 0.25) -> None:
        self.cap_s = cap_s
        self.base_s = base_s
        self.tries = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.tries, 30))
        self.tries += 1
        return random.uniform(ceiling / 2, ceiling)  # half-jitter: never a busy loop

    def sleep(self) -> None:
        time.sleep(self.next_delay())


def event_key(raw: bytes) -> str:
    """The event's ``event_id`` when it has one, else a digest of its bytes."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("event_id"), str) and document["event_id"]:
        return str(document["event_id"])[:200]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class StageGuard:
    """Runs stages under the error model above (synchronous; call it off the event loop)."""

    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.db_url = settings.database_url
        self.max_attempts = settings.max_attempts
        self._sleep = sleep

    # --- the one entry point ------------------------------------------------------------------

    def run(self, handler: StageHandler, raw: bytes, key: str | None = None) -> list[Outgoing]:
        stage, ekey = handler.name, event_key(raw)
        backoff = self._backoff()
        attempt, last_error = self._begin(stage, ekey)
        while True:
            if attempt > self.max_attempts:
                reason = (
                    f"internal error: gave up after {self.max_attempts} attempts (the worker "
                    f"crashed or hit an unexpected error each time); last error: "
                    f"{last_error or 'none recorded (the worker was killed)'}"
                )
                log.error("%s: event %s: %s", stage, ekey, reason)
                return self._record_failure(handler, raw, key, ekey, InputError(str(GaveUp(reason))))
            try:
                messages = handler.work(raw)
            except FailureNotRecorded as failed:
                log.warning(
                    "%s: event %s: recording its failure failed (%s); trying again",
                    stage,
                    ekey,
                    failed.__cause__,
                )
                return self._record_failure(handler, raw, key, ekey, failed.error)
            except Exception as error:
                if is_retriable(error):
                    metrics.STAGE_RETRIES.labels(stage=stage).inc()
                    delay = backoff.next_delay()
                    log.warning(
                        "%s: infrastructure error, retrying in %.1f s: %s", stage, delay, _first_line(error)
                    )
                    self._sleep(delay)
                    continue
                last_error = describe_internal(error)
                log.exception(
                    "%s: event %s: unexpected error (attempt %d of %d)",
                    stage,
                    ekey,
                    attempt,
                    self.max_attempts,
                )
                self._note(stage, ekey, last_error)
                if attempt >= self.max_attempts:
                    return self._record_failure(handler, raw, key, ekey, InputError(last_error))
                self._sleep(backoff.next_delay())
                attempt, last_error = self._begin(stage, ekey)
                continue
            self._end(stage, ekey)
            return messages

    # --- failure path and parking --------------------------------------------------------------

    def _record_failure(
        self, handler: StageHandler, raw: bytes, key: str | None, ekey: str, error: InputError
    ) -> list[Outgoing]:
        backoff = self._backoff()
        problem: BaseException | None = None
        for number in range(1, FAILURE_PATH_TRIES + 1):
            try:
                messages = handler.fail(raw, error)
            except FailureNotRecorded as failed:
                problem = failed.__cause__ or failed
            except Exception as other:
                problem = other
            else:
                self._end(handler.name, ekey)
                return messages
            log.warning(
                "%s: event %s: recording the failure failed (try %d of %d): %s",
                handler.name,
                ekey,
                number,
                FAILURE_PATH_TRIES,
                _first_line(problem),
            )
            if number < FAILURE_PATH_TRIES:
                self._sleep(backoff.next_delay())
        reason = f"{error} -- and recording that failure failed: {_first_line(problem)}"
        self.park(handler.name, handler.topic, key, raw, reason)
        self._end(handler.name, ekey)
        return []

    def park(self, stage: str, topic: str, key: str | None, raw: bytes, reason: str) -> None:
        """Keep an event in the database so its partition can move on (waits out a DB outage)."""
        ekey = event_key(raw)
        analysis = _analysis_of(raw)

        def insert() -> None:
            with session_scope(self.db_url) as session:
                session.add(
                    ParkedEvent(
                        stage=stage,
                        topic=topic,
                        key=key,
                        value=raw,
                        event_id=None if ekey.startswith("sha256:") else ekey,
                        analysis=analysis,
                        reason=reason[:10000],
                        date_parked=utcnow(),
                    )
                )

        self._with_database(insert)
        metrics.EVENTS_PARKED.labels(stage=stage).inc()
        log.error(
            "%s: PARKED event %s (analysis %s): %s -- see 'annostream parked list'",
            stage,
            ekey,
            analysis,
            reason,
        )

    # --- attempt bookkeeping ------------------------------------------------------------------

    def _begin(self, stage: str, ekey: str) -> tuple[int, str | None]:
        def count() -> tuple[int, str | None]:
            with session_scope(self.db_url) as session:
                row = session.get(EventAttempt, (stage, ekey), with_for_update=True)
                if row is None:
                    row = EventAttempt(stage=stage, event_key=ekey, attempts=0)
                    session.add(row)
                row.attempts = (row.attempts or 0) + 1
                row.date_updated = utcnow()
                return row.attempts, row.last_error

        return self._with_database(count)

    def _note(self, stage: str, ekey: str, message: str) -> None:
        def note() -> None:
            with session_scope(self.db_url) as session:
                session.execute(
                    sa.update(EventAttempt)
                    .where(EventAttempt.stage == stage, EventAttempt.event_key == ekey)
                    .values(last_error=message[:10000], date_updated=utcnow())
                )

        self._with_database(note)

    def _end(self, stage: str, ekey: str) -> None:
        def forget() -> None:
            with session_scope(self.db_url) as session:
                session.execute(
                    sa.delete(EventAttempt).where(EventAttempt.stage == stage, EventAttempt.event_key == ekey)
                )

        self._with_database(forget)

    def _with_database(self, operation: Callable[[], T]) -> T:
        """Run a bookkeeping transaction, waiting out database outages (and insert races)."""
        backoff = self._backoff()
        while True:
            try:
                return operation()
            except sa.exc.IntegrityError:
                continue  # another worker inserted the same attempt row first: count again
            except Exception as error:
                if not is_retriable(error):
                    raise
                metrics.STAGE_RETRIES.labels(stage="bookkeeping").inc()
                delay = backoff.next_delay()
                log.warning(
                    "database unavailable for stage bookkeeping, retrying in %.1f s: %s",
                    delay,
                    _first_line(error),
                )
                self._sleep(delay)

    def _backoff(self) -> Backoff:
        return Backoff(self.settings.retry_max_delay_s)


def _first_line(error: BaseException | None) -> str:
    if error is None:
        return "unknown"
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _analysis_of(raw: bytes) -> str | None:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(document, dict) and isinstance(document.get("analysis"), str):
        return str(document["analysis"])[:200]
    return None
