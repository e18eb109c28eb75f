"""Pins on the library internals Annostream relies on (see pyproject.toml's upper bounds).

Each test fails when a library changes what we patch or call, naming what to re-check, instead
of letting the worker silently fall back to a 1.5 s fetch wait or the watcher to a wrong call.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from pathlib import Path

import aiokafka
import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from watchfiles._rust_notify import RustNotify

from consumers.worker import faust_settings, limit_fetch_wait
from engine.config import load_settings


def test_faust_still_hard_codes_the_fetch_wait_we_patch() -> None:
    thread_class = faust_aiokafka.AIOKafkaConsumerThread
    original = getattr(thread_class, "_annostream_original_factory", thread_class._create_worker_consumer)
    assert list(inspect.signature(original).parameters) == ["self", "transport"]
    source = inspect.getsource(original)
    # If faust gains a setting for it, drop limit_fetch_wait and use the setting.
    assert "fetch_max_wait_ms=1500" in source, "faust no longer hard-codes fetch_max_wait_ms=1500"


def test_aiokafka_fetcher_reads_the_attribute_the_patch_sets() -> None:
    source = inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in source, (
        "aiokafka's consumer no longer passes _fetch_max_wait_ms to its Fetcher at start"
    )


def test_patched_worker_consumer_uses_the_setting() -> None:
    settings = load_settings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", ANNOSTREAM_KAFKA_FETCH_MAX_WAIT_MS="123")

    async def build() -> int:
        limit_fetch_wait(settings.kafka_fetch_max_wait_ms)
        limit_fetch_wait(settings.kafka_fetch_max_wait_ms)  # applying twice wraps the original once
        app = faust.App("pin-fetch-wait", **faust_settings(settings))
        thread = app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(app.transport)
        try:
            assert isinstance(consumer, aiokafka.AIOKafkaConsumer)
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()
            # The consumer thread made its own event loop and never ran: close it here, or the
            # garbage collector warns about it in whichever test runs next.
            thread.thread_loop.close()

    assert asyncio.run(build()) == 123


@pytest.mark.parametrize("force_polling", [False, True])
def test_watchfiles_rust_notify_call_matches(tmp_path: Path, force_polling: bool) -> None:
    # producers/watcher.py calls RustNotify positionally:
    # (paths, debug, force_polling, poll_delay_ms, recursive, ignore_permission_denied),
    # then watch(debounce_ms, step_ms, timeout_ms, stop_event).
    with RustNotify([str(tmp_path)], False, force_polling, 50, True, False) as notify:
        threading.Timer(0.3, (tmp_path / "READY").touch).start()
        started = time.monotonic()
        changes: object = "timeout"
        while changes == "timeout" and time.monotonic() - started < 10:
            changes = notify.watch(200, 20, 1000, None)
        assert isinstance(changes, set), changes
        assert any(path.endswith("READY") for _kind, path in changes)
        stop = threading.Event()
        stop.set()
        assert notify.watch(200, 20, 1000, stop) == "stop"
