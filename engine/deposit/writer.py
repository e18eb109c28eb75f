"""Bulk writer: an analysis, its samples, alleles, genotypes and annotation into ELLA's tables.

Everything but the allele merge happens in the caller's transaction, so an analysis, its samples,
genotypes and annotation are stored completely or not at all. New alleles are committed on their
own as each chunk is merged (``engine.deposit.alleles``): they are shared by every analysis, and
holding them until the whole import commits made concurrent imports wait for each other.

Variants arrive as a stream of batches and are written set-based per chunk: the chunk's alleles
are staged and merged into ``allele`` (``engine.deposit.alleles``), genotypes and sample data are
appended in bulk, annotation is versioned (``engine.deposit.annotations``). Memory is bounded by
the chunk.

The seams: analysis and sample rows (``analysis_rows``), the encoders (``encoders``), allele merge
(``alleles``), annotation versioning (``annotations``), COPY escaping (``engine.db.copytext``) and
everything database-specific (``engine.db.bulk``): this module never asks which database it
talks to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db import copytext
from engine.db.bulk import BulkLoader, bulk_loader
from engine.db.models import Allele, Genotype
from engine.deposit.alleles import (
    STAGE_ALLELE,
    STAGE_ALLELE_COLUMNS,
    MergeMode,
    can_merge_apart,
    merged_alleles,
)
from engine.deposit.analysis_rows import delete_analysis, insert_analysis, insert_samples
from engine.deposit.annotations import AnnotationVersioner, AnnotationWriteResult, write_annotations
from engine.deposit.columns import VariantColumns
from engine.deposit.encoders import ChunkEncoder, ColumnarChunk, EncodedChunk
from engine.deposit.specs import AnalysisSpec, SampleRecord
from engine.deposit.streams import blocks, collector_paused, prefetched
from engine.deposit.targets import deposit_target
from engine.errors import InputError
from engine.timeutil import add_seconds
from engine.vcf.records import VariantRecord

__all__ = [
    "CHUNK_SIZE",
    "AnnotationWriteResult",
    "WriteResult",
    "delete_analysis",
    "write_analysis",
    "write_analysis_parts",
    "write_annotations",
]

# Records per set-based round: large enough to amortise statement overhead, small enough that
# the scratch tables and CSV buffers stay a few tens of MB.
CHUNK_SIZE = 100_000

GENOTYPE_COLUMNS = ("id", "allele_id", "secondallele_id", "sample_id", "filter_status", "variant_quality")
GSD_COLUMNS = (
    "genotype_id",
    "sample_id",
    "secondallele",
    "multiallelic",
    "type",
    "genotype_quality",
    "sequencing_depth",
    "allele_depth",
    "allele_ratio",
    "genotype_likelihood",
    "copy_number",
)


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

    def timed(self, stage: str) -> AbstractContextManager[None]:
        return add_seconds(self.seconds, stage)


Batches = Iterable[list[VariantRecord] | VariantColumns]


def write_analysis(
    session: Session,
    spec: AnalysisSpec,
    samples: list[SampleRecord],
    batches: Batches,
    *,
    properties: dict[str, Any] | None = None,
    annotation_config_id: int | None = None,
    bundle_version: str | None = None,
    empty_documents: bool = False,
) -> WriteResult:
    """Store one analysis with its samples and variants; the caller commits.

    ``annotation_config_id``/``bundle_version`` are recorded on annotation rows this creates.
    ``batches`` may mix record lists and columnar blocks (``engine.vcf.fastpath``); a columnar
    block is written as one chunk of its own, so it must hold no variant twice (the fast path
    checks that when it builds one). ``empty_documents``: an allele whose record has no
    annotation document gets ``{}`` as its current annotation, as ELLA's deposit writes one row
    for every imported allele (``AnnotationImporter.add``).
    """
    parts = [(samples, batches, None)] if samples or spec.vcfs else []
    return write_analysis_parts(
        session,
        spec,
        parts,
        properties=properties,
        annotation_config_id=annotation_config_id,
        bundle_version=bundle_version,
        empty_documents=empty_documents,
    )


def write_analysis_parts(
    session: Session,
    spec: AnalysisSpec,
    parts: Sequence[tuple[list[SampleRecord], Batches, str | None]],
    *,
    properties: dict[str, Any] | None = None,
    annotation_config_id: int | None = None,
    bundle_version: str | None = None,
    empty_documents: bool = False,
) -> WriteResult:
    """``write_analysis`` with one part per VCF: ``(its samples, its batches, its file)``.

    As ELLA's ``DepositAnalysis.import_vcf`` does for each entry of ``data``, every part gets
    sample rows of its own (an HTS trio plus a Sanger proband is two rows for the proband), and
    its genotypes refer to them. No parts: an analysis without samples (``"data": []``).
    """
    target = deposit_target(session)
    analysis_id = insert_analysis(session, target, spec, properties)
    result = WriteResult(analysis_id=analysis_id)
    for samples, batches, part_file in parts:
        sample_ids = insert_samples(session, spec, analysis_id, samples)
        probands = [sample_ids[s.identifier] for s in samples if s.proband]
        if not probands:
            raise InputError(
                f"analysis {spec.name} has no proband sample",
                file=part_file or str(spec.folder),
                expected="one sample marked as proband",
            )
        loader = bulk_loader(session)
        vcf_file = part_file or (str(spec.vcfs[0].path) if len(spec.vcfs) == 1 else str(spec.folder))
        encoder = target.encoder_class(loader.row_format)(sample_ids, probands, vcf_file)
        versioner = AnnotationVersioner(loader, target, annotation_config_id, bundle_version)
        writer = _VariantWriter(
            loader, encoder, probands, versioner, merge_apart=can_merge_apart(loader, annotation_config_id)
        )
        new_before = result.n_alleles_new
        # Parsing and encoding the next chunk (Python) overlaps with the database writing this one
        # (the driver releases the GIL while it waits), so a 2-core machine keeps both cores busy.
        encoded = (
            encoder.encode(_with_empty_documents(chunk) if empty_documents else chunk, result.timed)
            for chunk in blocks(batches, CHUNK_SIZE)
        )
        with collector_paused(), prefetched(encoded) as chunks:
            for chunk in chunks:
                writer.write_chunk(chunk, result)
        _reject_duplicate_genotypes(session, spec, probands)
        writer.finish(result, new_before)
    return result


def _with_empty_documents(
    chunk: list[VariantRecord] | VariantColumns,
) -> list[VariantRecord] | VariantColumns:
    """Records without an annotation document get ``{}`` (ELLA's AnnotationImporter.add)."""
    if isinstance(chunk, VariantColumns):
        if chunk.annotation.null_count == 0:
            return chunk
        return dataclasses.replace(chunk, annotation=pc.fill_null(chunk.annotation, "{}"))
    for record in chunk:
        if record.annotation is None:
            record.annotation = {}
        if record.secondallele is not None and record.secondallele_annotation is None:
            record.secondallele_annotation = {}
    return chunk


def _reject_duplicate_genotypes(session: Session, spec: AnalysisSpec, probands: list[int]) -> None:
    """The per-chunk checks cannot see a variant repeated in two chunks; one query can.

    (The unique constraint does not catch it either: ``secondallele_id`` is NULL for most rows.)
    """
    duplicate = session.execute(
        sa.select(Allele.chromosome, Allele.vcf_pos, Allele.vcf_ref, Allele.vcf_alt)
        .join(Genotype, Genotype.allele_id == Allele.id)
        .where(Genotype.sample_id.in_(probands))
        .group_by(
            Genotype.sample_id,
            Genotype.allele_id,
            Genotype.secondallele_id,
            Allele.chromosome,
            Allele.vcf_pos,
            Allele.vcf_ref,
            Allele.vcf_alt,
        )
        .having(sa.func.count() > 1)
        .limit(1)
    ).first()
    if duplicate is not None:
        chromosome, pos, ref, alt = duplicate
        raise InputError(
            f"variant {chromosome}:{pos} {ref}>{alt} occurs more than once",
            file=str(spec.folder),
            expected="each variant once per VCF",
        )


class _VariantWriter:
    """Writes encoded chunks of one analysis's variants."""

    def __init__(
        self,
        loader: BulkLoader,
        encoder: ChunkEncoder,
        probands: list[int],
        annotations: AnnotationVersioner,
        *,
        merge_apart: bool,
    ) -> None:
        self.loader = loader
        self.merge_apart = merge_apart
        self.encoder = encoder
        self.probands = probands
        self.annotations = annotations
        self.merge_mode = MergeMode()

    def write_chunk(self, encoded: EncodedChunk | ColumnarChunk, result: WriteResult) -> None:
        if isinstance(encoded, ColumnarChunk):
            self._write_columns(encoded, result)
        else:
            self._write_records(encoded, result)
        result.n_variants += encoded.size

    def _merge(
        self, stage: Callable[[BulkLoader], None], n_staged: int, has_annotation: bool, result: WriteResult
    ) -> dict[int, int]:
        """Merge the chunk's alleles and version their documents, committed together before the
        chunk's genotypes are written (``merged_alleles``); returns {reserved id: stored id}."""
        with ExitStack() as merge_transaction:
            with result.timed("alleles"):
                merged = merge_transaction.enter_context(
                    merged_alleles(
                        self.loader,
                        stage,
                        n_staged,
                        resolve=has_annotation,
                        mode=self.merge_mode,
                        apart=self.merge_apart,
                    )
                )
            if has_annotation:
                with result.timed("annotations"):
                    versioner = self.annotations.on(merged.loader)
                    result.annotations.add(versioner.apply_resolved(merged.resolved, all_new=merged.all_new))
            with result.timed("alleles"):
                merge_transaction.close()  # commits
        result.n_alleles_new += merged.n_new
        return merged.moved

    def finish(self, result: WriteResult, new_before: int = 0) -> None:
        # Counted once at the end: an allele repeated across chunks is still one allele.
        used = self.loader.connection.execute(
            sa.text(
                "SELECT COUNT(*) FROM (SELECT allele_id AS id FROM genotype WHERE sample_id IN :ids "
                "UNION SELECT secondallele_id FROM genotype WHERE sample_id IN :ids "
                "AND secondallele_id IS NOT NULL) AS used"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": self.probands},
        ).scalar_one()
        result.n_alleles_reused += int(used) - (result.n_alleles_new - new_before)

    def _write_records(self, encoded: EncodedChunk, result: WriteResult) -> None:
        loader, encoder = self.loader, self.encoder
        with result.timed("alleles"):
            reserved = loader.reserve_ids("allele", len(encoded.alleles))
            staged = encoder.alleles_with_ids(encoded, reserved)

        def stage(merger: BulkLoader) -> None:
            merger.load_encoded(STAGE_ALLELE, STAGE_ALLELE_COLUMNS, staged)

        moved = self._merge(stage, len(reserved), encoded.has_annotation, result)
        with result.timed("alleles"):
            ids = [moved.get(allele_id, allele_id) for allele_id in reserved] if moved else reserved
            second_ids: list[int | None] = [None if at < 0 else ids[at] for at in encoded.second_at]
            # Row k of a chunk's first alleles is k plus the number of second alleles before it.
            first_ids = [
                a
                for a, second in zip(ids, _is_second_flags(encoded.second_at, len(ids)), strict=True)
                if not second
            ]
        with result.timed("genotypes"):
            genotype_ids = loader.reserve_ids("genotype", encoded.size)
            result.n_genotypes += loader.load_encoded(
                "genotype",
                GENOTYPE_COLUMNS,
                encoder.genotypes_with_ids(encoded, genotype_ids, first_ids, second_ids),
            )
        with result.timed("sample_data"):
            loader.load_encoded(
                "genotypesampledata", GSD_COLUMNS, encoder.sample_data_with_ids(encoded, genotype_ids)
            )

    def _write_columns(self, encoded: ColumnarChunk, result: WriteResult) -> None:
        """A columnar block (COPY text only): ids are joined to the COPY text in bulk."""
        loader = self.loader
        with result.timed("alleles"):
            reserved = loader.reserve_ids("allele", encoded.size)
            text = copytext.column_bytes(
                pc.binary_join_element_wise(
                    copytext.id_column(reserved),
                    copytext.id_column(range(encoded.size)),
                    encoded.alleles,
                    "\t",
                )
            )

        def stage(merger: BulkLoader) -> None:
            merger.load_encoded(STAGE_ALLELE, STAGE_ALLELE_COLUMNS, text)

        moved = self._merge(stage, encoded.size, encoded.has_annotation, result)
        with result.timed("alleles"):
            allele_ids = copytext.id_column([moved.get(i, i) for i in reserved] if moved else reserved)
        with result.timed("genotypes"):
            genotype_ids = copytext.id_column(loader.reserve_ids("genotype", encoded.size))
            no_second_allele = f"\t{copytext.NULL}\t{encoded.proband}"
            result.n_genotypes += loader.load_encoded(
                "genotype",
                GENOTYPE_COLUMNS,
                copytext.column_bytes(
                    pc.binary_join_element_wise(
                        genotype_ids, "\t", allele_ids, no_second_allele, encoded.genotype_tails, ""
                    )
                ),
            )
        with result.timed("sample_data"):
            parts: list[Any] = []
            for sample_id, rows in encoded.sample_data:
                parts += [genotype_ids, f"\t{sample_id}\tf", rows]
            loader.load_encoded(
                "genotypesampledata",
                GSD_COLUMNS,
                copytext.column_bytes(pc.binary_join_element_wise(*parts, "")),
            )


def _is_second_flags(second_at: list[int], n_rows: int) -> list[bool]:
    flags = [False] * n_rows
    for at in second_at:
        if at >= 0:
            flags[at] = True
    return flags
