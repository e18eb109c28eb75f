"""Bulk writer: an analysis, its samples, alleles, genotypes and annotation into ELLA's tables.

Everything happens in the caller's transaction (nothing here commits), so an import is stored
completely or not at all. Variants arrive as a stream of batches and are written set-based per
chunk: the chunk's alleles are loaded into a scratch table (COPY on PostgreSQL, executemany on
SQLite), merged into ``allele`` with ``ON CONFLICT DO NOTHING`` (ELLA's ``ucAllele`` makes alleles
shared across analyses), and mapped back to ids with one join. Memory is bounded by the chunk.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db.bulk import BulkLoader
from engine.db.models import Analysis, Annotation, Genepanel, Sample, utcnow
from engine.deposit.records import AlleleRecord, AnalysisSpec, SampleRecord, VariantRecord
from engine.errors import DuplicateAnalysisError, InputError, MissingGenepanelError

# Records per set-based round: large enough to amortise statement overhead, small enough that
# the scratch tables and CSV buffers stay a few tens of MB.
CHUNK_SIZE = 100_000

ALLELE_COLUMNS = ("chromosome", "start_position", "open_end_position", "change_from", "change_to",
                  "change_type", "vcf_pos", "vcf_ref", "vcf_alt", "length", "caller_type",
                  "genome_reference")
# ELLA's ucAllele (v1.17): every allele column except genome_reference.
ALLELE_IDENTITY = ALLELE_COLUMNS[:-1]
GSD_COLUMNS = ("genotype_id", "sample_id", "secondallele", "multiallelic", "type", "genotype_quality",
               "sequencing_depth", "allele_depth", "allele_ratio", "genotype_likelihood", "copy_number")

STAGE_ALLELE = "annostream_stage_allele"
STAGE_RESOLVED = "annostream_stage_resolved"
STAGE_VARIANT = "annostream_stage_variant"
STAGE_ANNOTATION = "annostream_stage_annotation"
STAGE_SUPERSEDED = "annostream_stage_superseded"
NON_REFERENCE = frozenset({"Heterozygous", "Homozygous"})


@dataclass
class AnnotationWriteResult:
    created: int = 0  # new current rows (first annotation, or replacing a different one)
    superseded: int = 0  # previous rows marked date_superceeded
    unchanged: int = 0  # identical document already current: reused

    def add(self, other: AnnotationWriteResult) -> None:
        self.created += other.created
        self.superseded += other.superseded
        self.unchanged += other.unchanged


@dataclass
class WriteResult:
    analysis_id: int
    n_variants: int = 0
    n_alleles_new: int = 0
    n_alleles_reused: int = 0
    n_genotypes: int = 0
    annotations: AnnotationWriteResult = field(default_factory=AnnotationWriteResult)
    # Wall-clock seconds per stage (alleles, genotypes, sample_data, annotations, ...), for
    # benchmarks and metrics.
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def write_analysis(session: Session, spec: AnalysisSpec, samples: list[SampleRecord],
                   batches: Iterable[list[VariantRecord]], *,
                   properties: dict[str, Any] | None = None,
                   annotation_config_id: int | None = None,
                   bundle_version: str | None = None) -> WriteResult:
    """Store one analysis with its samples and variants; the caller commits.

    ``annotation_config_id``/``bundle_version`` are recorded on annotation rows this creates.
    """
    analysis = _insert_analysis(session, spec, properties)
    sample_ids = _insert_samples(session, spec, analysis.id, samples)
    probands = [sample_ids[s.identifier] for s in samples if s.proband]
    if not probands:
        raise InputError(f"analysis {spec.name} has no proband sample", file=str(spec.folder),
                         expected="one sample marked as proband")
    loader = BulkLoader(session)
    writer = _VariantWriter(loader, spec, sample_ids, probands,
                            _AnnotationVersioner(loader, annotation_config_id, bundle_version))
    result = WriteResult(analysis_id=analysis.id)
    for chunk in _chunks(batches, CHUNK_SIZE):
        writer.write_chunk(chunk, result)
    writer.finish(result)
    return result


def write_annotations(session: Session, items: Iterable[tuple[AlleleRecord | int, dict[str, Any]]], *,
                      annotation_config_id: int | None = None,
                      bundle_version: str | None = None) -> AnnotationWriteResult:
    """Make each document the current annotation of its allele (ELLA's versioning).

    An identical current document is reused; a different one is superseded and linked as
    ``previous_annotation_id``. Alleles given as records are created if not stored yet.
    """
    loader = BulkLoader(session)
    versioner = _AnnotationVersioner(loader, annotation_config_id, bundle_version)
    total = AnnotationWriteResult()
    for chunk in _chunks([items], CHUNK_SIZE):
        by_id = [(item, doc) for item, doc in chunk if isinstance(item, int)]
        by_record = [(item, doc) for item, doc in chunk if not isinstance(item, int)]
        versioner.stage_new()
        if by_record:
            _merge_alleles(loader, ((i, False, a, doc) for i, (a, doc) in enumerate(by_record)))
            versioner.stage_from_resolved()
        if by_id:
            loader.load(STAGE_ANNOTATION + "_in", ("allele_id", "annotation"),
                        ((allele_id, _json(doc)) for allele_id, doc in by_id))
            versioner.stage_from_input()
        total.add(versioner.apply())
    versioner.drop()
    return total


def delete_analysis(session: Session, analysis_id: int) -> None:
    """Remove an analysis with its samples, genotypes and sample data (alleles and their
    annotation are shared with other analyses and stay). Needed because genotype tables carry
    no foreign keys to cascade from (see engine.db.models)."""
    params = {"analysis_id": analysis_id}
    samples = "SELECT id FROM sample WHERE analysis_id = :analysis_id"
    session.flush()
    session.execute(sa.text(
        f"DELETE FROM genotypesampledata WHERE genotype_id IN "
        f"(SELECT id FROM genotype WHERE sample_id IN ({samples}))"), params)
    session.execute(sa.text(f"DELETE FROM genotype WHERE sample_id IN ({samples})"), params)
    session.execute(sa.text("DELETE FROM sample WHERE analysis_id = :analysis_id"), params)
    session.execute(sa.text("DELETE FROM analysis WHERE id = :analysis_id"), params)
    session.expire_all()


# --- analysis and samples --------------------------------------------------------------------


def _insert_analysis(session: Session, spec: AnalysisSpec, properties: dict[str, Any] | None) -> Analysis:
    existing = session.scalar(sa.select(Analysis.id).where(Analysis.name == spec.name))
    if existing is not None:
        raise DuplicateAnalysisError(f"analysis {spec.name} is already stored (id {existing})",
                                     file=str(spec.folder), expected="a new analysis name")
    if session.get(Genepanel, (spec.genepanel_name, spec.genepanel_version)) is None:
        raise MissingGenepanelError(
            f"gene panel {spec.genepanel_name}_{spec.genepanel_version} is not in the database",
            file=str(spec.folder), expected="a gene panel deposited with 'annostream deposit genepanel'",
        )
    analysis = Analysis(
        name=spec.name, genepanel_name=spec.genepanel_name, genepanel_version=spec.genepanel_version,
        priority=spec.priority, date_requested=spec.date_requested, warnings=spec.warnings,
        report=spec.report, properties={**spec.properties, **(properties or {})} or None,
    )
    session.add(analysis)
    session.flush()
    return analysis


def _insert_samples(session: Session, spec: AnalysisSpec, analysis_id: int,
                    samples: list[SampleRecord]) -> dict[str, int]:
    rows = {s.identifier: Sample(identifier=s.identifier, analysis_id=analysis_id, sample_type=s.sample_type,
                                 affected=s.affected, proband=s.proband, family_id=s.family_id, sex=s.sex)
            for s in samples}
    if len(rows) != len(samples):
        raise InputError(f"analysis {spec.name} lists a sample twice", file=str(spec.folder),
                         expected="unique sample identifiers")
    session.add_all(rows.values())
    session.flush()
    for record in samples:
        row = rows[record.identifier]
        row.father_id = _relative(spec, rows, record, "father", record.father_identifier)
        row.mother_id = _relative(spec, rows, record, "mother", record.mother_identifier)
        row.sibling_id = _relative(spec, rows, record, "sibling", record.sibling_identifier)
    session.flush()
    return {identifier: row.id for identifier, row in rows.items()}


def _relative(spec: AnalysisSpec, rows: dict[str, Sample], record: SampleRecord, role: str,
              identifier: str | None) -> int | None:
    if identifier is None:
        return None
    if identifier not in rows:
        raise InputError(
            f"sample {record.identifier}: {role} {identifier} is not a sample of analysis {spec.name}",
            file=str(spec.folder), expected=f"one of {', '.join(sorted(rows))}",
        )
    return rows[identifier].id


# --- variants ----------------------------------------------------------------------------------


class _VariantWriter:
    """Writes chunks of variant records for one analysis."""

    def __init__(self, loader: BulkLoader, spec: AnalysisSpec, sample_ids: dict[str, int],
                 probands: list[int], annotations: _AnnotationVersioner) -> None:
        self.loader = loader
        self.spec = spec
        self.sample_ids = sample_ids
        self.probands = probands
        self.identifier_by_id = {v: k for k, v in sample_ids.items()}
        self.annotations = annotations
        self.vcf_file = str(spec.vcfs[0].path) if len(spec.vcfs) == 1 else str(spec.folder)
        loader.create_scratch_table(
            STAGE_VARIANT,
            "ord INTEGER, genotype_id INTEGER, sample_id INTEGER, filter_status TEXT, "
            "variant_quality DOUBLE PRECISION",
        )

    def write_chunk(self, chunk: list[VariantRecord], result: WriteResult) -> None:
        with result.timed("check"):
            self._check_chunk(chunk)
        with result.timed("alleles"):
            result.n_alleles_new += _merge_alleles(self.loader, self._allele_rows(chunk))
        with result.timed("genotypes"):
            genotype_ids = self.loader.reserve_ids("genotype", len(chunk))
            result.n_genotypes += self._insert_genotypes(chunk, genotype_ids)
        with result.timed("sample_data"):
            self.loader.load("genotypesampledata", GSD_COLUMNS, self._sample_data_rows(chunk, genotype_ids))
        with result.timed("annotations"):
            self.annotations.stage_new()
            self.annotations.stage_from_resolved()
            result.annotations.add(self.annotations.apply())
        result.n_variants += len(chunk)

    def finish(self, result: WriteResult) -> None:
        # Counted once at the end: an allele repeated across chunks is still one allele.
        used = self.loader.connection.execute(
            sa.text(
                "SELECT COUNT(*) FROM (SELECT allele_id AS id FROM genotype WHERE sample_id IN :ids "
                "UNION SELECT secondallele_id FROM genotype WHERE sample_id IN :ids "
                "AND secondallele_id IS NOT NULL) AS used"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": self.probands},
        ).scalar_one()
        result.n_alleles_reused = int(used) - result.n_alleles_new
        for table in (STAGE_VARIANT, STAGE_ALLELE, STAGE_RESOLVED):
            self.loader.drop_scratch_table(table)
        self.annotations.drop()

    def _check_chunk(self, chunk: list[VariantRecord]) -> None:
        seen: set[tuple[AlleleRecord, AlleleRecord | None]] = set()
        for record in chunk:
            key = (record.allele, record.secondallele)
            if key in seen:
                raise InputError(
                    f"variant {record.allele.chromosome}:{record.allele.vcf_pos} "
                    f"{record.allele.vcf_ref}>{record.allele.vcf_alt} appears twice",
                    file=self.vcf_file, line=record.source_line, expected="each variant once per VCF",
                )
            seen.add(key)
            unknown = set(record.samples) - self.sample_ids.keys()
            if unknown:
                raise InputError(
                    f"genotype for unknown sample {sorted(unknown)[0]}", file=self.vcf_file,
                    line=record.source_line, expected=f"one of {', '.join(sorted(self.sample_ids))}",
                )

    def _allele_rows(self, chunk: list[VariantRecord]) -> Iterator[tuple[int, bool, AlleleRecord, Any]]:
        for ord_, record in enumerate(chunk):
            yield ord_, False, record.allele, record.annotation
            if record.secondallele is not None:
                yield ord_, True, record.secondallele, record.secondallele_annotation

    def _proband_for(self, record: VariantRecord) -> int:
        if len(self.probands) == 1:
            return self.probands[0]
        for sample_id in self.probands:
            data = record.samples.get(self.identifier_by_id[sample_id])
            if data is not None and data.type in NON_REFERENCE:
                return sample_id
        return self.probands[0]

    def _insert_genotypes(self, chunk: list[VariantRecord], genotype_ids: list[int]) -> int:
        null = self.loader.null
        self.loader.execute(f"DELETE FROM {STAGE_VARIANT}")
        self.loader.load(
            STAGE_VARIANT, ("ord", "genotype_id", "sample_id", "filter_status", "variant_quality"),
            ((ord_, genotype_ids[ord_], self._proband_for(r),
              null if r.filter_status is None else r.filter_status,
              null if r.variant_quality is None else r.variant_quality)
             for ord_, r in enumerate(chunk)),
        )
        self.loader.analyze(STAGE_VARIANT)
        inserted = self.loader.execute(
            "INSERT INTO genotype (id, allele_id, secondallele_id, sample_id, filter_status, "
            "variant_quality) SELECT v.genotype_id, first.allele_id, second.allele_id, v.sample_id, "
            "v.filter_status, v.variant_quality "
            f"FROM {STAGE_VARIANT} v "
            f"JOIN {STAGE_RESOLVED} first ON first.ord = v.ord AND NOT first.second "
            f"LEFT JOIN {STAGE_RESOLVED} second ON second.ord = v.ord AND second.second "
            "ORDER BY v.ord"
        )
        return int(inserted.rowcount)

    def _sample_data_rows(self, chunk: list[VariantRecord],
                          genotype_ids: list[int]) -> Iterator[tuple[Any, ...]]:
        null = self.loader.null
        sample_ids = self.sample_ids
        for ord_, record in enumerate(chunk):
            genotype_id = genotype_ids[ord_]
            per_allele = [(False, record.samples)]
            if record.secondallele is not None and record.secondallele_samples:
                per_allele.append((True, record.secondallele_samples))
            for secondallele, samples in per_allele:
                for identifier, d in samples.items():
                    yield (
                        genotype_id, sample_ids[identifier], secondallele, d.multiallelic, d.type,
                        null if d.genotype_quality is None else d.genotype_quality,
                        null if d.sequencing_depth is None else d.sequencing_depth,
                        null if d.allele_depth is None else _json(d.allele_depth),
                        null if d.allele_ratio is None else d.allele_ratio,
                        null if d.genotype_likelihood is None else _json(d.genotype_likelihood),
                        null if d.copy_number is None else d.copy_number,
                    )


# --- alleles -------------------------------------------------------------------------------------


def _merge_alleles(loader: BulkLoader, rows: Iterable[tuple[int, bool, AlleleRecord, Any]]) -> int:
    """Insert the staged alleles that are new; leave ``STAGE_RESOLVED`` (ord, second, allele_id,
    annotation). Returns how many alleles were new."""
    null = loader.null
    columns = ("ord", "second", *ALLELE_COLUMNS, "annotation")
    loader.create_scratch_table(
        STAGE_ALLELE,
        "ord INTEGER, second BOOLEAN, chromosome TEXT, start_position INTEGER, open_end_position INTEGER, "
        "change_from TEXT, change_to TEXT, change_type TEXT, vcf_pos INTEGER, vcf_ref TEXT, vcf_alt TEXT, "
        f"length INTEGER, caller_type TEXT, genome_reference TEXT, annotation {loader.json_type}",
    )
    loader.load(STAGE_ALLELE, columns, (
        (ord_, second, a.chromosome, a.start_position, a.open_end_position, a.change_from, a.change_to,
         a.change_type, a.vcf_pos, a.vcf_ref, a.vcf_alt, a.length, a.caller_type, a.genome_reference,
         null if doc is None else _json(doc))
        for ord_, second, a, doc in rows
    ))
    loader.analyze(STAGE_ALLELE)
    # WHERE true: SQLite needs it to parse INSERT ... SELECT ... ON CONFLICT unambiguously.
    inserted = loader.execute(
        f"INSERT INTO allele ({', '.join(ALLELE_COLUMNS)}) "
        f"SELECT {', '.join(ALLELE_COLUMNS)} FROM {STAGE_ALLELE} WHERE true ON CONFLICT DO NOTHING"
    )
    match = " AND ".join(f"a.{c} = s.{c}" for c in ALLELE_IDENTITY)
    loader.create_scratch_table_as(
        STAGE_RESOLVED,
        f"SELECT s.ord, s.second, a.id AS allele_id, s.annotation FROM {STAGE_ALLELE} s "
        f"JOIN allele a ON {match}",
    )
    loader.analyze(STAGE_RESOLVED)
    return int(inserted.rowcount)


# --- annotation versioning -----------------------------------------------------------------------


class _AnnotationVersioner:
    """Applies staged (allele_id, document) pairs with ELLA's one-current-row versioning."""

    def __init__(self, loader: BulkLoader, annotation_config_id: int | None,
                 bundle_version: str | None) -> None:
        self.loader = loader
        self.params = {"cfg": annotation_config_id, "bundle": bundle_version}

    def stage_new(self) -> None:
        json_type = self.loader.json_type
        self.loader.create_scratch_table(STAGE_ANNOTATION,
                                         f"allele_id INTEGER PRIMARY KEY, annotation {json_type}")
        self.loader.create_scratch_table(STAGE_ANNOTATION + "_in",
                                         f"allele_id INTEGER, annotation {json_type}")

    def stage_from_resolved(self) -> None:
        # An allele listed twice keeps its first document (ON CONFLICT DO NOTHING).
        self._stage_from(STAGE_RESOLVED, "ord, second")

    def stage_from_input(self) -> None:
        self._stage_from(STAGE_ANNOTATION + "_in", "allele_id")

    def _stage_from(self, source: str, order: str) -> None:
        self.loader.execute(
            f"INSERT INTO {STAGE_ANNOTATION} (allele_id, annotation) SELECT allele_id, annotation "
            f"FROM {source} WHERE annotation IS NOT NULL ORDER BY {order} ON CONFLICT DO NOTHING"
        )

    def apply(self) -> AnnotationWriteResult:
        self.loader.analyze(STAGE_ANNOTATION)
        if self.loader.is_postgres:
            return self._apply_in_sql(utcnow())
        return self._apply_in_python(utcnow())

    def drop(self) -> None:
        for table in (STAGE_ANNOTATION, STAGE_ANNOTATION + "_in", STAGE_SUPERSEDED):
            self.loader.drop_scratch_table(table)

    def _apply_in_sql(self, now: dt.datetime) -> AnnotationWriteResult:
        """PostgreSQL: jsonb equality decides, two set-based statements do the rest."""
        loader = self.loader
        staged = loader.execute(f"SELECT COUNT(*) FROM {STAGE_ANNOTATION}").scalar_one()
        loader.create_scratch_table(STAGE_SUPERSEDED, "id INTEGER, allele_id INTEGER")
        superseded = loader.execute(
            f"WITH changed AS (UPDATE annotation a SET date_superceeded = :now FROM {STAGE_ANNOTATION} s "
            "WHERE a.allele_id = s.allele_id AND a.date_superceeded IS NULL "
            "AND a.annotations <> s.annotation "
            f"RETURNING a.id, a.allele_id) INSERT INTO {STAGE_SUPERSEDED} SELECT id, allele_id FROM changed",
            {"now": now},
        ).rowcount
        # After the update, an allele has a current row exactly when its document was unchanged.
        created = loader.execute(
            "INSERT INTO annotation (allele_id, annotations, schema_version, date_created, "
            "previous_annotation_id, annotation_config_id, bundle_version) "
            f"SELECT s.allele_id, s.annotation, 1, :now, old.id, :cfg, :bundle FROM {STAGE_ANNOTATION} s "
            f"LEFT JOIN {STAGE_SUPERSEDED} old ON old.allele_id = s.allele_id "
            "WHERE NOT EXISTS (SELECT 1 FROM annotation c WHERE c.allele_id = s.allele_id "
            "AND c.date_superceeded IS NULL)",
            {"now": now, **self.params},
        ).rowcount
        return AnnotationWriteResult(created=created, superseded=superseded, unchanged=staged - created)

    def _apply_in_python(self, now: dt.datetime) -> AnnotationWriteResult:
        """SQLite: JSON is text there, so documents are compared as parsed values in Python."""
        rows: list[Any] = list(self.loader.execute(
            f"SELECT s.allele_id, s.annotation, c.id, c.annotations FROM {STAGE_ANNOTATION} s "
            "LEFT JOIN annotation c ON c.allele_id = s.allele_id AND c.date_superceeded IS NULL"
        ))
        result = AnnotationWriteResult()
        superseded: list[dict[str, Any]] = []
        created: list[dict[str, Any]] = []
        for allele_id, new_text, current_id, current_text in rows:
            new_doc = json.loads(new_text)
            if current_id is not None and json.loads(current_text) == new_doc:
                result.unchanged += 1
                continue
            if current_id is not None:
                superseded.append({"b_id": current_id, "b_now": now})
            created.append({"allele_id": allele_id, "annotations": new_doc, "schema_version": 1,
                            "date_created": now, "previous_annotation_id": current_id,
                            "annotation_config_id": self.params["cfg"],
                            "bundle_version": self.params["bundle"]})
        if superseded:
            self.loader.connection.execute(
                sa.update(Annotation).where(Annotation.id == sa.bindparam("b_id"))
                .values(date_superceeded=sa.bindparam("b_now")).execution_options(synchronize_session=False),
                superseded,
            )
        if created:
            self.loader.connection.execute(sa.insert(Annotation), created)
        result.superseded = len(superseded)
        result.created = len(created)
        return result


# --- helpers -----------------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _chunks(batches: Iterable[Iterable[Any]], size: int) -> Iterator[list[Any]]:
    """Re-cut a stream of batches into lists of at most ``size`` items, lazily."""
    items = (item for batch in batches for item in batch)
    while chunk := list(islice(items, size)):
        yield chunk
