"""Annotate and persist stages (see the package docstring for the contract)."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine import ledger, metrics
from engine.config import Settings
from engine.db.models import Analysis, ImportJob, JobStatus, LedgerState
from engine.db.session import session_scope
from engine.deposit.analysis_folder import load_analysis_folder
from engine.deposit.annotation_config import active_annotation_config
from engine.deposit.columns import VariantColumns, to_records
from engine.deposit.converters import build_annotation_builder
from engine.deposit.genepanel import require_genepanel
from engine.deposit.hgnc import HgncTable, load_hgnc_table
from engine.deposit.ped import resolve_samples
from engine.deposit.specs import AnalysisSpec, SampleRecord, VcfSpec
from engine.deposit.writer import Batches, WriteResult, write_analysis_parts
from engine.errors import (
    DestinationExistsError,
    DuplicateAnalysisError,
    EventRejected,
    FailureNotRecorded,
    InputError,
)
from engine.events import (
    AnnotatedEvent,
    ReadyEvent,
    Topics,
    annotated_event,
    decode,
    default_producer,
    encode,
    failed_event,
    imported_event,
    status_event,
    verify_files,
)
from engine.folders import (
    check_analysis_name,
    check_destination_free,
    fail_folder,
    move_to_imported,
    resolve_in_incoming,
    resolve_under,
)
from engine.jobs import find_done_job, get_or_create_job, record_attempt, transition
from engine.ledger import WorkEvent
from engine.limits import configure_limits
from engine.pipeline.annotation import Annotator, EngineAnnotator
from engine.pipeline.guard import Backoff, Outgoing
from engine.pipeline.locks import analysis_lock
from engine.vcf.fastpath import iter_variant_blocks
from engine.vcf.genotypes import AnnotationBuilder
from engine.vcf.header import VcfHeader, read_header
from engine.vcf.reader import iter_variant_batches
from engine.vcf.records import VariantRecord
from engine.vcf.textio import numbered_lines, open_text

log = logging.getLogger("annostream.pipeline")
E = TypeVar("E", ReadyEvent, AnnotatedEvent)

#: Tries of the move to ANALYSES_PATH after the commit, before leaving it to a later delivery.
AFTER_COMMIT_MOVE_TRIES = 3


def locate_in_original(error: InputError, vcfs: list[tuple[VcfSpec, VcfSpec]]) -> InputError:
    """Point an error found in a stage's normalised copy at the user's own VCF and line.

    Line numbers differ between the two files (added header lines, split records), so the
    original is re-read with the same checks; this costs time only on the failure path.
    """
    for original, used in vcfs:
        if original is used or error.file != str(used.path):
            continue
        try:
            samples = resolve_samples(
                original.path, read_header(original.path).samples, original.ped, original.technology
            )
            for _batch in iter_variant_batches(original, samples):
                pass
        except InputError as in_original:
            return in_original
        # Found after parsing (say, a value ELLA's database cannot hold): the record's site.
        line = _same_site_line(used.path, error.line, original.path)
        if line is not None:
            return InputError(error.message, file=str(original.path), line=line, expected=error.expected)
        return InputError(
            f"{error.message} (in the normalised copy of this VCF)",
            file=str(original.path),
            expected=error.expected,
        )
    return error


def _without_cnvs(
    batches: Iterator[list[VariantRecord] | VariantColumns], vcf: Path, *, lines: bool
) -> Iterator[list[VariantRecord] | VariantColumns]:
    """ELLA's ``AlleleImporter.add``: with the ``cnv`` feature flag off (its default), a record
    with INFO/SVTYPE that the proband carries fails the import (``FeatureNotEnabledError``)."""
    for batch in batches:
        if isinstance(batch, VariantColumns):
            cnv = None if batch.caller_type != "cnv" else to_records(batch)[0]
        else:
            cnv = next(
                (
                    r
                    for r in batch
                    if r.allele.caller_type == "cnv"
                    or (r.secondallele is not None and r.secondallele.caller_type == "cnv")
                ),
                None,
            )
        if cnv is not None:
            allele = cnv.allele
            raise InputError(
                f"{allele.chromosome}:{allele.vcf_pos} {allele.vcf_ref}>{allele.vcf_alt} is a CNV "
                "(INFO/SVTYPE) and ELLA's cnv feature flag is off",
                file=str(vcf),
                line=cnv.source_line if lines else None,
                expected="ENABLE_CNV=true (ELLA's app.feature_flags.cnv) to import CNVs, "
                "or no SVTYPE records",
            )
        yield batch


def annotation_builder_for(
    config: dict[str, Any], header: VcfHeader, vcf: VcfSpec, *, hgnc: HgncTable | None = None
) -> AnnotationBuilder:
    """The annotation-document builder for one VCF; a header the config's converters cannot use
    (say a CSQ that is not VEP's) is an error in that VCF, named with its file and header line.
    Documents are checked against ELLA's JSON schemas: a bad one fails the import with the path
    that is wrong instead of reaching the UI."""
    try:
        return build_annotation_builder(config, header.infos, validate=True, hgnc=hgnc)
    except InputError as error:
        if error.file:
            raise
        line = next(
            (
                m.number
                for m in header.meta
                if m.kind == "INFO" and m.id and f"source {m.id})" in error.message
            ),
            None,
        )
        raise InputError(
            f"the VCF header does not fit the annotation config: {error.message}",
            file=str(vcf.path),
            line=line,
            expected=error.expected,
        ) from None


def _same_site_line(copy: Path, line: int | None, original: Path) -> int | None:
    """The line of ``original`` with the CHROM and POS of line ``line`` of ``copy``, if any."""
    if line is None:
        return None
    site = None
    with open_text(copy) as handle:
        for number, text in numbered_lines(copy, handle):
            if number == line:
                site = text.split("\t", 2)[:2]
                break
    if site is None or len(site) < 2:
        return None
    with open_text(original) as handle:
        for number, text in numbered_lines(original, handle):
            if not text.startswith("#") and text.split("\t", 2)[:2] == site:
                return number
    return None


class _Skip(Exception):
    """Internal: the event needs no work (duplicate or replay of finished work)."""

    def __init__(self, messages: list[Outgoing]):
        self.messages = messages


class Pipeline:
    def __init__(self, settings: Settings, *, annotator: Annotator | None = None):
        self.settings = settings
        configure_limits(settings)
        self.topics = Topics.from_settings(settings)
        self.db_url = settings.database_url
        self.incoming = settings.analyses_incoming
        self.annotator = annotator or EngineAnnotator(settings)
        # worker-N@host under `up --workers N`: events say which worker made them.
        self.producer = default_producer(settings.worker_id or "worker")

    # --- annotate stage -----------------------------------------------------------------------

    def annotate(self, raw: bytes) -> list[Outgoing]:
        return self._run_stage("annotate", raw, ReadyEvent, self._annotate)

    def _annotate(self, ready: ReadyEvent) -> list[Outgoing]:
        folder = self._claim(ready, JobStatus.ANNOTATING, stage="annotate")
        verify_files(ready, self.incoming)
        out_dir = self._work_dir(ready)
        outcome = self.annotator.run(ready, folder, out_dir)
        event = annotated_event(
            ready, outcome.artifacts, self.settings.work_dir, producer=self.producer, annotation=outcome.info
        )
        with session_scope(self.db_url) as session:
            transition(
                session,
                self._job(session, ready),
                JobStatus.ANNOTATED,
                stage="annotate",
                message=outcome.message,
            )
            ledger.progress(session, ready.event_id)
        return [Outgoing(self.topics.annotated_for(ready.priority), ready.analysis, encode(event))]

    # --- persist stage ------------------------------------------------------------------------

    def persist(self, raw: bytes) -> list[Outgoing]:
        return self._run_stage("persist", raw, AnnotatedEvent, self._persist)

    def _persist(self, annotated: AnnotatedEvent) -> list[Outgoing]:
        ready = annotated.ready
        folder = self._claim(ready, JobStatus.PERSISTING, stage="persist")
        spec = load_analysis_folder(
            folder,
            max_analysis_bytes=self.settings.max_analysis_file_bytes,
            max_json_depth=self.settings.max_json_depth,
        )
        vcfs = self._annotated_vcfs(annotated, spec)
        bundle_version = (annotated.annotation or {}).get("bundle_version")
        with session_scope(self.db_url) as session:
            try:
                result = self._write(session, spec, vcfs, ready, bundle_version=bundle_version)
            except InputError as error:
                raise locate_in_original(error, vcfs) from None
            job = self._job(session, ready)
            job.analysis_id = result.analysis_id
            transition(
                session,
                job,
                JobStatus.DONE,
                stage="persist",
                message=f"imported {result.n_variants} variants",
            )
            ledger.finish(session, ready.event_id, LedgerState.DONE)
        self._move_after_commit(folder, ready)
        shutil.rmtree(self._work_dir(ready), ignore_errors=True)
        metrics.ANALYSES_IMPORTED.inc()
        metrics.VARIANTS_IMPORTED.inc(result.n_variants)
        counts = {
            "variants": result.n_variants,
            "alleles_new": result.n_alleles_new,
            "genotypes": result.n_genotypes,
        }
        # The writer's wall time per step (bench/import_bench.py reads it: where the time goes).
        log.info(
            "imported %s: %s; writer seconds %s",
            ready.analysis,
            counts,
            {step: round(seconds, 2) for step, seconds in result.seconds.items()},
        )
        return [self._imported(ready, result.analysis_id, counts)]

    def _move_after_commit(self, folder: Path, ready: ReadyEvent) -> None:
        """Move an imported folder to ANALYSES_PATH; retried, and never a failure of the import.

        The analysis is committed: if the move keeps failing, the folder stays in incoming and
        is moved when the event is delivered again or the folder is published again (the
        watcher rescans incoming at start), both of which find the finished job.
        """
        backoff = Backoff(min(self.settings.retry_max_delay_s, 2.0))
        for number in range(1, AFTER_COMMIT_MOVE_TRIES + 1):
            try:
                move_to_imported(folder, self.settings)
                return
            except Exception as error:
                metrics.STAGE_RETRIES.labels(stage="persist/move").inc()
                log.warning(
                    "%s: imported, but moving %s to ANALYSES_PATH failed (try %d of %d): %s",
                    ready.analysis,
                    folder,
                    number,
                    AFTER_COMMIT_MOVE_TRIES,
                    error,
                )
                if number < AFTER_COMMIT_MOVE_TRIES:
                    backoff.sleep()
        log.error(
            "%s: imported; its folder stays in %s until the move succeeds on the next delivery "
            "or publication of the folder",
            ready.analysis,
            folder,
        )

    def _write(
        self,
        session: Session,
        spec: AnalysisSpec,
        vcfs: list[tuple[VcfSpec, VcfSpec]],
        ready: ReadyEvent,
        *,
        bundle_version: str | None,
    ) -> WriteResult:
        require_genepanel(session, spec.genepanel_name, spec.genepanel_version, file=str(spec.folder))
        config_id, config = active_annotation_config(session)
        hgnc = load_hgnc_table(self.settings.hgnc_table)
        # One part per VCF, as ELLA's import_vcf loops over data[]: each VCF's samples are rows
        # of their own (an HTS trio plus a Sanger proband is two rows for the proband).
        parts: list[tuple[list[SampleRecord], Batches, str | None]] = []
        for original, used in vcfs:
            header = read_header(used.path)
            # Messages about samples name the user's VCF, not the stage's normalised copy.
            vcf_samples = resolve_samples(original.path, header.samples, used.ped, used.technology)
            builder = annotation_builder_for(config, header, original, hgnc=hgnc)
            blocks = iter_variant_blocks(used, vcf_samples, annotation_builder=builder)
            if not self.settings.enable_cnv:
                # Lines of a normalised copy are not the user's: the message names the position.
                blocks = _without_cnvs(blocks, original.path, lines=used is original)
            parts.append((vcf_samples, blocks, str(used.path)))
        properties = {**spec.properties, "fingerprint": ready.fingerprint, "event_id": ready.event_id}
        return write_analysis_parts(
            session,
            spec,
            parts,
            properties=properties,
            annotation_config_id=config_id,
            bundle_version=bundle_version,
            empty_documents=True,
        )

    def _annotated_vcfs(self, annotated: AnnotatedEvent, spec: AnalysisSpec) -> list[tuple[VcfSpec, VcfSpec]]:
        """(the folder's VCF, what to read): its annotated artifact when the stage made one."""
        by_path = {entry.path: entry for entry in annotated.artifacts}
        prefix = self._work_dir(annotated.ready).resolve().relative_to(self.settings.work_dir.resolve())
        pairs = []
        for vcf in spec.vcfs:
            relative = (prefix / vcf.path.relative_to(spec.folder)).as_posix()
            if relative not in by_path:
                pairs.append((vcf, vcf))
                continue
            artifact = resolve_under(relative, self.settings.work_dir, what="artifact")
            pairs.append(
                (
                    vcf,
                    VcfSpec(
                        path=artifact, ped=vcf.ped, technology=vcf.technology, caller_name=vcf.caller_name
                    ),
                )
            )
        return pairs

    # --- shared steps -------------------------------------------------------------------------

    def _run_stage(
        self, stage: str, raw: bytes, kind: type[E], body: Callable[[E], list[Outgoing]]
    ) -> list[Outgoing]:
        """Decode and run ``body``; bad input becomes a recorded failure.

        Everything else escapes to :class:`engine.pipeline.guard.StageGuard`, which retries
        infrastructure errors and bounds the attempts on a bug. When recording the failure
        fails, :class:`FailureNotRecorded` tells the guard to retry that, then park the event.
        """
        with metrics.observe_stage(stage):
            try:
                event = self._decode(raw, kind, stage="validate")
                ready = event if isinstance(event, ReadyEvent) else event.ready
            except _Skip as skip:
                return skip.messages
            # Several workers: never two on the same analysis (see engine.pipeline.locks).
            with analysis_lock(self.db_url, self.settings.data_dir / "locks", ready.analysis):
                seen = self._history_length(ready)
                try:
                    messages = body(event)
                except _Skip as skip:
                    messages = skip.messages
                except InputError as error:
                    metrics.STAGE_FAILURES.labels(stage=stage).inc()
                    try:
                        messages = self._fail(ready, stage, error)
                    except Exception as recording:
                        raise FailureNotRecorded(error) from recording
                return messages + self._status_messages(ready, seen)

    def fail_annotate(self, raw: bytes, error: InputError) -> list[Outgoing]:
        """Record that an ``analysis.ready`` event cannot be processed (the guard gave up on it)."""
        return self._fail_raw("annotate", raw, ReadyEvent, error)

    def fail_persist(self, raw: bytes, error: InputError) -> list[Outgoing]:
        """Record that an ``analysis.annotated`` event cannot be processed."""
        return self._fail_raw("persist", raw, AnnotatedEvent, error)

    def _fail_raw(self, stage: str, raw: bytes, kind: type[E], error: InputError) -> list[Outgoing]:
        try:
            event = self._decode(raw, kind, stage="validate")
        except _Skip as skip:
            return skip.messages
        ready = event if isinstance(event, ReadyEvent) else event.ready
        seen = self._history_length(ready)
        metrics.STAGE_FAILURES.labels(stage=stage).inc()
        return self._fail(ready, stage, error) + self._status_messages(ready, seen)

    # --- job status on the analysis.status topic -----------------------------------------------

    def _history_length(self, ready: ReadyEvent) -> int:
        with session_scope(self.db_url) as session:
            history = session.scalar(sa.select(ImportJob.history).where(ImportJob.event_id == ready.event_id))
        return len(history or [])

    def _status_messages(self, ready: ReadyEvent, seen: int) -> list[Outgoing]:
        """The job's transitions committed during this stage, read back after the commit.

        When there are none (a replay of finished work, or a retry after the first try committed
        but could not publish), the current status is announced again: the topic is compacted,
        so repeating the latest status is harmless and repairs a status that was never published.
        """
        with session_scope(self.db_url) as session:
            job = session.scalar(sa.select(ImportJob).where(ImportJob.event_id == ready.event_id))
            if job is None or not job.history:
                return []
            entries = job.history[seen:] or job.history[-1:]
            events = [
                status_event(
                    entry,
                    analysis=ready.analysis,
                    ready_event_id=ready.event_id,
                    job_id=job.id,
                    attempts=job.attempts or 0,
                    producer=self.producer,
                )
                for entry in entries
            ]
        return [Outgoing(self.topics.status, ready.analysis, encode(event)) for event in events]

    def _decode(self, raw: bytes, kind: type[E], *, stage: str) -> E:
        try:
            return decode(raw, kind, incoming=self.incoming)
        except EventRejected as rejected:
            metrics.STAGE_FAILURES.labels(stage=stage).inc()
            log.warning("rejected event: %s", rejected.reason)
            raise _Skip([self._dead_letter(raw, stage, InputError(rejected.reason))]) from None

    def _claim(self, ready: ReadyEvent, status: JobStatus, *, stage: str) -> Path:
        """Find or create the job; skip finished work; move the job to ``status``.

        The work ledger records the event (if its publisher did not) and its progress in the
        same transaction.
        """
        folder = resolve_in_incoming(ready.folder, self.incoming)
        with session_scope(self.db_url) as session:
            ledger.record(
                session,
                WorkEvent(
                    event_id=ready.event_id,
                    schema=ready.SCHEMA,
                    topic=self.topics.ready_for(ready.priority),
                    key=ready.key,
                    value=encode(ready),
                    analysis=ready.analysis,
                ),
            )
            job = self._job(session, ready)
            self._skip_if_finished(session, job, ready, folder)
            if not folder.is_dir():
                raise InputError(
                    "the analysis folder is no longer in ANALYSES_INCOMING",
                    file=str(folder),
                    expected="the folder the event names",
                )
            check_destination_free(folder, self.settings)
            self._reject_duplicate_name(session, ready)
            record_attempt(session, job)
            transition(session, job, status, stage=stage)
            ledger.progress(session, ready.event_id)
        return folder

    def _skip_if_finished(self, session: Session, job: ImportJob, ready: ReadyEvent, folder: Path) -> None:
        """Raise _Skip for work already done; commits what it records before raising."""
        if job.status == JobStatus.DONE.value:
            # A replayed or duplicated event: re-announce the result, change nothing.
            self._repair_folder(session, ready, folder)
            ledger.finish(session, ready.event_id, LedgerState.DONE)
            session.commit()
            raise _Skip(self._imported_again(job, ready))
        if job.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value) and not folder.is_dir():
            log.info(
                "%s: event %s already ended %s; nothing to redo", ready.analysis, ready.event_id, job.status
            )
            ledger.finish(session, ready.event_id, LedgerState.FAILED)
            session.commit()
            raise _Skip([])
        earlier = find_done_job(session, analysis_name=ready.analysis, fingerprint=ready.fingerprint)
        if earlier is not None and earlier.id != job.id:
            job.analysis_id = earlier.analysis_id
            transition(
                session,
                job,
                JobStatus.DONE,
                stage="dedupe",
                message=f"same folder content as import job {earlier.id}: nothing to do",
            )
            self._repair_folder(session, ready, folder)
            ledger.finish(session, ready.event_id, LedgerState.DONE)
            session.commit()
            raise _Skip(self._imported_again(job, ready))
        if not folder.is_dir():
            ended = self._ended_job(session, ready, job)
            if ended is not None:
                # A second event for a folder whose first event already failed it (e.g. the
                # watcher's rescan and the reconciler both published it): nothing to redo.
                transition(
                    session,
                    job,
                    JobStatus.FAILED,
                    stage="dedupe",
                    message=f"same folder as import job {ended.id}, which failed: {ended.message}",
                )
                ledger.finish(session, ready.event_id, LedgerState.FAILED)
                session.commit()
                raise _Skip([])

    def _ended_job(self, session: Session, ready: ReadyEvent, job: ImportJob) -> ImportJob | None:
        query = (
            sa.select(ImportJob)
            .where(
                ImportJob.analysis_name == ready.analysis,
                ImportJob.fingerprint == ready.fingerprint,
                ImportJob.status == JobStatus.FAILED.value,
                ImportJob.id != job.id,
            )
            .order_by(ImportJob.id.desc())
            .limit(1)
        )
        return session.scalars(query).first()

    def _repair_folder(self, session: Session, ready: ReadyEvent, folder: Path) -> None:
        """A crash between commit and move leaves an imported folder in incoming: move it now."""
        if folder.is_dir() and self._imported_fingerprint(session, ready.analysis) == ready.fingerprint:
            log.info("%s: already imported; moving its folder to ANALYSES_PATH", ready.analysis)
            move_to_imported(folder, self.settings)

    def _reject_duplicate_name(self, session: Session, ready: ReadyEvent) -> None:
        stored = self._imported_fingerprint(session, ready.analysis)
        if stored is None:
            return
        if stored == ready.fingerprint:
            # Imported by a job that has not recorded DONE yet cannot happen (one transaction);
            # this is a fingerprint match with a different event: treat as finished work.
            raise _Skip([])
        raise DuplicateAnalysisError(
            f"an analysis named {ready.analysis!r} was already imported with different content",
            file=ready.folder,
            expected="a new analysis name (use reanalysis to re-import)",
        )

    def _imported_fingerprint(self, session: Session, name: str) -> str | None:
        properties = session.scalar(sa.select(Analysis.properties).where(Analysis.name == name))
        if properties is None:
            exists = session.scalar(sa.select(Analysis.id).where(Analysis.name == name))
            return "" if exists is not None else None
        return str(properties.get("fingerprint", ""))

    def _job(self, session: Session, ready: ReadyEvent) -> ImportJob:
        return get_or_create_job(
            session, event_id=ready.event_id, analysis_name=ready.analysis, fingerprint=ready.fingerprint
        )

    def _work_dir(self, ready: ReadyEvent) -> Path:
        """DATA_DIR/work/<analysis>/<event id>, built only from checked values (never escapes)."""
        name = check_analysis_name(ready.analysis, file=ready.folder)
        event_id = str(uuid.UUID(ready.event_id))  # the schema demands a uuid; this proves it
        return resolve_under(f"{name}/{event_id}", self.settings.work_dir, what="work directory")

    def _imported(self, ready: ReadyEvent, analysis_id: int, counts: dict[str, int]) -> Outgoing:
        event = imported_event(ready, analysis_id=analysis_id, counts=counts, producer=self.producer)
        return Outgoing(self.topics.imported, ready.analysis, encode(event))

    def _imported_again(self, job: ImportJob, ready: ReadyEvent) -> list[Outgoing]:
        if job.analysis_id is None:
            return []
        return [self._imported(ready, job.analysis_id, {})]

    def _fail(self, ready: ReadyEvent, stage: str, error: InputError) -> list[Outgoing]:
        log.warning("%s: %s stage failed: %s", ready.analysis, stage, error)
        attempt = 1
        with session_scope(self.db_url) as session:
            job = self._job(session, ready)
            attempt = max(job.attempts, 1)
            if job.status == JobStatus.DONE.value:
                # Committed already (a crash after the commit): the import stands.
                return self._imported_again(job, ready)
            transition(session, job, JobStatus.FAILED, stage=stage, message=str(error))
            ledger.finish(session, ready.event_id, LedgerState.FAILED)
        folder = resolve_in_incoming(ready.folder, self.incoming)
        if folder.is_dir() and not isinstance(error, DestinationExistsError):  # ELLA leaves it in incoming
            fail_folder(folder, self.settings, stage=stage, error=error, event_id=ready.event_id)
        shutil.rmtree(self._work_dir(ready), ignore_errors=True)
        dead = failed_event(
            ready.to_dict(),
            stage=stage,
            error=error,
            producer=self.producer,
            attempt=attempt,
            analysis=ready.analysis,
        )
        return [Outgoing(self.topics.failed, ready.analysis, encode(dead))]

    def _dead_letter(self, raw: bytes, stage: str, error: InputError) -> Outgoing:
        dead = failed_event(raw, stage=stage, error=error, producer=self.producer)
        return Outgoing(self.topics.failed, dead.analysis or "", encode(dead))
