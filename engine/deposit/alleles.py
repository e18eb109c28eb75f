"""Allele merge: staged alleles become rows of ``allele``, shared across analyses.

ELLA's unique constraint ``ucAllele`` makes an allele one row however many analyses carry it.
A chunk's alleles are staged in a scratch table under freshly reserved ids; the loader inserts
the new ones (``BulkLoader.insert_new``) and maps the others to their stored ids, in a short
transaction of its own that the chunk's annotation versioning joins (:func:`merged_alleles`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from engine.db.bulk import BulkLoader
from engine.db.models import ALLELE_COLUMNS, ALLELE_IDENTITY
from engine.vcf.records import AlleleRecord

STAGE_ALLELE = "annostream_stage_allele"
# (staged id, stored id) of the staged alleles that were already stored.
STAGE_MOVED = "annostream_stage_moved"
STAGE_ALLELE_COLUMNS = ("id", "ord", "second", *ALLELE_COLUMNS, "annotation")
# The identity columns, integers first: the merge inserts rows in this order (a total order, so
# concurrent merges lock shared rows in the same order); sorting 50k alleles integers first took
# 25 ms, chromosome (collated text) first 53 ms.
_INTEGER_IDENTITY = ("start_position", "open_end_position", "vcf_pos", "length")
ALLELE_MERGE_ORDER = (*_INTEGER_IDENTITY, *(c for c in ALLELE_IDENTITY if c not in _INTEGER_IDENTITY))


@dataclass
class MergeMode:
    """Whether the next staged alleles are expected to be all new (a plain INSERT is tried)."""

    expect_new: bool = True


def _create_allele_stage(loader: BulkLoader) -> None:
    # The allele columns take their types from the allele table itself: in ELLA's database
    # change_type and caller_type are enums, into which a text column would not insert.
    loader.create_scratch_table_as(
        STAGE_ALLELE,
        f"SELECT id, 0 AS ord, false AS second, {', '.join(ALLELE_COLUMNS)}, "
        f"CAST(NULL AS {loader.json_type}) AS annotation FROM allele WHERE false",
    )


@dataclass
class MergedAlleles:
    """A chunk's merged alleles, inside the merge's own transaction (see :func:`merged_alleles`)."""

    loader: BulkLoader  # where the merge runs: its documents' versioning belongs there too
    n_staged: int
    n_new: int
    moved: dict[int, int]  # {reserved id: stored id} of the staged rows that were not new
    # With ``resolve``: a FROM item of the staged documents under their stored allele ids
    # (ord, second, allele_id, annotation, fresh), readable on ``loader`` inside the block.
    resolved: str = ""

    @property
    def all_new(self) -> bool:
        return self.n_new == self.n_staged


@contextmanager
def merged_alleles(
    loader: BulkLoader,
    stage: Callable[[BulkLoader], None],
    n_staged: int,
    *,
    resolve: bool,
    mode: MergeMode | None = None,
    apart: bool = True,
) -> Iterator[MergedAlleles]:
    """Insert the staged alleles that are new, under the ids reserved for them; committed when
    the block ends, together with whatever the block writes through ``MergedAlleles.loader``.

    ``stage(merger)`` fills ``STAGE_ALLELE`` on the loader it is given with ``n_staged`` rows,
    each with a freshly reserved id. Rows whose allele is already stored (or repeated within the
    stage) keep the stored id. With ``resolve``, ``MergedAlleles.resolved`` reads the staged
    documents under their stored allele ids, for annotation versioning.

    The merge has a transaction of its own (``BulkLoader.committed_apart``), not the caller's:
    ``ucAllele`` (and the one-current-annotation index) is shared by every import, and an insert
    of a key that another import's open transaction has inserted waits until that transaction
    ends, so two imports sharing alleles ran one after the other. An allele and its annotation
    are shared facts, not the analysis's: if the import then fails they stay, and its retry (or
    the next analysis with the allele) reuses them. ``apart=False`` (see :func:`can_merge_apart`)
    merges in the caller's transaction instead.
    """
    try_plain = mode is not None and mode.expect_new
    with loader.committed_apart() if apart else nullcontext(loader) as merger:
        _create_allele_stage(merger)
        stage(merger)
        n_new, moved, plain_worked = merger.insert_new(
            "allele",
            ("id", *ALLELE_COLUMNS),
            STAGE_ALLELE,
            n_staged,
            ALLELE_MERGE_ORDER,
            try_plain_insert=try_plain,
        )
        if mode is not None and try_plain:
            mode.expect_new = plain_worked
        resolved = _resolve(merger, moved) if resolve else ""
        yield MergedAlleles(merger, n_staged, n_new, moved, resolved)
        drop_stages(merger)


def can_merge_apart(loader: BulkLoader, annotation_config_id: int | None) -> bool:
    """Whether a merge in its own transaction sees the annotation config its documents will
    name. The caller's transaction may have stored it just now (the first import into an empty
    database stores the shipped default), and another transaction does not see that until it
    commits: then the merge stays in the caller's transaction."""
    if annotation_config_id is None:
        return True
    with loader.committed_apart() as merger:
        if merger is loader:
            return True
        found = merger.execute(
            "SELECT 1 FROM annotationconfig WHERE id = :id", {"id": annotation_config_id}
        ).first()
        return found is not None


def _resolve(loader: BulkLoader, moved: dict[int, int]) -> str:
    """A FROM item: the staged documents under their stored allele ids (ord, second, allele_id,
    annotation, fresh); ``fresh`` marks the rows whose allele this merge created (no annotation
    can exist for it elsewhere). A subquery, not a table: copying 100k documents into one more
    scratch table per chunk cost about 0.3 s of a fresh VCF's chunk."""
    if not moved:
        return (
            "(SELECT s.ord, s.second, s.id AS allele_id, s.annotation, true AS fresh "
            f"FROM {STAGE_ALLELE} s WHERE s.annotation IS NOT NULL) resolved"
        )
    # The merge returned every staged id that maps elsewhere: a join on the id, not on the
    # eleven identity columns (which cost about 2 s of index probes for 664k alleles).
    loader.create_scratch_table(STAGE_MOVED, "staged_id BIGINT PRIMARY KEY, allele_id BIGINT")
    loader.load(STAGE_MOVED, ("staged_id", "allele_id"), moved.items())
    loader.analyze(STAGE_MOVED)
    return (
        "(SELECT s.ord, s.second, COALESCE(m.allele_id, s.id) AS allele_id, s.annotation, "
        f"m.staged_id IS NULL AS fresh FROM {STAGE_ALLELE} s "
        f"LEFT JOIN {STAGE_MOVED} m ON m.staged_id = s.id WHERE s.annotation IS NOT NULL) resolved"
    )


def merged_records(
    loader: BulkLoader, rows: Iterable[tuple[int, bool, AlleleRecord, str | None]], *, apart: bool
) -> AbstractContextManager[MergedAlleles]:
    """:func:`merged_alleles` of (ord, second, allele, annotation JSON) rows, resolved."""
    staged = [allele_row(ord_, second, a, doc) for ord_, second, a, doc in rows]
    reserved = loader.reserve_ids("allele", len(staged))
    null = loader.null
    with_ids = [
        (allele_id, *(null if value is None else value for value in row))
        for allele_id, row in zip(reserved, staged, strict=True)
    ]

    def stage(merger: BulkLoader) -> None:
        merger.load(STAGE_ALLELE, STAGE_ALLELE_COLUMNS, with_ids)

    return merged_alleles(loader, stage, len(reserved), resolve=True, apart=apart)


def allele_row(ord_: int, second: bool, a: AlleleRecord, doc: str | None) -> tuple[Any, ...]:
    """A staged allele row after its id, as parameters (``doc`` is the annotation as JSON)."""
    return (
        ord_,
        second,
        a.chromosome,
        a.start_position,
        a.open_end_position,
        a.change_from,
        a.change_to,
        a.change_type,
        a.vcf_pos,
        a.vcf_ref,
        a.vcf_alt,
        a.length,
        a.caller_type,
        a.genome_reference,
        doc,
    )


def drop_stages(loader: BulkLoader) -> None:
    for table in (STAGE_ALLELE, STAGE_MOVED):
        loader.drop_scratch_table(table)
