"""Reannotation runs (data releases): planning batches, publishing them, reading progress.

A run is planned in the database first (one ``reannotation_batch`` row per id range, PENDING)
and only then published, so the progress total is known before any worker starts, and a batch
event always finds its row. A batch is DONE exactly when its annotations were committed (same
transaction), which is what makes progress exact and replays harmless.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.bundles import resolve_bundle
from engine.db.models import Analysis, ReannotationBatch, ReannotationRun
from engine.errors import InputError
from engine.events import ReannotationBatchEvent
from engine.reannotate.scope import AlleleSelection, id_ranges
from engine.reannotate.select import ReleasePlan, plan_release, write_targets

DEFAULT_BATCH_SIZE = 50_000
PENDING, DONE, FAILED = "PENDING", "DONE", "FAILED"
# reannotation_run.mode; REANALYSIS: one analysis re-annotated on request, recorded as a run
# of one batch so that its change report is read like a release's.
FULL, INCREMENTAL, REANALYSIS = "all", "incremental", "reanalysis"


@dataclass(frozen=True)
class RunProgress:
    id: int
    run_id: str
    bundle_version: str
    analyses: list[str] | None
    total_batches: int
    done_batches: int
    failed_batches: int
    total_alleles: int
    alleles_done: int
    created: int
    superseded: int
    unchanged: int
    date_created: dt.datetime
    failures: list[str]  # "batch N: message" of failed batches
    mode: str = FULL

    @property
    def finished(self) -> bool:
        return self.done_batches + self.failed_batches >= self.total_batches

    @property
    def status(self) -> str:
        if not self.finished:
            return "RUNNING"
        return "FAILED" if self.failed_batches else "DONE"


def preview_run(session: Session, *, bundle: str | None, analyses: Sequence[str] | None) -> ReleasePlan:
    """What an incremental run would re-annotate, per source bundle and dataset (writes nothing)."""
    info = resolve_bundle(session, bundle)
    names = sorted(set(analyses)) if analyses else None
    if names:
        _require_analyses(session, names)
    return plan_release(session, info, AlleleSelection(analyses=tuple(names) if names else None))


def plan_run(
    session: Session,
    *,
    bundle: str | None,
    analyses: Sequence[str] | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    producer: str = "annostream",
    full: bool = False,
) -> tuple[ReannotationRun | None, list[ReannotationBatchEvent]]:
    """Record a run and its batches (the caller commits, then publishes the returned events).

    Incremental (the default): only the alleles the difference to their current bundle touches
    (:mod:`engine.reannotate.select`); with nothing to do no run is recorded (``None``).
    ``full``: every selected allele."""
    if batch_size < 1:
        raise InputError(f"batch size {batch_size}", expected="a positive number of alleles per batch")
    info = resolve_bundle(session, bundle)
    version = info.version
    names = sorted(set(analyses)) if analyses else None
    if names:
        _require_analyses(session, names)
    selection = AlleleSelection(analyses=tuple(names) if names else None)
    plan = None if full else plan_release(session, info, selection)
    if plan is not None and plan.selected == 0:
        return None, []
    run = ReannotationRun(
        run_id=str(uuid.uuid4()),
        bundle_version=version,
        analyses=names,
        mode=FULL if full else INCREMENTAL,
        plan=plan.as_dict() if plan is not None else None,
    )
    session.add(run)
    session.flush()
    if plan is not None:
        write_targets(session, plan, selection, run.id)
    ranges = id_ranges(session, names, batch_size, run_pk=None if full else run.id)
    run.total_batches, run.total_alleles = len(ranges), sum(count for *_, count in ranges)
    session.add_all(
        ReannotationBatch(
            run_id=run.id, batch_index=index, id_from=low, id_to=high, status=PENDING, attempts=0
        )
        for index, (low, high, _count) in enumerate(ranges)
    )
    session.flush()
    events = [
        ReannotationBatchEvent(
            producer=producer,
            run_id=run.run_id,
            batch_index=index,
            bundle=version,
            id_from=low,
            id_to=high,
            analyses=names,
        )
        for index, (low, high, _count) in enumerate(ranges)
    ]
    return run, events


def record_reanalysis_run(
    session: Session,
    *,
    event_id: str,
    analysis: str,
    bundle_version: str,
    n_alleles: int,
    created: int,
    superseded: int,
    unchanged: int,
) -> ReannotationRun:
    """Record a finished reanalysis as a run of one DONE batch (the caller's transaction), so its
    change report is stored, listed and read like a data release's. Its run id is the event id."""
    run = ReannotationRun(
        run_id=event_id,
        bundle_version=bundle_version,
        analyses=[analysis],
        mode=REANALYSIS,
        total_batches=1,
        total_alleles=n_alleles,
    )
    session.add(run)
    session.flush()
    session.add(
        ReannotationBatch(
            run_id=run.id,
            batch_index=0,
            id_from=0,
            id_to=0,
            status=DONE,
            attempts=1,
            n_alleles=n_alleles,
            n_created=created,
            n_superseded=superseded,
            n_unchanged=unchanged,
            message=f"reanalysis of {analysis}",
        )
    )
    session.flush()
    return run


def _require_analyses(session: Session, names: list[str]) -> None:
    found = set(session.scalars(sa.select(Analysis.name).where(Analysis.name.in_(names))))
    missing = [name for name in names if name not in found]
    if missing:
        raise InputError(
            f"no stored analysis named {', '.join(map(repr, missing))}",
            expected="names of imported analyses (GET /api/v1/analyses)",
        )


def run_progress(session: Session, run: ReannotationRun) -> RunProgress:
    counts = session.execute(
        sa.select(
            sa.func.count().filter(ReannotationBatch.status == DONE),
            sa.func.count().filter(ReannotationBatch.status == FAILED),
            sa.func.coalesce(
                sa.func.sum(ReannotationBatch.n_alleles).filter(ReannotationBatch.status == DONE), 0
            ),
            sa.func.coalesce(sa.func.sum(ReannotationBatch.n_created), 0),
            sa.func.coalesce(sa.func.sum(ReannotationBatch.n_superseded), 0),
            sa.func.coalesce(sa.func.sum(ReannotationBatch.n_unchanged), 0),
        ).where(ReannotationBatch.run_id == run.id)
    ).one()
    failures = [
        f"batch {index}: {message}"
        for index, message in session.execute(
            sa.select(ReannotationBatch.batch_index, ReannotationBatch.message)
            .where(ReannotationBatch.run_id == run.id, ReannotationBatch.status == FAILED)
            .order_by(ReannotationBatch.batch_index)
            .limit(20)
        )
    ]
    done, failed, alleles, created, superseded, unchanged = (int(value) for value in counts)
    return RunProgress(
        id=run.id,
        run_id=run.run_id,
        bundle_version=run.bundle_version,
        analyses=run.analyses,
        total_batches=run.total_batches,
        done_batches=done,
        failed_batches=failed,
        total_alleles=run.total_alleles,
        alleles_done=alleles,
        created=created,
        superseded=superseded,
        unchanged=unchanged,
        date_created=run.date_created,
        failures=failures,
        mode=run.mode,
    )


def find_run(session: Session, identifier: int | str) -> ReannotationRun | None:
    """A run by its numeric id or its run id (uuid)."""
    if isinstance(identifier, int) or str(identifier).isdigit():
        return session.get(ReannotationRun, int(identifier))
    return session.scalar(sa.select(ReannotationRun).where(ReannotationRun.run_id == str(identifier)))


def list_runs(session: Session, *, limit: int = 100, offset: int = 0) -> tuple[int, list[RunProgress]]:
    total = session.scalar(sa.select(sa.func.count()).select_from(ReannotationRun)) or 0
    rows = session.scalars(
        sa.select(ReannotationRun).order_by(ReannotationRun.id.desc()).limit(limit).offset(offset)
    ).all()
    return int(total), [run_progress(session, row) for row in rows]


def missing_batches(
    session: Session, run: ReannotationRun, *, producer: str = "annostream"
) -> list[ReannotationBatchEvent]:
    """The events of the run's batches that are not DONE; FAILED ones are set back to PENDING
    (the caller commits, then publishes). A DONE batch is never redone: the worker skips it."""
    batches = session.scalars(
        sa.select(ReannotationBatch)
        .where(ReannotationBatch.run_id == run.id, ReannotationBatch.status != DONE)
        .order_by(ReannotationBatch.batch_index)
        .with_for_update()
    ).all()
    for batch in batches:
        if batch.status == FAILED:
            batch.status, batch.message = PENDING, f"resumed after: {batch.message}"
    session.flush()
    return [
        ReannotationBatchEvent(
            producer=producer,
            run_id=run.run_id,
            batch_index=batch.batch_index,
            bundle=run.bundle_version,
            id_from=batch.id_from,
            id_to=batch.id_to,
            analyses=run.analyses,
        )
        for batch in batches
    ]
