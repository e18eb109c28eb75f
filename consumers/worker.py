"""The faust worker: a thin adapter that feeds Kafka events to the engine's pipeline stages.

Faust traps this module is written around:
- An exception escaping an agent acks the message (it is lost). Stage functions never raise for
  bad input (they return a dead-letter message instead); an infrastructure error that survives
  retries makes the process exit *before* the message is acked, so it is redelivered after the
  supervisor restarts the worker.
- ``concurrency > 1`` can commit offsets past in-flight work: every agent uses concurrency 1 and
  finishes one event (including delivery of what it publishes) before taking the next.
- Blocking work inside an agent stalls the event loop: stages run in a dedicated thread each.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from consumers.lanes import LaneGate
from engine import metrics
from engine.config import Settings
from engine.events import Topics
from engine.events.topics import LANE_NAMES, NORMAL, RELEASE
from engine.kafka import ensure_engine_topics, require_bootstrap
from engine.pipeline import Outgoing, Pipeline, is_transient

log = logging.getLogger("annostream.worker")

TRANSIENT_RETRIES = 5
EXIT_INFRASTRUCTURE = 75  # EX_TEMPFAIL: the supervisor restarts us and Kafka redelivers


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
class Stage:
    """A topic the worker consumes, the engine use case that handles each event, and its lane."""

    topic: str
    name: str
    work: Callable[[bytes], list[Outgoing]]
    lane: int = NORMAL

    @property
    def agent_name(self) -> str:
        return self.name if self.lane in (NORMAL, RELEASE) else f"{self.name}.{LANE_NAMES[self.lane]}"


def pipeline_stages(settings: Settings, pipeline: Pipeline) -> list[Stage]:
    """Every stage the worker runs, one agent (concurrency 1, own thread) per stage and lane."""
    from engine.reannotate.stages import ReleaseStages

    topics = Topics.from_settings(settings)
    releases = ReleaseStages(settings)
    stages = [Stage(topic, "annotate", pipeline.annotate, lane)
              for lane, topic in topics.ready_lanes().items()]
    stages += [Stage(topic, "persist", pipeline.persist, lane)
               for lane, topic in topics.annotated_lanes().items()]
    return [
        *stages,
        Stage(topics.reanalysis, "reanalyse", releases.reanalyse, NORMAL),
        # A data release never delays an analysis: its batches run only when no import waits.
        Stage(topics.reannotation, "reannotate", releases.reannotate, RELEASE),
    ]


def create_app(settings: Settings, pipeline: Pipeline | None = None) -> faust.App:
    """The faust app: topics created, faust configured, one agent per stage."""
    create_topics(settings)
    limit_fetch_wait(settings.kafka_fetch_max_wait_ms)
    app = faust.App(settings.worker_name, **faust_settings(settings))
    build_agents(app, pipeline_stages(settings, pipeline or Pipeline(settings)))
    return app


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


def build_agents(app: faust.App, stages: list[Stage]) -> None:
    """One agent per stage and lane: concurrency 1, the stage's work in its own thread, then
    publish; an agent starts an event only when no higher lane has work (consumers.lanes)."""

    async def publish(messages: list[Outgoing]) -> None:
        for message in messages:
            # Wait for the broker's ack before the consumed event is acked.
            pending = await app.topic(message.topic).send(key=message.key.encode(), value=message.value)
            await pending
            metrics.EVENTS_PRODUCED.labels(topic=message.topic).inc()

    gate = LaneGate()

    def make_agent(stage: Stage) -> None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stage-{stage.agent_name}")
        source = app.topic(stage.topic, value_serializer="raw", key_serializer="raw")

        async def agent(stream: faust.StreamT) -> None:
            # The agent's buffer of fetched, not yet started events (see consumers.lanes).
            buffer: Any = stream.channel  # a faust Channel: its queue is the agent's buffer
            gate.watch(stage.lane, buffer.queue.qsize)
            async for raw in stream:
                metrics.EVENTS_CONSUMED.labels(topic=stage.topic).inc()
                waited = await gate.turn(stage.lane)
                metrics.LANE_WAIT.labels(lane=LANE_NAMES[stage.lane]).observe(waited)
                async with gate.running(stage.lane):
                    messages = await run_with_retries(stage.name,
                                                      partial(_in_thread, executor, stage.work, raw))
                    await run_with_retries(f"{stage.name}/publish", partial(publish, messages))

        app.agent(source, name=f"annostream.{stage.agent_name}", concurrency=1)(agent)

    for stage in stages:
        make_agent(stage)


async def _in_thread(executor: ThreadPoolExecutor, work: Callable[[bytes], list[Outgoing]],
                     raw: bytes) -> list[Outgoing]:
    return await asyncio.get_running_loop().run_in_executor(executor, work, raw)


async def run_with_retries(what: str,
                           attempt: Callable[[], Awaitable[list[Outgoing] | None]]) -> list[Outgoing]:
    """Retry transient infrastructure errors; fail-stop when they persist (never ack unprocessed)."""
    delay = 0.5
    for number in range(1, TRANSIENT_RETRIES + 1):
        try:
            return (await attempt()) or []
        except Exception as error:
            if not is_transient(error):
                log.exception("%s: unexpected error; exiting so the event is redelivered", what)
                os._exit(EXIT_INFRASTRUCTURE)
            log.warning("%s: transient error (attempt %d/%d): %s", what, number, TRANSIENT_RETRIES, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    log.error("%s: infrastructure still failing after %d attempts; exiting so the event is "
              "redelivered after restart", what, TRANSIENT_RETRIES)
    os._exit(EXIT_INFRASTRUCTURE)


def run_worker(settings: Settings) -> None:
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
