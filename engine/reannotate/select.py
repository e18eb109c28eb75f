"""Which stored alleles an incremental release re-annotates (``reannotate`` without ``--all``).

The selected alleles are grouped by where their current annotation came from: the bundle
(``annotation.bundle_version``) and the annotation config (``annotation_config_id``). Per group:

* already from the new bundle with the active config: skipped;
* from no bundle, from a bundle that is no longer on disk, from another annotation config, or
  from a bundle with another vcfanno config: every allele of the group (full re-annotation);
* otherwise the bundles are compared (:mod:`engine.reannotate.diff`): unchanged datasets are
  skipped, and of the changed ones only the alleles their record-level difference touches are
  taken - the exact (contig, POS, REF, ALT) key for variant sources, overlap for interval sources.

Alleles without a current annotation are always taken. The chosen ids go to
``reannotation_target`` for the run; its batches are id ranges over them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine.bundles import CONFIG_FILE, BundleInfo, list_bundles
from engine.db.bulk import BulkLoader, bulk_loader
from engine.deposit.annotation_config import active_annotation_config
from engine.deposit.targets import deposit_target
from engine.reannotate.diff import BlockDiff, BundleDiff, diff_bundles
from engine.reannotate.scope import AlleleSelection
from engine.timeutil import add_seconds
from engine.vcf.textscan import hash_strings

TOUCHED = "reannotate_touched"

log = logging.getLogger("annostream.reannotate")


@dataclass
class GroupPlan:
    """One group of alleles (same source bundle and annotation config) and what is done with it."""

    bundle_version: str | None
    annotation_config_id: int | None
    alleles: int
    action: str  # "skip" | "full" | "incremental"
    reason: str
    everything: bool = False  # the group is every selected allele (no stamps to group by)
    selected: int = 0
    datasets: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "from_bundle": self.bundle_version,
            "annotation_config_id": self.annotation_config_id,
            "alleles": self.alleles,
            "action": self.action,
            "reason": self.reason,
            "selected": self.selected,
            "datasets": self.datasets,
        }


@dataclass
class ReleasePlan:
    bundle: str
    groups: list[GroupPlan]
    unannotated: int  # selected alleles without a current annotation (always re-annotated)
    touched: set[int] = field(default_factory=set)  # ids from the "incremental" groups
    seconds: dict[str, float] = field(default_factory=dict)  # planning time per step

    @property
    def selected(self) -> int:
        return self.unannotated + sum(group.selected for group in self.groups)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "selected": self.selected,
            "unannotated": self.unannotated,
            "groups": [group.as_dict() for group in self.groups],
            "seconds": {step: round(value, 3) for step, value in self.seconds.items()},
        }

    def timed(self, step: str) -> AbstractContextManager[None]:
        return add_seconds(self.seconds, step)

    def timing_line(self) -> str:
        steps = ", ".join(f"{step} {value:.2f} s" for step, value in self.seconds.items())
        return f"planned in {sum(self.seconds.values()):.2f} s ({steps})"

    def describe(self) -> list[str]:
        """Human-readable lines, per source bundle and dataset (``reannotate --dry-run``)."""
        lines = [f"bundle {self.bundle}: {self.selected} allele(s) to re-annotate"]
        if self.unannotated:
            lines.append(f"  {self.unannotated} allele(s) without a current annotation: all")
        for group in self.groups:
            origin = group.bundle_version or "(no bundle)"
            lines.append(
                f"  {group.alleles} allele(s) annotated by {origin} "
                f"(annotation config {group.annotation_config_id}): {group.action}, "
                f"{group.selected} selected - {group.reason}"
            )
            for dataset in group.datasets:
                versions = f"{dataset['old_version']} -> {dataset['new_version']}"
                lines.append(f"    dataset {dataset['name']} ({versions}): {dataset['status']}")
                for block in dataset["blocks"]:
                    lines.append(
                        f"      {block['file']}: {block['added']} added, "
                        f"{block['removed']} removed, {block['changed']} changed records; "
                        f"{block['alleles']} stored allele(s) touched"
                    )
        lines.append(self.timing_line())
        return lines


def plan_release(session: Session, bundle: BundleInfo, selection: AlleleSelection) -> ReleasePlan:
    """Decide which alleles to re-annotate (writes nothing; ``write_targets`` records them)."""
    config_id, _config = active_annotation_config(session)
    bundles = {info.version: info for info in list_bundles(session)}
    loader = bulk_loader(session)
    condition, params = selection.where()
    plan = ReleasePlan(bundle.version, [], 0)
    if not deposit_target(session).records_bundle_version:
        # ELLA database mode: ELLA's annotation rows do not say which bundle made them, so
        # nothing can be compared; every selected allele is re-annotated.
        total = int(loader.execute(f"SELECT COUNT(*) FROM allele a WHERE {condition}", params).scalar_one())
        plan.groups.append(
            GroupPlan(
                None,
                None,
                total,
                "full",
                "ELLA database mode: annotations carry no bundle version to compare with",
                selected=total,
                everything=True,
            )
        )
        return plan
    with plan.timed("groups"):
        groups = _groups(session, selection)
    for version, group_config, count in groups:
        group = GroupPlan(version, group_config, int(count), "full", "")
        plan.groups.append(group)
        old = bundles.get(version) if version is not None else None
        if version == bundle.version and group_config == config_id:
            group.action, group.reason = "skip", "already annotated by this bundle"
            continue
        if version is None:
            group.reason = "annotated by no bundle"
        elif old is None or not (old.path / CONFIG_FILE).is_file():
            group.reason = f"bundle {version} is no longer on disk"
        elif group_config != config_id:
            group.reason = "annotated with another annotation config"
        else:
            with plan.timed("compare"):
                difference = diff_bundles(old, bundle)
            group.datasets = [dataset.summary() for dataset in difference.datasets]
            if not difference.comparable:
                group.reason = difference.reason or "the bundles cannot be compared"
            else:
                group.action = "incremental"
                changed = [d.name for d in difference.datasets if d.status != "unchanged"]
                group.reason = f"changed datasets: {', '.join(changed)}" if changed else "no dataset changed"
                touched: set[int] = set()
                blocks = iter(difference.changed_blocks)
                for dataset in group.datasets:
                    for summary in dataset["blocks"]:
                        block = next(blocks)
                        with plan.timed("match"):
                            ids = _touched(loader, block, version, group_config, condition, params)
                        summary["alleles"] = len(ids)
                        touched |= ids
                group.selected = len(touched)
                plan.touched |= touched
                continue
        group.selected = group.alleles
    with plan.timed("count"):
        total = int(loader.execute(f"SELECT COUNT(*) FROM allele a WHERE {condition}", params).scalar_one())
    plan.unannotated = total - sum(group.alleles for group in plan.groups)
    log.info("release %s: %s", bundle.version, plan.timing_line())
    return plan


def compare_ahead(session: Session, bundle: BundleInfo) -> list[BundleDiff]:
    """Compare ``bundle`` with every bundle whose annotations are current, now (``bundle add``),
    so that the release plan reads the record-level differences from their cache instead of
    comparing the sources then (2.6 s for a 2M-record source). Writes nothing to the database."""
    if not deposit_target(session).records_bundle_version:
        return []  # ELLA database mode: a release re-annotates every allele, nothing to compare
    bundles = {info.version: info for info in list_bundles(session)}
    versions = {version for version, _config, _count in _groups(session, AlleleSelection())}
    differences = []
    for version in sorted(v for v in versions if v is not None and v != bundle.version):
        old = bundles.get(version)
        if old is not None and (old.path / CONFIG_FILE).is_file():
            differences.append(diff_bundles(old, bundle))
    return differences


def write_targets(session: Session, plan: ReleasePlan, selection: AlleleSelection, run_pk: int) -> None:
    """Record the planned alleles of run ``run_pk`` in ``reannotation_target``."""
    loader = bulk_loader(session)
    condition, params = selection.where()
    params = {**params, "run_pk": run_pk}
    if plan.touched:
        loader.load(
            "reannotation_target",
            ("run_id", "allele_id"),
            ((run_pk, allele_id) for allele_id in sorted(plan.touched)),
        )
    for group in plan.groups:
        if group.everything:
            loader.execute(
                "INSERT INTO reannotation_target (run_id, allele_id) SELECT :run_pk, a.id "
                f"FROM allele a WHERE {condition}",
                params,
            )
            continue
        if group.action != "full":
            continue
        group_condition, group_params = _group_condition(group.bundle_version, group.annotation_config_id)
        loader.execute(
            "INSERT INTO reannotation_target (run_id, allele_id) SELECT :run_pk, c.allele_id "
            "FROM annotation c JOIN allele a ON a.id = c.allele_id WHERE c.date_superceeded IS NULL "
            f"AND {group_condition} AND {condition}",
            {**params, **group_params},
        )
    if plan.unannotated:
        loader.execute(
            "INSERT INTO reannotation_target (run_id, allele_id) SELECT :run_pk, a.id FROM allele a "
            f"WHERE {condition} AND NOT EXISTS (SELECT 1 FROM annotation c WHERE c.allele_id = a.id "
            "AND c.date_superceeded IS NULL)",
            params,
        )


def _groups(session: Session, selection: AlleleSelection) -> list[tuple[str | None, int | None, int]]:
    condition, params = selection.where()
    # Without an analysis or range filter the allele table need not be read at all.
    source = "annotation c" if condition == "TRUE" else "annotation c JOIN allele a ON a.id = c.allele_id"
    rows = session.execute(
        sa.text(
            f"SELECT c.bundle_version, c.annotation_config_id, COUNT(*) FROM {source} "
            f"WHERE c.date_superceeded IS NULL AND {condition} GROUP BY 1, 2 ORDER BY 3 DESC"
        ),
        params,
    )
    return [(version, config, int(count)) for version, config, count in rows]


def _group_condition(version: str | None, config_id: int | None) -> tuple[str, dict[str, Any]]:
    parts: list[str] = []
    params: dict[str, Any] = {}
    if version is None:
        parts.append("c.bundle_version IS NULL")
    else:
        parts.append("c.bundle_version = :group_bundle")
        params["group_bundle"] = version
    if config_id is None:
        parts.append("c.annotation_config_id IS NULL")
    else:
        parts.append("c.annotation_config_id = :group_config")
        params["group_config"] = config_id
    return " AND ".join(parts), params


def _toggle_chr(name: str) -> str:
    return name[3:] if name.startswith("chr") else f"chr{name}"


def _touched(
    loader: BulkLoader,
    block: BlockDiff,
    version: str | None,
    config_id: int | None,
    condition: str,
    params: dict[str, Any],
) -> set[int]:
    """Ids of the group's alleles the block's difference touches."""
    if not block.touched:
        return set()
    group_condition, group_params = _group_condition(version, config_id)
    # The stored contig name may differ from the source's by a 'chr' prefix (the annotator maps
    # chr1 <-> 1 when the source lacks the stored name).
    names: dict[str, str] = {}
    for chrom in block.touched:
        names[chrom] = chrom
        names.setdefault(_toggle_chr(chrom), chrom)
    # Only the names stored alleles use: matching positions under both names doubled the rows
    # to join, which made the planner read the whole allele table instead of probing its index.
    names = {alias: chrom for alias, chrom in names.items() if _stored_contig(loader, alias)}
    if not names:
        return set()
    if block.kind == "variant":
        return _touched_variants(
            loader, block, names, f"{group_condition} AND {condition}", {**params, **group_params}
        )
    return _touched_intervals(
        loader, block, names, f"{group_condition} AND {condition}", {**params, **group_params}
    )


def _stored_contig(loader: BulkLoader, name: str) -> bool:
    """Whether any stored allele is on contig ``name``: one probe of ``ix_alleleloci`` (the ORDER
    BY makes it one; a plain LIMIT 1 may scan the table up to the first such row)."""
    found = loader.execute(
        "SELECT 1 FROM allele WHERE chromosome = :c ORDER BY chromosome, start_position LIMIT 1", {"c": name}
    ).first()
    return found is not None


def _touched_variants(
    loader: BulkLoader, block: BlockDiff, names: dict[str, str], condition: str, params: dict[str, Any]
) -> set[int]:
    wanted: dict[tuple[str, int], set[int]] = defaultdict(set)
    for chrom, (positions, keys) in block.touched.items():
        for position, key in zip(positions.tolist(), keys.tolist(), strict=True):
            wanted[(chrom, position)].add(key)
    loader.create_scratch_table(TOUCHED, "chrom TEXT, pos INTEGER")
    loader.load(
        TOUCHED,
        ("chrom", "pos"),
        (
            (alias, position)
            for alias, chrom in names.items()
            for position in np.unique(block.touched[chrom][0]).tolist()
        ),
    )
    loader.analyze(TOUCHED)
    rows: Sequence[Any] = loader.execute(
        "SELECT a.id, a.chromosome, a.vcf_pos, a.vcf_ref, a.vcf_alt FROM allele a "
        f"JOIN {TOUCHED} t ON a.chromosome = t.chrom AND a.vcf_pos = t.pos "
        "JOIN annotation c ON c.allele_id = a.id AND c.date_superceeded IS NULL "
        f"WHERE {condition}",
        params,
    ).all()
    loader.drop_scratch_table(TOUCHED)
    if not rows:
        return set()
    hashes = hash_strings([f"{ref}\t{alt}".encode() for _id, _chrom, _pos, ref, alt in rows]).tolist()
    return {
        allele_id
        for (allele_id, chrom, position, _ref, _alt), key in zip(rows, hashes, strict=True)
        if key in wanted.get((names[chrom], position), ())
    }


def _touched_intervals(
    loader: BulkLoader, block: BlockDiff, names: dict[str, str], condition: str, params: dict[str, Any]
) -> set[int]:
    aliases = {f"chrom_{i}": alias for i, alias in enumerate(names)}
    rows: Sequence[Any] = loader.execute(
        "SELECT a.id, a.chromosome, a.vcf_pos, LENGTH(a.vcf_ref) FROM allele a "
        "JOIN annotation c ON c.allele_id = a.id AND c.date_superceeded IS NULL "
        f"WHERE a.chromosome IN ({', '.join(':' + key for key in aliases)}) AND {condition}",
        {**params, **aliases},
    ).all()
    merged = {chrom: _merge(starts, ends) for chrom, (starts, ends) in block.touched.items()}
    touched: set[int] = set()
    for allele_id, chrom, position, ref_length in rows:
        starts, ends = merged[names[chrom]]
        query_start, query_end = position - 1, position - 1 + ref_length  # the annotator's extent
        k = int(np.searchsorted(starts, query_end, "left")) - 1
        if k >= 0 and ends[k] > query_start:
            touched.add(allele_id)
    return touched


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, disjoint ranges covering the given ones (so one binary search finds an overlap)."""
    order = np.argsort(starts, kind="stable")
    merged_starts: list[int] = []
    merged_ends: list[int] = []
    for start, end in zip(starts[order].tolist(), ends[order].tolist(), strict=True):
        if merged_ends and start <= merged_ends[-1]:
            merged_ends[-1] = max(merged_ends[-1], end)
        else:
            merged_starts.append(start)
            merged_ends.append(end)
    return np.array(merged_starts, dtype=np.int64), np.array(merged_ends, dtype=np.int64)
