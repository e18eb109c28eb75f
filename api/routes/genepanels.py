"""``/api/v1/genepanels``: stored gene panels, and one panel's genes, transcripts and phenotypes."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter

from api.deps import PaginationDep, SessionDep
from api.models import ApiModel, ErrorOut, Page
from engine.db.models import Gene, Genepanel, Phenotype, Transcript, genepanel_phenotype, genepanel_transcript
from engine.errors import NotFoundError

router = APIRouter(prefix="/api/v1/genepanels", tags=["genepanels"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}


class GenepanelSummary(ApiModel):
    name: str
    version: str
    genome_reference: str
    official: bool
    date_created: dt.datetime
    gene_count: int
    transcript_count: int
    phenotype_count: int


class TranscriptOut(ApiModel):
    id: int
    transcript_name: str
    type: str
    tags: list[str] | None
    genome_reference: str
    chromosome: str
    tx_start: int
    tx_end: int
    strand: str
    cds_start: int | None  # None: non-coding transcript
    cds_end: int | None
    exon_starts: list[int]
    exon_ends: list[int]
    inheritance: str  # this panel's inheritance for the transcript


class PhenotypeOut(ApiModel):
    id: int
    description: str
    inheritance: str
    omim_id: int | None


class GeneOut(ApiModel):
    hgnc_id: int
    hgnc_symbol: str
    transcripts: list[TranscriptOut]
    phenotypes: list[PhenotypeOut]


class GenepanelOut(GenepanelSummary):
    genes: list[GeneOut]


def _panel_counts() -> tuple[Any, Any]:
    """Per-panel transcript/gene counts and phenotype counts, as subqueries keyed by panel."""
    gt = genepanel_transcript
    transcripts = (
        sa.select(
            gt.c.genepanel_name,
            gt.c.genepanel_version,
            sa.func.count().label("transcript_count"),
            sa.func.count(sa.distinct(Transcript.gene_id)).label("gene_count"),
        )
        .join(Transcript, Transcript.id == gt.c.transcript_id)
        .group_by(gt.c.genepanel_name, gt.c.genepanel_version)
        .subquery()
    )
    gp = genepanel_phenotype
    phenotypes = (
        sa.select(gp.c.genepanel_name, gp.c.genepanel_version, sa.func.count().label("phenotype_count"))
        .group_by(gp.c.genepanel_name, gp.c.genepanel_version)
        .subquery()
    )
    return transcripts, phenotypes


def _summaries(condition: sa.ColumnElement[bool]) -> sa.Select[Any]:
    transcripts, phenotypes = _panel_counts()
    return (
        sa.select(
            Genepanel.name,
            Genepanel.version,
            Genepanel.genome_reference,
            Genepanel.official,
            Genepanel.date_created,
            sa.func.coalesce(transcripts.c.gene_count, 0).label("gene_count"),
            sa.func.coalesce(transcripts.c.transcript_count, 0).label("transcript_count"),
            sa.func.coalesce(phenotypes.c.phenotype_count, 0).label("phenotype_count"),
        )
        .outerjoin(
            transcripts,
            sa.and_(
                transcripts.c.genepanel_name == Genepanel.name,
                transcripts.c.genepanel_version == Genepanel.version,
            ),
        )
        .outerjoin(
            phenotypes,
            sa.and_(
                phenotypes.c.genepanel_name == Genepanel.name,
                phenotypes.c.genepanel_version == Genepanel.version,
            ),
        )
        .where(condition)
    )


@router.get("", response_model=Page[GenepanelSummary])
def list_genepanels(session: SessionDep, page: PaginationDep) -> dict[str, Any]:
    total = session.scalar(sa.select(sa.func.count()).select_from(Genepanel)) or 0
    query = (
        _summaries(sa.true())
        .order_by(Genepanel.name, Genepanel.version)
        .offset(page.offset)
        .limit(page.per_page)
    )
    items = [dict(row._mapping) for row in session.execute(query)]
    return {"items": items, "total": total, "page": page.page, "per_page": page.per_page}


@router.get("/{name}/{version}", response_model=GenepanelOut, responses=NOT_FOUND)
def read_genepanel(session: SessionDep, name: str, version: str) -> dict[str, Any]:
    summary = session.execute(
        _summaries(sa.and_(Genepanel.name == name, Genepanel.version == version))
    ).first()
    if summary is None:
        raise NotFoundError("gene panel", f"{name}_{version}")
    return {**summary._mapping, "genes": _panel_genes(session, name, version)}


def _panel_genes(session: SessionDep, name: str, version: str) -> list[dict[str, Any]]:
    gt, gp = genepanel_transcript, genepanel_phenotype
    transcripts = session.execute(
        sa.select(Transcript, gt.c.inheritance)
        .join(gt, gt.c.transcript_id == Transcript.id)
        .where(gt.c.genepanel_name == name, gt.c.genepanel_version == version)
        .order_by(Transcript.transcript_name)
    ).all()
    phenotypes = session.scalars(
        sa.select(Phenotype)
        .join(gp, gp.c.phenotype_id == Phenotype.id)
        .where(gp.c.genepanel_name == name, gp.c.genepanel_version == version)
        .order_by(Phenotype.description, Phenotype.inheritance)
    ).all()
    transcripts_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for transcript, inheritance in transcripts:
        fields = {**_transcript_fields(transcript), "inheritance": inheritance}
        transcripts_of[transcript.gene_id].append(fields)
    phenotypes_of: dict[int, list[Phenotype]] = defaultdict(list)
    for phenotype in phenotypes:
        phenotypes_of[phenotype.gene_id].append(phenotype)
    genes = session.scalars(
        sa.select(Gene).where(Gene.hgnc_id.in_(transcripts_of.keys())).order_by(Gene.hgnc_symbol)
    ).all()
    return [
        {
            "hgnc_id": gene.hgnc_id,
            "hgnc_symbol": gene.hgnc_symbol,
            "transcripts": transcripts_of[gene.hgnc_id],
            "phenotypes": phenotypes_of[gene.hgnc_id],
        }
        for gene in genes
    ]


def _transcript_fields(transcript: Transcript) -> dict[str, Any]:
    columns = (name for name in TranscriptOut.model_fields if name != "inheritance")
    return {name: getattr(transcript, name) for name in columns}
