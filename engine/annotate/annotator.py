"""``annotate_vcf``: annotate a VCF from compiled sources, chunk by chunk, mostly in numpy.

Fast path (biallelic query records, no post-annotation, no name clashes): strict matches are a
``searchsorted`` on each chromosome's (POS, hash(REF\\tALT)) arrays and the INFO text is copied
from the pre-rendered suffix; BED/TSV overlaps are expanded with ``np.repeat`` and reduced with
``bincount``/``reduceat``. Everything else goes through the general per-record path that applies
vcfanno's rules value by value. Record order and every byte not annotated are preserved.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from engine.annotate.config import AnnotationBlock, AnnotationConfig, PostAnnotation, load_config
from engine.annotate.expr import compile_expression
from engine.annotate.index import CompiledSource, load_or_compile
from engine.annotate.reducers import (
    NUMERIC_OPS,
    Contribution,
    FieldSpec,
    Value,
    as_float,
    format_number,
    reduce_field,
    reduce_interval_rows,
    reduce_values,
)
from engine.errors import InputError
from engine.vcf.header import VcfHeader, definition_line
from engine.vcf.info import parse_info, render_info
from engine.vcf.textio import (
    CHUNK_BYTES,
    atomic_output,
    checked_chunks,
    iter_line_chunks,
    open_binary,
    stream_error,
)
from engine.vcf.textscan import (
    COMMA,
    DOT,
    Fields,
    chrom_runs,
    count_byte,
    gather_rows,
    hash_spans,
    hash_strings,
    missing_fields,
    parse_uints,
    scan_fields,
)

log = logging.getLogger(__name__)

INFO_FIELD = 7


@dataclass
class AnnotateResult:
    output: Path | None
    records: int = 0
    annotated: int = 0
    seconds: float = 0.0
    compile_seconds: float = 0.0
    compiled: list[str] = field(default_factory=list)
    skipped_sources: list[str] = field(default_factory=list)


@dataclass
class _Source:
    block: AnnotationBlock
    index: CompiledSource


def annotate_vcf(
    config: Path,
    src: Path,
    dst: Path | None,
    *,
    base_path: Path | None = None,
    threads: int = 1,
    permissive_overlap: bool = False,
    chr_map: str = "auto",
    stream: BinaryIO | None = None,
    search_cwd: bool = True,
) -> AnnotateResult:
    """Annotate ``src`` with the sources in the vcfanno TOML ``config`` and write ``dst``
    (bgzip-compressed when it ends in .gz). ``dst=None`` writes to ``stream`` (default stdout).
    The output appears atomically: on any error no partial file is left behind.

    ``threads`` chunks of the input are annotated at once (in threads: the work is numpy, which
    releases the GIL), at most ``2 * threads`` chunks of 8 MB in flight, output in input order.
    ``chr_map``: ``auto`` (vcfanno's rule: ``chr1`` in the input finds ``1`` in a source and the
    reverse), ``none`` (names must be equal; a chr-prefix mismatch is an error), or a file of
    ``INPUT_NAME SOURCE_NAME`` lines tried first (then ``auto``).
    """
    started = time.perf_counter()
    cfg = load_config(Path(config), base_path, search_cwd=search_cwd)
    names = ChromNames.of(chr_map)
    result = AnnotateResult(output=Path(dst) if dst else None)
    sources = _load_sources(cfg, result)
    src = Path(src)
    annotate_started = time.perf_counter()
    with open_binary(src) as handle, atomic_output(Path(dst) if dst else None, stream) as out:
        _run(cfg, sources, src, handle, out, permissive_overlap, names, result, max(1, threads))
    result.seconds = time.perf_counter() - annotate_started
    log.info(
        "annotated %d records (%d with values) in %.2fs",
        result.records,
        result.annotated,
        time.perf_counter() - started,
    )
    return result


def _load_sources(cfg: AnnotationConfig, result: AnnotateResult) -> list[_Source]:
    sources = []
    for block in cfg.annotations:
        if block.optional and not block.file.exists():
            log.warning("%s: optional source %s is missing; skipped", block.label, block.file)
            result.skipped_sources.append(str(block.file))
            continue
        index, seconds = load_or_compile(block, cfg.path)
        if seconds is not None:
            result.compile_seconds += seconds
            result.compiled.append(str(block.file))
        sources.append(_Source(block, index))
        undefined = [
            o.field
            for o in block.outputs
            if index.meta.is_vcf and o.field not in (None, "ID", "FILTER", *index.meta.info)
        ]
        for name in undefined:
            log.warning(
                "%s: field %r is not defined in the header of %s: it gets no values, as in vcfanno",
                block.label,
                name,
                block.file,
            )
    return sources


# ----------------------------------------------------------------------------- header


def _output_header(header: VcfHeader, cfg: AnnotationConfig, sources: list[_Source]) -> set[str]:
    """Change ``header`` into the output's: the sources' and post-annotations' INFO definitions
    replace any of the same ID, deleted fields lose theirs. Returns the IDs the input already
    had (or that are deleted): those lines need the general path."""
    new_defs: dict[str, str] = {}
    for source in sources:
        for spec in source.index.specs:
            new_defs[spec.output.name] = _info_line(spec, source)
    deleted: set[str] = set()
    for post in cfg.postannotations:
        if post.op == "delete":
            deleted.update(post.fields)
        elif post.op != "setid" and post.name:
            number = "0" if post.type == "Flag" else ("1" if post.op not in ("concat", "uniq") else ".")
            new_defs[post.name] = definition_line(
                "INFO", post.name, number, post.type, f"calculated field: {post.name} ({post.op})"
            )
    clashes = (set(new_defs) & set(header.infos)) | deleted
    header.remove_infos(set(new_defs) | deleted)
    for line in new_defs.values():
        header.add_line(line)
    return clashes


def _info_line(spec: FieldSpec, source: _Source) -> str:
    output, op = spec.output, spec.output.op
    definition = source.index.meta.info.get(output.field or "", None)
    where = output.field if output.field else f"column {output.column}"
    description = f"calculated by {op} of overlapping values in {where} from {source.block.file_text}"
    if op == "by_alt":
        number, vtype = "A", output.forced_type or "String"
    elif output.forced_type:
        vtype = output.forced_type
        number = "0" if vtype == "Flag" else "1"
    elif op in ("self", "first") and definition:
        vtype, number = definition["type"], definition["number"]
        if op == "first" and number not in ("0",):
            number = "1"
        description = f"{definition['description']} (from {source.block.file_text})"
    elif op in ("mean", "min", "max", "sum", "div2"):
        number, vtype = "1", "Float"
    elif op == "count":
        number, vtype = "1", "Integer"
    elif op == "flag":
        number, vtype = "0", "Flag"
    elif op in ("uniq", "concat"):
        number, vtype = ".", "String"
    else:
        number, vtype = ("1" if op == "first" else "."), "String"
    return definition_line("INFO", output.name, number, vtype, description)


def _check_contigs(header: VcfHeader, sources: list[_Source], names: ChromNames) -> None:
    for source in sources:
        for contig in header.contigs:
            names.resolve(contig, source)


def _toggle_chr(name: str) -> str:
    return name[3:] if name.startswith("chr") else f"chr{name}"


class ChromNames:
    """The source's name for an input contig: an explicit map first, then the name itself, then
    (unless ``mode`` is ``none``) the name with its ``chr`` prefix added or removed, as vcfanno
    matches them. Each chr-prefix match is noted once per source and contig (``take_notes``)."""

    def __init__(self, mode: str, explicit: dict[str, str] | None = None) -> None:
        self.mode = mode
        self.explicit = explicit or {}
        self.applied: dict[tuple[str, str], str] = {}
        self.reported: set[tuple[str, str]] = set()

    @classmethod
    def of(cls, chr_map: str) -> ChromNames:
        if chr_map in ("auto", "none"):
            return cls(chr_map)
        path = Path(chr_map)
        if not path.is_file():
            raise InputError(
                "-chr-map file not found",
                file=str(path),
                expected="auto, none, or a file of 'INPUT_NAME SOURCE_NAME' lines",
            )
        explicit: dict[str, str] = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts or line.startswith("#"):
                continue
            if len(parts) != 2:
                raise InputError(
                    f"{len(parts)} names on a -chr-map line",
                    file=str(path),
                    line=number,
                    expected="INPUT_NAME SOURCE_NAME (as bcftools --rename-chrs)",
                )
            explicit[parts[0]] = parts[1]
        return cls("auto", explicit)

    def resolve(self, chrom: str, source: _Source) -> str | None:
        wanted = self.explicit.get(chrom, chrom)
        if source.index.has_chrom(wanted):
            return wanted
        other = _toggle_chr(wanted)
        if not source.index.has_chrom(other):
            return None
        if self.mode == "none":
            raise InputError(
                f"{source.block.label}: contig naming mismatch: the input uses {chrom!r} but "
                f"{source.block.file} uses {other!r}",
                file=str(source.block.file),
                expected="the same contig names with -chr-map none (the default, -chr-map auto, "
                "matches chr1 <-> 1 as vcfanno does)",
            )
        self.applied.setdefault((source.block.label, chrom), other)
        return other

    def take_notes(self) -> list[str]:
        """Chr-prefix matches not reported yet."""
        notes = []
        for key, other in list(self.applied.items()):
            if key not in self.reported:
                self.reported.add(key)
                notes.append(
                    f"{key[0]}: input contig {key[1]!r} matched source contig {other!r} "
                    "(chr prefix, as vcfanno matches them)"
                )
        return notes


# ----------------------------------------------------------------------------- main loop


def _run(
    cfg: Any,
    sources: list[_Source],
    src: Path,
    fh: BinaryIO,
    out: BinaryIO,
    permissive: bool,
    names: ChromNames,
    result: AnnotateResult,
    threads: int,
) -> None:
    header, first = VcfHeader.read_binary(src, fh)
    if header is None:
        header = VcfHeader.parse(src, iter(()))  # raises: the input needs its #CHROM line
    _check_contigs(header, sources, names)
    clashes = _output_header(header, cfg, sources)
    out.write(header.text().encode())
    annotator = _ChunkAnnotator(cfg, sources, permissive, names, bool(clashes) or bool(cfg.postannotations))
    chunks = iter_line_chunks(fh, first, CHUNK_BYTES, header_lines=header.line_count)
    chunks = checked_chunks(src, chunks, header.line_count)
    for pieces, n_lines, n_annotated in _annotated(annotator, chunks, src, header.line_count, threads):
        for note in names.take_notes():
            log.warning("%s", note)
        result.records += n_lines
        result.annotated += n_annotated
        # Piece by piece, not joined: joining copies the whole chunk's output once more.
        for piece in pieces:
            out.write(piece)


def _annotated(
    annotator: _ChunkAnnotator, chunks: Iterable[bytes], src: Path, line_offset: int, threads: int
) -> Iterator[tuple[list[bytes | memoryview], int, int]]:
    """``annotator.annotate`` of every chunk, in order; with ``threads`` > 1 that many chunks are
    annotated at once and at most ``2 * threads`` are held (read ahead or waiting to be written)."""
    if threads == 1:
        for chunk in chunks:
            yield annotator.annotate(chunk, src, line_offset)
            line_offset += chunk.count(b"\n")
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="annotate")
    pending: deque[Future[tuple[list[bytes | memoryview], int, int]]] = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(annotator.annotate, chunk, src, line_offset))
            line_offset += chunk.count(b"\n")
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices covering [starts[k], starts[k] + lengths[k]) for every k, concatenated."""
    total = int(lengths.sum())
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total)


def _merge_hits(
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hits of all sources as (line, payload lengths, payload bytes), ordered by line and, within a
    line, by config order (so several sources' INFO text lands in config order)."""
    found = [f for f in found if len(f[0])]
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.uint8)
    if len(found) == 1:
        return found[0]
    lines = np.concatenate([f[0] for f in found])
    lengths = np.concatenate([f[1] for f in found])
    payload = np.concatenate([f[2] for f in found])
    order = np.argsort(lines, kind="stable")
    offsets = np.cumsum(lengths) - lengths
    return lines[order], lengths[order], payload[_ranges(offsets[order], lengths[order])]


def _assemble(
    chunk: bytes, fields: Fields, hits: tuple[np.ndarray, np.ndarray, np.ndarray], replaced: dict[int, bytes]
) -> list[Any]:
    """Insert each hit's INFO text at the end of its INFO field in one vectorised pass, then splice
    in the few lines rewritten by the general path."""
    buf = fields.buf
    lines, lengths, payload = hits
    cut = fields.end(INFO_FIELD)[lines]
    dest = np.repeat(cut, lengths) + np.arange(len(payload))
    out = np.empty(len(buf) + len(payload), dtype=np.uint8)
    original = np.ones(len(out), dtype=bool)
    original[dest] = False
    out[dest] = payload
    out[original] = buf
    if not replaced:
        return [out.data]
    shift = np.cumsum(lengths)
    view = memoryview(out)  # type: ignore[arg-type]
    pieces: list[Any] = []
    prev = 0
    for i in sorted(replaced):
        moved = int(shift[np.searchsorted(lines, i) - 1]) if np.searchsorted(lines, i) > 0 else 0
        start, end = int(fields.line_start[i]) + moved, int(fields.line_end[i]) + moved
        pieces += (view[prev:start], replaced[i])
        prev = end
    pieces.append(view[prev:])
    return pieces


class _ChunkAnnotator:
    def __init__(
        self,
        cfg: AnnotationConfig,
        sources: list[_Source],
        permissive: bool,
        names: ChromNames,
        general_only: bool,
    ) -> None:
        self.cfg = cfg
        self.sources = sources
        self.permissive = permissive
        self.names = names
        self.general_only = general_only
        self.posts = [_PostOp(p) for p in cfg.postannotations]

    def annotate(self, chunk: bytes, src: Path, line_offset: int) -> tuple[list[Any], int, int]:
        fields = scan_fields(chunk, 8)
        n = fields.n
        bad = missing_fields(fields, 8)
        if bad.any():
            line = line_offset + int(np.flatnonzero(bad)[0]) + 1
            raise InputError("VCF record has fewer than 8 columns", file=str(src), line=line)
        pos, ok = parse_uints(fields.buf, fields.start(1), fields.end(1))
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise InputError(
                f"POS {fields.text(i, 1)!r} is not a number",
                file=str(src),
                line=line_offset + i + 1,
                expected="a positive integer",
            )
        general = np.full(n, self.general_only, dtype=bool)
        general |= count_byte(fields.buf, COMMA, fields.start(4), fields.end(4)) > 0
        if self.permissive:
            general |= True
        info_start, info_end = fields.start(INFO_FIELD), fields.end(INFO_FIELD)
        # an empty INFO ('.') is replaced rather than appended to: left to the general path
        general |= ((info_end - info_start) == 1) & (fields.buf[info_start] == DOT)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for chrom, a, b in chrom_runs(fields):
            fast = np.flatnonzero(~general[a:b]) + a
            for source in self.sources:
                name = self.names.resolve(chrom, source)
                if name is None or not len(fast):
                    continue
                if source.index.is_variant:
                    found.append(_variant_fast(source.index, name, fields, pos, fast))
                else:
                    found.append(_interval_fast(source.index, name, fields, pos, fast))
        hits = _merge_hits(found)
        replaced: dict[int, bytes] = {}
        for i in np.flatnonzero(general).tolist():
            try:
                text = bytes(fields.buf[int(fields.line_start[i]) : int(fields.line_end[i])]).decode()
            except UnicodeDecodeError as error:
                raise stream_error(src, error, line_offset + i + 1) from None
            new_line = self._general_line(text)
            if new_line is not None:
                replaced[i] = new_line.encode()
        pieces = _assemble(chunk, fields, hits, replaced)
        return pieces, n, len(np.unique(hits[0])) + len(replaced)

    # -- general path ----------------------------------------------------------------------

    def _general_line(self, line: str) -> str | None:
        parts = line.split("\t")
        chrom, pos, ref, alts = parts[0], int(parts[1]), parts[3], parts[4].split(",")
        info = parse_info(parts[INFO_FIELD])
        changed = False
        for source in self.sources:
            name = self.names.resolve(chrom, source)
            if name is None:
                continue
            contributions = _contributions(source.index, name, pos, ref, alts, self.permissive)
            if not contributions:
                continue
            for spec in source.index.specs:
                value = reduce_field(spec, alts, contributions)
                if value is not None:
                    info[spec.output.name] = _keep_current_alts(spec, alts, value, info.get(spec.output.name))
                    changed = True
        for post in self.posts:
            changed |= post.apply(info, parts)
        if not changed:
            return None
        parts[INFO_FIELD] = render_info(info)
        return "\t".join(parts)


def _keep_current_alts(spec: FieldSpec, alts: list[str], value: Value, current: Value | None) -> Value:
    """vcfanno (api.go: Source.AnnotateOne): a per-ALT ``self`` value written to a multi-ALT record
    that already has the field with as many values keeps the current value where the new one has
    none, so two sources (say CADD indels and CADD SNVs) fill one field together."""
    if (
        spec.output.op != "self"
        or not spec.number_a
        or len(alts) < 2
        or not isinstance(value, str)
        or not isinstance(current, str)
    ):
        return value
    new, old = value.split(","), current.split(",")
    if len(new) != len(old):
        return value
    return ",".join(o if n == "." else n for n, o in zip(new, old, strict=True))


def _div2(first: Value, second: Value) -> str:
    """vcfanno's post-annotation ``div2`` (api/reducers.go): the first field over the second; a
    list first field is divided item by item; 0 over anything, or anything over 0, is 0."""
    divisor = as_float(second.split(",")[0] if isinstance(second, str) else second)
    items = first.split(",") if isinstance(first, str) else [first]

    def one(item: Value) -> str:
        number = as_float(item)
        return "0" if number == 0 or divisor == 0 else format_number(number / divisor)

    return ",".join(one(item) for item in items)


def _contributions(
    index: CompiledSource, chrom: str, pos: int, ref: str, alts: list[str], permissive: bool
) -> list[Contribution]:
    start, end = pos - 1, pos - 1 + len(ref)
    if not index.is_variant:
        rows = _overlapping(index, chrom, "start", "end", start, end)
        columns = [index.column_text(chrom, s.slot) for s in index.specs]
        return [Contribution((), ".", ".", tuple(col[r] for col in columns)) for r in rows]
    if permissive:
        recs = _overlapping(index, chrom, "rec_start", "rec_end", start, end)
    else:
        positions, keys = index.array(chrom, "pos"), index.array(chrom, "key")
        wanted = hash_strings([f"{ref}\t{alt}".encode() for alt in alts])
        lo, hi = np.searchsorted(positions, pos, "left"), np.searchsorted(positions, pos, "right")
        found: set[int] = set()
        for entry in range(int(lo), int(hi)):
            if keys[entry] in wanted:
                found.update(index.entry_records(chrom, entry))
        recs = sorted(found)
    return [index.record(chrom, r) for r in recs]


def _overlapping(
    index: CompiledSource, chrom: str, start_name: str, end_name: str, start: int, end: int
) -> list[int]:
    starts, ends = index.array(chrom, start_name), index.array(chrom, end_name)
    max_len = index.meta.max_len.get(chrom, 0)
    lo = int(np.searchsorted(starts, start - max_len, "right"))
    hi = int(np.searchsorted(starts, end, "left"))
    return [r for r in range(lo, hi) if ends[r] > start]


class _PostOp:
    def __init__(self, post: PostAnnotation) -> None:
        self.post = post
        self.expression = None
        if post.op not in ("delete", "setid") and post.op not in _REDUCER_NAMES:
            self.expression = compile_expression(post.op, post.fields)

    def apply(self, info: dict[str, Any], parts: list[str]) -> bool:
        post = self.post
        if post.op == "delete":
            removed = [f for f in post.fields if f in info]
            for f in removed:
                del info[f]
            return bool(removed)
        present = {f: info[f] for f in post.fields if f in info and info[f] not in (".", "")}
        if post.op == "setid":
            ids = [str(v) for f in post.fields if (v := present.get(f)) is not None and v is not True]
            ids = [i for chunk in ids for i in chunk.replace(";", ",").split(",") if i not in (".", "")]
            if not ids:
                return False
            parts[2] = ";".join(dict.fromkeys(ids))
            return True
        if not present:
            return False
        # The config requires a name for every op but delete (engine/annotate/config.py: _post_block).
        target = post.name or ""
        if post.op == "div2":
            found = [present[f] for f in post.fields if f in present]
            if len(found) < 2:
                return False
            info[target] = _div2(found[0], found[1])
            return True
        if self.expression is None:
            values: list[Any] = []
            for f in post.fields:
                if f in present:
                    v = present[f]
                    values.extend(
                        v.split(",") if isinstance(v, str) and post.op in NUMERIC_OPS | {"count"} else [v]
                    )
            value = reduce_values(post.op, values)
        else:
            if len(present) < len(post.fields):
                return False
            numbers = {f: _numeric(v) for f, v in present.items()}
            try:
                raw = self.expression.evaluate(numbers)
            except (ZeroDivisionError, ValueError, TypeError, IndexError, OverflowError):
                return False
            value = _typed(raw, post.type)
        if value is None or value is False:
            return False
        info[target] = value
        return True


_REDUCER_NAMES = {"self", "first", "concat", "uniq", "sum", "mean", "min", "max", "count", "flag", "div2"}


def _numeric(value: Any) -> float | list[float]:
    if value is True:
        return 1.0
    if "," in value:
        return [as_float(v) for v in value.split(",")]
    return as_float(value)


def _typed(raw: Any, vcf_type: str) -> Any:
    if vcf_type == "Flag":
        return True if raw else None
    if isinstance(raw, list):
        return ",".join(format_number(float(v)) for v in raw)
    if isinstance(raw, bool):
        raw = int(raw)
    if vcf_type == "Integer":
        return str(int(raw))
    if isinstance(raw, int | float):
        return format_number(float(raw))
    return str(raw)


# ----------------------------------------------------------------------------- fast paths


def _variant_fast(
    index: CompiledSource, chrom: str, fields: Fields, pos: np.ndarray, lines: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    positions, keys = index.array(chrom, "pos"), index.array(chrom, "key")
    qpos = pos[lines]
    qkey = hash_spans(fields.buf, fields.start(3)[lines], fields.end(4)[lines])
    lo = np.searchsorted(positions, qpos, "left")
    hi = np.searchsorted(positions, qpos, "right")
    width = hi - lo
    entry = np.full(len(lines), -1, dtype=np.int64)
    single = np.flatnonzero(width == 1)
    matched = keys[lo[single]] == qkey[single]
    entry[single[matched]] = lo[single[matched]]
    for k in np.flatnonzero(width > 1).tolist():
        for e in range(int(lo[k]), int(hi[k])):
            if keys[e] == qkey[k]:
                entry[k] = e
                break
    hit = np.flatnonzero(entry >= 0)
    starts, ends = index.array(chrom, "sfx_start")[entry[hit]], index.array(chrom, "sfx_end")[entry[hit]]
    nonempty = ends > starts
    hit, starts, lengths = hit[nonempty], starts[nonempty], (ends - starts)[nonempty]
    payload = np.asarray(index.array(chrom, "sfx_blob"))[_ranges(starts, lengths)]
    return lines[hit], lengths, payload


def _interval_fast(
    index: CompiledSource, chrom: str, fields: Fields, pos: np.ndarray, lines: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts, ends = index.array(chrom, "start"), index.array(chrom, "end")
    max_len = index.meta.max_len.get(chrom, 0)
    qs = pos[lines] - 1
    qe = qs + (fields.end(3)[lines] - fields.start(3)[lines])
    lo = np.searchsorted(starts, qs - max_len, "right")
    hi = np.searchsorted(starts, qe, "left")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total == 0:
        return lines[:0], lines[:0], np.zeros(0, dtype=np.uint8)
    owner = np.repeat(np.arange(len(lines)), counts)
    first_of = np.cumsum(counts) - counts
    rows = np.repeat(lo, counts) + (np.arange(total) - np.repeat(first_of, counts))
    keep = ends[rows] > qs[owner]
    owner, rows = owner[keep], rows[keep]
    if not len(owner):
        return lines[:0], lines[:0], np.zeros(0, dtype=np.uint8)
    # owner is sorted (repeat of a range), so groups are runs
    group_start = np.flatnonzero(np.append(True, owner[1:] != owner[:-1]))
    group_end = np.append(group_start[1:], len(owner))
    hit_lines = owner[group_start]
    pool_parts: list[np.ndarray] = []
    pool_size = 0
    seg_start: list[np.ndarray] = []
    seg_len: list[np.ndarray] = []
    for spec in index.specs:
        kind, value_start, value_len, pieces = _interval_values(
            index, chrom, spec, rows, group_start, group_end
        )
        name_eq, name_only = f";{spec.output.name}=".encode(), f";{spec.output.name}".encode()
        literals = np.frombuffer(name_eq + name_only, dtype=np.uint8)
        pool_parts += [literals, *pieces]
        text, flag = kind == 1, kind == 2
        seg_start += [
            np.where(flag, pool_size + len(name_eq), pool_size),
            value_start + pool_size + len(literals),
        ]
        seg_len += [
            np.where(flag, len(name_only), np.where(text, len(name_eq), 0)),
            np.where(text, value_len, 0),
        ]
        pool_size += len(literals) + sum(len(p) for p in pieces)
    blob, offsets = gather_rows(
        np.concatenate(pool_parts), np.stack(seg_start, axis=1), np.stack(seg_len, axis=1)
    )
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    if nonempty.all():
        return lines[hit_lines], lengths, blob
    return lines[hit_lines[nonempty]], lengths[nonempty], blob


def _interval_values(
    index: CompiledSource,
    chrom: str,
    spec: FieldSpec,
    rows: np.ndarray,
    group_start: np.ndarray,
    group_end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """One output's value for every group of overlapping rows: kind (0 none, 1 text, 2 flag) and
    the text's span in the returned byte pieces (concatenated). A group of one row copies the row's
    value rendered at compile time; larger groups are reduced here."""
    slot, op = spec.slot, spec.output.op
    one_kind = index.array(chrom, f"col{slot}_one_kind")
    one_off = index.array(chrom, f"col{slot}_one_off")
    first = rows[group_start]
    kind = np.asarray(one_kind[first])
    value_start = np.asarray(one_off[first])
    value_len = np.asarray(one_off[first + 1]) - value_start
    pieces: list[np.ndarray] = [np.asarray(index.array(chrom, f"col{slot}_one_blob"))]
    multi = np.flatnonzero(group_end - group_start > 1)
    if not len(multi):
        return kind, value_start, value_len, pieces
    if op in ("sum", "mean", "min", "max"):
        numbers = np.asarray(index.array(chrom, f"col{slot}_num"))[rows]
        reducer = {"min": np.minimum, "max": np.maximum}.get(op, np.add)
        reduced = reducer.reduceat(numbers, group_start)[multi]
        if op == "mean":
            reduced = reduced / (group_end - group_start)[multi]
        values: list[Any] = [format_number(v) for v in reduced.tolist()]
    else:
        texts = index.column_text(chrom, slot)
        row_list = rows.tolist()
        values = [
            reduce_interval_rows(op, [texts[r] for r in row_list[a:b]], [])
            for a, b in zip(group_start[multi].tolist(), group_end[multi].tolist(), strict=True)
        ]
    kind, value_start, value_len = kind.copy(), value_start.copy(), value_len.copy()
    encoded = [v.encode() if isinstance(v, str) else b"" for v in values]
    base = len(pieces[0])
    kind[multi] = [0 if v is None else (2 if v is True else 1) for v in values]
    value_len[multi] = [len(e) for e in encoded]
    value_start[multi] = base + np.cumsum(value_len[multi]) - value_len[multi]
    pieces.append(np.frombuffer(b"".join(encoded), dtype=np.uint8))
    return kind, value_start, value_len, pieces


def annotate_cli_summary(result: AnnotateResult) -> str:
    compiled = (
        f"; compiled {len(result.compiled)} source index(es) in {result.compile_seconds:.2f}s (one-off)"
        if result.compiled
        else ""
    )
    rate = result.records / result.seconds if result.seconds else 0.0
    return (
        f"annotated {result.records} records ({result.annotated} with new values) in "
        f"{result.seconds:.2f}s ({rate:,.0f} variants/s){compiled}"
    )
