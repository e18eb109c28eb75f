"""Priority lanes: an urgent analysis dropped behind a backlog of normal ones overtakes it at every
stage; the gate that makes a worker drain higher lanes first; lanes in the topic registry."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest

from consumers.lanes import LaneGate
from consumers.worker import pipeline_stages
from engine.config import load_settings
from engine.events.topics import HIGH, NORMAL, RELEASE, URGENT, Topics
from engine.pipeline import Pipeline
from tests.support.analyses import drop_synthetic
from tests.support.stack import Stack, make_stack, wait_until
from tests.test_e2e import GENEPANEL

# --- the gate -----------------------------------------------------------------------------------------


def test_lower_lane_waits_while_a_higher_lane_runs_or_has_events_buffered() -> None:
    async def scenario() -> list[str]:
        gate = LaneGate(hold_s=0.2)
        urgent_buffer = [1]  # one urgent event fetched, not started yet
        gate.watch(URGENT, lambda: len(urgent_buffer))
        gate.watch(NORMAL, lambda: 0)
        order: list[str] = []

        async def normal() -> None:
            await gate.turn(NORMAL)
            order.append("normal starts")

        async def urgent() -> None:
            await asyncio.sleep(0.1)
            urgent_buffer.pop()
            async with gate.running(URGENT):
                order.append("urgent starts")
                await asyncio.sleep(0.2)
                order.append("urgent ends")

        started = time.monotonic()
        await asyncio.gather(normal(), urgent())
        # The normal event also waited out the hold after the urgent one ended.
        assert time.monotonic() - started >= 0.5
        assert not gate.higher_busy(URGENT) and not gate.busy(URGENT)
        return order

    assert asyncio.run(scenario()) == ["urgent starts", "urgent ends", "normal starts"]


def test_release_lane_waits_for_imports_but_not_the_other_way_round() -> None:
    gate = LaneGate(hold_s=0)
    imports = [3]
    gate.watch(NORMAL, lambda: imports[0])
    gate.watch(RELEASE, lambda: 5)
    assert gate.higher_busy(RELEASE)
    assert not gate.higher_busy(NORMAL) and not gate.higher_busy(URGENT)
    imports[0] = 0
    assert not gate.higher_busy(RELEASE)


def test_every_stage_has_a_topic_per_lane(tmp_path: Path) -> None:
    settings = load_settings(
        ANNOSTREAM_DATA_DIR=str(tmp_path), ANNOSTREAM_TOPIC_PREFIX="p.", DB_URL=f"sqlite:///{tmp_path}/x.db"
    )
    topics = Topics.from_settings(settings)
    assert topics.ready_for(3) == "p.analysis.ready.urgent" and topics.ready_for(2) == "p.analysis.ready.high"
    assert topics.ready_for(1) == topics.ready == "p.analysis.ready"  # pipelines' own topic unchanged
    assert topics.annotated_for(3) == "p.analysis.annotated.urgent"
    stages = {
        (stage.handler.name, stage.lane): stage.handler.topic
        for stage in pipeline_stages(settings, Pipeline(settings))
    }
    assert stages[("annotate", URGENT)] == topics.ready_urgent
    assert stages[("persist", HIGH)] == topics.annotated_high
    assert stages[("reannotate", RELEASE)] == topics.reannotation
    assert set(topics.all()) >= set(stages.values())


# --- end to end: the urgent analysis overtakes the queue -------------------------------------------------


def done_at(stack: Stack, name: str) -> dt.datetime | None:
    jobs = stack.get("/api/v1/import/jobs", analysis=name)["items"]
    if not jobs or jobs[0]["status"] != "DONE":
        return None
    job = stack.get(f"/api/v1/import/jobs/{jobs[0]['id']}")
    return dt.datetime.fromisoformat(job["history"][-1]["at"])


@pytest.mark.timeout(600)  # a backlog of 8 imports; slow on a loaded machine
def test_urgent_analysis_dropped_last_overtakes_the_backlog(
    tmp_path: Path, pg_url: str, broker, topic_prefix: str
) -> None:
    stack = make_stack(tmp_path, db_url=pg_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    stack.cli("db", "upgrade")
    stack.cli("deposit", "genepanel", "--folder", str(GENEPANEL))
    stack.start(timeout_s=180)
    try:
        # The worker has joined its group (a lab's worker has long done so).
        drop_synthetic(stack.incoming, "Warm-Up", variants=10)
        wait_until(
            lambda: done_at(stack, "Warm-Up"),
            timeout_s=120,
            what="the warm-up analysis",
            on_timeout=stack.log_tail,
        )
        backlog = [f"Normal-{number:02d}" for number in range(8)]
        for name in backlog:
            drop_synthetic(stack.incoming, name, variants=30_000)
        wait_until(
            lambda: done_at(stack, backlog[0]) or any(done_at(stack, name) for name in backlog),
            timeout_s=120,
            what="the backlog to start",
            on_timeout=stack.log_tail,
        )
        ready_at = dt.datetime.now(dt.UTC)
        drop_synthetic(stack.incoming, "Urgent-1", variants=1_000, priority=3)
        urgent_done = wait_until(
            lambda: done_at(stack, "Urgent-1"),
            timeout_s=120,
            what="the urgent analysis",
            on_timeout=stack.log_tail,
        )
        visible_s = (
            wait_until(
                lambda: (
                    stack.get("/api/v1/analyses", name="Urgent-1")["total"] == 1 and dt.datetime.now(dt.UTC)
                ),
                timeout_s=30,
                what="the urgent analysis in the API",
            )
            - ready_at
        ).total_seconds()
        wait_until(
            lambda: all(done_at(stack, name) for name in backlog),
            timeout_s=300,
            what="the backlog",
            on_timeout=stack.log_tail,
        )
        finished = {name: done_at(stack, name) for name in backlog}
    finally:
        stack.stop()
    before_ready = [name for name, at in finished.items() if at is not None and at < ready_at]
    before_urgent = [name for name, at in finished.items() if at is not None and ready_at <= at < urgent_done]
    after_urgent = [name for name, at in finished.items() if at is not None and at >= urgent_done]
    print(
        f"urgent visible {visible_s:.1f} s after its READY; normal analyses done before its READY "
        f"{len(before_ready)}, between {len(before_urgent)}, after {len(after_urgent)}"
    )
    # At most the normal analyses already in flight (one per stage) finish in between...
    assert len(before_urgent) <= 2, (before_urgent, finished, urgent_done)
    # ... and the queue really was overtaken.
    assert len(after_urgent) >= 3, (after_urgent, finished, urgent_done)
