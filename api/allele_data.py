"""Loading alleles with their genotypes and current annotation, a page at a time.

Every function issues a fixed number of queries for a whole list of alleles, never one per
allele: a page of 1000 alleles costs the same handful of round trips as a page of 10.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from api.deps import Pagination
from engine.db.models import (
    ALLELE_COLUMNS,
    SAMPLE_DATA_FIELDS,
    Allele,
    Analysis,
    AnalysisAllele,
    AnalysisAlleleTotal,
    Annotation,
    Genotype,
    GenotypeSampleData,
    Sample,
)
from engine.db.session import transaction_for
from engine.deposit.targets import deposit_target

ALLELE_FIELDS = ("id", *ALLELE_COLUMNS)


# Pages select plain columns, not ORM entities: building thousands of tracked objects costs
# more than the queries themselves.
ALLELE_SELECT = tuple(getattr(Allele, name) for name in ALLELE_FIELDS)
SAMPLE_DATA_COLUMNS = tuple(getattr(GenotypeSampleData, name) for name in SAMPLE_DATA_FIELDS)


def annotation_version_columns(session: Session) -> tuple[Any, ...]:
    # bundle_version from where the database keeps it (none in ELLA database mode).
    return (
        Annotation.id,
        Annotation.date_created,
        Annotation.date_superceeded,
        deposit_target(session).annotation_bundle_version(),
        Annotation.annotation_config_id,
    )


def annotation_columns(session: Session) -> tuple[Any, ...]:
    return (
        Annotation.id,
        Annotation.date_created,
        deposit_target(session).annotation_bundle_version(),
        Annotation.annotation_config_id,
        Annotation.annotations,
    )


def allele_fields(allele: Allele) -> dict[str, Any]:
    return {name: getattr(allele, name) for name in ALLELE_FIELDS}


def analysis_allele_ids(analysis_id: int) -> sa.Subquery:
    """Ids of every allele an analysis's genotypes point at, as first or second allele."""
    samples = sa.select(Sample.id).where(Sample.analysis_id == analysis_id)
    first = sa.select(Genotype.allele_id.label("allele_id")).where(Genotype.sample_id.in_(samples))
    second = sa.select(Genotype.secondallele_id.label("allele_id")).where(
        Genotype.sample_id.in_(samples), Genotype.secondallele_id.is_not(None)
    )
    return sa.union(first, second).subquery("analysis_alleles")


def count_analysis_alleles(session: Session, analysis_id: int) -> int:
    ids = analysis_allele_ids(analysis_id)
    return int(session.scalar(sa.select(sa.func.count()).select_from(ids)) or 0)


def analysis_alleles(session: Session, analysis_id: int, page: Pagination) -> list[dict[str, Any]]:
    # Ordered by id: stable across pages, and ids follow VCF order within one import.
    ids = analysis_allele_ids(analysis_id)
    query = (
        sa.select(*ALLELE_SELECT)
        .where(Allele.id.in_(sa.select(ids.c.allele_id)))
        .order_by(Allele.id)
        .offset(page.offset)
        .limit(page.per_page)
    )
    return [dict(row._mapping) for row in session.execute(query)]


def current_annotations(session: Session, allele_ids: list[int]) -> dict[int, dict[str, Any]]:
    """``{allele_id: {id, date_created, ..., annotations}}`` of each allele's current annotation."""
    if not allele_ids:
        return {}
    query = sa.select(Annotation.allele_id, *annotation_columns(session)).where(
        Annotation.allele_id.in_(allele_ids), Annotation.date_superceeded.is_(None)
    )
    annotations = {}
    for row in session.execute(query):
        fields = dict(row._mapping)
        annotations[fields.pop("allele_id")] = fields
    return annotations


def sample_labels(analysis_id: int) -> sa.Subquery:
    """The analysis's samples with the key each has in an allele's ``genotypes``.

    The key is the sample's identifier; where samples of the analysis share it (an HTS trio's
    proband confirmed by Sanger is two ``P1`` samples, as in ELLA), each becomes
    ``"<identifier> (<sample type>)"``, and `` #<sample id>`` is added if even that is shared.
    """
    same_identifier = sa.func.count().over(partition_by=Sample.identifier)
    same_type = sa.func.count().over(partition_by=(Sample.identifier, Sample.sample_type))
    return (
        sa.select(
            Sample.id.label("sample_id"),
            Sample.identifier,
            Sample.sample_type,
            same_identifier.label("same_identifier"),
            same_type.label("same_type"),
        )
        .where(Sample.analysis_id == analysis_id)
        .subquery("labelled_sample")
    )


def _sample_key(
    identifier: str, sample_type: str, sample_id: int, same_identifier: int, same_type: int
) -> str:
    if same_identifier == 1:
        return identifier
    if same_type == 1:
        return f"{identifier} ({sample_type})"
    return f"{identifier} ({sample_type} #{sample_id})"


def analysis_genotypes(
    session: Session, analysis_id: int, allele_ids: list[int]
) -> dict[int, dict[str, dict[str, Any]]]:
    """``{allele_id: {sample key: genotype fields}}`` for the analysis's samples (one query).

    Sample keys are :func:`sample_labels`. A ``genotypesampledata`` row describes the genotype's
    second allele when its ``secondallele`` flag is set (ELLA's meaning), else the first.
    """
    if not allele_ids:
        return {}
    samples = sample_labels(analysis_id)
    described_allele = sa.case(
        (GenotypeSampleData.secondallele.is_(True), Genotype.secondallele_id), else_=Genotype.allele_id
    )
    # Driven from the page's genotypes (the allele_id index and the partial secondallele_id one),
    # then their sample data by genotype id: never a scan over every genotype of the analysis.
    query = (
        sa.select(
            *SAMPLE_DATA_COLUMNS,
            Genotype.filter_status,
            Genotype.variant_quality,
            described_allele.label("described_allele_id"),
            samples.c.sample_id,
            samples.c.sample_type,
            samples.c.identifier,
            samples.c.same_identifier,
            samples.c.same_type,
        )
        .select_from(Genotype)
        .join(GenotypeSampleData, GenotypeSampleData.genotype_id == Genotype.id)
        .join(samples, GenotypeSampleData.sample_id == samples.c.sample_id)
        .where(
            sa.or_(Genotype.allele_id.in_(allele_ids), Genotype.secondallele_id.in_(allele_ids)),
            sa.or_(
                sa.and_(GenotypeSampleData.secondallele.is_(False), Genotype.allele_id.in_(allele_ids)),
                sa.and_(GenotypeSampleData.secondallele.is_(True), Genotype.secondallele_id.in_(allele_ids)),
            ),
        )
    )
    genotypes: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in session.execute(query):
        fields = dict(row._mapping)
        allele_id = fields.pop("described_allele_id")
        key = _sample_key(
            fields.pop("identifier"),
            fields["sample_type"],
            fields["sample_id"],
            fields.pop("same_identifier"),
            fields.pop("same_type"),
        )
        genotypes[allele_id][key] = fields
    return genotypes


def allele_list_total(session: Session, analysis_id: int) -> int:
    """The exact number of the analysis's alleles; builds its allele list on first use.

    The list (``analysis_allele``) is built in a transaction of its own and committed: the read API
    calls this before it reads a page, so every later page is an index range scan and the total
    is counted once per analysis instead of once per page.
    """
    found = session.execute(
        sa.select(Analysis.date_deposited, AnalysisAlleleTotal.total, AnalysisAlleleTotal.date_deposited)
        .outerjoin(AnalysisAlleleTotal, AnalysisAlleleTotal.analysis_id == Analysis.id)
        .where(Analysis.id == analysis_id)
    ).first()
    deposited = found[0] if found is not None else None
    if found is not None and found[1] is not None and _same_moment(found[2], found[0]):
        return int(found[1])
    with transaction_for(session) as building:
        return _build_allele_list(building, analysis_id, deposited)


def _build_allele_list(session: Session, analysis_id: int, deposited: Any) -> int:
    ids = analysis_allele_ids(analysis_id)
    try:
        session.execute(sa.delete(AnalysisAllele).where(AnalysisAllele.analysis_id == analysis_id))
        session.execute(sa.delete(AnalysisAlleleTotal).where(AnalysisAlleleTotal.analysis_id == analysis_id))
        session.execute(
            sa.insert(AnalysisAllele).from_select(
                ["analysis_id", "allele_id"], sa.select(sa.literal(analysis_id), ids.c.allele_id)
            )
        )
        total = int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(AnalysisAllele)
                .where(AnalysisAllele.analysis_id == analysis_id)
            )
            or 0
        )
        session.add(
            AnalysisAlleleTotal(
                analysis_id=analysis_id, total=total, date_deposited=deposited or sa.func.now()
            )
        )
        session.commit()
    except sa.exc.IntegrityError:
        session.rollback()  # another request built it at the same moment: read theirs
        stored = session.get(AnalysisAlleleTotal, analysis_id)
        if stored is None:
            raise
        return stored.total
    return total


def _same_moment(first: Any, second: Any) -> bool:
    # SQLite hands back naive datetimes (always UTC here); PostgreSQL aware ones.
    return bool(first.replace(tzinfo=None) == second.replace(tzinfo=None))


def allele_page_ids(session: Session, analysis_id: int, page: Pagination, after: int | None) -> list[int]:
    """Allele ids of one page, ascending: after the cursor ``after`` (keyset: an index range scan
    at any depth), else at the page's offset."""
    query = (
        sa.select(AnalysisAllele.allele_id)
        .where(AnalysisAllele.analysis_id == analysis_id)
        .order_by(AnalysisAllele.allele_id)
        .limit(page.per_page)
    )
    query = query.where(AnalysisAllele.allele_id > after) if after is not None else query.offset(page.offset)
    return list(session.scalars(query))


def analysis_allele_page(
    session: Session, analysis_id: int, page: Pagination, after: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """One page of an analysis's alleles with genotypes and current annotation, and the total.

    Pages are ordered by allele id: stable across pages, and ids follow VCF order within one
    import. ``after`` is the cursor (the last allele id of the previous page).
    """
    total = allele_list_total(session, analysis_id)
    ids = allele_page_ids(session, analysis_id, page, after)
    rows = (
        {
            row.id: dict(row._mapping)
            for row in session.execute(sa.select(*ALLELE_SELECT).where(Allele.id.in_(ids)))
        }
        if ids
        else {}
    )
    alleles = [rows[allele_id] for allele_id in ids if allele_id in rows]
    genotypes = analysis_genotypes(session, analysis_id, ids)
    annotations = current_annotations(session, ids)
    for allele in alleles:
        allele["genotypes"] = genotypes.get(allele["id"], {})
        allele["annotation"] = annotations.get(allele["id"])
    return alleles, total


def annotation_history(session: Session, allele_id: int) -> list[dict[str, Any]]:
    """Id and dates of every annotation the allele ever had, oldest first (not the documents)."""
    query = (
        sa.select(*annotation_version_columns(session))
        .where(Annotation.allele_id == allele_id)
        .order_by(Annotation.date_created, Annotation.id)
    )
    return [dict(row._mapping) for row in session.execute(query)]
