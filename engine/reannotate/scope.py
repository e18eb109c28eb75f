"""Which stored alleles a reannotation covers, and how a run cuts them into batches.

Kept apart from ``core`` (the worker's side: export, annotate, convert, write), so that planning
a release (``annostream reannotate``, ``select``, ``runs``) does not load the annotator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class AlleleSelection:
    """Which stored alleles: an inclusive id range, optionally only those of named analyses, and
    for an incremental run (``run_pk``) only the alleles it listed in ``reannotation_target``."""

    id_from: int | None = None
    id_to: int | None = None
    analyses: tuple[str, ...] | None = None
    run_pk: int | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """SQL condition on ``allele`` (aliased ``a``) and its parameters."""
        clauses: list[str] = ["TRUE"]
        params: dict[str, Any] = {}
        if self.id_from is not None:
            clauses.append("a.id >= :id_from")
            params["id_from"] = self.id_from
        if self.id_to is not None:
            clauses.append("a.id <= :id_to")
            params["id_to"] = self.id_to
        if self.analyses is not None:
            names = {f"analysis_{i}": name for i, name in enumerate(self.analyses)}
            in_list = ", ".join(f":{key}" for key in names) or "NULL"
            clauses.append(
                "a.id IN (SELECT g.allele_id FROM genotype g JOIN sample s ON s.id = g.sample_id "
                f"JOIN analysis n ON n.id = s.analysis_id WHERE n.name IN ({in_list}) "
                "UNION SELECT g.secondallele_id FROM genotype g JOIN sample s ON s.id = g.sample_id "
                f"JOIN analysis n ON n.id = s.analysis_id WHERE n.name IN ({in_list}) "
                "AND g.secondallele_id IS NOT NULL)"
            )
            params.update(names)
        if self.run_pk is not None:
            bounds = "".join(
                f" AND t.allele_id {op} :{name}"
                for op, name in ((">=", "id_from"), ("<=", "id_to"))
                if name in params
            )
            clauses.append(
                f"a.id IN (SELECT t.allele_id FROM reannotation_target t WHERE t.run_id = :run_pk{bounds})"
            )
            params["run_pk"] = self.run_pk
        return " AND ".join(clauses), params


def id_ranges(
    session: Session, analyses: Sequence[str] | None, batch_size: int, run_pk: int | None = None
) -> list[tuple[int, int, int]]:
    """Cut the selected alleles into (id_from, id_to, count) ranges of at most ``batch_size``."""
    condition, params = AlleleSelection(
        analyses=tuple(analyses) if analyses is not None else None, run_pk=run_pk
    ).where()
    rows = session.execute(
        sa.text(
            f"SELECT MIN(id), MAX(id), COUNT(*) FROM (SELECT a.id, (ROW_NUMBER() OVER (ORDER BY a.id) - 1) "
            f"/ :size AS bucket FROM allele a WHERE {condition}) numbered GROUP BY bucket ORDER BY bucket"
        ),
        {**params, "size": batch_size},
    ).all()
    return [(int(low), int(high), int(count)) for low, high, count in rows]
