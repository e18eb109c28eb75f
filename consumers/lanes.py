"""Priority lanes inside one worker: an agent takes its next event only when no higher lane has
work here.

Each stage has one topic per lane (engine.events.topics: urgent, high, normal; re-annotation
batches of a data release below them) and one agent per topic. faust fetches every assigned
partition of every topic and delivers each event to its agent's buffer (a queue of at most
ANNOSTREAM_WORKER_BUFFER events), so a worker sees an urgent event within one fetch (100 ms)
however long the normal backlog is. Before an agent starts an event it waits while any higher
lane, in any stage, has an event running or buffered in this worker. A running event is never
interrupted; the normal event in flight when an urgent one arrives finishes beside it.

An urgent analysis moves from the annotate stage to the persist stage through Kafka: for a moment
after its annotate step it is in neither buffer. A lane therefore counts as busy for
``HOLD_S`` after one of its events finished, long enough for the follow-up event to be fetched,
so no normal event slips in between the two stages of an urgent one.

The queues do not notify when they fill, so the gate polls (every ``POLL_S``); the cost is one
check per 20 ms while a lower lane waits.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

POLL_S = 0.02
HOLD_S = 1.0


class LaneGate:
    """Which lanes of this worker have work, and waiting for the higher ones to finish."""

    def __init__(self, *, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self._running: dict[int, int] = defaultdict(int)
        self._finished_at: dict[int, float] = defaultdict(float)
        self._buffers: dict[int, list[Callable[[], int]]] = defaultdict(list)

    def watch(self, lane: int, buffered: Callable[[], int]) -> None:
        """Count ``buffered()`` (an agent's queue size) as work waiting in ``lane``."""
        self._buffers[lane].append(buffered)

    def busy(self, lane: int) -> bool:
        if self._running[lane] or time.monotonic() - self._finished_at[lane] < self.hold_s:
            return True
        return any(size() for size in self._buffers[lane])

    def higher_busy(self, lane: int) -> bool:
        lanes = set(self._running) | set(self._buffers)
        return any(self.busy(other) for other in lanes if other > lane)

    async def turn(self, lane: int) -> float:
        """Wait until no higher lane has work; returns the seconds waited."""
        started = time.monotonic()
        while self.higher_busy(lane):
            await asyncio.sleep(POLL_S)
        return time.monotonic() - started

    @asynccontextmanager
    async def running(self, lane: int) -> AsyncIterator[None]:
        self._running[lane] += 1
        try:
            yield
        finally:
            self._running[lane] -= 1
            self._finished_at[lane] = time.monotonic()
