"""Worker use cases for releases: ``reanalyse`` and ``reannotate`` (raw event -> Outgoing).

Like :class:`engine.pipeline.Pipeline`, they never raise for bad input: a request naming an
unknown analysis or bundle is recorded as failed and answered with a dead letter on
``analysis.failed``; only transient infrastructure errors escape (the worker retries them).

Idempotency: a reanalysis request is an import job keyed by its event id (stage ``reanalyse``);
a batch is its ``reannotation_batch`` row. The annotations and the DONE status are committed in
one transaction, under a row lock on the job/batch, so a replayed event finds DONE and changes
nothing, and a crash in the middle leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine import ledger, metrics
from engine.bundles import active_bundle, resolve_bundle
from engine.config import Settings
from engine.db.models import (
    Analysis,
    ImportJob,
    JobStatus,
    LedgerState,
    ReannotationBatch,
    ReannotationRun,
)
from engine.db.session import session_scope
from engine.errors import EventRejected, InputError
from engine.events import (
    BundleActivated,
    ReanalysisRequested,
    ReannotationBatchEvent,
    Topics,
    decode,
    default_producer,
    encode,
    failed_event,
)
from engine.jobs import get_or_create_job, record_attempt, transition
from engine.ledger import WorkEvent
from engine.pipeline.guard import Outgoing
from engine.reannotate.changes import changed_events, record_changes
from engine.reannotate.core import ReannotateResult, reannotate_alleles
from engine.reannotate.runs import DONE, FAILED, INCREMENTAL, find_run, record_reanalysis_run
from engine.reannotate.scope import AlleleSelection
from engine.timeutil import utcnow
from engine.tracks import apply_tracks

log = logging.getLogger("annostream.reannotate")
E = TypeVar("E", ReanalysisRequested, ReannotationBatchEvent, BundleActivated)

REANALYSE_STAGE = "reanalyse"
REANNOTATE_STAGE = "reannotate"
TRACKS_STAGE = "tracks"


class ReleaseStages:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.db_url = settings.database_url
        self.failed_topic = Topics.from_settings(settings).failed
        self.topics = Topics.from_settings(settings)
        self.producer = default_producer("worker")
        self.work_dir = settings.work_dir / "reannotate"

    # --- reanalysis ---------------------------------------------------------------------------

    def reanalyse(self, raw: bytes) -> list[Outgoing]:
        return self._run(REANALYSE_STAGE, raw, ReanalysisRequested, self._reanalyse)

    def _reanalyse(self, request: ReanalysisRequested) -> list[Outgoing]:
        with session_scope(self.db_url) as session:
            ledger.record(session, self._work(request))
            job = self._job(session, request)
            if job.status == JobStatus.DONE.value:
                log.info("reanalysis %s of %s already done", request.event_id, request.analysis)
                metrics.REANALYSES.labels(outcome="skipped").inc()
                ledger.finish(session, request.event_id, LedgerState.DONE)
                # Its annotation.changed events may not have been published (a crash between
                # commit and publish): publish them again, same event ids.
                done = find_run(session, request.event_id)
                if done is None:
                    return []
                return changed_events(session, done, 0, self.topics.changed, self.producer)
            ledger.progress(session, request.event_id)
            record_attempt(session, job)
            transition(
                session,
                job,
                JobStatus.ANNOTATING,
                stage=REANALYSE_STAGE,
                message=f"re-annotating with bundle {request.bundle or '(active)'}",
            )
        try:
            with session_scope(self.db_url) as session:
                job = self._job(session, request)
                session.refresh(job, with_for_update=True)  # a concurrent duplicate waits, then skips
                if job.status == JobStatus.DONE.value:
                    return []
                analysis_id = session.scalar(sa.select(Analysis.id).where(Analysis.name == request.analysis))
                if analysis_id is None:
                    raise InputError(
                        f"no stored analysis named {request.analysis!r}",
                        expected="the name of an imported analysis",
                    )
                bundle = resolve_bundle(session, request.bundle)
                result = reannotate_alleles(
                    session, bundle, AlleleSelection(analyses=(request.analysis,)), work_dir=self.work_dir
                )
                run = record_reanalysis_run(
                    session,
                    event_id=request.event_id,
                    analysis=request.analysis,
                    bundle_version=result.bundle_version,
                    n_alleles=result.n_alleles,
                    created=result.annotations.created,
                    superseded=result.annotations.superseded,
                    unchanged=result.annotations.unchanged,
                )
                record_changes(session, run.id, 0, result.changes)
                job.analysis_id = analysis_id
                transition(session, job, JobStatus.DONE, stage=REANALYSE_STAGE, message=_summary(result))
                ledger.finish(session, request.event_id, LedgerState.DONE)
                outgoing = changed_events(session, run, 0, self.topics.changed, self.producer)
                report_run = run.id
        except InputError as error:
            self._fail_job(request, error)
            metrics.REANALYSES.labels(outcome="failed").inc()
            return [self._dead_letter(request, REANALYSE_STAGE, error)]
        metrics.REANALYSES.labels(outcome="done").inc()
        metrics.ALLELES_REANNOTATED.inc(result.n_alleles)
        log.info(
            "reanalysis of %s: %s (change report: run %s)", request.analysis, _summary(result), report_run
        )
        return outgoing

    def _work(self, event: ReanalysisRequested | ReannotationBatchEvent) -> WorkEvent:
        topic = self.topics.reanalysis if isinstance(event, ReanalysisRequested) else self.topics.reannotation
        return WorkEvent.from_message(topic, event.key, encode(event))

    def _job(self, session: Session, request: ReanalysisRequested) -> ImportJob:
        return get_or_create_job(
            session, event_id=request.event_id, analysis_name=request.analysis, fingerprint=None
        )

    def _fail_job(self, request: ReanalysisRequested, error: InputError) -> None:
        with session_scope(self.db_url) as session:
            job = self._job(session, request)
            if job.status != JobStatus.DONE.value:
                transition(session, job, JobStatus.FAILED, stage=REANALYSE_STAGE, message=str(error))
                ledger.finish(session, request.event_id, LedgerState.FAILED)

    # --- reannotation batches -----------------------------------------------------------------

    def reannotate(self, raw: bytes) -> list[Outgoing]:
        return self._run(REANNOTATE_STAGE, raw, ReannotationBatchEvent, self._reannotate)

    def _reannotate(self, event: ReannotationBatchEvent) -> list[Outgoing]:
        with session_scope(self.db_url) as session:
            ledger.record(session, self._work(event))
            batch, run = self._lock_batch(session, event)
            if batch.status == DONE:
                # Committed before, but its annotation.changed events may not have been published
                # (a crash between commit and publish): publish them again, same event ids.
                metrics.REANNOTATION_BATCHES.labels(outcome="skipped").inc()
                ledger.finish(session, event.event_id, LedgerState.DONE)
                return changed_events(session, run, batch.batch_index, self.topics.changed, self.producer)
            batch.attempts += 1
            selection = AlleleSelection(
                event.id_from,
                event.id_to,
                tuple(event.analyses) if event.analyses is not None else None,
                run_pk=run.id if run.mode == INCREMENTAL else None,
            )
            try:
                # A savepoint: bad input rolls back this batch's writes but keeps its FAILED status.
                with session.begin_nested():
                    bundle = resolve_bundle(session, event.bundle)
                    result = reannotate_alleles(session, bundle, selection, work_dir=self.work_dir)
                    record_changes(session, run.id, batch.batch_index, result.changes)
            except InputError as error:
                _finish(batch, FAILED, message=str(error))
                ledger.finish(session, event.event_id, LedgerState.FAILED)
                metrics.REANNOTATION_BATCHES.labels(outcome="failed").inc()
                log.warning("reannotation %s batch %d failed: %s", event.run_id, event.batch_index, error)
                return [self._dead_letter(event, REANNOTATE_STAGE, error)]
            _finish(batch, DONE, result=result)
            ledger.finish(session, event.event_id, LedgerState.DONE)
            outgoing = changed_events(session, run, batch.batch_index, self.topics.changed, self.producer)
        metrics.REANNOTATION_BATCHES.labels(outcome="done").inc()
        metrics.ALLELES_REANNOTATED.inc(result.n_alleles)
        log.info(
            "reannotation %s batch %d: %s (%s)",
            event.run_id,
            event.batch_index,
            _summary(result),
            ", ".join(f"{step} {seconds:.2f}s" for step, seconds in result.seconds.items()),
        )
        return outgoing

    def _lock_batch(
        self, session: Session, event: ReannotationBatchEvent
    ) -> tuple[ReannotationBatch, ReannotationRun]:
        row = session.execute(
            sa.select(ReannotationBatch, ReannotationRun)
            .join(ReannotationRun, ReannotationRun.id == ReannotationBatch.run_id)
            .where(ReannotationRun.run_id == event.run_id, ReannotationBatch.batch_index == event.batch_index)
            .with_for_update(of=ReannotationBatch)
        ).first()
        if row is None:
            raise InputError(
                f"reannotation run {event.run_id} has no batch {event.batch_index}",
                expected="a batch planned by 'annostream reannotate'",
            )
        batch, run = row
        if (batch.id_from, batch.id_to) != (event.id_from, event.id_to):
            raise InputError(
                f"batch {event.batch_index} of run {event.run_id} covers allele ids "
                f"{event.id_from}-{event.id_to}, the run planned {batch.id_from}-{batch.id_to}",
                expected="the event as 'annostream reannotate' published it",
            )
        return batch, run

    # --- IGV tracks ---------------------------------------------------------------------------

    def tracks(self, raw: bytes) -> list[Outgoing]:
        return self._run(TRACKS_STAGE, raw, BundleActivated, self._tracks)

    def _tracks(self, event: BundleActivated) -> list[Outgoing]:
        # The tracks of the bundle active *now*, whatever bundle the event names: activation
        # events of different bundles may arrive in any order (other keys, other partitions),
        # and the last activation must win.
        with session_scope(self.db_url) as session:
            active = active_bundle(session)
        if active is None:
            log.info(
                "bundle %s was activated, but no bundle is active now: IGV tracks left as they are",
                event.bundle,
            )
            return []
        result = apply_tracks(active, self.settings.igv_data)
        for warning in result.warnings:
            log.warning("%s", warning)
        log.info("%s", result.summary())
        return []

    def fail_tracks(self, raw: bytes, error: InputError) -> list[Outgoing]:
        """The guard gave up on a bundle.activated event: a dead letter says why."""
        return [self._dead_letter(raw, TRACKS_STAGE, error)]

    # --- shared -------------------------------------------------------------------------------

    def _run(
        self, stage: str, raw: bytes, kind: type[E], body: Callable[[E], list[Outgoing]]
    ) -> list[Outgoing]:
        with metrics.observe_stage(stage):
            try:
                event = decode(raw, kind)
            except EventRejected as rejected:
                metrics.STAGE_FAILURES.labels(stage=stage).inc()
                log.warning("rejected %s event: %s", stage, rejected.reason)
                return [self._dead_letter(raw, stage, InputError(rejected.reason))]
            try:
                return body(event)
            except InputError as error:
                metrics.STAGE_FAILURES.labels(stage=stage).inc()
                return [self._dead_letter(event, stage, error)]
            # Anything else escapes to the StageGuard: retried, or failed via fail_* below.

    def fail_reanalyse(self, raw: bytes, error: InputError) -> list[Outgoing]:
        """Record that a reanalysis request cannot be processed (the guard gave up on it)."""
        try:
            request = decode(raw, ReanalysisRequested)
        except EventRejected as rejected:
            return [self._dead_letter(raw, REANALYSE_STAGE, InputError(rejected.reason))]
        self._fail_job(request, error)
        metrics.REANALYSES.labels(outcome="failed").inc()
        return [self._dead_letter(request, REANALYSE_STAGE, error)]

    def fail_reannotate(self, raw: bytes, error: InputError) -> list[Outgoing]:
        """Record that a re-annotation batch cannot be processed (the guard gave up on it)."""
        try:
            event = decode(raw, ReannotationBatchEvent)
        except EventRejected as rejected:
            return [self._dead_letter(raw, REANNOTATE_STAGE, InputError(rejected.reason))]
        with session_scope(self.db_url) as session:
            try:
                batch, _run = self._lock_batch(session, event)
            except InputError:
                batch = None
            if batch is not None and batch.status != DONE:
                _finish(batch, FAILED, message=str(error))
            ledger.finish(session, event.event_id, LedgerState.FAILED)
        metrics.REANNOTATION_BATCHES.labels(outcome="failed").inc()
        return [self._dead_letter(event, REANNOTATE_STAGE, error)]

    def _dead_letter(
        self,
        original: bytes | ReanalysisRequested | ReannotationBatchEvent | BundleActivated,
        stage: str,
        error: InputError,
    ) -> Outgoing:
        raw = original if isinstance(original, bytes) else encode(original)
        analysis = original.analysis if isinstance(original, ReanalysisRequested) else None
        dead = failed_event(raw, stage=stage, error=error, producer=self.producer, analysis=analysis)
        return Outgoing(self.failed_topic, dead.analysis or "", encode(dead))


def _finish(
    batch: ReannotationBatch,
    status: str,
    *,
    result: ReannotateResult | None = None,
    message: str | None = None,
) -> None:
    batch.status = status
    batch.message = message if result is None else _summary(result)
    batch.date_updated = utcnow()
    if result is not None:
        batch.n_alleles = result.n_alleles
        batch.n_created = result.annotations.created
        batch.n_superseded = result.annotations.superseded
        batch.n_unchanged = result.annotations.unchanged


def _summary(result: ReannotateResult) -> str:
    notes = result.annotations
    return (
        f"re-annotated {result.n_alleles} alleles with bundle {result.bundle_version} "
        f"({result.n_with_values} with values): {notes.created} new annotations, "
        f"{notes.superseded} superseded, {notes.unchanged} unchanged"
    )
