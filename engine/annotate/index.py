"""Compiled source indexes: annotation becomes array lookups instead of parsing (echtvar's idea).

A source (VCF/BCF, BED, tabix-indexed TSV) is compiled once per (file, size, mtime, requested
fields) into a directory of ``.npy`` arrays, one set per chromosome, plus ``meta.json``:

* variant sources (VCF, TSV with ref/alt columns) - one *entry* per distinct (POS, REF, ALT):
  ``pos`` (int64) and ``key`` (uint64 hash of ``REF\\tALT``), sorted; ``grp_off``/``grp_rec`` list the
  source records behind each entry; ``sfx_start``/``sfx_end`` locate in ``sfx_blob`` the INFO text
  already rendered for a query with that one ALT (the fast path copies it; entries point into the
  blob rather than own consecutive pieces, so the compiler need not reorder it);
  ``rec_off``/``rec_blob`` keep each record's ID, FILTER, ALTs and raw values for the general path
  (multi-ALT queries, permissive overlap, post-annotation); ``rec_start``/``rec_end`` are 0-based
  half-open record extents.
* interval sources (BED, plain TSV) - ``start``/``end`` (0-based half-open, sorted by start), and
  per requested column its text (``col{k}_off``/``col{k}_blob``), for numeric ops ``col{k}_num``, and
  the value a query overlapping only that row gets, rendered (``col{k}_one_kind/_one_off/_one_blob``).

The cache lives in ``$ANNOSTREAM_CACHE_DIR`` or ``.annostream-cache/`` next to the source (falling
back to ``~/.cache/annostream``) and is rebuilt whenever the fingerprint changes.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.annotate.config import AnnotationBlock
from engine.annotate.reducers import (
    NUMERIC_OPS,
    Contribution,
    FieldSpec,
    reduce_interval_rows,
)
from engine.annotate.vcfcompile import VcfCompiler, copy_suffix, decode_record, encode_record, render_suffix
from engine.errors import InputError
from engine.vcf.header import VcfHeader
from engine.vcf.textio import iter_line_chunks, open_binary, read_header_and_body
from engine.vcf.textscan import hash_strings

FORMAT_VERSION = 8
_REF_NAMES = {"ref", "reference"}
_ALT_NAMES = {"alt", "alternate", "alternative"}


@dataclass
class SourceMeta:
    """What was learned from the source at compile time (stored as meta.json)."""

    kind: str  # "variant" | "interval"
    chroms: list[str]
    info: dict[str, dict[str, Any]]  # header definitions of the requested fields
    numbers: list[str]  # per output: Number of its input ("1" for columns/ID/FILTER)
    is_vcf: bool
    max_len: dict[str, int] = field(default_factory=dict)
    compile_seconds: float = 0.0


def source_kind_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")):
        return "vcf"
    if name.endswith((".bed", ".bed.gz", ".bed.bgz")):
        return "bed"
    return "tsv"


def check_source_file(block: AnnotationBlock, config_path: Path) -> None:
    """A source must exist and be tabix/CSI-indexed (as vcfanno requires); errors name the block."""
    path = block.file
    if not path.exists():
        tried = " and ".join(str(p) for p in block.searched) or str(path)
        raise InputError(
            f"{block.label}: source file not found (looked for {tried})",
            file=str(config_path),
            expected="the file as given (from the working directory, or absolute), "
            "or under -base-path, as vcfanno resolves it",
        )
    if not any(Path(str(path) + ext).exists() for ext in (".tbi", ".csi")):
        raise InputError(
            f"{block.label}: source {path} has no index",
            file=str(config_path),
            expected=f"bgzip-compressed and indexed (tabix -p vcf {path.name} -> {path.name}.tbi)",
        )


def fingerprint(block: AnnotationBlock) -> str:
    stat = block.file.stat()
    wanted = sorted({(o.field or "", o.column or 0, o.op in NUMERIC_OPS) for o in block.outputs})
    payload = json.dumps(
        [
            FORMAT_VERSION,
            str(block.file.resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            [[o.name, o.op, o.field, o.column] for o in block.outputs],
            wanted,
        ]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cache_root_for(source: Path) -> Path:
    from engine.config import load_settings  # read at call time: one process may annotate for many

    configured = load_settings().cache_dir
    if configured is not None:
        return configured
    beside = source.resolve().parent / ".annostream-cache"
    with contextlib.suppress(OSError):
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    return Path.home() / ".cache" / "annostream"


class CompiledSource:
    """A loaded index: arrays are memory-mapped per chromosome on first use."""

    def __init__(self, directory: Path, block: AnnotationBlock) -> None:
        self.directory = directory
        self.block = block
        raw = json.loads((directory / "meta.json").read_text())
        self.meta = SourceMeta(**raw)
        self.chrom_ids = {c: i for i, c in enumerate(self.meta.chroms)}
        self._arrays: dict[tuple[int, str], np.ndarray] = {}
        self._columns: dict[tuple[int, int], list[str]] = {}
        self.specs = [
            FieldSpec(o, slot, self.meta.numbers[slot], self.meta.kind == "variant", self.meta.is_vcf)
            for slot, o in enumerate(block.outputs)
        ]

    @property
    def is_variant(self) -> bool:
        return self.meta.kind == "variant"

    def has_chrom(self, chrom: str) -> bool:
        return chrom in self.chrom_ids

    def array(self, chrom: str, name: str) -> np.ndarray:
        cid = self.chrom_ids[chrom]
        key = (cid, name)
        if key not in self._arrays:
            self._arrays[key] = np.load(self.directory / f"{cid}.{name}.npy", mmap_mode="r")
        return self._arrays[key]

    def blob_bytes(self, chrom: str, name: str) -> bytes:
        return self.array(chrom, name).tobytes()

    def column_text(self, chrom: str, slot: int) -> list[str]:
        """The column's values for every interval of ``chrom`` (decoded once, then cached)."""
        cid = self.chrom_ids[chrom]
        if (cid, slot) not in self._columns:
            blob = self.blob_bytes(chrom, f"col{slot}_blob").decode()
            offsets = self.array(chrom, f"col{slot}_off").tolist()
            self._columns[(cid, slot)] = [blob[a:b] for a, b in itertools.pairwise(offsets)]
        return self._columns[(cid, slot)]

    def record(self, chrom: str, rec: int) -> Contribution:
        offsets = self.array(chrom, "rec_off")
        blob = self.array(chrom, "rec_blob")
        text = bytes(blob[int(offsets[rec]) : int(offsets[rec + 1])]).decode()
        return decode_record(text)

    def entry_records(self, chrom: str, entry: int) -> list[int]:
        grp_off = self.array(chrom, "grp_off")
        return self.array(chrom, "grp_rec")[int(grp_off[entry]) : int(grp_off[entry + 1])].tolist()


def load_or_compile(block: AnnotationBlock, config_path: Path) -> tuple[CompiledSource, float | None]:
    """The compiled index for ``block``; compiles it first if missing or stale.
    Returns the index and the compile time in seconds (None when it came from the cache)."""
    check_source_file(block, config_path)
    key = fingerprint(block)
    root = cache_root_for(block.file)
    directory = root / f"{block.file.name}.{key}.idx"
    if (directory / "meta.json").exists():
        return CompiledSource(directory, block), None
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{block.file.name}.", dir=root))
    try:
        kind = source_kind_of(block.file)
        if kind == "vcf":
            meta = _compile_vcf(block, config_path, staging)
        else:
            meta = _compile_table(block, config_path, staging, kind)
        meta.compile_seconds = time.perf_counter() - started
        (staging / "meta.json").write_text(json.dumps(meta.__dict__))
        for stale in root.glob(f"{block.file.name}.*.idx"):
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return CompiledSource(directory, block), time.perf_counter() - started


# ----------------------------------------------------------------------------- VCF sources


def vcf_text_chunks(path: Path, chunk_bytes: int = 16 << 20) -> tuple[VcfHeader, Iterator[bytes]]:
    """Header lines and the body as large blocks of whole lines, from VCF text (plain, gzip or
    bgzip) or BCF (decoded by pysam, then handled as text)."""
    if path.name.lower().endswith(".bcf"):
        import pysam

        variant_file = pysam.VariantFile(str(path))
        lines = str(variant_file.header).rstrip("\n").split("\n")

        def bcf_chunks() -> Iterator[bytes]:
            with variant_file:
                records = (str(rec) for rec in variant_file)
                while batch := "".join(itertools.islice(records, 50_000)):
                    yield batch.encode()

        return VcfHeader.parse(path, enumerate(lines, 1)), bcf_chunks()
    fh = open_binary(path)
    header, first = VcfHeader.read_binary(path, fh)
    if header is None:
        fh.close()
        header = VcfHeader.parse(path, iter(()))  # raises: a source needs its #CHROM line

    def text_chunks() -> Iterator[bytes]:
        with fh:
            yield from iter_line_chunks(fh, first, chunk_bytes, header_lines=header.line_count, bounded=False)

    return header, text_chunks()


class _ChromWriter:
    """Collects one chromosome's entries/records and writes its arrays."""

    def __init__(self, directory: Path, specs: list[FieldSpec]) -> None:
        self.directory = directory
        self.specs = specs
        self.reset()

    def reset(self) -> None:
        self.entry_pos: list[int] = []
        self.entry_key: list[bytes] = []
        self.entry_rec: list[int] = []
        self.records: list[Contribution] = []
        self.rec_text: list[str] = []
        self.rec_start: list[int] = []
        self.rec_end: list[int] = []

    def add(self, pos: int, ref: str, contribution: Contribution, rec_text: str) -> None:
        rec = len(self.records)
        self.records.append(contribution)
        self.rec_text.append(rec_text)
        self.rec_start.append(pos - 1)
        self.rec_end.append(pos - 1 + len(ref))
        for alt in contribution.alts:
            self.entry_pos.append(pos)
            self.entry_key.append(f"{ref}\t{alt}".encode())
            self.entry_rec.append(rec)

    def flush(self, cid: int) -> int:
        pos = np.asarray(self.entry_pos, dtype=np.int64)
        keys = hash_strings(self.entry_key)
        recs = np.asarray(self.entry_rec, dtype=np.int64)
        order = np.lexsort((recs, keys, pos))
        pos, keys, recs = pos[order], keys[order], recs[order]
        new_group = np.ones(len(pos), dtype=bool)
        if len(pos) > 1:
            new_group[1:] = (pos[1:] != pos[:-1]) | (keys[1:] != keys[:-1])
        firsts = np.flatnonzero(new_group)
        grp_off = np.append(firsts, len(pos)).astype(np.int64)
        suffixes = self._render_groups(order, firsts, grp_off, recs)
        sfx_blob, sfx_off = _pack([s.encode() for s in suffixes])
        rec_blob, rec_off = _pack([t.encode() for t in self.rec_text])
        arrays = {
            "pos": pos[firsts],
            "key": keys[firsts],
            "grp_off": grp_off,
            "grp_rec": recs,
            "sfx_start": sfx_off[:-1],
            "sfx_end": sfx_off[1:],
            "sfx_blob": sfx_blob,
            "rec_off": rec_off,
            "rec_blob": rec_blob,
            "rec_start": np.asarray(self.rec_start, dtype=np.int64),
            "rec_end": np.asarray(self.rec_end, dtype=np.int64),
        }
        for name, array in arrays.items():
            np.save(self.directory / f"{cid}.{name}.npy", array)
        max_len = int((arrays["rec_end"] - arrays["rec_start"]).max()) if len(self.rec_start) else 0
        self.reset()
        return max_len

    def _render_groups(
        self, order: np.ndarray, firsts: np.ndarray, grp_off: np.ndarray, recs: np.ndarray
    ) -> list[str]:
        sorted_alt_keys = [self.entry_key[i] for i in order[firsts].tolist()]
        out = []
        bounds = grp_off.tolist()
        rec_list = recs.tolist()
        for g, key in enumerate(sorted_alt_keys):
            alt = key.decode().split("\t", 1)[1]
            members = [self.records[r] for r in rec_list[bounds[g] : bounds[g + 1]]]
            quick = copy_suffix(self.specs, members[0]) if len(members) == 1 else None
            out.append(quick if quick is not None else render_suffix(self.specs, (alt,), members))
        return out


def _pack(items: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(i) for i in items), dtype=np.int64, count=len(items))
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.frombuffer(b"".join(items), dtype=np.uint8).copy(), offsets


def field_numbers(block: AnnotationBlock, defs: dict[str, dict[str, str]], config_path: Path) -> list[str]:
    """Per output of ``block``, the Number of the source field it reads (``defs``: the source
    header's INFO definitions). A field the header does not define gets no values, as in vcfanno
    ("not found in header"); ``annotate_vcf`` warns about it on every run."""
    numbers = []
    for output in block.outputs:
        if output.field in ("ID", "FILTER"):
            numbers.append("1")
            continue
        if output.field not in defs:
            numbers.append("1")
            continue
        definition = defs[output.field]
        numbers.append("0" if definition["Type"] == "Flag" else definition["Number"])
    return numbers


def _compile_vcf(block: AnnotationBlock, config_path: Path, directory: Path) -> SourceMeta:
    header, chunks = vcf_text_chunks(block.file)
    defs = header.infos
    numbers = field_numbers(block, defs, config_path)
    specs = [FieldSpec(o, slot, numbers[slot], True) for slot, o in enumerate(block.outputs)]
    undefined = frozenset(
        o.field for o in block.outputs if o.field and o.field not in (*defs, "ID", "FILTER")
    )
    flags = {o.field for o in block.outputs if o.field and defs.get(o.field, {}).get("Type") == "Flag"}
    matched_flags = frozenset(f for f in flags if all(o.op == "flag" for o in block.outputs if o.field == f))
    compiler = VcfCompiler(
        block,
        config_path,
        directory,
        specs,
        first_line=header.line_count,
        undefined=undefined,
        matched_flags=matched_flags,
    )
    for chunk in chunks:
        compiler.add_block(chunk)
    chroms, max_len = compiler.finish()
    wanted = {o.field for o in block.outputs if o.field not in ("ID", "FILTER")}
    info_meta = {
        k: {"number": d["Number"], "type": d["Type"], "description": d["Description"]}
        for k, d in defs.items()
        if k in wanted
    }
    return SourceMeta("variant", chroms, info_meta, numbers, True, max_len)


def _unsorted(block: AnnotationBlock, config_path: Path, line_no: int, detail: str) -> InputError:
    return InputError(
        f"source {block.file} (from {block.label} in {config_path}) is not sorted: {detail}",
        file=str(block.file),
        line=line_no,
        expected="a coordinate-sorted file (bcftools sort / sort -k1,1 -k2,2n)",
    )


# ----------------------------------------------------------------------------- BED / TSV sources


@dataclass
class TabixLayout:
    seq: int  # 1-based column numbers
    begin: int
    end: int
    zero_based: bool
    meta_char: str
    skip: int


def read_tabix_layout(path: Path) -> TabixLayout | None:
    index = Path(str(path) + ".tbi")
    if not index.exists():
        return None
    with gzip.open(index, "rb") as fh:
        head = fh.read(36)
    if head[:4] != b"TBI\x01":
        return None
    _n_ref, fmt, seq, begin, end, meta, skip = struct.unpack("<7i", head[4:32])
    return TabixLayout(seq, begin, end or begin, bool(fmt & 0x10000), chr(meta), skip)


def _compile_table(block: AnnotationBlock, config_path: Path, directory: Path, kind: str) -> SourceMeta:
    layout = read_tabix_layout(block.file)
    if kind == "bed" or layout is None:
        layout = TabixLayout(1, 2, 3, True, "#", 0)
    fh = open_binary(block.file)
    header_lines, first = read_header_and_body(fh)
    columns = header_lines[-1].lstrip(layout.meta_char).split("\t") if header_lines else []
    lowered = [c.strip().lower() for c in columns]
    ref_col = next((i for i, c in enumerate(lowered) if c in _REF_NAMES), None)
    alt_col = next((i for i, c in enumerate(lowered) if c in _ALT_NAMES), None)
    if block.outputs and any(o.column is None for o in block.outputs):
        raise InputError(
            f"{block.label}: BED/TSV sources take 'columns', not 'fields'", file=str(config_path)
        )
    variant = kind == "tsv" and ref_col is not None and alt_col is not None
    with fh:
        if variant:
            return _compile_tsv_variants(block, config_path, directory, fh, first, layout, ref_col, alt_col)
        return _compile_intervals(block, config_path, directory, fh, first, layout)


def _table_lines(fh: Any, first: bytes, skip: int) -> Iterator[tuple[int, list[str]]]:
    carry = first
    line_no = 0
    while True:
        block = fh.read(8 << 20)
        data = carry + block
        if not block:
            pieces = data.decode().split("\n") if data else []
        else:
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            pieces = data[:cut].decode().split("\n")
            carry = data[cut + 1 :]
        for line in pieces:
            line_no += 1
            if line and not line.startswith("#") and line_no > skip:
                yield line_no, line.rstrip("\r").split("\t")
        if not block:
            return


def _check_columns(block: AnnotationBlock, config_path: Path, row: list[str], line_no: int) -> None:
    for output in block.outputs:
        if output.column is not None and output.column > len(row):
            raise InputError(
                f"{block.label}: column {output.column} does not exist in {block.file} "
                f"(line {line_no} has {len(row)} columns)",
                file=str(config_path),
                expected=f"a column number between 1 and {len(row)}",
            )


def _compile_intervals(
    block: Any, config_path: Any, directory: Any, fh: Any, first: Any, layout: TabixLayout
) -> SourceMeta:
    chroms: list[str] = []
    max_len: dict[str, int] = {}
    n_out = len(block.outputs)
    state: dict[str, Any] = {"starts": [], "ends": [], "cols": [[] for _ in range(n_out)]}
    numeric = [o.op in NUMERIC_OPS for o in block.outputs]

    def flush() -> None:
        cid = len(chroms) - 1
        starts = np.asarray(state["starts"], dtype=np.int64)
        ends = np.asarray(state["ends"], dtype=np.int64)
        np.save(directory / f"{cid}.start.npy", starts)
        np.save(directory / f"{cid}.end.npy", ends)
        for slot, values in enumerate(state["cols"]):
            blob, off = _pack([v.encode() for v in values])
            np.save(directory / f"{cid}.col{slot}_blob.npy", blob)
            np.save(directory / f"{cid}.col{slot}_off.npy", off)
            numbers = [_num(v) for v in values]
            if numeric[slot]:
                np.save(directory / f"{cid}.col{slot}_num.npy", np.asarray(numbers, dtype=np.float64))
            _save_single_row_values(directory, cid, slot, block.outputs[slot].op, values, numbers)
        max_len[chroms[-1]] = int((ends - starts).max()) if len(starts) else 0
        state.update(starts=[], ends=[], cols=[[] for _ in range(n_out)])

    last_start, checked = -1, False
    for line_no, row in _table_lines(fh, first, layout.skip):
        if not checked:
            _check_columns(block, config_path, row, line_no)
            checked = True
        chrom = row[layout.seq - 1]
        begin = _position(block, row, layout.begin, line_no)
        end = _position(block, row, layout.end, line_no)
        start = begin if layout.zero_based else begin - 1
        if not chroms or chrom != chroms[-1]:
            if chrom in chroms:
                raise _unsorted(block, config_path, line_no, f"chromosome {chrom} appears in two blocks")
            if chroms:
                flush()
            chroms.append(chrom)
            last_start = -1
        elif start < last_start:
            raise _unsorted(block, config_path, line_no, f"start {begin} after {last_start} on {chrom}")
        last_start = start
        state["starts"].append(start)
        state["ends"].append(max(end, start + 1))
        for slot, output in enumerate(block.outputs):
            state["cols"][slot].append(row[output.column - 1] if output.column <= len(row) else "")
    if chroms:
        flush()
    return SourceMeta("interval", chroms, {}, ["1"] * n_out, False, max_len)


def _save_single_row_values(
    directory: Path, cid: int, slot: int, op: str, texts: list[str], numbers: list[float]
) -> None:
    """Each row's value for a query that overlaps only that row (the common case), rendered once
    here so annotation copies it: ``col{slot}_one_kind`` is 0 (nothing), 1 (text) or 2 (flag)."""
    kinds = np.zeros(len(texts), dtype=np.uint8)
    rendered: list[bytes] = []
    for row, (text, number) in enumerate(zip(texts, numbers, strict=True)):
        value = reduce_interval_rows(op, [text], [number])
        kinds[row] = 0 if value is None else (2 if value is True else 1)
        rendered.append(value.encode() if isinstance(value, str) else b"")
    blob, offsets = _pack(rendered)
    np.save(directory / f"{cid}.col{slot}_one_kind.npy", kinds)
    np.save(directory / f"{cid}.col{slot}_one_blob.npy", blob)
    np.save(directory / f"{cid}.col{slot}_one_off.npy", offsets)


def _position(block: AnnotationBlock, row: list[str], column: int, line_no: int) -> int:
    """The integer in 1-based ``column`` of a BED/TSV row (the column the tabix index names)."""
    text = row[column - 1] if 0 < column <= len(row) else ""
    try:
        return int(text)
    except ValueError:
        raise InputError(
            f"{block.label}: column {column} holds {text!r}, not a position (the column comes from "
            f"the tabix index {block.file}.tbi, or BED's columns 2-3)",
            file=str(block.file),
            line=line_no,
            expected="an index made for this file's layout (e.g. tabix -s1 -b2 -e2 for CHROM POS ...)",
        ) from None


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _compile_tsv_variants(
    block: Any, config_path: Any, directory: Any, fh: Any, first: Any, layout: Any, ref_col: Any, alt_col: Any
) -> SourceMeta:
    specs = [FieldSpec(o, slot, "1", True, from_vcf=False) for slot, o in enumerate(block.outputs)]
    writer = _ChromWriter(directory, specs)
    chroms: list[str] = []
    max_len: dict[str, int] = {}
    last_pos, checked = 0, False
    for line_no, row in _table_lines(fh, first, layout.skip):
        if not checked:
            _check_columns(block, config_path, row, line_no)
            checked = True
        chrom = row[layout.seq - 1]
        begin = _position(block, row, layout.begin, line_no)
        pos = begin + 1 if layout.zero_based else begin
        if not chroms or chrom != chroms[-1]:
            if chrom in chroms:
                raise _unsorted(block, config_path, line_no, f"chromosome {chrom} appears in two blocks")
            if chroms:
                max_len[chroms[-1]] = writer.flush(len(chroms) - 1)
            chroms.append(chrom)
            last_pos = 0
        elif pos < last_pos:
            raise _unsorted(block, config_path, line_no, f"position {pos} after {last_pos} on {chrom}")
        last_pos = pos
        values = [row[o.column - 1] if o.column <= len(row) else None for o in block.outputs]
        alts = tuple(row[alt_col].split(","))
        contribution = Contribution(alts, ".", ".", tuple(values))
        writer.add(pos, row[ref_col], contribution, encode_record(".", ".", row[alt_col], values))
    if chroms:
        max_len[chroms[-1]] = writer.flush(len(chroms) - 1)
    return SourceMeta("variant", chroms, {}, ["1"] * len(block.outputs), False, max_len)
