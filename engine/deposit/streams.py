"""Streaming helpers of the bulk writer: re-cutting batches into chunks, encoding ahead in a
thread, and keeping the cyclic garbage collector out of the way."""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from engine.deposit.columns import VariantColumns
from engine.vcf.records import VariantRecord


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while chunks are built and written.

    A chunk is hundreds of thousands of small acyclic objects (records, rows); with the collector
    on, its generation scans revisit them again and again, which tripled the cost of checking a
    chunk (measured). Memory is still freed by reference counting as each chunk is dropped.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def prefetched(items: Iterator[Any], depth: int = 1) -> Iterator[Iterator[Any]]:
    """Iterate ``items`` produced ahead in a background thread, at most ``depth`` waiting.

    Exceptions (say, an ``InputError`` from the parser) are re-raised in the consumer; leaving
    the block early stops the producer at its next item (memory stays bounded either way).
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put("error", error)

    def consume() -> Iterator[Any]:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    thread = threading.Thread(target=produce, name="annostream-encode", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()


def blocks(
    batches: Iterable[list[VariantRecord] | VariantColumns], size: int
) -> Iterator[list[VariantRecord] | VariantColumns]:
    """Record lists re-cut into chunks of at most ``size``; a columnar block is a chunk itself.

    File order is kept: pending records are written before the block that follows them.
    """
    pending: list[VariantRecord] = []
    for batch in batches:
        if isinstance(batch, VariantColumns):
            if pending:
                yield from chunks([pending], size)
                pending = []
            if batch.size:
                yield batch
            continue
        pending.extend(batch)
        if len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield from chunks([pending], size)


def chunks(batches: Iterable[Iterable[Any]], size: int) -> Iterator[list[Any]]:
    """Re-cut a stream of batches into lists of at most ``size`` items, lazily."""
    items = (item for batch in batches for item in batch)
    while chunk := list(islice(items, size)):
        yield chunk
