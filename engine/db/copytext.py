"""PostgreSQL ``COPY ... FROM STDIN`` text format: escaping fields and building rows.

The text format is tab-separated, one row per line, ``\\N`` for NULL, and backslash escapes for
backslash, tab and line breaks. Two flavours: per value (``escape``), for rows built with
f-strings, and per column (``text_column`` ...), pyarrow kernels for columnar blocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# What COPY reads as NULL.
NULL = "\\N"
_SPECIAL = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(value: str) -> str:
    """A string as a COPY text field (backslash, tab and line breaks escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_SPECIAL)
    return value


def text_column(values: pa.Array) -> pa.Array:
    """Strings as COPY text fields (``\\N`` for null)."""
    for special, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        if pc.any(pc.match_substring(values, special)).as_py():
            values = pc.replace_substring(values, special, escaped)
    return pc.fill_null(values, NULL)


def number_column(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.cast(values, pa.string()), NULL)


def row_column(*fields: Any) -> pa.Array:
    """Tab-separated fields, each row ending in a newline (a leading "" gives a leading tab)."""
    return pc.binary_join_element_wise(pc.binary_join_element_wise(*fields, "\t"), "\n", "")


def id_column(ids: Iterable[int]) -> pa.Array:
    return pc.cast(pa.array(np.fromiter(ids, dtype=np.int64)), pa.string())


def column_bytes(rows: pa.Array) -> bytes:
    """The rows of a string array back to back (they end in newlines): COPY input."""
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)
    start, end = int(offsets[rows.offset]), int(offsets[rows.offset + len(rows)])
    return rows.buffers()[2].to_pybytes()[start:end] if end > start else b""
