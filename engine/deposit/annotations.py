"""Annotation versioning: ELLA's one current ``annotation`` row per allele.

A staged document that equals the allele's current one (as JSON values) is reused; a different
one supersedes it (``date_superceeded`` set, the new row linked as ``previous_annotation_id``).
The same set-based SQL runs on every database; what differs (JSON equality, UPDATE ... RETURNING
into a table) is the loader's.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.db.bulk import BulkLoader, bulk_loader
from engine.deposit.alleles import can_merge_apart, merged_records
from engine.deposit.streams import chunks
from engine.deposit.targets import DepositTarget, deposit_target
from engine.timeutil import utcnow
from engine.vcf.records import AlleleRecord

# Documents per set-based round (see engine.deposit.writer.CHUNK_SIZE).
CHUNK_SIZE = 100_000
STAGE_ANNOTATION = "annostream_stage_annotation"
STAGE_INPUT = "annostream_stage_annotation_in"
STAGE_SUPERSEDED = "annostream_stage_superseded"
# Staged alleles fewer than 1/SPARSE_FACTOR of their id range are probed one by one (see apply).
SPARSE_FACTOR = 64
_DATETIME: dict[str, sa.types.TypeEngine[Any]] = {"now": sa.DateTime(timezone=True)}


@dataclass
class AnnotationWriteResult:
    created: int = 0  # new current rows (first annotation, or replacing a different one)
    superseded: int = 0  # previous rows marked date_superceeded
    unchanged: int = 0  # identical document already current: reused

    def add(self, other: AnnotationWriteResult) -> None:
        self.created += other.created
        self.superseded += other.superseded
        self.unchanged += other.unchanged


def write_annotations(
    session: Session,
    items: Iterable[tuple[AlleleRecord | int, dict[str, Any]]],
    *,
    annotation_config_id: int | None = None,
    bundle_version: str | None = None,
    yield_to_concurrent: bool = False,
    stamp_unchanged: bool = False,
) -> AnnotationWriteResult:
    """Make each document the current annotation of its allele (ELLA's versioning).

    An identical current document is reused; a different one is superseded and linked as
    ``previous_annotation_id``. Alleles given as records are created if not stored yet.
    ``yield_to_concurrent`` (re-annotation): where another transaction (an import) created the
    current annotation of an allele that had none after this one looked, keep that one instead of
    failing on the one-current-row index (the import's document is the newer one).
    ``stamp_unchanged`` (re-annotation): a kept identical document is stamped with
    ``bundle_version`` too, as that bundle now vouches for it (the next release is compared
    against the bundle a document's stamp names; not in ELLA database mode, which has no stamp).
    """
    loader = bulk_loader(session)
    versioner = AnnotationVersioner(
        loader,
        deposit_target(session),
        annotation_config_id,
        bundle_version,
        yield_to_concurrent=yield_to_concurrent,
        stamp_unchanged=stamp_unchanged,
    )
    total = AnnotationWriteResult()
    apart = can_merge_apart(loader, annotation_config_id)
    for chunk in chunks([items], CHUNK_SIZE):
        by_id = [(item, doc) for item, doc in chunk if isinstance(item, int)]
        by_record = [(item, doc) for item, doc in chunk if not isinstance(item, int)]
        if by_record:
            # New alleles and their documents are committed together, apart (merged_alleles).
            rows = ((i, False, a, _json(doc)) for i, (a, doc) in enumerate(by_record))
            with merged_records(loader, rows, apart=apart) as merged:
                total.add(versioner.on(merged.loader).apply_resolved(merged.resolved))
        if by_id:
            versioner.stage_new()
            loader.load(
                STAGE_INPUT,
                ("allele_id", "annotation"),
                ((allele_id, _json(doc)) for allele_id, doc in by_id),
            )
            versioner.stage_from_input()
            total.add(versioner.apply())
    versioner.drop()
    return total


class AnnotationVersioner:
    """Applies staged (allele_id, document) pairs with ELLA's one-current-row versioning."""

    def __init__(
        self,
        loader: BulkLoader,
        target: DepositTarget,
        annotation_config_id: int | None,
        bundle_version: str | None,
        *,
        yield_to_concurrent: bool = False,
        stamp_unchanged: bool = False,
    ) -> None:
        if annotation_config_id is None and target.requires_annotation_config:
            raise ValueError("ELLA's annotation rows need the annotation config that made them")
        self.loader = loader
        self.params = {"cfg": annotation_config_id, "bundle": bundle_version}
        # ELLA's own annotation table has no bundle_version column.
        self.provenance = ", bundle_version" if target.records_bundle_version else ""
        self.provenance_values = ", :bundle" if target.records_bundle_version else ""
        self.on_conflict = (
            " ON CONFLICT (allele_id) WHERE date_superceeded IS NULL DO NOTHING"
            if yield_to_concurrent
            else ""
        )
        self.stamp_unchanged = stamp_unchanged and target.records_bundle_version

    def on(self, loader: BulkLoader) -> AnnotationVersioner:
        """This versioner writing through ``loader`` (an allele merge's own transaction)."""
        bound = copy.copy(self)
        bound.loader = loader
        return bound

    def apply_resolved(self, resolved: str, *, all_new: bool = False) -> AnnotationWriteResult:
        """Version the documents of the allele merge on this loader (``MergedAlleles.resolved``).
        ``all_new``: the merge created every one of its alleles (see ``insert_for_new_alleles``)."""
        if all_new:
            return self.insert_for_new_alleles(resolved)
        self.stage_new()
        self.stage_from_resolved(resolved)
        result = self.apply()
        self.drop()
        return result

    def stage_new(self) -> None:
        json_type = self.loader.json_type
        # fresh: the allele was created by the merge this document came with, so it has no
        # current annotation anywhere and the document goes straight in.
        self.loader.create_scratch_table(
            STAGE_ANNOTATION, f"allele_id INTEGER PRIMARY KEY, annotation {json_type}, fresh BOOLEAN"
        )
        self.loader.create_scratch_table(STAGE_INPUT, f"allele_id INTEGER, annotation {json_type}")

    def stage_from_resolved(self, resolved: str) -> None:
        """Stage the documents of an allele merge (``MergedAlleles.resolved``)."""
        # An allele listed twice keeps its first document (ON CONFLICT DO NOTHING).
        self._stage_from(resolved, "ord, second", "fresh")

    def stage_from_input(self) -> None:
        self._stage_from(STAGE_INPUT, "allele_id", "false")

    def _stage_from(self, source: str, order: str, fresh: str) -> None:
        self.loader.execute(
            f"INSERT INTO {STAGE_ANNOTATION} (allele_id, annotation, fresh) SELECT allele_id, annotation, "
            f"{fresh} FROM {source} WHERE annotation IS NOT NULL ORDER BY {order} ON CONFLICT DO NOTHING"
        )

    def insert_for_new_alleles(self, resolved: str) -> AnnotationWriteResult:
        """The documents of the last allele merge, whose alleles were all created by it (a fresh
        VCF): none can have an annotation yet, so they go straight in, without staging them again
        or probing for a current row to supersede."""
        created = self.loader.execute(
            "INSERT INTO annotation (allele_id, annotations, schema_version, date_created, "
            f"previous_annotation_id, annotation_config_id{self.provenance}) "
            f"SELECT allele_id, annotation, 1, :now, NULL, :cfg{self.provenance_values} "
            f"FROM {resolved} ORDER BY allele_id",
            {"now": utcnow(), **(self.params if self.provenance else {"cfg": self.params["cfg"]})},
            _DATETIME,
        ).rowcount
        return AnnotationWriteResult(created=created)

    def drop(self) -> None:
        for table in (STAGE_ANNOTATION, STAGE_INPUT, STAGE_SUPERSEDED):
            self.loader.drop_scratch_table(table)

    def apply(self) -> AnnotationWriteResult:
        """Insert the documents of fresh alleles; for the others supersede changed current rows and
        insert the new ones, in two set-based statements.

        Both statements are bounded to the staged allele id range, so the partial unique index of
        current rows is read from there, not from its start (which made each batch of a release
        slower than the one before). The superseded rows are keyed by allele: the insert's join
        then probes an index whatever the planner estimates (after the update it expects about
        one new row, and once chose a 50k x 50k nested loop over an unindexed scratch table).
        """
        loader = self.loader
        now: dt.datetime = utcnow()
        loader.analyze(STAGE_ANNOTATION)
        # Documents of alleles the merge just created go straight in (see insert_for_new_alleles):
        # probing 50k fresh alleles for a current row to supersede cost most of an import's
        # versioning, inside the merge's transaction that other imports may be waiting for.
        fresh = loader.execute(
            "INSERT INTO annotation (allele_id, annotations, schema_version, date_created, "
            f"previous_annotation_id, annotation_config_id{self.provenance}) "
            f"SELECT allele_id, annotation, 1, :now, NULL, :cfg{self.provenance_values} "
            f"FROM {STAGE_ANNOTATION} WHERE fresh ORDER BY allele_id",
            {"now": now, **(self.params if self.provenance else {"cfg": self.params["cfg"]})},
            _DATETIME,
        ).rowcount
        extent: tuple[Any, ...] = tuple(
            loader.execute(
                f"SELECT COUNT(*), MIN(allele_id), MAX(allele_id) FROM {STAGE_ANNOTATION} WHERE NOT fresh"
            ).one()
        )
        staged, low, high = extent
        if not staged:
            return AnnotationWriteResult(created=fresh)
        bounds = {"now": now, "low": low, "high": high, "cfg": self.params["cfg"]}
        # A re-annotation batch's alleles are a dense id range: bounding both statements to it
        # makes them read the index of current rows from there. An import's already stored
        # alleles are a few scattered over every id: bounded, the planner walked the whole index;
        # unbounded, it probes the index once per staged allele.
        dense = staged * SPARSE_FACTOR >= high - low + 1

        def in_range(alias: str) -> str:
            return f"AND {alias}.allele_id BETWEEN :low AND :high " if dense else ""

        loader.create_scratch_table(STAGE_SUPERSEDED, "allele_id INTEGER PRIMARY KEY, id INTEGER")
        # ELLA's AnnotationImporter.process (src/vardb/deposit/importers.py) supersedes when the
        # document differs OR the annotation config differs (a new config, even one that only
        # changes the view, must show); SQL's <> keeps a row whose config is not known (NULL).
        differs = (
            f"({loader.json_differs('a.annotations', 's.annotation')} OR a.annotation_config_id <> :cfg)"
        )
        superseded = loader.update_returning_into(
            f"UPDATE annotation AS a SET date_superceeded = :now FROM {STAGE_ANNOTATION} s "
            "WHERE NOT s.fresh AND a.allele_id = s.allele_id AND a.date_superceeded IS NULL "
            f"{in_range('a')}AND {differs}",
            "a",
            ("allele_id", "id"),
            STAGE_SUPERSEDED,
            bounds,
            _DATETIME,
        )
        loader.analyze(STAGE_SUPERSEDED)
        # After the update, an allele has a current row exactly when its document was unchanged.
        created = loader.execute(
            "INSERT INTO annotation (allele_id, annotations, schema_version, date_created, "
            f"previous_annotation_id, annotation_config_id{self.provenance}) "
            f"SELECT s.allele_id, s.annotation, 1, :now, old.id, :cfg{self.provenance_values} "
            f"FROM {STAGE_ANNOTATION} s "
            f"LEFT JOIN {STAGE_SUPERSEDED} old ON old.allele_id = s.allele_id "
            "WHERE NOT s.fresh AND NOT EXISTS (SELECT 1 FROM annotation c WHERE c.allele_id = s.allele_id "
            f"AND c.date_superceeded IS NULL {in_range('c')}){self.on_conflict}",
            {**bounds, **self.params} if self.provenance else bounds,
            _DATETIME,
        ).rowcount
        if self.stamp_unchanged:
            loader.execute(
                "UPDATE annotation SET bundle_version = :bundle, annotation_config_id = :cfg "
                "WHERE date_superceeded IS NULL AND allele_id BETWEEN :low AND :high "
                f"AND allele_id IN (SELECT allele_id FROM {STAGE_ANNOTATION} WHERE NOT fresh) "
                "AND (bundle_version IS NULL OR bundle_version <> :bundle OR annotation_config_id IS NULL)",
                {"low": low, "high": high, "bundle": self.params["bundle"], "cfg": self.params["cfg"]},
            )
        return AnnotationWriteResult(
            created=fresh + created, superseded=superseded, unchanged=staged - created
        )


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
