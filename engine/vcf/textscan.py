"""Bulk, vectorised scanning of tab-separated variant text (VCF bodies, TSV/BED sources).

The hot path never builds one Python object per record: a chunk of complete lines is viewed as a
numpy byte array, field boundaries come from one pass over the tab positions, positions are parsed
digit-column by digit-column and alleles are hashed in fixed-width blocks. The same functions are
used to compile sources and to scan queries, so their keys always agree. Reading the chunks
(opening, decompressing, cutting at line ends) is ``engine.vcf.textio``'s job.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

TAB = 9
NEWLINE = 10
COMMA = 44
DOT = 46

_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_BLOCK_MIX = np.uint64(0xBF58476D1CE4E5B9)


@dataclass
class Fields:
    """Byte offsets of each line's tab-separated fields inside one chunk.

    ``bounds[k]`` is the offset of the separator that ends field k (a tab or the newline);
    field k spans ``[bounds[k-1] + 1, bounds[k])`` with ``bounds[-1]`` standing for the line start.
    """

    buf: np.ndarray
    line_start: np.ndarray
    line_end: np.ndarray
    bounds: list[np.ndarray]

    @property
    def n(self) -> int:
        return len(self.line_start)

    def start(self, k: int) -> np.ndarray:
        return self.line_start if k == 0 else self.bounds[k - 1] + 1

    def end(self, k: int) -> np.ndarray:
        return self.bounds[k]

    def text(self, i: int, k: int) -> str:
        return bytes(self.buf[int(self.start(k)[i]) : int(self.end(k)[i])]).decode()


def scan_fields(chunk: bytes, n_fields: int, *, skip_comments: bool = True) -> Fields:
    """Locate the first ``n_fields`` fields of every line; lines with fewer fields get their missing
    boundaries clamped to the line end (callers check ``missing_fields``)."""
    buf = np.frombuffer(chunk, dtype=np.uint8)
    newlines = np.flatnonzero(buf == NEWLINE)
    starts = np.empty(len(newlines), dtype=np.int64)
    starts[0:1] = 0
    starts[1:] = newlines[:-1] + 1
    ends = newlines.astype(np.int64)
    keep = ends > starts
    if skip_comments:
        keep &= buf[np.minimum(starts, len(buf) - 1)] != ord("#")
    if not keep.all():
        starts, ends = starts[keep], ends[keep]
    tabs = np.flatnonzero(buf == TAB).astype(np.int64)
    first_tab = np.searchsorted(tabs, starts)
    bounds: list[np.ndarray] = []
    padded = np.append(tabs, np.int64(len(buf)))
    for k in range(n_fields):
        candidate = padded[np.minimum(first_tab + k, len(tabs))]
        bounds.append(np.minimum(candidate, ends))
    return Fields(buf, starts, ends, bounds)


def missing_fields(fields: Fields, n_required: int) -> np.ndarray:
    """Lines that have fewer than ``n_required`` fields (their boundary hit the line end early)."""
    if n_required < 2:
        return np.zeros(fields.n, dtype=bool)
    return fields.bounds[n_required - 2] >= fields.line_end


def parse_uints(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse decimal digits in [starts, ends); returns (values, ok) where ok is False for empty or
    non-digit fields."""
    lengths = ends - starts
    values = np.zeros(len(starts), dtype=np.int64)
    ok = (lengths > 0) & (lengths <= 18)
    width = int(lengths.max()) if len(lengths) else 0
    for k in range(min(width, 18)):
        active = lengths > k
        idx = np.where(active, starts + k, 0)
        digit = buf[idx].astype(np.int64) - 48
        ok &= ~active | ((digit >= 0) & (digit <= 9))
        values = np.where(active, values * 10 + digit, values)
    return values, ok


def hash_spans(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each byte span [starts, ends), mixing 8-byte little-endian words.

    Words are read through an unaligned, byte-strided uint64 view of the buffer, so one gather
    covers 8 bytes; bytes past a span's end are masked out and the length is mixed in.
    """
    n = len(starts)
    lengths = (ends - starts).astype(np.int64)
    with np.errstate(over="ignore"):
        hashes = lengths.astype(np.uint64) * np.uint64(0x94D049BB133111EB)
        if n == 0:
            return hashes
        padded = np.concatenate([buf, np.zeros(8, dtype=np.uint8)])
        words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
        todo = np.arange(n)
        done = 0
        while todo.size:
            remaining = np.minimum(lengths[todo] - done, 8)
            word = words[starts[todo] + done] & _MASKS[remaining]
            mixed = (hashes[todo] ^ word) * _BLOCK_MIX
            hashes[todo] = mixed ^ (mixed >> np.uint64(31))
            done += 8
            todo = todo[lengths[todo] > done]
        hashes ^= hashes >> np.uint64(29)
        hashes *= np.uint64(0xBF58476D1CE4E5B9)
        hashes ^= hashes >> np.uint64(32)
    return hashes


def hash_strings(values: list[bytes]) -> np.ndarray:
    """Hash byte strings built in Python (split alleles) exactly like ``hash_spans`` would."""
    if not values:
        return np.zeros(0, dtype=np.uint64)
    joined = b"".join(values)
    lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    ends = np.cumsum(lengths)
    return hash_spans(np.frombuffer(joined, dtype=np.uint8), ends - lengths, ends)


def count_byte(buf: np.ndarray, byte: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many times ``byte`` occurs in each span (the byte is assumed to be sparse)."""
    where = np.flatnonzero(buf == byte)
    return np.searchsorted(where, ends) - np.searchsorted(where, starts)


def chrom_runs(fields: Fields) -> list[tuple[str, int, int]]:
    """Split the chunk's lines into runs of equal CHROM: (name, first line, end line)."""
    if fields.n == 0:
        return []
    chrom_hash = hash_spans(fields.buf, fields.line_start, fields.end(0))
    change = np.flatnonzero(chrom_hash[1:] != chrom_hash[:-1]) + 1
    edges = [0, *change.tolist(), fields.n]
    return [(fields.text(a, 0), a, b) for a, b in itertools.pairwise(edges)]


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices covering [starts[k], starts[k] + lengths[k]) for every k, concatenated (one index
    per byte: for small sets of spans; ``gather_rows`` is the bulk tool)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    before = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, dtype=np.int64) - before, lengths) + np.arange(total, dtype=np.int64)


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """Offsets of a packed list from its item lengths (one more entry than items)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def gather_rows(
    pool: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    overrides: dict[int, bytes] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Build one byte string per row by concatenating that row's spans of ``pool``
    (``starts``/``lengths`` have shape (rows, spans)); rows in ``overrides`` take the given bytes
    instead. Returns the packed rows (bytes, offsets)."""
    row_len = lengths.sum(axis=1)
    if not overrides:
        return pool[ranges(starts.ravel(), lengths.ravel())], offsets_of(row_len)
    rows = np.fromiter(overrides, dtype=np.int64, count=len(overrides))
    lengths = lengths.copy()
    lengths[rows] = 0
    gathered = pool[ranges(starts.ravel(), lengths.ravel())]
    row_len[rows] = [len(overrides[r]) for r in rows.tolist()]
    offsets = offsets_of(row_len)
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    placed = np.zeros(len(out), dtype=bool)
    placed[ranges(offsets[rows], row_len[rows])] = True
    out[~placed] = gathered
    out[placed] = np.frombuffer(b"".join(overrides[r] for r in rows.tolist()), dtype=np.uint8)
    return out, offsets
