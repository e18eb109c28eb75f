"""Run the ELLA deposit cases (tests/data/ella-cases, computed by ELLA 1.17.2's own code) through
Annostream and read back what it stored in ELLA's table and column names, in the shape of each
case's ``expected.json`` (see tests/data/ella-cases/README.md)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import undefer

from engine.config import Settings
from engine.db.models import (
    ALLELE_COLUMNS,
    SAMPLE_DATA_FIELDS,
    Allele,
    Analysis,
    Annotation,
    Gene,
    Genepanel,
    Genotype,
    GenotypeSampleData,
    ImportJob,
    JobStatus,
    Phenotype,
    Sample,
    Transcript,
    genepanel_phenotype,
    genepanel_transcript,
)
from engine.db.session import session_scope
from engine.deposit.analysis_folder import load_analysis_folder
from engine.deposit.genepanel import deposit_genepanel, read_genepanel_folder
from engine.errors import InputError
from engine.events import build_ready_event, encode
from engine.pipeline import Pipeline
from producers.publish import apply_spec
from tests.support.events import is_lane_topic

CASES = Path(__file__).resolve().parent.parent / "data" / "ella-cases"
ALLELE_FIELDS = ALLELE_COLUMNS
GSD_FIELDS = SAMPLE_DATA_FIELDS


def case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if (p / "expected.json").is_file())


def load_expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CASES / name / "expected.json").read_text())
    return data


def steps(name: str) -> list[dict[str, Any]]:
    """The case's steps (``steps.json``), or one analysis step per folder of ``incoming/``."""
    case = CASES / name
    if (case / "steps.json").is_file():
        loaded: list[dict[str, Any]] = json.loads((case / "steps.json").read_text())
        return loaded
    return [
        {"kind": "analysis", "folder": f"incoming/{p.name}"}
        for p in sorted((case / "incoming").iterdir())
        if p.is_dir()
    ]


def deposit_panel(settings: Settings, folder: Path) -> dict[str, Any]:
    """A gene panel step: deposit the folder and read back ELLA's rows (or the error)."""
    try:
        data = read_genepanel_folder(folder)
        with session_scope(settings.database_url) as session:
            deposit_genepanel(session, data)
    except InputError as error:
        return {"error": str(error)}
    return read_panel(settings, data.name, data.version)


def read_panel(settings: Settings, name: str, version: str) -> dict[str, Any]:
    with session_scope(settings.database_url) as session:
        panel = session.get(Genepanel, (name, version))
        assert panel is not None
        links = session.execute(
            sa.select(genepanel_transcript.c.transcript_id, genepanel_transcript.c.inheritance).where(
                genepanel_transcript.c.genepanel_name == name,
                genepanel_transcript.c.genepanel_version == version,
            )
        ).all()
        transcripts = {
            t.id: t
            for t in session.scalars(sa.select(Transcript).where(Transcript.id.in_([t for t, _ in links])))
        }
        phenotype_ids = session.scalars(
            sa.select(genepanel_phenotype.c.phenotype_id).where(
                genepanel_phenotype.c.genepanel_name == name,
                genepanel_phenotype.c.genepanel_version == version,
            )
        )
        phenotypes = session.scalars(sa.select(Phenotype).where(Phenotype.id.in_(list(phenotype_ids)))).all()
        gene_ids = {t.gene_id for t in transcripts.values()} | {p.gene_id for p in phenotypes}
        genes = session.scalars(sa.select(Gene).where(Gene.hgnc_id.in_(gene_ids))).all()
        transcript_keys = (
            "transcript_name",
            "type",
            "gene_id",
            "chromosome",
            "tx_start",
            "tx_end",
            "strand",
            "cds_start",
            "cds_end",
            "exon_starts",
            "exon_ends",
            "tags",
            "genome_reference",
        )
        return {
            "genepanel": {
                "name": panel.name,
                "version": panel.version,
                "genome_reference": panel.genome_reference,
                "official": panel.official,
            },
            "gene": sorted(
                ({"hgnc_id": g.hgnc_id, "hgnc_symbol": g.hgnc_symbol} for g in genes),
                key=lambda g: g["hgnc_id"],
            ),
            "transcript": sorted(
                ({k: _plain(getattr(t, k)) for k in transcript_keys} for t in transcripts.values()),
                key=lambda t: t["transcript_name"],
            ),
            "genepanel_transcript": sorted(
                ({"transcript_name": transcripts[t].transcript_name, "inheritance": i} for t, i in links),
                key=lambda r: r["transcript_name"],
            ),
            "phenotype": sorted(
                (
                    {
                        "gene_id": p.gene_id,
                        "description": p.description,
                        "inheritance": p.inheritance,
                        "omim_id": p.omim_id,
                    }
                    for p in phenotypes
                ),
                key=lambda p: (p["gene_id"], p["description"], p["inheritance"]),
            ),
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def import_analysis(settings: Settings, source: Path) -> dict[str, Any]:
    """An analysis step: the folder through the real annotate and persist stages, then what was
    stored for it (or ``{"error": ...}`` when the import failed)."""
    folder = settings.analyses_incoming / source.name
    shutil.copytree(source, folder)
    before = _annotation_ids(settings)
    pipeline = Pipeline(settings)
    try:  # what the watcher and `annostream publish` do before publishing
        spec = load_analysis_folder(folder)
    except InputError as error:
        return {"error": str(error)}
    ready = apply_spec(build_ready_event(folder, settings.analyses_incoming, producer="ella-cases"), spec)
    annotated = pipeline.annotate(encode(ready))
    forward = [m for m in annotated if is_lane_topic(m.topic, "analysis.annotated")]
    if forward:
        pipeline.persist(forward[0].value)
    with session_scope(settings.database_url) as session:
        job = session.scalar(sa.select(ImportJob).where(ImportJob.event_id == ready.event_id))
        if job is None or job.status != JobStatus.DONE.value:
            return {"error": job.message if job is not None else "no import job"}
    return read_analysis(settings, spec.name, before)


def _annotation_ids(settings: Settings) -> set[int]:
    with session_scope(settings.database_url) as session:
        return set(session.scalars(sa.select(Annotation.id)))


def allele_key(allele: Allele) -> str:
    return f"{allele.chromosome}:{allele.vcf_pos}:{allele.vcf_ref}>{allele.vcf_alt}"


def read_analysis(settings: Settings, name: str, annotations_before: set[int]) -> dict[str, Any]:
    with session_scope(settings.database_url) as session:
        analysis = session.scalars(
            sa.select(Analysis).options(undefer(Analysis.priority)).where(Analysis.name == name)
        ).one()
        samples = session.scalars(
            sa.select(Sample).where(Sample.analysis_id == analysis.id).order_by(Sample.id)
        ).all()
        by_id = {s.id: s for s in samples}
        row_of = {s.id: i for i, s in enumerate(samples)}

        def ident(sample_id: int | None) -> str | None:
            return None if sample_id is None else by_id[sample_id].identifier

        genotypes = session.scalars(
            sa.select(Genotype).where(Genotype.sample_id.in_(list(by_id))).order_by(Genotype.id)
        ).all()
        allele_ids = {g.allele_id for g in genotypes} | {
            g.secondallele_id for g in genotypes if g.secondallele_id
        }
        alleles = {a.id: a for a in session.scalars(sa.select(Allele).where(Allele.id.in_(allele_ids)))}
        genotype_rows = []
        for genotype in genotypes:
            data = session.scalars(
                sa.select(GenotypeSampleData)
                .where(GenotypeSampleData.genotype_id == genotype.id)
                .order_by(GenotypeSampleData.secondallele, GenotypeSampleData.sample_id)
            ).all()
            genotype_rows.append(
                {
                    "allele": allele_key(alleles[genotype.allele_id]),
                    "secondallele": allele_key(alleles[genotype.secondallele_id])
                    if genotype.secondallele_id
                    else None,
                    "sample": ident(genotype.sample_id),
                    "sample_row": row_of[genotype.sample_id],
                    "filter_status": genotype.filter_status,
                    "variant_quality": None
                    if genotype.variant_quality is None
                    else int(genotype.variant_quality),
                    "genotypesampledata": [
                        {
                            "sample": ident(d.sample_id),
                            "sample_row": row_of[d.sample_id],
                            "secondallele": d.secondallele,
                            **{k: getattr(d, k) for k in GSD_FIELDS},
                        }
                        for d in data
                    ],
                }
            )
        current = {
            a.allele_id: a
            for a in session.scalars(
                sa.select(Annotation).where(
                    Annotation.allele_id.in_(list(alleles)), Annotation.date_superceeded.is_(None)
                )
            )
        }
        annotation_rows = []
        for allele_id, allele in sorted(alleles.items()):
            row = current.get(allele_id)
            if row is None:
                continue
            if row.id not in annotations_before:
                action = "superseded_and_created" if row.previous_annotation_id else "created"
            else:
                action = "unchanged"
            annotation_rows.append(
                {
                    "allele": allele_key(allele),
                    "action": action,
                    "annotation_config_id": row.annotation_config_id,
                }
            )
        return {
            "analysis": {
                "name": analysis.name,
                "genepanel_name": analysis.genepanel_name,
                "genepanel_version": analysis.genepanel_version,
                "date_requested": _date(analysis.date_requested),
                "report": analysis.report,
                "warnings": analysis.warnings,
                # ELLA keeps the priority on the interpretation log, none for priority 0.
                "interpretationlog_priority": analysis.priority or None,
            },
            "samples": [
                {
                    "identifier": s.identifier,
                    "sample_type": s.sample_type,
                    "proband": s.proband,
                    "affected": s.affected,
                    "sex": s.sex,
                    "family_id": s.family_id,
                    "father": ident(s.father_id),
                    "mother": ident(s.mother_id),
                    "sibling": ident(s.sibling_id),
                }
                for s in samples
            ],
            "alleles": [{k: getattr(a, k) for k in ALLELE_FIELDS} for _, a in sorted(alleles.items())],
            "genotypes": genotype_rows,
            "annotations": {allele_key(alleles[i]): row.annotations for i, row in current.items()},
            "annotation_rows": annotation_rows,
            "properties": {
                k: v for k, v in (analysis.properties or {}).items() if k not in ("fingerprint", "event_id")
            }
            or None,
        }


def _date(value: dt.datetime | None) -> str | None:
    return None if value is None else value.date().isoformat()


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """Order-insensitive where ELLA's row order carries no meaning (alleles, genotypes,
    annotation rows: by allele key); samples keep creation order (``sample_row`` refers to it)."""
    out = dict(result)
    if "alleles" in out:
        out["alleles"] = sorted(
            out["alleles"], key=lambda a: (a["chromosome"], a["vcf_pos"], a["vcf_ref"], a["vcf_alt"])
        )
    if "genotypes" in out:
        out["genotypes"] = sorted(
            (
                {
                    **g,
                    "genotypesampledata": sorted(
                        g["genotypesampledata"], key=lambda d: (d["secondallele"], d["sample_row"])
                    ),
                }
                for g in out["genotypes"]
            ),
            key=lambda g: (g["allele"], g["secondallele"] or "", g["sample_row"]),
        )
    if "annotation_rows" in out:
        out["annotation_rows"] = sorted(out["annotation_rows"], key=lambda r: r["allele"])
    for table, key in (
        ("gene", "hgnc_id"),
        ("transcript", "transcript_name"),
        ("genepanel_transcript", "transcript_name"),
        ("phenotype", "description"),
    ):
        if table in out:
            out[table] = sorted(out[table], key=lambda row, k=key: str(row[k]))
    if "analysis" in out and out["analysis"].get("date_requested"):
        out["analysis"] = {**out["analysis"], "date_requested": out["analysis"]["date_requested"][:10]}
    return out
