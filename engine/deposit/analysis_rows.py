"""The analysis and its samples: the few ORM rows an import writes before its variants."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db.models import Analysis, Genepanel, Sample
from engine.deposit.specs import AnalysisSpec, SampleRecord
from engine.deposit.targets import DepositTarget
from engine.errors import DuplicateAnalysisError, InputError, MissingGenepanelError


def insert_analysis(
    session: Session, target: DepositTarget, spec: AnalysisSpec, properties: dict[str, Any] | None
) -> int:
    """The analysis row (and, in ELLA's database, its workflow rows); returns its id."""
    existing = session.scalar(sa.select(Analysis.id).where(Analysis.name == spec.name))
    if existing is not None:
        raise DuplicateAnalysisError(
            f"analysis {spec.name} is already stored (id {existing})",
            file=str(spec.folder),
            expected="a new analysis name",
        )
    if session.get(Genepanel, (spec.genepanel_name, spec.genepanel_version)) is None:
        raise MissingGenepanelError(
            f"gene panel {spec.genepanel_name}_{spec.genepanel_version} is not in the database",
            file=str(spec.folder),
            expected="a gene panel deposited with 'annostream deposit genepanel'",
        )
    return target.insert_analysis_row(session, spec, {**spec.properties, **(properties or {})} or None)


def insert_samples(
    session: Session, spec: AnalysisSpec, analysis_id: int, samples: list[SampleRecord]
) -> dict[str, int]:
    """The analysis's sample rows with their family links; {identifier: sample id}."""
    rows = {
        s.identifier: Sample(
            identifier=s.identifier,
            analysis_id=analysis_id,
            sample_type=s.sample_type,
            affected=s.affected,
            proband=s.proband,
            family_id=s.family_id,
            sex=s.sex,
        )
        for s in samples
    }
    if len(rows) != len(samples):
        raise InputError(
            f"analysis {spec.name} lists a sample twice",
            file=str(spec.folder),
            expected="unique sample identifiers",
        )
    # One INSERT per sample (an analysis has a few): a batched insert would send its values as
    # VARCHAR casts, which ELLA's enum columns (sample_type, sample_sex) refuse.
    for row in rows.values():
        session.add(row)
        session.flush()
    for record in samples:
        row = rows[record.identifier]
        row.father_id = _relative(spec, rows, record, "father", record.father_identifier)
        row.mother_id = _relative(spec, rows, record, "mother", record.mother_identifier)
        row.sibling_id = _relative(spec, rows, record, "sibling", record.sibling_identifier)
    session.flush()
    return {identifier: row.id for identifier, row in rows.items()}


def _relative(
    spec: AnalysisSpec, rows: dict[str, Sample], record: SampleRecord, role: str, identifier: str | None
) -> int | None:
    if identifier is None:
        return None
    if identifier not in rows:
        raise InputError(
            f"sample {record.identifier}: {role} {identifier} is not a sample of analysis {spec.name}",
            file=str(spec.folder),
            expected=f"one of {', '.join(sorted(rows))}",
        )
    return rows[identifier].id


def delete_analysis(session: Session, analysis_id: int) -> None:
    """Remove an analysis with its samples, genotypes and sample data (alleles and their
    annotation are shared with other analyses and stay). Needed because genotype tables carry
    no foreign keys to cascade from (see engine.db.models)."""
    params = {"analysis_id": analysis_id}
    samples = "SELECT id FROM sample WHERE analysis_id = :analysis_id"
    session.flush()
    session.execute(
        sa.text(
            f"DELETE FROM genotypesampledata WHERE genotype_id IN "
            f"(SELECT id FROM genotype WHERE sample_id IN ({samples}))"
        ),
        params,
    )
    session.execute(sa.text(f"DELETE FROM genotype WHERE sample_id IN ({samples})"), params)
    session.execute(sa.text("DELETE FROM sample WHERE analysis_id = :analysis_id"), params)
    session.execute(sa.text("DELETE FROM analysis WHERE id = :analysis_id"), params)
    session.expire_all()
