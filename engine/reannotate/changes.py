"""The change report of a reannotation run: which owned targets of which alleles changed, and in
which analyses those alleles are.

A batch records one ``reannotation_change`` row per (allele, target) whose value changed, in the
transaction that writes the annotations, so the report never disagrees with what was written.
Analyses are joined in when the report is read (genotype -> sample -> analysis), so an allele
is reported for every analysis that has it. Each changed allele is also published as one
``annotation.changed`` event, built from these rows: a replayed batch republishes the same
events (same deterministic event ids) rather than losing them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db.bulk import bulk_loader
from engine.db.models import Allele, Analysis, ReannotationChange, ReannotationRun
from engine.errors import InputError
from engine.events import AnnotationChanged, encode
from engine.pipeline.guard import Outgoing


def record_changes(
    session: Session, run_pk: int, batch_index: int, changes: Iterable[tuple[int, str, Any, Any]]
) -> int:
    """Store a batch's changes (the caller's transaction); a retried batch replaces its rows."""
    session.execute(
        sa.delete(ReannotationChange).where(
            ReannotationChange.run_id == run_pk, ReannotationChange.batch_index == batch_index
        )
    )
    loader = bulk_loader(session)

    def as_json(value: Any) -> Any:
        return loader.null if value is None else orjson.dumps(value).decode()

    return loader.load(
        "reannotation_change",
        ("run_id", "batch_index", "allele_id", "target", "old_value", "new_value"),
        (
            (run_pk, batch_index, allele_id, target, as_json(old), as_json(new))
            for allele_id, target, old, new in changes
        ),
    )


def analyses_of(session: Session, allele_ids: Sequence[int]) -> dict[int, list[str]]:
    """{allele id: sorted names of the analyses that have it} (first or second allele of a genotype)."""
    if not allele_ids:
        return {}
    found: dict[int, set[str]] = defaultdict(set)
    ids = sorted(set(allele_ids))
    for column in ("allele_id", "secondallele_id"):
        for first in range(0, len(ids), 10_000):
            rows = session.execute(
                sa.text(
                    f"SELECT g.{column}, n.name FROM genotype g JOIN sample s ON s.id = g.sample_id "
                    f"JOIN analysis n ON n.id = s.analysis_id WHERE g.{column} IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": ids[first : first + 10_000]},
            )
            for allele_id, name in rows:
                found[allele_id].add(name)
    return {allele_id: sorted(names) for allele_id, names in found.items()}


def changed_events(
    session: Session, run: ReannotationRun, batch_index: int, topic: str, producer: str
) -> list[Outgoing]:
    """One ``annotation.changed`` event per changed allele of the batch, from its stored rows."""
    rows = session.execute(
        sa.select(
            ReannotationChange.allele_id,
            ReannotationChange.target,
            ReannotationChange.old_value,
            ReannotationChange.new_value,
            Allele.chromosome,
            Allele.vcf_pos,
            Allele.vcf_ref,
            Allele.vcf_alt,
        )
        .join(Allele, Allele.id == ReannotationChange.allele_id)
        .where(ReannotationChange.run_id == run.id, ReannotationChange.batch_index == batch_index)
        .order_by(ReannotationChange.allele_id, ReannotationChange.target)
    ).all()
    by_allele: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_allele[row.allele_id].append(row)
    analyses = analyses_of(session, list(by_allele))
    outgoing = []
    for allele_id, items in by_allele.items():
        first = items[0]
        event = AnnotationChanged(
            event_id=AnnotationChanged.event_id_for(run.run_id, allele_id),
            producer=producer,
            run_id=run.run_id,
            bundle=run.bundle_version,
            allele_id=allele_id,
            allele={
                "chromosome": first.chromosome,
                "vcf_pos": first.vcf_pos,
                "vcf_ref": first.vcf_ref,
                "vcf_alt": first.vcf_alt,
            },
            analyses=analyses.get(allele_id, []),
            changes=[{"target": item.target, "old": item.old_value, "new": item.new_value} for item in items],
        )
        outgoing.append(Outgoing(topic, event.key, encode(event)))
    return outgoing


@dataclass(frozen=True)
class ChangeRow:
    allele_id: int
    chromosome: str
    vcf_pos: int
    vcf_ref: str
    vcf_alt: str
    target: str
    old: Any
    new: Any
    analyses: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "allele_id": self.allele_id,
            "chromosome": self.chromosome,
            "vcf_pos": self.vcf_pos,
            "vcf_ref": self.vcf_ref,
            "vcf_alt": self.vcf_alt,
            "target": self.target,
            "old": self.old,
            "new": self.new,
            "analyses": self.analyses,
        }


def list_changes(
    session: Session,
    run: ReannotationRun,
    *,
    analysis: str | None = None,
    target: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[int, list[ChangeRow]]:
    """The run's change rows (ordered by allele and target), optionally only alleles of one
    analysis and targets starting with ``target``; returns (total, one page)."""
    query = sa.select(ReannotationChange.id).where(ReannotationChange.run_id == run.id)
    if analysis is not None:
        analysis_id = session.scalar(sa.select(Analysis.id).where(Analysis.name == analysis))
        if analysis_id is None:
            raise InputError(
                f"no stored analysis named {analysis!r}", expected="the name of an imported analysis"
            )
        alleles_of = sa.text(
            "SELECT g.allele_id FROM genotype g JOIN sample s ON s.id = g.sample_id "
            "WHERE s.analysis_id = :aid "
            "UNION SELECT g.secondallele_id FROM genotype g JOIN sample s ON s.id = g.sample_id "
            "WHERE s.analysis_id = :aid AND g.secondallele_id IS NOT NULL"
        ).bindparams(aid=analysis_id)
        query = query.where(ReannotationChange.allele_id.in_(alleles_of))
    if target:
        # A prefix of the dotted path: "external.CLINVAR" matches "external.CLINVAR.clnsig".
        escaped = target.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(ReannotationChange.target.like(escaped + "%", escape="\\"))
    total = int(session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0)
    ids = query.order_by(ReannotationChange.allele_id, ReannotationChange.target).offset(offset)
    if limit is not None:
        ids = ids.limit(limit)
    rows = session.execute(
        sa.select(ReannotationChange, Allele.chromosome, Allele.vcf_pos, Allele.vcf_ref, Allele.vcf_alt)
        .join(Allele, Allele.id == ReannotationChange.allele_id)
        .where(ReannotationChange.id.in_(ids.scalar_subquery()))
        .order_by(ReannotationChange.allele_id, ReannotationChange.target)
    ).all()
    analyses = analyses_of(session, [row[0].allele_id for row in rows])
    return total, [
        ChangeRow(
            change.allele_id,
            chromosome,
            vcf_pos,
            vcf_ref,
            vcf_alt,
            change.target,
            change.old_value,
            change.new_value,
            analyses.get(change.allele_id, []),
        )
        for change, chromosome, vcf_pos, vcf_ref, vcf_alt in rows
    ]
