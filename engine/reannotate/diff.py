"""What changed between two bundles: datasets by checksum, then records through the compiled indexes.

Two bundles are compared dataset by dataset through their ``sources.json`` checksums; a dataset
whose files are identical is unchanged. For a changed dataset, every ``[[annotation]]`` block
reading one of its files is compared record by record using the compiled source indexes
(:mod:`engine.annotate.index`), and only for the fields the config reads:

* variant sources (VCF, TSV with REF/ALT): entries are keyed by (contig, POS, hash of REF and
  ALT); an entry is *changed* when the INFO text the annotator would copy for it (``sfx``,
  rendered at compile time from exactly the requested fields) differs byte for byte;
* interval sources (BED, plain TSV): rows are keyed by (contig, start, end) and the requested
  columns' text; a row that is not in both is added or removed.

What the annotator would write for an allele depends only on the entries matching it (exact
key) or the rows overlapping it, so re-annotating the alleles those differences touch gives the
same documents as re-annotating every allele. A comparison needs the same vcfanno config in both
bundles (blocks are paired by position); the caller falls back to full re-annotation otherwise.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.annotate.config import AnnotationBlock, AnnotationConfig, load_config
from engine.annotate.index import CompiledSource, cache_root_for, fingerprint, load_or_compile
from engine.bundles import CONFIG_FILE, BundleInfo, read_bundle
from engine.vcf.textio import atomic_output


@dataclass
class BlockDiff:
    """The record-level difference of one ``[[annotation]]`` block's source."""

    file: str  # relative to the bundle
    kind: str  # "variant" | "interval"
    added: int = 0
    removed: int = 0
    changed: int = 0
    # Per source contig: variant -> (POS, key) of touched entries; interval -> (start, end) rows.
    touched: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def n_touched(self) -> int:
        return sum(len(first) for first, _second in self.touched.values())

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
        }


@dataclass
class DatasetDiff:
    name: str
    status: str  # "unchanged" | "changed" | "added" | "removed"
    old_version: str | None
    new_version: str | None
    blocks: list[BlockDiff] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "blocks": [block.summary() for block in self.blocks],
        }


@dataclass
class BundleDiff:
    old: str
    new: str
    comparable: bool  # same vcfanno config: the record-level difference is exact
    reason: str | None  # why not comparable
    datasets: list[DatasetDiff]

    @property
    def changed_blocks(self) -> list[BlockDiff]:
        return [block for dataset in self.datasets for block in dataset.blocks]


def diff_bundles(old: BundleInfo, new: BundleInfo, *, records: bool = True) -> BundleDiff:
    """Compare two stored bundles; ``records=False`` stops at the dataset checksums."""
    old_spec, new_spec = read_bundle(old.path), read_bundle(new.path)
    old_sets = {dataset.name: dataset for dataset in old_spec.datasets}
    new_sets = {dataset.name: dataset for dataset in new_spec.datasets}
    datasets: list[DatasetDiff] = []
    for name in sorted(old_sets.keys() | new_sets.keys()):
        before, after = old_sets.get(name), new_sets.get(name)
        if before is None or after is None:
            status = "added" if before is None else "removed"
        else:
            status = "unchanged" if before.files == after.files else "changed"
        datasets.append(
            DatasetDiff(name, status, before.version if before else None, after.version if after else None)
        )
    comparable = old.config_sha256 == new.config_sha256
    reason = None if comparable else "the bundles' vcfanno configs differ"
    result = BundleDiff(old.version, new.version, comparable, reason, datasets)
    if not records or not comparable:
        return result
    old_config = load_config(old.path / CONFIG_FILE, base_path=old.path)
    new_config = load_config(new.path / CONFIG_FILE, base_path=new.path)
    owners = _dataset_of_file(old_spec.files, new_spec.files, old_sets, new_sets)
    by_name = {dataset.name: dataset for dataset in datasets}
    for old_block, new_block in zip(old_config.annotations, new_config.annotations, strict=True):
        relative = _relative(new_block.file, new.path)
        dataset = by_name.get(owners.get(relative, ""))
        if dataset is None or dataset.status == "unchanged":
            continue
        dataset.blocks.append(diff_block(old_config, old_block.index, new_config, new_block.index, relative))
    return result


def _dataset_of_file(
    old_files: dict[str, str], new_files: dict[str, str], old_sets: dict[str, Any], new_sets: dict[str, Any]
) -> dict[str, str]:
    owners: dict[str, str] = {}
    for sets in (old_sets, new_sets):
        for name, dataset in sets.items():
            for relative in dataset.files:
                owners.setdefault(relative, name)
    return owners


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# Bump when the comparison's result changes meaning: older cache files are then not read.
DIFF_FORMAT = 1


def _compiled(config: AnnotationConfig, block_index: int) -> CompiledSource | None:
    block = _block(config, block_index)
    if block.optional and not block.file.exists():
        return None
    index, _seconds = load_or_compile(block, config.path)
    return index


def diff_block(
    old_config: AnnotationConfig, old_index: int, new_config: AnnotationConfig, new_index: int, relative: str
) -> BlockDiff:
    """The block's record-level difference, computed once per pair of source files: the result
    is kept beside the compiled indexes (every later release plan between the same two files
    reads it instead of comparing two million records again)."""
    cache = _cache_file(_block(old_config, old_index), _block(new_config, new_index))
    if cache is not None:
        cached = _read_cached(cache, relative)
        if cached is not None:
            return cached
    result = _compare_block(old_config, old_index, new_config, new_index, relative)
    if cache is not None:
        _write_cached(cache, result)
    return result


def _block(config: AnnotationConfig, block_index: int) -> AnnotationBlock:
    return next(b for b in config.annotations if b.index == block_index)


def _cache_file(old: AnnotationBlock, new: AnnotationBlock) -> Path | None:
    # A fingerprint names the file (path, size, mtime) and the fields read: either changing
    # makes another cache file. An optional source that is absent has no fingerprint.
    if not (old.file.exists() and new.file.exists()):
        return None
    name = f"diff.v{DIFF_FORMAT}.{fingerprint(old)}.{fingerprint(new)}.npz"
    return cache_root_for(new.file) / name


def _read_cached(path: Path, relative: str) -> BlockDiff | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            result = BlockDiff(relative, meta["kind"], meta["added"], meta["removed"], meta["changed"])
            for i, chrom in enumerate(meta["chroms"]):
                result.touched[chrom] = (stored[f"first_{i}"], stored[f"second_{i}"])
    except (OSError, ValueError, KeyError):
        return None  # absent or unreadable: compare again
    return result


def _write_cached(path: Path, result: BlockDiff) -> None:
    chroms = list(result.touched)
    meta = {
        "kind": result.kind,
        "added": result.added,
        "removed": result.removed,
        "changed": result.changed,
        "chroms": chroms,
    }
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta))}
    for i, chrom in enumerate(chroms):
        arrays[f"first_{i}"], arrays[f"second_{i}"] = result.touched[chrom]
    # Best effort: a cache that cannot be written costs the next plan the comparison, nothing else.
    with contextlib.suppress(OSError), atomic_output(path) as out:
        np.savez(out, **arrays)


def _compare_block(
    old_config: AnnotationConfig, old_index: int, new_config: AnnotationConfig, new_index: int, relative: str
) -> BlockDiff:
    old, new = _compiled(old_config, old_index), _compiled(new_config, new_index)
    kind = (new or old).meta.kind if (new or old) is not None else "variant"  # type: ignore[union-attr]
    result = BlockDiff(relative, kind)
    chroms = sorted(set(old.meta.chroms if old else ()) | set(new.meta.chroms if new else ()))
    for chrom in chroms:
        before = old if old is not None and old.has_chrom(chrom) else None
        after = new if new is not None and new.has_chrom(chrom) else None
        if kind == "variant":
            _diff_variant_chrom(result, chrom, before, after)
        else:
            _diff_interval_chrom(result, chrom, before, after)
    return result


# --- variant sources ---------------------------------------------------------------------------


def _entries(index: CompiledSource | None, chrom: str) -> tuple[np.ndarray, ...]:
    if index is None:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.astype(np.uint64), empty, empty, np.zeros(0, dtype=np.uint8)
    return (
        np.asarray(index.array(chrom, "pos")),
        np.asarray(index.array(chrom, "key")),
        np.asarray(index.array(chrom, "sfx_start"), dtype=np.int64),
        np.asarray(index.array(chrom, "sfx_end"), dtype=np.int64),
        np.asarray(index.array(chrom, "sfx_blob")),
    )


def _diff_variant_chrom(
    result: BlockDiff, chrom: str, old: CompiledSource | None, new: CompiledSource | None
) -> None:
    old_pos, old_key, old_start, old_end, old_blob = _entries(old, chrom)
    new_pos, new_key, new_start, new_end, new_blob = _entries(new, chrom)
    match = _match_entries(old_pos, old_key, new_pos, new_key)
    found = match >= 0
    seen = np.zeros(len(new_pos), dtype=bool)
    seen[match[found]] = True
    removed, added = np.flatnonzero(~found), np.flatnonzero(~seen)
    pairs_old = np.flatnonzero(found)
    pairs_new = match[pairs_old]
    differs = _spans_differ(
        old_blob, old_start[pairs_old], old_end[pairs_old], new_blob, new_start[pairs_new], new_end[pairs_new]
    )
    changed = pairs_old[differs]
    result.added += len(added)
    result.removed += len(removed)
    result.changed += len(changed)
    if len(added) + len(removed) + len(changed):
        result.touched[chrom] = (
            np.concatenate([old_pos[removed], old_pos[changed], new_pos[added]]),
            np.concatenate([old_key[removed], old_key[changed], new_key[added]]),
        )


def _match_entries(
    old_pos: np.ndarray, old_key: np.ndarray, new_pos: np.ndarray, new_key: np.ndarray
) -> np.ndarray:
    """For each old entry the index of the new entry with the same (POS, key), or -1."""
    if len(old_pos) == len(new_pos) and np.array_equal(old_pos, new_pos) and np.array_equal(old_key, new_key):
        return np.arange(len(old_pos), dtype=np.int64)
    match = np.full(len(old_pos), -1, dtype=np.int64)
    if not len(old_pos) or not len(new_pos):
        return match
    lo = np.searchsorted(new_pos, old_pos, "left")
    hi = np.searchsorted(new_pos, old_pos, "right")
    width = hi - lo
    single = np.flatnonzero(width == 1)
    same = new_key[lo[single]] == old_key[single]
    match[single[same]] = lo[single[same]]
    # Several entries at one position (multi-allelic sites): compare keys one by one.
    for k in np.flatnonzero(width > 1).tolist():
        for entry in range(int(lo[k]), int(hi[k])):
            if new_key[entry] == old_key[k]:
                match[k] = entry
                break
    return match


def _spans_differ(
    old_blob: np.ndarray,
    old_start: np.ndarray,
    old_end: np.ndarray,
    new_blob: np.ndarray,
    new_start: np.ndarray,
    new_end: np.ndarray,
) -> np.ndarray:
    """Per pair, whether the two byte spans differ (exact byte comparison).

    Most pairs of a release are equal, and consecutive entries' spans usually follow each other
    in both blobs, so runs of ``_RUN`` pairs whose spans are contiguous on both sides are compared
    as one slice each (one memcmp); only runs that differ, or are not contiguous, are compared
    pair by pair.
    """
    old_len, new_len = old_end - old_start, new_end - new_start
    differs = old_len != new_len
    todo = np.flatnonzero(~differs & (old_len > 0))
    if not todo.size:
        return differs
    old_bytes, new_bytes = np.asarray(old_blob).tobytes(), np.asarray(new_blob).tobytes()
    os_, oe, ns, ne = old_start[todo], old_end[todo], new_start[todo], new_end[todo]
    # linked[k]: pair k+1 starts where pair k ends, in both blobs.
    linked = (os_[1:] == oe[:-1]) & (ns[1:] == ne[:-1])
    firsts = np.arange(0, todo.size, _RUN)
    lasts = np.minimum(firsts + _RUN, todo.size) - 1
    # A run is contiguous when every link inside it holds (the link out of its last pair is not
    # part of it).
    unlinked = np.append(~linked, False).astype(np.int64)
    broken = (np.add.reduceat(unlinked, firsts) - unlinked[lasts]).tolist()
    recheck: list[int] = []
    runs = zip(
        firsts.tolist(),
        lasts.tolist(),
        os_[firsts].tolist(),
        oe[lasts].tolist(),
        ns[firsts].tolist(),
        ne[lasts].tolist(),
        broken,
        strict=True,
    )
    for first, last, old_from, old_to, new_from, new_to, gaps in runs:
        if gaps or old_bytes[old_from:old_to] != new_bytes[new_from:new_to]:
            recheck.extend(range(first, last + 1))
    if recheck:
        checks = np.array(recheck, dtype=np.int64)
        pieces = zip(
            os_[checks].tolist(), oe[checks].tolist(), ns[checks].tolist(), ne[checks].tolist(), strict=True
        )
        unequal = np.fromiter(
            (old_bytes[a:b] != new_bytes[c:d] for a, b, c, d in pieces), dtype=bool, count=len(checks)
        )
        differs[todo[checks[unequal]]] = True
    return differs


_RUN = 16  # pairs compared as one slice (1.4% of records changing leaves ~80% of runs clean)


# --- interval sources --------------------------------------------------------------------------


def _rows(index: CompiledSource | None, chrom: str) -> list[tuple[Any, ...]]:
    if index is None:
        return []
    starts = np.asarray(index.array(chrom, "start")).tolist()
    ends = np.asarray(index.array(chrom, "end")).tolist()
    columns = [index.column_text(chrom, spec.slot) for spec in index.specs]
    return [
        (start, end, *(column[i] for column in columns))
        for i, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]


def _diff_interval_chrom(
    result: BlockDiff, chrom: str, old: CompiledSource | None, new: CompiledSource | None
) -> None:
    before, after = _rows(old, chrom), _rows(new, chrom)
    if before == after:
        return
    # Multisets: a row listed twice contributes twice to a 'sum' or 'concat'.
    old_rows, new_rows = Counter(before), Counter(after)
    removed, added = old_rows - new_rows, new_rows - old_rows
    # A row whose extent stays but whose values change counts once, as changed.
    old_extents = {(row[0], row[1]) for row in removed}
    new_extents = {(row[0], row[1]) for row in added}
    both = old_extents & new_extents
    result.changed += len(both)
    result.removed += len(old_extents - both)
    result.added += len(new_extents - both)
    extents = sorted(old_extents | new_extents)
    if extents:
        result.touched[chrom] = (
            np.array([s for s, _e in extents], dtype=np.int64),
            np.array([e for _s, e in extents], dtype=np.int64),
        )
