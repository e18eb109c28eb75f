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

from engine.db.models import Analysis, ReannotationBatch, ReannotationRun
from engine.errors import InputError
from engine.events import ReannotationBatchEvent
from engine.reannotate.core import id_ranges, resolve_bundle

DEFAULT_BATCH_SIZE = 50_000
PENDING, DONE, FAILED = "PENDING", "DONE", "FAILED"


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

    @property
    def finished(self) -> bool:
        return self.done_batches + self.failed_batches >= self.total_batches

    @property
    def status(self) -> str:
        if not self.finished:
            return "RUNNING"
        return "FAILED" if self.failed_batches else "DONE"


def plan_run(session: Session, *, bundle: str | None, analyses: Sequence[str] | None,
             batch_size: int = DEFAULT_BATCH_SIZE,
             producer: str = "annostream") -> tuple[ReannotationRun, list[ReannotationBatchEvent]]:
    """Record a run and its batches (the caller commits, then publishes the returned events)."""
    if batch_size < 1:
        raise InputError(f"batch size {batch_size}", expected="a positive number of alleles per batch")
    version = resolve_bundle(session, bundle).version
    names = sorted(set(analyses)) if analyses else None
    if names:
        _require_analyses(session, names)
    ranges = id_ranges(session, names, batch_size)
    run = ReannotationRun(run_id=str(uuid.uuid4()), bundle_version=version, analyses=names,
                          total_batches=len(ranges), total_alleles=sum(count for *_, count in ranges))
    session.add(run)
    session.flush()
    session.add_all(ReannotationBatch(run_id=run.id, batch_index=index, id_from=low, id_to=high,
                                      status=PENDING, attempts=0)
                    for index, (low, high, _count) in enumerate(ranges))
    session.flush()
    events = [ReannotationBatchEvent(producer=producer, run_id=run.run_id, batch_index=index, bundle=version,
                                     id_from=low, id_to=high, analyses=names)
              for index, (low, high, _count) in enumerate(ranges)]
    return run, events


def _require_analyses(session: Session, names: list[str]) -> None:
    found = set(session.scalars(sa.select(Analysis.name).where(Analysis.name.in_(names))))
    missing = [name for name in names if name not in found]
    if missing:
        raise InputError(f"no stored analysis named {', '.join(map(repr, missing))}",
                         expected="names of imported analyses (GET /api/v1/analyses)")


def run_progress(session: Session, run: ReannotationRun) -> RunProgress:
    counts = session.execute(
        sa.select(
            sa.func.count().filter(ReannotationBatch.status == DONE),
            sa.func.count().filter(ReannotationBatch.status == FAILED),
            sa.func.coalesce(
                sa.func.sum(ReannotationBatch.n_alleles).filter(ReannotationBatch.status == DONE), 0),
            sa.func.coalesce(sa.func.sum(ReannotationBatch.n_created), 0),
            sa.func.coalesce(sa.func.sum(ReannotationBatch.n_superseded), 0),
            sa.func.coalesce(sa.func.sum(ReannotationBatch.n_unchanged), 0),
        ).where(ReannotationBatch.run_id == run.id)
    ).one()
    failures = [f"batch {index}: {message}" for index, message in session.execute(
        sa.select(ReannotationBatch.batch_index, ReannotationBatch.message)
        .where(ReannotationBatch.run_id == run.id, ReannotationBatch.status == FAILED)
        .order_by(ReannotationBatch.batch_index).limit(20))]
    done, failed, alleles, created, superseded, unchanged = (int(value) for value in counts)
    return RunProgress(id=run.id, run_id=run.run_id, bundle_version=run.bundle_version, analyses=run.analyses,
                       total_batches=run.total_batches, done_batches=done, failed_batches=failed,
                       total_alleles=run.total_alleles, alleles_done=alleles, created=created,
                       superseded=superseded, unchanged=unchanged, date_created=run.date_created,
                       failures=failures)


def find_run(session: Session, identifier: int | str) -> ReannotationRun | None:
    """A run by its numeric id or its run id (uuid)."""
    if isinstance(identifier, int) or str(identifier).isdigit():
        return session.get(ReannotationRun, int(identifier))
    return session.scalar(sa.select(ReannotationRun).where(ReannotationRun.run_id == str(identifier)))


def list_runs(session: Session, *, limit: int = 100, offset: int = 0) -> tuple[int, list[RunProgress]]:
    total = session.scalar(sa.select(sa.func.count()).select_from(ReannotationRun)) or 0
    rows = session.scalars(sa.select(ReannotationRun).order_by(ReannotationRun.id.desc())
                           .limit(limit).offset(offset)).all()
    return int(total), [run_progress(session, row) for row in rows]
