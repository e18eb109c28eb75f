"""The faust worker: a thin adapter that feeds Kafka events to the engine's pipeline stages.

Faust traps this module is written around:
- An exception escaping an agent acks the message (it is lost). Every stage runs under
  :class:`engine.pipeline.StageGuard` (the error model): bad input becomes a dead letter,
  infrastructure errors are retried in place until they pass, a bug fails the event after a
  bounded number of attempts, and an event whose failure cannot even be recorded is parked in
  the database. Nothing escapes, so the worker never restarts in a loop on one event.
- ``concurrency > 1`` can commit offsets past in-flight work: every agent uses concurrency 1 and
  finishes one event (including delivery of what it publishes) before taking the next.
- Blocking work inside an agent stalls the event loop: stages run in a dedicated thread each.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from consumers.lanes import LaneGate
from engine import ledger, metrics
from engine.config import Settings
from engine.errors import describe_internal, is_retriable
from engine.events import Topics
from engine.events.topics import LANE_NAMES, NORMAL, RELEASE
from engine.kafka import ensure_engine_topics, require_bootstrap
from engine.logs import event_context, log_context, logging_config
from engine.pipeline import Outgoing, Pipeline, StageGuard, StageHandler
from engine.pipeline.guard import Backoff

log = logging.getLogger("annostream.worker")


def limit_fetch_wait(max_wait_ms: int) -> None:
    """Make faust's consumers use ``max_wait_ms`` instead of its hard-coded 1500 ms.

    faust offers no setting for it, so the consumer factory is wrapped once per process; the
    value is read by aiokafka's fetcher when the consumer starts.
    """
    thread_class = faust_aiokafka.AIOKafkaConsumerThread
    original = getattr(thread_class, "_annostream_original_factory", thread_class._create_worker_consumer)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    thread_class._annostream_original_factory = original  # type: ignore[attr-defined]
    thread_class._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


@dataclass(frozen=True)
class LaneStage:
    """A stage handler and the priority lane of the topic it consumes."""

    handler: StageHandler
    lane: int = NORMAL

    @property
    def agent_name(self) -> str:
        name = self.handler.name
        return name if self.lane in (NORMAL, RELEASE) else f"{name}.{LANE_NAMES[self.lane]}"


def pipeline_stages(settings: Settings, pipeline: Pipeline) -> list[LaneStage]:
    """Every stage the worker runs, one agent (concurrency 1, own thread) per stage and lane."""
    from engine.reannotate.stages import ReleaseStages

    topics = Topics.from_settings(settings)
    releases = ReleaseStages(settings)
    stages = [
        LaneStage(StageHandler("annotate", topic, pipeline.annotate, pipeline.fail_annotate), lane)
        for lane, topic in topics.ready_lanes().items()
    ]
    stages += [
        LaneStage(StageHandler("persist", topic, pipeline.persist, pipeline.fail_persist), lane)
        for lane, topic in topics.annotated_lanes().items()
    ]
    return [
        *stages,
        LaneStage(StageHandler("reanalyse", topics.reanalysis, releases.reanalyse, releases.fail_reanalyse)),
        # A data release never delays an analysis: its batches run only when no import waits.
        LaneStage(
            StageHandler("reannotate", topics.reannotation, releases.reannotate, releases.fail_reannotate),
            RELEASE,
        ),
        LaneStage(StageHandler("tracks", topics.bundle_activated, releases.tracks, releases.fail_tracks)),
    ]


HEARTBEAT_INTERVAL_S = 5.0


def create_app(settings: Settings, pipeline: Pipeline | None = None) -> faust.App:
    """The faust app: topics created, faust configured, one agent per stage."""
    create_topics(settings)
    limit_fetch_wait(settings.kafka_fetch_max_wait_ms)
    app = faust.App(settings.worker_name, **faust_settings(settings))
    build_agents(app, settings, pipeline_stages(settings, pipeline or Pipeline(settings)))
    add_reconciler(app, settings)
    log_assignments(app, settings)
    return app


def log_assignments(app: faust.App, settings: Settings) -> None:
    """One INFO line after every group rebalance: the partitions this worker now owns. faust's own
    rebalance lines are start-up chatter shown only at DEBUG (engine/logs.py); an operator adding or
    losing a worker still sees the hand-over."""

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust types receivers loosely
    async def on_assigned(_app: faust.App, assigned: set[Any], **_kwargs: Any) -> None:
        partitions = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)
        log.info(
            "partitions assigned to worker %s: %d (%s)",
            settings.worker_id or socket.gethostname(),
            len(partitions),
            ", ".join(partitions),
        )


def create_topics(settings: Settings) -> None:
    """Every topic of the registry, declared up front with our partition count and configs
    (e.g. the compacted status topic) rather than left to broker auto-creation."""
    ensure_engine_topics(settings, command="worker")


def faust_settings(settings: Settings) -> dict[str, Any]:
    """faust's settings for the worker (see the module docstring for why each one)."""
    bootstrap = require_bootstrap(settings, "worker")
    timeouts = settings.group_timeouts
    # Several workers may share a data directory (`up --workers N`): one faust dir each.
    datadir = settings.data_dir / "faust" / (settings.worker_id or socket.gethostname())
    datadir.mkdir(parents=True, exist_ok=True)
    return {
        "broker": [f"kafka://{server.strip()}" for server in bootstrap.split(",")],
        "store": "memory://",
        "value_serializer": "raw",
        "key_serializer": "raw",
        "web_enabled": False,
        "datadir": str(datadir),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication_factor,
        "consumer_auto_offset_reset": "earliest",
        # Kafka's own group timeouts unless the broker is the embedded one (engine.config).
        "broker_session_timeout": timeouts.session_s,
        "broker_rebalance_timeout": timeouts.rebalance_s,
        "broker_heartbeat_interval": timeouts.heartbeat_s,
        "broker_commit_every": 1,
        # Events are small (paths and checksums) but a backlog can be long: it stays in Kafka.
        # faust stops fetching a partition whose buffer is under pressure and resumes it later.
        "stream_buffer_maxsize": settings.worker_buffer,
        "producer_acks": -1,
    }


def build_agents(app: faust.App, settings: Settings, stages: list[LaneStage]) -> None:
    """One agent per stage and lane: concurrency 1, the stage under the StageGuard in its own
    thread, then publish what it returned; an agent starts an event only when no higher lane has
    work in this worker (consumers.lanes)."""
    guard = StageGuard(settings)

    async def publish(messages: list[Outgoing]) -> None:
        # Every message is handed to the producer first and the acks awaited after, so a batch's
        # thousands of annotation.changed events cost one round of acks, not one round trip each
        # (6,876 sequential sends took about 2 s). All are acked before the consumed event is.
        pending = [
            await app.topic(message.topic).send(key=message.key.encode(), value=message.value)
            for message in messages
        ]
        for message, sent in zip(messages, pending, strict=True):
            await sent
            metrics.EVENTS_PRODUCED.labels(topic=message.topic).inc()

    gate = LaneGate()

    def make_agent(stage: LaneStage) -> None:
        handler = stage.handler
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stage-{stage.agent_name}")
        source = app.topic(handler.topic, value_serializer="raw", key_serializer="raw")
        guarded = in_context(partial(guard.run, handler))

        async def agent(stream: faust.StreamT[bytes]) -> None:
            # The agent's buffer of fetched, not yet started events (see consumers.lanes).
            buffer: Any = stream.channel  # a faust Channel: its queue is the agent's buffer
            gate.watch(stage.lane, buffer.queue.qsize)
            async for key, raw in stream.items():
                metrics.WORKER_HEARTBEAT.set_to_current_time()
                metrics.EVENTS_CONSUMED.labels(topic=handler.topic).inc()
                waited = await gate.turn(stage.lane)
                metrics.LANE_WAIT.labels(lane=LANE_NAMES[stage.lane]).observe(waited)
                key_text = key.decode(errors="replace") if isinstance(key, bytes) else None
                async with gate.running(stage.lane):
                    messages = await asyncio.get_running_loop().run_in_executor(
                        executor, guarded, raw, key_text
                    )
                    await publish_or_park(settings, guard, handler.name, messages, publish)

        app.agent(source, name=f"annostream.{stage.agent_name}", concurrency=1)(agent)

    for handler in stages:
        make_agent(handler)

    @app.timer(interval=HEARTBEAT_INTERVAL_S)
    async def heartbeat() -> None:
        # The "worker down" alert fires when this stops advancing (ops/prometheus/alerts.yml).
        metrics.WORKER_HEARTBEAT.set_to_current_time()


StageCall = Callable[[bytes, str | None], list[Outgoing]]


def in_context(work: StageCall) -> StageCall:
    """Run ``work`` with the event's analysis name and event id on every log line (engine/logs.py)."""

    def run(raw: bytes, key: str | None) -> list[Outgoing]:
        with log_context(**event_context(raw)):
            return work(raw, key)

    return run


def add_reconciler(app: faust.App, settings: Settings) -> None:
    """Every ANNOSTREAM_RECONCILE_EVERY seconds, publish again the work the ledger records as
    unfinished and silent (lost by a restarted memory-only broker, or expired retention). Every
    worker may do it; duplicates are harmless (stages are idempotent per event id)."""
    bootstrap = require_bootstrap(settings, "worker")
    reconciler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconciler")

    @app.timer(interval=settings.reconcile_every_s)
    async def reconcile_ledger() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                reconciler, partial(ledger.reconcile_through_kafka, settings, bootstrap)
            )
        except Exception as error:
            log.warning("reconciler: %s (next try in %.0f s)", error, settings.reconcile_every_s)


async def publish_or_park(
    settings: Settings,
    guard: StageGuard,
    stage: str,
    messages: list[Outgoing],
    publish: Callable[[list[Outgoing]], Awaitable[None]],
) -> None:
    """Publish what a stage returned, retrying broker trouble (with backoff) until it passes.

    A message the broker refuses for good (e.g. too large) is parked rather than retried
    forever or dropped: the consumed event is then acknowledged and the partition moves on.
    """
    for message in messages:
        backoff = Backoff(settings.retry_max_delay_s)
        refusals = 0
        while True:
            try:
                await publish([message])
                break
            except Exception as error:
                if is_retriable(error):
                    metrics.STAGE_RETRIES.labels(stage=f"{stage}/publish").inc()
                    delay = backoff.next_delay()
                    log.warning(
                        "%s: publishing to %s failed, retrying in %.1f s: %s",
                        stage,
                        message.topic,
                        delay,
                        error,
                    )
                    await asyncio.sleep(delay)
                    continue
                refusals += 1
                log.exception(
                    "%s: the broker refused a message for %s (%d of %d)",
                    stage,
                    message.topic,
                    refusals,
                    settings.max_attempts,
                )
                if refusals >= settings.max_attempts:
                    reason = f"publishing to {message.topic} failed: {describe_internal(error)}"
                    await asyncio.get_running_loop().run_in_executor(
                        None,
                        guard.park,
                        f"{stage}/publish",
                        message.topic,
                        message.key,
                        message.value,
                        reason,
                    )
                    break
                await asyncio.sleep(backoff.next_delay())


def run_worker(settings: Settings) -> None:
    app = create_app(settings)
    # Our logging config, not faust's: one format (ANNOSTREAM_LOG_FORMAT) for every process,
    # faust's start-up chatter at DEBUG only.
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        logging_config=logging_config(settings.log_level, settings.log_format),
    )
    worker.execute_from_commandline()
