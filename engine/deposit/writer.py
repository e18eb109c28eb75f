"""Bulk writer: an analysis, its samples, alleles, genotypes and annotation into ELLA's tables.

Everything happens in the caller's transaction (nothing here commits), so an import is stored
completely or not at all. Variants arrive as a stream of batches and are written set-based per
chunk: the chunk's alleles are loaded into a scratch table (COPY on PostgreSQL, executemany on
SQLite), merged into ``allele`` with ``ON CONFLICT DO NOTHING`` (ELLA's ``ucAllele`` makes alleles
shared across analyses), and mapped back to ids with one join. Memory is bounded by the chunk.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db.bulk import PG_NULL, BulkLoader
from engine.db.models import Allele, Analysis, Annotation, Genepanel, Genotype, Sample
from engine.deposit.columns import VariantColumns, to_records
from engine.deposit.records import (
    AlleleRecord,
    AnalysisSpec,
    SampleGenotypeRecord,
    SampleRecord,
    VariantRecord,
)
from engine.errors import DuplicateAnalysisError, InputError, MissingGenepanelError
from engine.timeutil import utcnow

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
STAGE_INSERTED = "annostream_stage_inserted"
STAGE_RESOLVED = "annostream_stage_resolved"
STAGE_ANNOTATION = "annostream_stage_annotation"
STAGE_SUPERSEDED = "annostream_stage_superseded"
GENOTYPE_COLUMNS = ("id", "allele_id", "secondallele_id", "sample_id", "filter_status", "variant_quality")
_STAGE_ALLELE_COLUMNS = ("id", "ord", "second", *ALLELE_COLUMNS, "annotation")
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
                   batches: Iterable[list[VariantRecord] | VariantColumns], *,
                   properties: dict[str, Any] | None = None,
                   annotation_config_id: int | None = None,
                   bundle_version: str | None = None) -> WriteResult:
    """Store one analysis with its samples and variants; the caller commits.

    ``annotation_config_id``/``bundle_version`` are recorded on annotation rows this creates.
    ``batches`` may mix record lists and columnar blocks (``engine.vcf.fastpath``); a columnar
    block is written as one chunk of its own, so it must hold no variant twice (the fast path
    checks that when it builds one).
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
    # Parsing and encoding the next chunk (Python) overlaps with the database writing this one
    # (the driver releases the GIL while it waits), so a 2-core machine keeps both cores busy.
    encoded = (writer.encode(chunk, result) for chunk in _blocks(batches, CHUNK_SIZE))
    with _collector_paused(), _prefetched(encoded) as chunks:
        for chunk in chunks:
            writer.write_chunk(chunk, result)
    _reject_duplicate_genotypes(session, spec, probands)
    writer.finish(result)
    return result


def _reject_duplicate_genotypes(session: Session, spec: AnalysisSpec, probands: list[int]) -> None:
    """The per-chunk checks cannot see a variant repeated in two chunks; one query can.

    (The unique constraint does not catch it either: ``secondallele_id`` is NULL for most rows.)
    """
    duplicate = session.execute(
        sa.select(Allele.chromosome, Allele.vcf_pos, Allele.vcf_ref, Allele.vcf_alt)
        .join(Genotype, Genotype.allele_id == Allele.id)
        .where(Genotype.sample_id.in_(probands))
        .group_by(Genotype.sample_id, Genotype.allele_id, Genotype.secondallele_id, Allele.chromosome,
                  Allele.vcf_pos, Allele.vcf_ref, Allele.vcf_alt)
        .having(sa.func.count() > 1)
        .limit(1)
    ).first()
    if duplicate is not None:
        chromosome, pos, ref, alt = duplicate
        raise InputError(f"variant {chromosome}:{pos} {ref}>{alt} occurs more than once",
                         file=str(spec.folder), expected="each variant once per VCF")


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


@dataclass(slots=True)
class _EncodedChunk:
    """One chunk of variants with every row already encoded except the database ids.

    Encoding is the Python-heavy part of a write; it runs in a background thread (see
    ``_prefetched``) while the database works on the previous chunk, and only the cheap id
    splicing is left for the writing thread. On PostgreSQL rows are COPY text, on SQLite tuples.
    """

    size: int  # variants
    alleles: list[Any]  # staged allele rows without their id: first allele, then second if any
    second_at: list[int]  # per variant: index of its second allele row, or -1
    genotype_tails: list[Any]  # per variant: sample_id, filter_status, variant_quality
    sample_data: list[Any]  # PG: per variant, its rows with _GENOTYPE_ID placeholders; SQLite: rows
    sample_data_owner: list[int]  # SQLite only: variant index of each sample-data row
    has_annotation: bool


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
        self.is_postgres = loader.is_postgres
        self.merge_mode = _MergeMode()

    def encode(self, chunk: list[VariantRecord] | VariantColumns, result: WriteResult
               ) -> _EncodedChunk | _ColumnarChunk:
        """Check and encode a chunk; touches no database (runs in the prefetch thread)."""
        if isinstance(chunk, VariantColumns):
            if self.is_postgres:
                with result.timed("encode"):
                    return self._encode_columns(chunk)
            chunk = to_records(chunk)  # SQLite is the small-data database: no columnar path
        with result.timed("check"):
            self._check_chunk(chunk)
        with result.timed("encode"):
            if self.is_postgres:
                return self._encode_text(chunk)
            return self._encode_rows(chunk)

    def write_chunk(self, encoded: _EncodedChunk | _ColumnarChunk, result: WriteResult) -> None:
        if isinstance(encoded, _ColumnarChunk):
            self._write_columns(encoded, result)
        else:
            with result.timed("alleles"):
                first_ids, second_ids, n_new = self._merge(encoded)
                result.n_alleles_new += n_new
            with result.timed("genotypes"):
                genotype_ids = self.loader.reserve_ids("genotype", encoded.size)
                result.n_genotypes += self._insert_genotypes(encoded, genotype_ids, first_ids, second_ids)
            with result.timed("sample_data"):
                self._insert_sample_data(encoded, genotype_ids)
        if encoded.has_annotation:
            with result.timed("annotations"):
                self.annotations.stage_new()
                self.annotations.stage_from_resolved()
                result.annotations.add(self.annotations.apply())
        result.n_variants += encoded.size

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
        for table in (STAGE_ALLELE, STAGE_RESOLVED, STAGE_INSERTED):
            self.loader.drop_scratch_table(table)
        self.annotations.drop()

    def _check_chunk(self, chunk: list[VariantRecord]) -> None:
        seen: set[tuple[AlleleRecord, AlleleRecord | None]] = set()
        known = self.sample_ids.keys()
        for record in chunk:
            key = (record.allele, record.secondallele)
            if key in seen:
                raise InputError(
                    f"variant {record.allele.chromosome}:{record.allele.vcf_pos} "
                    f"{record.allele.vcf_ref}>{record.allele.vcf_alt} appears twice",
                    file=self.vcf_file, line=record.source_line, expected="each variant once per VCF",
                )
            seen.add(key)
            if not known >= record.samples.keys():
                unknown = set(record.samples) - known
                raise InputError(
                    f"genotype for unknown sample {sorted(unknown)[0]}", file=self.vcf_file,
                    line=record.source_line, expected=f"one of {', '.join(sorted(self.sample_ids))}",
                )

    def _proband_for(self, record: VariantRecord) -> int:
        if len(self.probands) == 1:
            return self.probands[0]
        for sample_id in self.probands:
            data = record.samples.get(self.identifier_by_id[sample_id])
            if data is not None and data.type in NON_REFERENCE:
                return sample_id
        return self.probands[0]

    # -- encoding (no database access: runs ahead in the prefetch thread) -------------------------

    def _encode_text(self, chunk: list[VariantRecord]) -> _EncodedChunk:
        """COPY text (PostgreSQL); each row's id is spliced in by the writing thread."""
        alleles: list[str] = []
        second_at: list[int] = []
        tails: list[str] = []
        blocks: list[str] = []
        has_annotation = False
        sample_ids = self.sample_ids
        placeholder = _GENOTYPE_ID
        for ord_, record in enumerate(chunk):
            doc = record.annotation
            alleles.append(_allele_text(ord_, "f", record.allele, doc))
            second = record.secondallele
            if second is not None:
                second_at.append(len(alleles))
                second_doc = record.secondallele_annotation
                alleles.append(_allele_text(ord_, "t", second, second_doc))
                has_annotation = has_annotation or second_doc is not None
            else:
                second_at.append(-1)
            has_annotation = has_annotation or doc is not None
            tails.append(f"\t{self._proband_for(record)}\t"
                         f"{_PG_NULL if record.filter_status is None else _escape(record.filter_status)}\t"
                         f"{_PG_NULL if record.variant_quality is None else record.variant_quality}\n")
            rows = [f"{placeholder}\t{sample_ids[identifier]}\tf{_sample_data_text(d)}"
                    for identifier, d in record.samples.items()]
            if second is not None and record.secondallele_samples:
                rows += [f"{placeholder}\t{sample_ids[identifier]}\tt{_sample_data_text(d)}"
                         for identifier, d in record.secondallele_samples.items()]
            blocks.append("".join(rows))
        return _EncodedChunk(len(chunk), alleles, second_at, tails, blocks, [], has_annotation)

    def _encode_rows(self, chunk: list[VariantRecord]) -> _EncodedChunk:
        """Parameter tuples (SQLite executemany)."""
        alleles: list[tuple[Any, ...]] = []
        second_at: list[int] = []
        tails: list[tuple[Any, ...]] = []
        rows: list[tuple[Any, ...]] = []
        owner: list[int] = []
        has_annotation = False
        for ord_, record in enumerate(chunk):
            alleles.append(_allele_row(ord_, False, record.allele, record.annotation))
            has_annotation = has_annotation or record.annotation is not None
            if record.secondallele is not None:
                second_at.append(len(alleles))
                alleles.append(_allele_row(ord_, True, record.secondallele, record.secondallele_annotation))
                has_annotation = has_annotation or record.secondallele_annotation is not None
            else:
                second_at.append(-1)
            tails.append((self._proband_for(record), record.filter_status, record.variant_quality))
            per_allele = [(False, record.samples)]
            if record.secondallele is not None and record.secondallele_samples:
                per_allele.append((True, record.secondallele_samples))
            for secondallele, samples in per_allele:
                for identifier, d in samples.items():
                    rows.append((self.sample_ids[identifier], secondallele, d.multiallelic, d.type,
                                 d.genotype_quality, d.sequencing_depth,
                                 None if d.allele_depth is None else _json(d.allele_depth), d.allele_ratio,
                                 None if d.genotype_likelihood is None else _json(d.genotype_likelihood),
                                 d.copy_number))
                    owner.append(ord_)
        return _EncodedChunk(len(chunk), alleles, second_at, tails, rows, owner, has_annotation)

    def _encode_columns(self, columns: VariantColumns) -> _ColumnarChunk:
        """COPY text of a columnar block (PostgreSQL), built with vectorised string kernels."""
        unknown = {identifier for identifier, _ in columns.samples} - self.sample_ids.keys()
        if unknown:
            raise InputError(f"genotype for unknown sample {sorted(unknown)[0]}", file=self.vcf_file,
                             expected=f"one of {', '.join(sorted(self.sample_ids))}")
        c = columns
        has_annotation = c.annotation.null_count < c.size
        alleles = _copy_row("f", _copy_text(c.chromosome), _copy_number(c.start_position),
                            _copy_number(c.open_end_position), _copy_text(c.change_from),
                            _copy_text(c.change_to), _copy_text(c.change_type), _copy_number(c.vcf_pos),
                            _copy_text(c.vcf_ref), _copy_text(c.vcf_alt), _copy_number(c.length),
                            _escape(c.caller_type), _escape(c.genome_reference), _copy_text(c.annotation))
        genotype_tails = _copy_row("", _copy_text(c.filter_status), _copy_number(c.variant_quality))
        sample_data = [(self.sample_ids[identifier], _copy_row(
            "", pc.if_else(d.multiallelic, "t", "f"), _copy_text(d.type), _copy_number(d.genotype_quality),
            _copy_number(d.sequencing_depth), _copy_text(d.allele_depth), _copy_number(d.allele_ratio),
            _copy_text(d.genotype_likelihood), _copy_number(d.copy_number)))
            for identifier, d in c.samples]
        proband = self.probands[0] if len(self.probands) == 1 else self.sample_ids[c.proband]
        return _ColumnarChunk(c.size, alleles, genotype_tails, proband, sample_data, has_annotation)

    def _write_columns(self, encoded: _ColumnarChunk, result: WriteResult) -> None:
        """``write_chunk`` for a columnar block: ids are joined to the COPY text in bulk."""
        loader = self.loader
        with result.timed("alleles"):
            reserved = loader.reserve_ids("allele", encoded.size)
            text = _copy_bytes(pc.binary_join_element_wise(
                _id_text(reserved), _id_text(range(encoded.size)), encoded.alleles, "\t"))

            def stage() -> None:
                loader.load_text(STAGE_ALLELE, _STAGE_ALLELE_COLUMNS, text)

            n_new, moved = _merge_staged_alleles(loader, stage, encoded.size, resolve=encoded.has_annotation,
                                                 mode=self.merge_mode)
            result.n_alleles_new += n_new
            allele_ids = _id_text([moved.get(i, i) for i in reserved] if moved else reserved)
        with result.timed("genotypes"):
            genotype_ids = _id_text(loader.reserve_ids("genotype", encoded.size))
            no_second_allele = f"\t{_PG_NULL}\t{encoded.proband}"
            result.n_genotypes += loader.load_text("genotype", GENOTYPE_COLUMNS, _copy_bytes(
                pc.binary_join_element_wise(genotype_ids, "\t", allele_ids, no_second_allele,
                                            encoded.genotype_tails, "")))
        with result.timed("sample_data"):
            parts: list[Any] = []
            for sample_id, rows in encoded.sample_data:
                parts += [genotype_ids, f"\t{sample_id}\tf", rows]
            loader.load_text("genotypesampledata", GSD_COLUMNS,
                             _copy_bytes(pc.binary_join_element_wise(*parts, "")))

    # -- writing --------------------------------------------------------------------------------

    def _merge(self, encoded: _EncodedChunk) -> tuple[list[int], list[int | None], int]:
        """Allele ids per variant (first, second) and how many alleles were new."""
        reserved = self.loader.reserve_ids("allele", len(encoded.alleles))
        if self.is_postgres:
            text = "".join([f"{allele_id}\t{row}"
                            for allele_id, row in zip(reserved, encoded.alleles, strict=True)])

            def stage() -> None:
                self.loader.load_text(STAGE_ALLELE, _STAGE_ALLELE_COLUMNS, text)
        else:
            rows = [(allele_id, *row) for allele_id, row in zip(reserved, encoded.alleles, strict=True)]

            def stage() -> None:
                self.loader.load(STAGE_ALLELE, _STAGE_ALLELE_COLUMNS, rows)
        n_new, moved = _merge_staged_alleles(self.loader, stage, len(reserved),
                                             resolve=encoded.has_annotation, mode=self.merge_mode)
        ids = [moved.get(allele_id, allele_id) for allele_id in reserved] if moved else reserved
        second_ids: list[int | None] = [None if at < 0 else ids[at] for at in encoded.second_at]
        # Row k of a chunk's first alleles is k plus the number of second alleles before it.
        first_ids = [a for a, second in zip(ids, _is_second_flags(encoded.second_at, len(ids)), strict=True)
                     if not second]
        return first_ids, second_ids, n_new

    def _insert_genotypes(self, encoded: _EncodedChunk, genotype_ids: list[int], first_ids: list[int],
                          second_ids: list[int | None]) -> int:
        if self.is_postgres:
            text = "".join([
                f"{genotype_id}\t{first}\t{_PG_NULL if second is None else second}{tail}"
                for genotype_id, first, second, tail
                in zip(genotype_ids, first_ids, second_ids, encoded.genotype_tails, strict=True)
            ])
            return self.loader.load_text("genotype", GENOTYPE_COLUMNS, text)
        return self.loader.load("genotype", GENOTYPE_COLUMNS, [
            (genotype_id, first, second, *tail)
            for genotype_id, first, second, tail
            in zip(genotype_ids, first_ids, second_ids, encoded.genotype_tails, strict=True)
        ])

    def _insert_sample_data(self, encoded: _EncodedChunk, genotype_ids: list[int]) -> None:
        if self.is_postgres:
            placeholder = _GENOTYPE_ID
            text = "".join([block.replace(placeholder, str(genotype_id))
                            for genotype_id, block in zip(genotype_ids, encoded.sample_data, strict=True)])
            self.loader.load_text("genotypesampledata", GSD_COLUMNS, text)
            return
        self.loader.load("genotypesampledata", GSD_COLUMNS, [
            (genotype_ids[owner], *row)
            for owner, row in zip(encoded.sample_data_owner, encoded.sample_data, strict=True)
        ])


def _is_second_flags(second_at: list[int], n_rows: int) -> list[bool]:
    flags = [False] * n_rows
    for at in second_at:
        if at >= 0:
            flags[at] = True
    return flags


# --- COPY text encoding -------------------------------------------------------------------------

_PG_NULL = PG_NULL
# Stands for the genotype id in pre-encoded sample-data rows. Never part of the encoded values:
# those are numbers, fixed words and JSON, which escapes control characters.
_GENOTYPE_ID = "\x01"
_COPY_SPECIAL = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _escape(value: str) -> str:
    """A string as a COPY text field (backslash, tab and line breaks escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_SPECIAL)
    return value


def _allele_text(ord_: int, second: str, a: AlleleRecord, doc: Any) -> str:
    return (f"{ord_}\t{second}\t{_escape(a.chromosome)}\t{a.start_position}\t{a.open_end_position}\t"
            f"{_escape(a.change_from)}\t{_escape(a.change_to)}\t{_escape(a.change_type)}\t{a.vcf_pos}\t"
            f"{_escape(a.vcf_ref)}\t{_escape(a.vcf_alt)}\t{a.length}\t{_escape(a.caller_type)}\t"
            f"{_escape(a.genome_reference)}\t{_PG_NULL if doc is None else _escape(_json(doc))}\n")


def _allele_row(ord_: int, second: bool, a: AlleleRecord, doc: Any) -> tuple[Any, ...]:
    return (ord_, second, a.chromosome, a.start_position, a.open_end_position, a.change_from, a.change_to,
            a.change_type, a.vcf_pos, a.vcf_ref, a.vcf_alt, a.length, a.caller_type, a.genome_reference,
            None if doc is None else _json(doc))


def _sample_data_text(d: SampleGenotypeRecord) -> str:
    """The genotypesampledata columns after (genotype_id, sample_id, secondallele), tab-led."""
    null = _PG_NULL
    depth = d.allele_depth
    likelihood = d.genotype_likelihood
    return (f"\t{'t' if d.multiallelic else 'f'}\t{_escape(d.type)}\t"
            f"{null if d.genotype_quality is None else d.genotype_quality}\t"
            f"{null if d.sequencing_depth is None else d.sequencing_depth}\t"
            f"{null if depth is None else _escape(_json(depth))}\t"
            f"{null if d.allele_ratio is None else d.allele_ratio}\t"
            f"{null if likelihood is None else _escape(_json(likelihood))}\t"
            f"{null if d.copy_number is None else d.copy_number}\n")


@dataclass(slots=True)
class _ColumnarChunk:
    """A columnar block encoded as COPY text columns, one entry per variant (ids still missing)."""

    size: int
    alleles: pa.Array  # staged allele rows after (id, ord)
    genotype_tails: pa.Array  # genotype rows after (id, allele_id, secondallele_id, sample_id)
    proband: int  # sample id of the genotypes
    sample_data: list[tuple[int, pa.Array]]  # per sample: its id, rows after (genotype_id, ...)
    has_annotation: bool


def _copy_text(values: pa.Array) -> pa.Array:
    """Strings as COPY text fields (``\\N`` for null)."""
    for special, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        if pc.any(pc.match_substring(values, special)).as_py():
            values = pc.replace_substring(values, special, escaped)
    return pc.fill_null(values, _PG_NULL)


def _copy_number(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.cast(values, pa.string()), _PG_NULL)


def _copy_row(*fields: Any) -> pa.Array:
    """Tab-separated fields, each row ending in a newline (a leading "" gives a leading tab)."""
    return pc.binary_join_element_wise(pc.binary_join_element_wise(*fields, "\t"), "\n", "")


def _id_text(ids: Iterable[int]) -> pa.Array:
    return pc.cast(pa.array(np.fromiter(ids, dtype=np.int64)), pa.string())


def _copy_bytes(rows: pa.Array) -> bytes:
    """The rows of a string array back to back (they end in newlines): COPY input."""
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)
    start, end = int(offsets[rows.offset]), int(offsets[rows.offset + len(rows)])
    return rows.buffers()[2].to_pybytes()[start:end] if end > start else b""


# --- alleles -------------------------------------------------------------------------------------


def _create_allele_stage(loader: BulkLoader) -> None:
    loader.create_scratch_table(
        STAGE_ALLELE,
        "id INTEGER, ord INTEGER, second BOOLEAN, chromosome TEXT, start_position INTEGER, "
        "open_end_position INTEGER, change_from TEXT, change_to TEXT, change_type TEXT, vcf_pos INTEGER, "
        "vcf_ref TEXT, vcf_alt TEXT, length INTEGER, caller_type TEXT, genome_reference TEXT, "
        f"annotation {loader.json_type}",
    )


@dataclass
class _MergeMode:
    """Whether the next staged alleles are expected to be all new (see ``_insert_if_all_new``)."""

    expect_new: bool = True


def _insert_if_all_new(loader: BulkLoader, columns: str, mode: _MergeMode | None) -> bool:
    """PostgreSQL: insert the staged alleles with a plain INSERT, if none is stored yet.

    A plain INSERT costs about half of ``ON CONFLICT DO NOTHING`` (measured: 3.0 s against
    5.9 s for 664k alleles) and is what a VCF of new variants needs. In a savepoint: the first
    stored allele (or one a concurrent import is inserting) raises a unique violation, which is
    rolled back, and from then on this import merges with ON CONFLICT only. With many stored
    alleles the violation comes within the first rows, so the failed try costs little.
    """
    if mode is None or not mode.expect_new or not loader.is_postgres:
        return False
    savepoint = loader.connection.begin_nested()
    try:
        loader.execute(f"INSERT INTO allele ({columns}) SELECT {columns} FROM {STAGE_ALLELE}")
    except sa.exc.IntegrityError:
        savepoint.rollback()
        mode.expect_new = False
        return False
    savepoint.commit()
    return True


def _merge_staged_alleles(loader: BulkLoader, stage: Callable[[], None], n_staged: int, *,
                          resolve: bool, mode: _MergeMode | None = None) -> tuple[int, dict[int, int]]:
    """Insert the staged alleles that are new, under the ids reserved for them.

    ``stage`` fills ``STAGE_ALLELE`` with ``n_staged`` rows, each with a freshly reserved id.
    Rows whose allele is already stored (or repeated within the stage) keep the stored id;
    returns how many were new and {reserved id: stored id} for those. With ``resolve``, also
    leaves ``STAGE_RESOLVED`` (ord, second, allele_id, annotation) for annotation versioning.
    """
    _create_allele_stage(loader)
    stage()
    columns = ", ".join(("id", *ALLELE_COLUMNS))
    match = " AND ".join(f"a.{c} = s.{c}" for c in ALLELE_IDENTITY)
    # WHERE true: SQLite needs it to parse INSERT ... SELECT ... ON CONFLICT unambiguously.
    insert = (f"INSERT INTO allele ({columns}) SELECT {columns} FROM {STAGE_ALLELE} WHERE true "
              "ON CONFLICT DO NOTHING")
    moved: dict[int, int] = {}
    if _insert_if_all_new(loader, columns, mode):
        n_new = n_staged
    elif loader.is_postgres:
        # Only rows that were not inserted need the (index-probing) identity join.
        loader.create_scratch_table(STAGE_INSERTED, "id INTEGER")
        n_new = loader.execute(
            f"WITH ins AS ({insert} RETURNING id) INSERT INTO {STAGE_INSERTED} SELECT id FROM ins").rowcount
        if n_new < n_staged:  # typical for a fresh VCF: every staged allele was new, no lookup
            loader.analyze(STAGE_INSERTED)
            loader.analyze(STAGE_ALLELE)
            moved = _id_pairs(loader.execute(
                f"SELECT s.id, a.id FROM {STAGE_ALLELE} s JOIN allele a ON {match} "
                f"WHERE NOT EXISTS (SELECT 1 FROM {STAGE_INSERTED} i WHERE i.id = s.id)"
            ))
    else:
        n_new = loader.execute(insert).rowcount
        moved = _id_pairs(loader.execute(
            f"SELECT s.id, a.id FROM {STAGE_ALLELE} s JOIN allele a ON {match} WHERE a.id <> s.id"
        ))
    if resolve:
        loader.create_scratch_table_as(
            STAGE_RESOLVED,
            f"SELECT s.ord, s.second, a.id AS allele_id, s.annotation FROM {STAGE_ALLELE} s "
            f"JOIN allele a ON {match} WHERE s.annotation IS NOT NULL",
        )
        loader.analyze(STAGE_RESOLVED)
    return int(n_new), moved


def _id_pairs(rows: Iterable[Any]) -> dict[int, int]:
    return {int(staged): int(stored) for staged, stored in rows}


def _merge_alleles(loader: BulkLoader, rows: Iterable[tuple[int, bool, AlleleRecord, Any]]) -> int:
    """Merge (ord, second, allele, annotation) rows; leaves ``STAGE_RESOLVED``. Returns how many
    alleles were new."""
    staged = [_allele_row(ord_, second, a, doc) for ord_, second, a, doc in rows]
    reserved = loader.reserve_ids("allele", len(staged))
    null = loader.null

    def stage() -> None:
        loader.load(STAGE_ALLELE, _STAGE_ALLELE_COLUMNS, (
            (allele_id, *(null if value is None else value for value in row))
            for allele_id, row in zip(reserved, staged, strict=True)
        ))

    n_new, _moved = _merge_staged_alleles(loader, stage, len(reserved), resolve=True)
    return n_new


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
        """PostgreSQL: jsonb equality decides, two set-based statements do the rest.

        Both statements are bounded to the staged allele id range, so the partial unique index of
        current rows is read from there, not from its start (which made each batch of a release
        slower than the one before). The superseded rows are keyed by allele: the insert's join
        then probes an index whatever the planner estimates (after the update it expects about
        one new row, and once chose a 50k x 50k nested loop over an unindexed scratch table).
        """
        loader = self.loader
        extent: tuple[Any, ...] = tuple(loader.execute(
            f"SELECT COUNT(*), MIN(allele_id), MAX(allele_id) FROM {STAGE_ANNOTATION}").one())
        staged, low, high = extent
        if not staged:
            return AnnotationWriteResult()
        bounds = {"now": now, "low": low, "high": high}
        loader.create_scratch_table(STAGE_SUPERSEDED, "allele_id INTEGER PRIMARY KEY, id INTEGER")
        superseded = loader.execute(
            f"WITH changed AS (UPDATE annotation a SET date_superceeded = :now FROM {STAGE_ANNOTATION} s "
            "WHERE a.allele_id = s.allele_id AND a.date_superceeded IS NULL "
            "AND a.allele_id BETWEEN :low AND :high AND a.annotations <> s.annotation "
            f"RETURNING a.allele_id, a.id) INSERT INTO {STAGE_SUPERSEDED} SELECT allele_id, id FROM changed",
            bounds,
        ).rowcount
        loader.analyze(STAGE_SUPERSEDED)
        # After the update, an allele has a current row exactly when its document was unchanged.
        created = loader.execute(
            "INSERT INTO annotation (allele_id, annotations, schema_version, date_created, "
            "previous_annotation_id, annotation_config_id, bundle_version) "
            f"SELECT s.allele_id, s.annotation, 1, :now, old.id, :cfg, :bundle FROM {STAGE_ANNOTATION} s "
            f"LEFT JOIN {STAGE_SUPERSEDED} old ON old.allele_id = s.allele_id "
            "WHERE NOT EXISTS (SELECT 1 FROM annotation c WHERE c.allele_id = s.allele_id "
            "AND c.date_superceeded IS NULL AND c.allele_id BETWEEN :low AND :high)",
            {**bounds, **self.params},
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


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while chunks are built and written.

    A chunk is hundreds of thousands of small acyclic objects (records, rows); with the collector
    on, its generation scans revisit them again and again, which tripled the cost of checking a
    chunk (measured). Memory is still freed by reference counting as each chunk is dropped.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _prefetched(items: Iterator[Any], depth: int = 1) -> Iterator[Iterator[Any]]:
    """Iterate ``items`` produced ahead in a background thread, at most ``depth`` waiting.

    Exceptions (say, an ``InputError`` from the parser) are re-raised in the consumer; leaving
    the block early stops the producer at its next item (memory stays bounded either way).
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put("error", error)

    def consume() -> Iterator[Any]:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    thread = threading.Thread(target=produce, name="annostream-encode", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()


def _blocks(batches: Iterable[list[VariantRecord] | VariantColumns], size: int
            ) -> Iterator[list[VariantRecord] | VariantColumns]:
    """Record lists re-cut into chunks of at most ``size``; a columnar block is a chunk itself.

    File order is kept: pending records are written before the block that follows them.
    """
    pending: list[VariantRecord] = []
    for batch in batches:
        if isinstance(batch, VariantColumns):
            if pending:
                yield from _chunks([pending], size)
                pending = []
            if batch.size:
                yield batch
            continue
        pending.extend(batch)
        if len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield from _chunks([pending], size)


def _chunks(batches: Iterable[Iterable[Any]], size: int) -> Iterator[list[Any]]:
    """Re-cut a stream of batches into lists of at most ``size`` items, lazily."""
    items = (item for batch in batches for item in batch)
    while chunk := list(islice(items, size)):
        yield chunk
