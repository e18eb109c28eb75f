"""One worker at a time per analysis, whatever the number of workers.

Kafka gives each partition (and so each analysis name, the key) to one worker of the group, but
not at every instant: when a worker leaves or joins, the new owner of a partition re-reads from
the last committed offset while the old owner may still be finishing the same event (faust waits
for in-flight events on a rebalance, but a worker that misses the rebalance deadline is dropped
from the group with its event still running). Two workers must then never import the same
analysis side by side: the stages hold this lock while they run, and the second one, once it gets
the lock, finds the job finished and changes nothing (the stages are idempotent).

PostgreSQL: a session-level advisory lock on a connection of its own (autocommit, so it is never
"idle in transaction"); the server releases it when the holder's connection goes, so a killed
worker never leaves it behind. SQLite (one machine by nature): an ``flock`` on a file under the
data directory, released by the kernel when the process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.db.session import get_engine


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def analysis_lock(db_url: str, lock_dir: Path, name: str) -> Iterator[None]:
    """Hold the exclusive lock of analysis ``name`` (waiting for another holder to finish)."""
    key = lock_key(f"annostream.analysis:{name}")
    if db_url.startswith("postgresql"):
        with get_engine(db_url).connect() as connection:
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.exec_driver_sql("SELECT pg_advisory_lock(%(key)s)", {"key": key})
            try:
                yield
            finally:
                autocommit.exec_driver_sql("SELECT pg_advisory_unlock(%(key)s)", {"key": key})
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"{key & 0xFFFFFFFFFFFFFFFF:016x}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
