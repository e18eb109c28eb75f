"""Allele merge: staged alleles become rows of ``allele``, shared across analyses.

ELLA's unique constraint ``ucAllele`` makes an allele one row however many analyses carry it.
A chunk's alleles are staged in a scratch table under freshly reserved ids; the loader inserts
the new ones (``BulkLoader.insert_new``) and maps the others to their stored ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from engine.db.bulk import BulkLoader
from engine.db.models import ALLELE_COLUMNS, ALLELE_IDENTITY
from engine.vcf.records import AlleleRecord

STAGE_ALLELE = "annostream_stage_allele"
# (ord, second, allele_id, annotation) of the last merge, for annotation versioning.
STAGE_RESOLVED = "annostream_stage_resolved"
STAGE_ALLELE_COLUMNS = ("id", "ord", "second", *ALLELE_COLUMNS, "annotation")


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


def merge_staged_alleles(
    loader: BulkLoader,
    stage: Callable[[], None],
    n_staged: int,
    *,
    resolve: bool,
    mode: MergeMode | None = None,
) -> tuple[int, dict[int, int]]:
    """Insert the staged alleles that are new, under the ids reserved for them.

    ``stage`` fills ``STAGE_ALLELE`` with ``n_staged`` rows, each with a freshly reserved id.
    Rows whose allele is already stored (or repeated within the stage) keep the stored id;
    returns how many were new and {reserved id: stored id} for those. With ``resolve``, also
    leaves ``STAGE_RESOLVED`` (ord, second, allele_id, annotation) for annotation versioning.
    """
    _create_allele_stage(loader)
    stage()
    try_plain = mode is not None and mode.expect_new
    n_new, moved, plain_worked = loader.insert_new(
        "allele", ("id", *ALLELE_COLUMNS), STAGE_ALLELE, n_staged, ALLELE_IDENTITY, try_plain_insert=try_plain
    )
    if mode is not None and try_plain:
        mode.expect_new = plain_worked
    if resolve:
        if n_new == n_staged:
            # Every staged row went in under its reserved id (a fresh VCF): no identity join, which
            # cost about 2 s of index probes for 664k alleles on PostgreSQL.
            source = f"SELECT s.ord, s.second, s.id AS allele_id, s.annotation FROM {STAGE_ALLELE} s"
        else:
            match = " AND ".join(f"a.{c} = s.{c}" for c in ALLELE_IDENTITY)
            source = (
                f"SELECT s.ord, s.second, a.id AS allele_id, s.annotation FROM {STAGE_ALLELE} s "
                f"JOIN allele a ON {match}"
            )
        loader.create_scratch_table_as(STAGE_RESOLVED, f"{source} WHERE s.annotation IS NOT NULL")
        loader.analyze(STAGE_RESOLVED)
    return n_new, moved


def merge_alleles(loader: BulkLoader, rows: Iterable[tuple[int, bool, AlleleRecord, str | None]]) -> int:
    """Merge (ord, second, allele, annotation JSON) rows; leaves ``STAGE_RESOLVED``. Returns how
    many alleles were new."""
    staged = [allele_row(ord_, second, a, doc) for ord_, second, a, doc in rows]
    reserved = loader.reserve_ids("allele", len(staged))
    null = loader.null

    def stage() -> None:
        loader.load(
            STAGE_ALLELE,
            STAGE_ALLELE_COLUMNS,
            (
                (allele_id, *(null if value is None else value for value in row))
                for allele_id, row in zip(reserved, staged, strict=True)
            ),
        )

    n_new, _moved = merge_staged_alleles(loader, stage, len(reserved), resolve=True)
    return n_new


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
    for table in (STAGE_ALLELE, STAGE_RESOLVED):
        loader.drop_scratch_table(table)
