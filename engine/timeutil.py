"""The one time helper: the current time in UTC, UTC times as text on the wire and on disk, and
wall-clock seconds summed per step (for benchmarks, logs and metrics).

Every stored or published time is UTC. Text form is ISO 8601 with a ``Z`` suffix
(``2024-05-02T09:13:44.120518Z``), as events, ``error.json`` and logs use it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

TimeSpec = Literal["seconds", "milliseconds", "microseconds"]


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def iso_utc(moment: dt.datetime | None = None, *, timespec: TimeSpec = "microseconds") -> str:
    """``moment`` (default: now) as ISO 8601 UTC with a ``Z`` suffix; naive times are taken as UTC."""
    moment = utcnow() if moment is None else moment
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


@contextmanager
def add_seconds(seconds: dict[str, float], step: str) -> Iterator[None]:
    """Add the wall-clock seconds of the ``with`` block to ``seconds[step]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - started
