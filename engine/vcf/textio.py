"""Reading and writing VCF text: the one opener, the one error wording, the one atomic writer.

Every reader of VCF text (the exact record parser, the columnar fast path, the normaliser, the
annotator and its source compiler) opens files with ``open_binary``/``open_text`` and turns
decompression and decoding failures into an ``InputError`` with ``stream_error``, so a truncated
gzip or a non-UTF-8 byte reads the same whichever command met it. Every writer of a VCF
(``normalise``, ``annotate``) goes through ``atomic_output``: the file appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import queue
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, Protocol

from engine.errors import STORAGE_ERRNOS, AnnostreamError, InputError, StorageError
from engine.limits import LIMITS, file_too_large, line_too_long

CHUNK_BYTES = 8 << 20
# What reading a damaged compressed stream raises (gzip, isal and zlib); OSError covers isal's
# reader thread and "Not a gzipped file".
COMPRESSION_ERRORS: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile, OSError)
READ_ERRORS: tuple[type[BaseException], ...] = (*COMPRESSION_ERRORS, UnicodeDecodeError)


def stream_error(path: Path | str, error: BaseException, line: int | None = None) -> AnnostreamError:
    """The one wording for a VCF stream that cannot be read at ``line`` (decompression, UTF-8).

    An ``OSError`` whose errno is the machine's trouble (a full disk while the output is written
    in the same loop, an I/O error) is not a broken input: it becomes a retriable
    :class:`StorageError`, so the analysis waits instead of failing."""
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        where = f" ({error.filename})" if error.filename else ""
        return StorageError(f"{error.strerror or error}{where} while reading {path} or writing its output")
    if isinstance(error, UnicodeDecodeError):
        return InputError("VCF is not valid UTF-8 text", file=str(path), line=line, expected="UTF-8 text")
    return InputError(
        f"compressed VCF is truncated or corrupt ({error})",
        file=str(path),
        line=line,
        expected="a complete gzip/BGZF file",
    )


def is_gzip(path: Path) -> bool:
    with path.open("rb") as raw:
        return raw.read(2) == b"\x1f\x8b"


def open_binary(path: Path | str) -> BinaryIO:
    """A VCF (or any tabular source) for binary reading, gzip/BGZF decompressed whatever its name;
    decompression runs in a thread (isal)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("VCF file not found", file=str(path), expected="an existing .vcf or .vcf.gz file")
    if is_gzip(path):
        from isal import igzip_threaded

        return igzip_threaded.open(path, "rb", threads=1)
    return open(path, "rb", buffering=1 << 20)


def open_text(path: Path | str) -> IO[str]:
    """A VCF as UTF-8 text with line ends kept as written (``newline=''``), so a lone '\\r'
    counts as a line end exactly as the columnar path counts it."""
    path = Path(path)
    if not path.is_file():
        raise InputError("VCF file not found", file=str(path), expected="an existing .vcf or .vcf.gz file")
    if is_gzip(path):
        return io.TextIOWrapper(
            io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=1 << 20), encoding="utf-8", newline=""
        )
    return path.open("r", encoding="utf-8", newline="", buffering=1 << 20)


def numbered_lines(path: Path, handle: IO[str], start: int = 0) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` without the line ending; read errors name the line where the
    stream broke. Enforces engine.limits (line length, total size) and rejects NUL bytes."""
    number = start
    try:
        total = 0
        while True:
            # readline with a bound: a 50 MB line never has to fit in memory whole.
            line = handle.readline(LIMITS.max_line_bytes + 1)
            if not line:
                return
            number += 1
            total += len(line)
            if len(line) > LIMITS.max_line_bytes:
                raise line_too_long(str(path), number)
            if total > LIMITS.max_vcf_bytes:
                raise file_too_large(str(path))
            if "\x00" in line:
                raise InputError("NUL byte inside a line", file=str(path), line=number, expected="text")
            yield number, line.rstrip("\r\n")
    except READ_ERRORS as error:
        raise stream_error(path, error, number + 1) from None


def _name(handle: BinaryIO) -> str:
    """The file behind ``handle`` for messages (isal's threaded reader keeps it on its raw file)."""
    raw = getattr(handle, "raw", None)
    for candidate in (handle, raw, getattr(raw, "raw", None)):
        name = getattr(candidate, "name", None)
        if isinstance(name, str | Path):
            return str(name)
    return "<input>"


def read_header_and_body(handle: BinaryIO) -> tuple[list[str], bytes]:
    """The leading '#' lines (without line ends) and the first bytes of the body.

    Bad bytes and oversized lines are InputErrors naming the file and line (engine.limits).
    """
    header: list[str] = []
    pending = b""
    while True:
        block = handle.read(1 << 16)
        pending += block
        start = 0
        while start < len(pending):
            if pending[start : start + 1] != b"#":
                return header, pending[start:]
            end = pending.find(b"\n", start)
            if end < 0:
                break
            header.append(_header_line(handle, pending[start:end], len(header) + 1))
            start = end + 1
        pending = pending[start:]
        if len(pending) > LIMITS.max_line_bytes:
            raise line_too_long(_name(handle), len(header) + 1)
        if not block:
            if pending:
                header.append(_header_line(handle, pending, len(header) + 1))
            return header, b""


def _header_line(handle: BinaryIO, raw: bytes, number: int) -> str:
    if b"\x00" in raw:
        raise InputError("NUL byte in a header line", file=_name(handle), line=number, expected="text")
    try:
        return raw.decode().rstrip("\r")
    except UnicodeDecodeError:
        raise InputError(
            "header line is not valid UTF-8",
            file=_name(handle),
            line=number,
            expected="UTF-8 text (sample names included)",
        ) from None


def iter_line_chunks(
    handle: BinaryIO,
    first: bytes,
    chunk_bytes: int = CHUNK_BYTES,
    *,
    header_lines: int = 0,
    bounded: bool = True,
) -> Iterator[bytes]:
    """Chunks of whole lines (each ending in a newline), starting with ``first``.

    Enforces engine.limits: total decompressed size (unless ``bounded`` is False: annotation
    sources such as gnomAD are far larger than any analysis VCF), line length, and no NUL bytes
    (which no text format here allows and which the columnar parsers would silently accept).
    """
    carry, total, lines_before = first, len(first), header_lines
    while True:
        block = handle.read(chunk_bytes)
        total += len(block)
        if bounded and total > LIMITS.max_vcf_bytes:
            raise file_too_large(_name(handle))
        if not block:
            if carry:
                _check_nul(handle, carry, lines_before)
                yield carry if carry.endswith(b"\n") else carry + b"\n"
            return
        data = carry + block
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > LIMITS.max_line_bytes:
                raise line_too_long(_name(handle), None)
            carry = data
            continue
        whole = data[: cut + 1]
        _check_nul(handle, whole, lines_before)
        lines_before += whole.count(b"\n")
        yield whole
        carry = data[cut + 1 :]
        if len(carry) > LIMITS.max_line_bytes:
            raise line_too_long(_name(handle), None)


def _check_nul(handle: BinaryIO, chunk: bytes, lines_before: int) -> None:
    at = chunk.find(b"\x00")
    if at >= 0:
        line = lines_before + chunk.count(b"\n", 0, at) + 1
        raise InputError("NUL byte inside a record", file=_name(handle), line=line, expected="text")


def checked_chunks(path: Path, chunks: Iterator[bytes], line: int) -> Iterator[bytes]:
    """``chunks`` with read errors turned into ``stream_error`` at the first unread line
    (``line`` is the number of lines before the first chunk)."""
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except COMPRESSION_ERRORS as error:
            raise stream_error(path, error, line + 1) from None
        line += chunk.count(b"\n")
        yield chunk


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _ThreadedWriter:
    """Hands writes to a thread so BGZF compression overlaps with the work producing the text."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self._sink.write(item)
            except BaseException as error:  # surfaced on close
                self._error = error

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._queue.put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self, failed: bool) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and not failed:
            raise self._error

    def __enter__(self) -> _ThreadedWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close(failed=kind is not None)


@contextlib.contextmanager
def atomic_output(
    dst: Path | None, stream: BinaryIO | None = None, *, fast_gzip: bool = False
) -> Iterator[BinaryIO]:
    """Where a command writes its VCF: ``dst`` (BGZF when it ends in .gz/.bgz) through a temporary
    file renamed into place on success and removed on any error, or ``stream`` (default stdout)
    when ``dst`` is None.

    ``fast_gzip`` writes a .gz ``dst`` as plain gzip at level 1 instead (several times faster; for
    intermediate files read once, not for files to index with tabix).
    """
    if dst is None:
        sink = stream or sys.stdout.buffer
        yield sink
        sink.flush()
        return
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if dst.name.endswith((".gz", ".bgz")) and fast_gzip:
            from isal import igzip

            with igzip.open(tmp, "wb", compresslevel=1) as fast:
                yield fast
        elif dst.name.endswith((".gz", ".bgz")):
            import pysam

            with pysam.BGZFile(str(tmp), "wb", index=None) as raw, _ThreadedWriter(raw) as threaded:
                yield threaded  # type: ignore[misc]
        else:
            with open(tmp, "wb", buffering=1 << 20) as plain:
                yield plain
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
