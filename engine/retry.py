"""Retrying a failed import (``annostream retry``, ``POST /api/v1/import/jobs/{id}/retry``).

A retry takes the failed folder out of ANALYSES_FAILED after the user fixed it:

1. the folder is found by the failed job's event id (its ``error.json``), under its own name or
   the timestamped name a taken name got;
2. it is checked the way the watcher checks a folder and every VCF record is read as the
   annotate stage reads it; if it still fails, nothing moves and the new error (file, line) is
   the answer: the user sees it at once;
3. ``READY`` and ``error.json`` are removed and the folder is renamed back into
   ANALYSES_INCOMING. Without ``READY`` the watcher leaves it alone, so it is published once:
4. a new import job linked to the failed one (``retry_of``) is stored, then the
   ``analysis.ready`` event is published. If publishing fails, everything is undone.

Idempotent: a job that was retried already answers with the job of its retry; ``retry_of`` is
unique, so two concurrent retries cannot both succeed (the folder rename is the claim).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from engine import metrics
from engine.config import Settings
from engine.db.models import ImportJob, JobStatus
from engine.db.session import session_scope
from engine.errors import BrokerUnavailable, InputError, RetryRefused
from engine.events import Genepanel, ReadyEvent, Topics, build_ready_event, encode
from engine.folders import ERROR_FILE, READY_FILE
from engine.jobs import get_or_create_job
from engine.kafka import EventProducer, ensure_engine_topics, require_bootstrap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryResult:
    analysis: str
    failed_job: int | None
    job: int
    event_id: str
    already: bool  # True: this failure was retried before; nothing was done now

    def describe(self) -> str:
        origin = f"import job {self.failed_job}" if self.failed_job is not None else "the failed folder"
        if self.already:
            return f"{self.analysis}: {origin} was already retried as import job {self.job}"
        return f"{self.analysis}: {origin} retried as import job {self.job} (event {self.event_id})"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def successor(session: sa.orm.Session, job_id: int) -> ImportJob | None:
    return session.scalars(sa.select(ImportJob).where(ImportJob.retry_of == job_id)).first()


def retry_job(settings: Settings, job_id: int, *, producer: str) -> RetryResult:
    """Retry the FAILED import job ``job_id`` (see the module docstring)."""
    with session_scope(settings.database_url) as session:
        job = session.get(ImportJob, job_id)
        if job is None:
            raise RetryRefused(f"import job {job_id} not found", status=404)
        done = successor(session, job_id)
        if done is not None:
            return RetryResult(job.analysis_name, job_id, done.id, done.event_id, already=True)
        if job.status != JobStatus.FAILED.value:
            raise RetryRefused(
                f"import job {job_id} ({job.analysis_name}) is {job.status}; only FAILED jobs can be retried"
            )
        name, event_id = job.analysis_name, job.event_id
    folder = find_failed_folder(settings, name, event_id)
    if folder is None:
        raise RetryRefused(
            f"the folder of {name} (import job {job_id}, event {event_id}) is no longer in "
            f"{settings.analyses_failed}; drop the fixed folder into {settings.analyses_incoming} instead",
            status=409,
        )
    try:
        return _retry_folder(settings, folder, name, job_id, producer=producer)
    except _LostRace:
        with session_scope(settings.database_url) as session:
            done = successor(session, job_id)
            if done is None:
                raise RetryRefused(f"the folder of {name} moved while it was being retried") from None
            return RetryResult(name, job_id, done.id, done.event_id, already=True)


def retry_analysis(settings: Settings, name: str, *, producer: str) -> RetryResult:
    """Retry the latest failure of analysis ``name``: its FAILED job, or (when the watcher
    rejected the folder before any job existed) its folder in ANALYSES_FAILED."""
    with session_scope(settings.database_url) as session:
        latest = session.scalars(
            sa.select(ImportJob).where(ImportJob.analysis_name == name).order_by(ImportJob.id.desc()).limit(1)
        ).first()
        latest_id = latest.id if latest is not None else None
        latest_status = latest.status if latest is not None else None
        retried = latest.retry_of if latest is not None else None
    if latest_id is not None and latest_status == JobStatus.FAILED.value:
        return retry_job(settings, latest_id, producer=producer)
    folder = find_failed_folder(settings, name, None)
    if folder is not None:
        return _retry_folder(settings, folder, name, None, producer=producer)
    if latest_id is not None and retried is not None:
        with session_scope(settings.database_url) as session:
            job = session.get(ImportJob, latest_id)
            assert job is not None
            return RetryResult(name, retried, job.id, job.event_id, already=True)
    if latest_id is not None:
        raise RetryRefused(
            f"{name}: the latest import job ({latest_id}) is {latest_status}, not FAILED, "
            f"and no failed folder of {name} is in {settings.analyses_failed}"
        )
    raise RetryRefused(
        f"{name}: no import job and no failed folder in {settings.analyses_failed}", status=404
    )


def failed_jobs(settings: Settings, *, since: dt.datetime | None = None) -> list[int]:
    """FAILED jobs not retried yet (failed at or after ``since``), oldest first."""
    retried = sa.select(ImportJob.retry_of).where(ImportJob.retry_of.is_not(None))
    query = (
        sa.select(ImportJob.id)
        .where(ImportJob.status == JobStatus.FAILED.value, ImportJob.id.not_in(retried))
        .order_by(ImportJob.id)
    )
    if since is not None:
        query = query.where(ImportJob.date_updated >= since)
    with session_scope(settings.database_url) as session:
        return list(session.scalars(query))


# --- folders -------------------------------------------------------------------------------------


def read_error_file(folder: Path) -> dict[str, Any] | None:
    try:
        document = orjson.loads((folder / ERROR_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None


def find_failed_folder(settings: Settings, name: str, event_id: str | None) -> Path | None:
    """The folder of ``name`` in ANALYSES_FAILED whose error.json names ``event_id`` (any
    matching folder, newest first, when ``event_id`` is None)."""
    root = settings.analyses_failed
    if not root.is_dir():
        return None
    candidates = [
        path
        for path in root.iterdir()
        if path.is_dir() and not path.is_symlink() and (path.name == name or path.name.startswith(f"{name}."))
    ]
    candidates.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    for path in candidates:
        error = read_error_file(path)
        if event_id is None or (error is not None and error.get("event_id") == event_id):
            return path
    return None


def check_folder(folder: Path) -> None:
    """The watcher's check of the folder plus a full read of every VCF (as the annotate stage
    reads it first), so a record that is still broken is reported now, with file and line,
    instead of in a second failed job. Raises InputError."""
    from engine.deposit.analysis_folder import load_analysis_folder  # parsing is heavy; load lazily
    from engine.normalise.vcf import normalise_vcf

    spec = load_analysis_folder(folder)
    with open(os.devnull, "wb") as sink:
        for vcf in spec.vcfs:
            normalise_vcf(vcf.path, None, stream=sink)


class _LostRace(Exception):
    """Another retry renamed the folder first."""


def _retry_folder(
    settings: Settings, folder: Path, name: str, failed_job: int | None, *, producer: str
) -> RetryResult:
    bootstrap = require_bootstrap(settings, "retry")
    try:
        check_folder(folder)
    except InputError as error:
        raise RetryRefused(f"{name} still fails: {error}", status=422) from None
    target = settings.analyses_incoming / name
    if target.exists():
        raise RetryRefused(f"{target} exists already; remove or rename it first")
    error_document = (folder / ERROR_FILE).read_bytes() if (folder / ERROR_FILE).is_file() else None
    had_ready = (folder / READY_FILE).is_file()
    try:
        # No READY: the watcher ignores the folder, so this retry is its only publisher.
        (folder / READY_FILE).unlink(missing_ok=True)
        settings.analyses_incoming.mkdir(parents=True, exist_ok=True)
        os.rename(folder, target)
    except FileNotFoundError:
        raise _LostRace() from None
    try:
        (target / ERROR_FILE).unlink(missing_ok=True)
        event = _ready_event(target, settings, producer)
        new_job = _store_job(settings, event, failed_job)
        topics = Topics.from_settings(settings)
        try:
            ensure_engine_topics(settings, command="retry")
            kafka = EventProducer(bootstrap, client_id="annostream-retry", timeout_s=settings.kafka_timeout_s)
        except BaseException:
            _forget_job(settings, new_job)  # nothing recorded or published yet: undo all
            raise
        try:
            pending = _record_then_publish(settings, kafka, event, topics)
        except BaseException:
            _forget_job(settings, new_job)
            raise
    except BaseException as error:
        _undo(target, folder, error_document, had_ready)
        if isinstance(error, InputError):
            raise RetryRefused(f"{name} still fails: {error}", status=422) from None
        if isinstance(error, sa.exc.IntegrityError):
            raise _LostRace() from None
        raise
    if pending is not None:
        # Recorded in the work ledger but not published: the worker's reconciler publishes it
        # once the broker is back, so the retry stands (undoing it would race the reconciler).
        log.warning(
            "%s: retry recorded, publishing deferred to the reconciler: %s",
            name,
            pending,
            extra={"analysis": name, "event_id": event.event_id},
        )
    log.info(
        "%s: retried failed job %s as job %s (event %s)",
        name,
        failed_job,
        new_job,
        event.event_id,
        extra={"analysis": name, "event_id": event.event_id},
    )
    return RetryResult(name, failed_job, new_job, event.event_id, already=False)


def _record_then_publish(
    settings: Settings, kafka: EventProducer, event: ReadyEvent, topics: Topics
) -> str | None:
    """The outbox step (engine/ledger.py), as the watcher does: None when published, else why not."""
    from engine.ledger import Message, WorkEvent, record_then_publish

    def publish(messages: list[Message]) -> None:
        for topic, key, value in messages:
            kafka.send(topic, key, value)

    work = WorkEvent(
        event_id=event.event_id,
        schema=event.SCHEMA,
        topic=topics.ready,
        key=event.key,
        value=encode(event),
        analysis=event.analysis,
    )
    try:
        record_then_publish(settings, [work], publish)
    except BrokerUnavailable as error:
        return str(error)
    finally:
        kafka.close()
    metrics.EVENTS_PRODUCED.labels(topic=topics.ready).inc()
    return None


def _ready_event(folder: Path, settings: Settings, producer: str) -> ReadyEvent:
    """The analysis.ready event for ``folder``, as the watcher would publish it."""
    from engine.deposit.analysis_folder import load_analysis_folder

    spec = load_analysis_folder(folder)
    panel = None
    if spec.genepanel_name and spec.genepanel_version:
        panel = Genepanel(name=spec.genepanel_name, version=spec.genepanel_version)
    return build_ready_event(
        folder,
        settings.analyses_incoming,
        producer=producer,
        analysis=spec.name,
        genepanel=panel,
        priority=spec.priority,
    )


def _store_job(settings: Settings, event: ReadyEvent, failed_job: int | None) -> int:
    with session_scope(settings.database_url) as session:
        job = get_or_create_job(
            session, event_id=event.event_id, analysis_name=event.analysis, fingerprint=event.fingerprint
        )
        job.retry_of = failed_job
        session.flush()
        return job.id


def _forget_job(settings: Settings, job_id: int) -> None:
    with contextlib.suppress(sa.exc.SQLAlchemyError), session_scope(settings.database_url) as session:
        session.execute(sa.delete(ImportJob).where(ImportJob.id == job_id))


def _undo(target: Path, folder: Path, error_document: bytes | None, had_ready: bool) -> None:
    """Put the folder back into ANALYSES_FAILED as it was."""
    if not target.is_dir():
        return
    try:
        os.rename(target, folder)
    except OSError:
        shutil.move(str(target), str(folder))
    if error_document is not None:
        (folder / ERROR_FILE).write_bytes(error_document)
    if had_ready:
        (folder / READY_FILE).touch()
