"""Vectorised compilation of a VCF source into its index arrays (see ``index.py`` for the format).

The source text is read in large blocks of whole lines and every step is a numpy operation over
the block: field boundaries, POS, the ``REF\\tALT`` hash, INFO items located by their ``;``/``=``
bytes, the requested values picked out by comparing key bytes, and the per-record texts (the
rendered INFO suffix and the general path's record text) gathered from spans of the block. No
Python object is built per record; only rare records (multi-ALT, ``ALT=.``, a ``;`` inside ID or
FILTER) and rare groups (a position/allele shared by several records, ops that reduce) go through
the per-record code, which is the same code the general annotation path uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.annotate.config import AnnotationBlock
from engine.annotate.reducers import Contribution, FieldSpec, raw_value, reduce_field, render_info
from engine.errors import InputError
from engine.vcf.textscan import (
    COMMA,
    Fields,
    chrom_runs,
    count_byte,
    gather_rows,
    hash_spans,
    hash_strings,
    missing_fields,
    offsets_of,
    parse_uints,
    scan_fields,
)

SEMICOLON = 59
EQUALS = 61
MISSING_TOKEN = b"\x00"
FLAG_TOKEN = b"\x01"
_COPY_OPS = frozenset({"self", "concat", "uniq", "first"})
_FLAG_COPY_OPS = frozenset({"self", "first"})


# ----------------------------------------------------------------------------- record texts


def encode_record(rid: str, filt: str, alts: str, values: list[Any]) -> str:
    """The general path's text of one source record: ID, FILTER, ALTs and the raw values (tokens
    stand for a missing value and a set Flag)."""
    coded = [
        FLAG_TOKEN.decode() if v is True else (MISSING_TOKEN.decode() if v is None else v) for v in values
    ]
    return "\t".join([rid, filt, alts, *coded])


def decode_record(text: str) -> Contribution:
    parts = text.split("\t")
    values = tuple(
        True if v == FLAG_TOKEN.decode() else (None if v == MISSING_TOKEN.decode() else v) for v in parts[3:]
    )
    return Contribution(tuple(parts[2].split(",")) if parts[2] else (), parts[0], parts[1], values)


def copy_suffix(specs: list[FieldSpec], record: Contribution) -> str | None:
    """The INFO text for one biallelic record whose ops copy the value; None when the general
    reducer is needed (the vectorised path applies the same rule to whole blocks)."""
    if len(record.alts) != 1:
        return None
    parts = []
    for spec in specs:
        value = raw_value(spec, record)
        if value is None:
            continue
        op = spec.output.op
        if value is True:
            if op not in _FLAG_COPY_OPS:
                return None
            parts.append(f";{spec.output.name}")
        elif op in _COPY_OPS:
            parts.append(f";{spec.output.name}={value}")
        else:
            return None
    return "".join(parts)


def render_suffix(specs: list[FieldSpec], query_alts: tuple[str, ...], members: list[Contribution]) -> str:
    return "".join(render_info(s.output.name, reduce_field(s, query_alts, members)) for s in specs)


# ----------------------------------------------------------------------------- numpy helpers


def spans_equal(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, text: bytes) -> np.ndarray:
    """Which spans hold exactly ``text``."""
    same = (ends - starts) == len(text)
    if len(text) and same.any():
        where = np.flatnonzero(same)
        window = buf[starts[where, None] + np.arange(len(text))]
        same[where] = (window == np.frombuffer(text, dtype=np.uint8)).all(axis=1)
    return same


# ----------------------------------------------------------------------------- INFO values


@dataclass
class _Values:
    """One requested INFO key in every record of a block: matched, a Flag (no '='), value span."""

    matched: np.ndarray
    flag: np.ndarray
    start: np.ndarray
    end: np.ndarray


def _info_values(fields: Fields, keys: Iterable[str]) -> dict[str, _Values]:
    """Find ``KEY=value`` / ``KEY`` items in every record's INFO; the last occurrence wins."""
    buf, n = fields.buf, fields.n
    info_start, info_end = fields.start(7), fields.end(7)
    semis = np.flatnonzero(buf == SEMICOLON)
    owner = np.searchsorted(info_start, semis, "right") - 1
    inside = (owner >= 0) & (semis < info_end[np.maximum(owner, 0)])
    semis, owner = semis[inside], owner[inside]
    item_start = np.concatenate([info_start, semis + 1])
    item_rec = np.concatenate([np.arange(n, dtype=np.int64), owner])
    order = np.argsort(item_start, kind="stable")
    item_start, item_rec = item_start[order], item_rec[order]
    item_end = np.empty_like(item_start)
    if len(item_start):
        item_end[:-1] = np.where(item_rec[1:] == item_rec[:-1], item_start[1:] - 1, info_end[item_rec[:-1]])
        item_end[-1] = info_end[item_rec[-1]]
    equals = np.append(np.flatnonzero(buf == EQUALS), len(buf))
    first_eq = equals[np.searchsorted(equals, item_start)]
    has_eq = first_eq < item_end
    key_end = np.where(has_eq, first_eq, item_end)
    found: dict[str, _Values] = {}
    for key in keys:
        hit = np.flatnonzero(spans_equal(buf, item_start, key_end, key.encode()))
        if len(hit):  # keep the last item per record
            last = np.append(item_rec[hit][1:] != item_rec[hit][:-1], True)
            hit = hit[last]
        values = _Values(
            np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(n, np.int64), np.zeros(n, np.int64)
        )
        rec = item_rec[hit]
        values.matched[rec] = True
        values.flag[rec] = ~has_eq[hit]
        values.start[rec] = np.where(has_eq[hit], first_eq[hit] + 1, item_end[hit])
        values.end[rec] = item_end[hit]
        found[key] = values
    return found


# ----------------------------------------------------------------------------- per chromosome


@dataclass
class _ChromParts:
    """What the blocks of one chromosome contributed, concatenated at flush."""

    entry_pos: list[np.ndarray] = field(default_factory=list)
    entry_key: list[np.ndarray] = field(default_factory=list)
    entry_rec: list[np.ndarray] = field(default_factory=list)
    rec_blobs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (blob, lengths)
    sfx_blobs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    quick: list[np.ndarray] = field(default_factory=list)
    rec_start: list[np.ndarray] = field(default_factory=list)
    rec_end: list[np.ndarray] = field(default_factory=list)
    alt_of_entry: dict[int, str] = field(default_factory=dict)  # entries of per-record (rare) records
    n_records: int = 0
    n_entries: int = 0


class VcfCompiler:
    """Feed blocks of whole source lines with :meth:`add_block`, then call :meth:`finish`."""

    def __init__(
        self,
        block: AnnotationBlock,
        config_path: Path,
        directory: Path,
        specs: list[FieldSpec],
        first_line: int,
        undefined: frozenset[str] = frozenset(),
        matched_flags: frozenset[str] = frozenset(),
    ) -> None:
        # ``undefined``: requested INFO keys the source header does not define; as in vcfanno,
        # no value is read for them (vcfgo refuses a key its header lacks).
        # ``matched_flags``: Flag fields read only by op "flag": vcfanno sets the output for every
        # matching record, flag set or not (vcfgo reads an absent Flag as false, not as missing,
        # and its "flag" reducer only counts values).
        self.block = block
        self.undefined = undefined
        self.matched_flags = matched_flags
        self.config_path = config_path
        self.directory = directory
        self.specs = specs
        self.line_no = first_line  # number of the line before the next block
        self.chroms: list[str] = []
        self.max_len: dict[str, int] = {}
        self.parts = _ChromParts()
        self.last_pos = 0
        self.slots_of: dict[str, list[int]] = {}
        for slot, spec in enumerate(specs):
            if spec.output.field not in ("ID", "FILTER", *undefined):
                self.slots_of.setdefault(spec.output.field, []).append(slot)  # type: ignore[arg-type]
        self.info_keys = sorted(self.slots_of)
        literals = [MISSING_TOKEN, FLAG_TOKEN, b"\t"]
        for spec in specs:
            literals += [f";{spec.output.name}=".encode(), f";{spec.output.name}".encode()]
        self.literals = np.frombuffer(b"".join(literals), dtype=np.uint8)
        lit_offsets = offsets_of(np.array([len(x) for x in literals], dtype=np.int64))
        self.lit = {"missing": 0, "flag": 1, "tab": 2}
        self.lit_span = [(int(lit_offsets[i]), len(x)) for i, x in enumerate(literals)]

    # -- errors ---------------------------------------------------------------------------------

    def _line_of(self, chunk_buf: np.ndarray, offset: int) -> int:
        return self.line_no + int(np.count_nonzero(chunk_buf[:offset] == 10)) + 1

    def _unsorted(self, line_no: int, detail: str) -> InputError:
        return InputError(
            f"source {self.block.file} (from {self.block.label} in {self.config_path}) "
            f"is not sorted: {detail}",
            file=str(self.block.file),
            line=line_no,
            expected="a coordinate-sorted file (bcftools sort / sort -k1,1 -k2,2n)",
        )

    # -- blocks ---------------------------------------------------------------------------------

    def add_block(self, chunk: bytes) -> None:
        fields = scan_fields(chunk, 8)
        buf = fields.buf
        if fields.n == 0:
            self.line_no += chunk.count(b"\n")
            return
        pos = self._positions(fields)
        rare = count_byte(buf, COMMA, fields.start(4), fields.end(4)) > 0
        rare |= spans_equal(buf, fields.start(4), fields.end(4), b".")
        rare |= count_byte(buf, SEMICOLON, fields.start(2), fields.end(2)) > 0
        rare |= count_byte(buf, SEMICOLON, fields.start(6), fields.end(6)) > 0
        rare_records = {i: self._parse_rare(fields, i) for i in np.flatnonzero(rare).tolist()}
        values = _info_values(fields, self.info_keys)
        for key in self.undefined:
            nothing = np.zeros(fields.n, dtype=bool)
            values[key] = _Values(
                nothing, nothing, np.zeros(fields.n, dtype=np.int64), np.zeros(fields.n, dtype=np.int64)
            )
        for key in self.matched_flags:
            every = np.ones(fields.n, dtype=bool)
            values[key] = _Values(
                every, every, np.zeros(fields.n, dtype=np.int64), np.zeros(fields.n, dtype=np.int64)
            )
        pool = np.concatenate([self.literals, buf])
        base = len(self.literals)
        texts = gather_rows(
            pool, *self._record_spans(fields, values, base), {i: r.text for i, r in rare_records.items()}
        )
        suffix_spans, quick = self._suffix_spans(fields, values, base)
        block = _Block(
            fields=fields,
            pos=pos,
            keys=hash_spans(buf, fields.start(3), fields.end(4)),
            rare=rare,
            rare_records=rare_records,
            texts=texts,
            suffixes=gather_rows(pool, *suffix_spans),
            quick=quick & ~rare,
        )
        for chrom, a, b in chrom_runs(fields):
            self._start_run(chrom, pos, a, b, fields)
            self._add_run(block, a, b)
        self.line_no += chunk.count(b"\n")

    def _positions(self, fields: Fields) -> np.ndarray:
        buf = fields.buf
        bad = missing_fields(fields, 8)
        if bad.any():
            line = self._line_of(buf, int(fields.line_start[np.flatnonzero(bad)[0]]))
            raise InputError("VCF record has fewer than 8 columns", file=str(self.block.file), line=line)
        pos, ok = parse_uints(buf, fields.start(1), fields.end(1))
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise InputError(
                f"POS {fields.text(i, 1)!r} is not a number",
                file=str(self.block.file),
                line=self._line_of(buf, int(fields.line_start[i])),
                expected="a positive integer",
            )
        return pos

    def _parse_rare(self, fields: Fields, i: int) -> _RareRecord:
        """A record the block rules do not cover (multi-ALT, ALT '.', ';' in ID/FILTER), parsed one
        value at a time as ``encode_record`` expects."""
        line = bytes(fields.buf[int(fields.line_start[i]) : int(fields.line_end[i])]).decode()
        _chrom, _pos, rid, ref, alts, _qual, filt, info = line.split("\t", 8)[:8]
        values: list[Any] = [None] * len(self.specs)
        if self.info_keys and info != ".":
            for item in info.split(";"):
                name, eq, value = item.partition("=")
                for slot in self.slots_of.get(name, ()):
                    values[slot] = value if eq else True
        for slot, spec in enumerate(self.specs):
            if spec.output.field in self.matched_flags:
                values[slot] = True
        alt_list = alts.split(",")  # "." too: vcfanno matches a no-ALT record with one (REF and "." equal)
        text = encode_record(rid, filt, ",".join(alt_list), values).encode()
        return _RareRecord(text, alt_list, [f"{ref}\t{alt}".encode() for alt in alt_list])

    def _start_run(self, chrom: str, pos: np.ndarray, a: int, b: int, fields: Fields) -> None:
        if not self.chroms or chrom != self.chroms[-1]:
            if chrom in self.chroms:
                line = self._line_of(fields.buf, int(fields.line_start[a]))
                raise self._unsorted(line, f"chromosome {chrom} appears in two blocks")
            if self.chroms:
                self._flush()
            self.chroms.append(chrom)
            self.last_pos = 0
        run = pos[a:b]
        previous = np.concatenate([[self.last_pos], run[:-1]])
        backwards = np.flatnonzero(run < previous)
        if len(backwards):
            k = int(backwards[0])
            line = self._line_of(fields.buf, int(fields.line_start[a + k]))
            raise self._unsorted(line, f"position {int(run[k])} after {int(previous[k])} on {chrom}")
        self.last_pos = int(run[-1])

    def _literal(self, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        start, length = self.lit_span[self.lit[name]]
        return np.full(n, start, dtype=np.int64), np.full(n, length, dtype=np.int64)

    def _record_spans(
        self, fields: Fields, values: dict[str, _Values], base: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Spans (into literals + block) of every record's general-path text: ID, FILTER, ALT and
        the raw values, as ``encode_record`` writes them."""
        n = fields.n
        tab = self._literal("tab", n)
        missing_start, _ = self.lit_span[self.lit["missing"]]
        flag_start, _ = self.lit_span[self.lit["flag"]]
        columns = [_span(fields, 2, base), tab, _span(fields, 6, base), tab, _span(fields, 4, base)]
        for spec in self.specs:
            columns.append(tab)
            v = values.get(spec.output.field or "") if spec.output.field not in ("ID", "FILTER") else None
            if v is None:
                columns.append(self._literal("missing", n))
                continue
            text = v.matched & ~v.flag
            start = np.where(text, v.start + base, np.where(v.flag, flag_start, missing_start))
            columns.append((start, np.where(text, v.end - v.start, 1)))
        return np.stack([c[0] for c in columns], axis=1), np.stack([c[1] for c in columns], axis=1)

    def _suffix_spans(
        self, fields: Fields, values: dict[str, _Values], base: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """Spans of every record's rendered INFO text for a query with its one ALT, by
        ``copy_suffix``'s rule, and which records that rule covers."""
        n, buf = fields.n, fields.buf
        quick = np.ones(n, dtype=bool)
        starts: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        for slot, spec in enumerate(self.specs):
            name_eq, name_only = self.lit_span[3 + 2 * slot], self.lit_span[4 + 2 * slot]
            op, key = spec.output.op, spec.output.field
            if key in ("ID", "FILTER"):
                k = 2 if key == "ID" else 6
                start, end = fields.start(k), fields.end(k)
                absent = spans_equal(buf, start, end, b".") | (end == start)
                if key == "FILTER":
                    absent |= spans_equal(buf, start, end, b"PASS")
                present, flag = ~absent, np.zeros(n, dtype=bool)
            else:
                v = values[key]  # type: ignore[index]
                start, end = v.start, v.end
                present = v.matched & (v.flag | (v.end > v.start))
                flag = present & v.flag
            text = present & ~flag
            if op not in _FLAG_COPY_OPS:
                quick &= ~flag
            if op not in _COPY_OPS:
                quick &= ~text
            starts += [np.where(flag, name_only[0], name_eq[0]), start + base]
            lengths += [
                np.where(flag, name_only[1], np.where(text, name_eq[1], 0)),
                np.where(text, end - start, 0),
            ]
        if not starts:
            zeros = np.zeros((n, 1), dtype=np.int64)
            return (zeros, zeros), quick
        return (np.stack(starts, axis=1), np.stack(lengths, axis=1)), quick

    def _add_run(self, block: _Block, a: int, b: int) -> None:
        """Append records [a, b) of a block (all on the current chromosome)."""
        parts, fields = self.parts, block.fields
        fast = np.flatnonzero(~block.rare[a:b])
        parts.entry_pos.append(block.pos[a:b][fast])
        parts.entry_key.append(block.keys[a:b][fast])
        parts.entry_rec.append(fast + parts.n_records)
        parts.n_entries += len(fast)
        for i in range(a, b) if len(fast) < b - a else ():
            rare = block.rare_records.get(i)
            if rare is None or not rare.alts:
                continue
            parts.entry_pos.append(np.full(len(rare.alts), block.pos[i], dtype=np.int64))
            parts.entry_key.append(hash_strings(rare.keys))
            parts.entry_rec.append(np.full(len(rare.alts), parts.n_records + i - a, dtype=np.int64))
            for alt in rare.alts:
                parts.alt_of_entry[parts.n_entries] = alt
                parts.n_entries += 1
        for packed, target in ((block.texts, parts.rec_blobs), (block.suffixes, parts.sfx_blobs)):
            blob, offsets = packed
            target.append((blob[offsets[a] : offsets[b]], np.diff(offsets[a : b + 1])))
        parts.quick.append(block.quick[a:b])
        start = block.pos[a:b] - 1
        parts.rec_start.append(start)
        parts.rec_end.append(start + (fields.end(3)[a:b] - fields.start(3)[a:b]))
        parts.n_records += b - a

    # -- output ---------------------------------------------------------------------------------

    def _flush(self) -> None:
        parts = self.parts
        cid = len(self.chroms) - 1
        pos = np.concatenate(parts.entry_pos)
        keys = np.concatenate(parts.entry_key)
        recs = np.concatenate(parts.entry_rec)
        rec_blob = np.concatenate([b for b, _ in parts.rec_blobs])
        rec_off = offsets_of(np.concatenate([n for _, n in parts.rec_blobs]))
        order = np.lexsort((recs, keys, pos))
        pos, keys, recs = pos[order], keys[order], recs[order]
        new_group = np.ones(len(pos), dtype=bool)
        if len(pos) > 1:
            new_group[1:] = (pos[1:] != pos[:-1]) | (keys[1:] != keys[:-1])
        firsts = np.flatnonzero(new_group)
        grp_off = np.append(firsts, len(pos)).astype(np.int64)
        sfx_blob, sfx_start, sfx_end = self._group_suffixes(order, firsts, grp_off, recs, rec_blob, rec_off)
        rec_start = np.concatenate(parts.rec_start)
        rec_end = np.concatenate(parts.rec_end)
        arrays = {
            "pos": pos[firsts],
            "key": keys[firsts],
            "grp_off": grp_off,
            "grp_rec": recs,
            "sfx_start": sfx_start,
            "sfx_end": sfx_end,
            "sfx_blob": sfx_blob,
            "rec_off": rec_off,
            "rec_blob": rec_blob,
            "rec_start": rec_start,
            "rec_end": rec_end,
        }
        for name, array in arrays.items():
            np.save(self.directory / f"{cid}.{name}.npy", array)
        self.max_len[self.chroms[-1]] = int((rec_end - rec_start).max()) if len(rec_start) else 0
        self.parts = _ChromParts()

    def _group_suffixes(
        self,
        order: np.ndarray,
        firsts: np.ndarray,
        grp_off: np.ndarray,
        recs: np.ndarray,
        rec_blob: np.ndarray,
        rec_off: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each entry's INFO text as a span of the suffix blob: the record's own rendered text for
        a single copying record (left in record order, not copied), the general reducer over the
        group's records otherwise (appended after the records' texts)."""
        parts = self.parts
        sfx_blob = np.concatenate([b for b, _ in parts.sfx_blobs])
        sfx_off = offsets_of(np.concatenate([n for _, n in parts.sfx_blobs]))
        quick = np.concatenate(parts.quick)
        first_rec = recs[firsts]
        use_record = (np.diff(grp_off) == 1) & quick[first_rec]
        start = sfx_off[first_rec]
        end = sfx_off[first_rec + 1]
        rendered: list[bytes] = []
        cursor = len(sfx_blob)
        for g in np.flatnonzero(~use_record).tolist():
            members = [
                decode_record(bytes(rec_blob[rec_off[r] : rec_off[r + 1]]).decode())
                for r in recs[grp_off[g] : grp_off[g + 1]].tolist()
            ]
            entry = int(order[firsts[g]])
            alt = parts.alt_of_entry[entry] if entry in parts.alt_of_entry else members[0].alts[0]
            text = copy_suffix(self.specs, members[0]) if len(members) == 1 else None
            encoded = (text if text is not None else render_suffix(self.specs, (alt,), members)).encode()
            rendered.append(encoded)
            start[g], end[g] = cursor, cursor + len(encoded)
            cursor += len(encoded)
        if rendered:
            sfx_blob = np.concatenate([sfx_blob, np.frombuffer(b"".join(rendered), dtype=np.uint8)])
        return sfx_blob, start, end

    def finish(self) -> tuple[list[str], dict[str, int]]:
        if self.chroms:
            self._flush()
        return self.chroms, self.max_len


def _span(fields: Fields, k: int, base: int) -> tuple[np.ndarray, np.ndarray]:
    return fields.start(k) + base, fields.end(k) - fields.start(k)


@dataclass
class _RareRecord:
    text: bytes
    alts: list[str]
    keys: list[bytes]


@dataclass
class _Block:
    """One block's per-record arrays, shared by its chromosome runs."""

    fields: Fields
    pos: np.ndarray
    keys: np.ndarray
    rare: np.ndarray
    rare_records: dict[int, _RareRecord]
    texts: tuple[np.ndarray, np.ndarray]
    suffixes: tuple[np.ndarray, np.ndarray]
    quick: np.ndarray
