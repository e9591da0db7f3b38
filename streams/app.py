"""Faust wiring: the ``lec.raw`` agent in batches, outputs through a flushed fast producer.

At-least-once: a batch's offsets are committed by Faust only after the agent asks for the next
batch, and the agent asks only after every output of the batch is acknowledged (``flush``).
Faust acks and skips a batch whose processing raises (environment.md), so nothing may raise:
the processor turns every input failure into a dead letter, and if outputs cannot be flushed
the worker exits hard before acknowledging, so the batch is redelivered after restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from lec import topics
from lec.config import Settings
from lec.gctune import tune_for_throughput
from lec.kafka import FAUST_TUNING, ensure_topics
from lec.registry.snapshot import RegistrySnapshot
from streams.emit import DeliveryFailed, Emitter
from streams.errors import StreamsError
from streams.process import Output, Processor
from streams.registry_sync import RegistryFollower

log = logging.getLogger("lec.streams")

# Logged once the worker has joined its group and started its agents: supervisors and tests wait
# for it (Faust's own "Ready" is INFO chatter of the `mode` library, quiet unless --verbose).
READY_LINE = "streams worker ready"
BATCH_SIZE = 500
BATCH_WITHIN_S = 0.2
SILENCE_CHECK_S = 30.0
FLUSH_ATTEMPTS = 5


STATS_EVERY_S = 10.0


class Stats:
    """Counts logged every few seconds at INFO (what the worker did, never payloads)."""

    def __init__(self) -> None:
        self.records = self.readings = self.deadletters = self.anomalies = 0

    def add(self, records: int, out: Output) -> None:
        self.records += records
        self.readings += len(out.readings)
        self.deadletters += len(out.deadletters)
        self.anomalies += len(out.anomalies)

    def log(self) -> None:
        if self.records:
            log.info("processed %d raw records: %d readings, %d dead letters, %d anomalies", self.records,
                     self.readings, self.deadletters, self.anomalies)
            self.records = self.readings = self.deadletters = self.anomalies = 0


def initial_snapshot(settings: Settings) -> RegistrySnapshot:
    """The registry from its database if reachable; else empty until the topic delivers one."""
    from lec.registry import open_registry

    try:
        return open_registry(settings, migrate=False).snapshot()
    except Exception as exc:  # noqa: BLE001 - any DB failure: fall back to the topic
        log.warning("registry database not readable (%s); waiting for a snapshot on %s", type(exc).__name__,
                    topics.REGISTRY)
        return RegistrySnapshot()


def faust_app(settings: Settings, app_id: str, **extra: Any) -> Any:
    import faust

    if not settings.kafka_bootstrap:
        raise StreamsError("LEC_KAFKA_BOOTSTRAP is not set: the worker needs the Kafka bootstrap servers")
    datadir = settings.resolved_run_dir() / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(app_id, broker=f"kafka://{settings.kafka_bootstrap}", store="memory://",
                     value_serializer="raw", key_serializer="raw", web_enabled=False, producer_linger=0.005,
                     consumer_auto_offset_reset="earliest", topic_partitions=4, datadir=str(datadir),
                     **FAUST_TUNING, **extra)


async def flush_or_die(emitter: Emitter) -> None:
    """Wait for every output; exit hard (no ack, batch redelivered) if Kafka never acknowledges."""
    loop = asyncio.get_running_loop()
    for attempt in range(FLUSH_ATTEMPTS):
        try:
            await loop.run_in_executor(None, emitter.flush)
            return
        except DeliveryFailed as exc:   # records are lost from the queue: only redelivery can recover them
            log.critical("%s", exc)
            break
        except StreamsError as exc:     # still queued: keep waiting
            log.error("flush failed (attempt %d/%d): %s", attempt + 1, FLUSH_ATTEMPTS, exc)
    log.critical("outputs not acknowledged: exiting without committing so the batch is redelivered")
    os._exit(3)


def build_app(settings: Settings, *, app_id: str = "lec-streams", raw_topic: str = topics.RAW,
              readings_topic: str = topics.READINGS, batch_size: int = BATCH_SIZE,
              within_s: float = BATCH_WITHIN_S, silence_check_s: float = SILENCE_CHECK_S,
              follow_registry: bool = True) -> Any:
    """The streams worker's Faust app (agent + silent-flow timer + registry follower)."""
    ensure_topics(settings.kafka_bootstrap, tuple(dict.fromkeys((raw_topic, readings_topic, *topics.ALL))))
    app = faust_app(settings, app_id)
    processor = Processor.from_settings(initial_snapshot(settings), settings)
    app.lec_processor = processor
    emitter = Emitter(settings.kafka_bootstrap, readings_topic=readings_topic)
    follower = RegistryFollower(settings.kafka_bootstrap, processor.offer_snapshot) if follow_registry else None
    source = app.topic(raw_topic, value_serializer="raw", key_serializer="raw")
    stats = Stats()

    @app.agent(source, concurrency=1)
    async def normalise(stream: Any) -> None:
        async for batch in stream.take(batch_size, within=within_s):
            try:
                processor.begin_batch()
                for value in batch:     # send per envelope: memory stays bounded by one envelope's output
                    out = processor.process_envelope(value)
                    emitter.send(out)
                    stats.add(1, out)
            except Exception:   # a bug, not bad input: never ack a batch we could not process
                log.critical("batch processing failed; exiting so it is redelivered", exc_info=True)
                os._exit(4)
            await flush_or_die(emitter)

    @app.timer(interval=silence_check_s)
    async def silence() -> None:
        out = processor.silent_flows()
        if out.anomalies:
            emitter.send(out)
            await flush_or_die(emitter)

    @app.timer(interval=STATS_EVERY_S)
    async def report() -> None:
        stats.log()

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, assigned: Any, **_: Any) -> None:
        # one line per rebalance: which input partitions this worker now owns (operators and tests read it)
        mine = sorted(tp.partition for tp in assigned if tp.topic == raw_topic)
        log.info("assigned %s partitions %s", raw_topic, ",".join(map(str, mine)) or "none")

    @app.task
    async def start_follower() -> None:
        if follower is not None:
            follower.start()

    return app


def build_passthrough_app(settings: Settings, *, app_id: str, raw_topic: str, out_topic: str,
                          batch_size: int = BATCH_SIZE, within_s: float = BATCH_WITHIN_S) -> Any:
    """The benchmark's baseline: the same Faust consumer and producer path, no processing."""
    ensure_topics(settings.kafka_bootstrap, (raw_topic, out_topic))
    app = faust_app(settings, app_id)
    emitter = Emitter(settings.kafka_bootstrap, readings_topic=out_topic)
    source = app.topic(raw_topic, value_serializer="raw", key_serializer="raw")

    @app.agent(source, concurrency=1)
    async def passthrough(stream: Any) -> None:
        async for batch in stream.take(batch_size, within=within_s):
            emitter.send(Output(readings=[(b"k", v) for v in batch]))
            await flush_or_die(emitter)

    return app


def run_worker(app: Any, log_file: Path | None = None) -> None:
    """Run a Faust app in the foreground at INFO (no spinner); SIGTERM/SIGINT stop it cleanly."""
    import faust

    class Worker(faust.Worker):  # type: ignore[misc, name-defined]
        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            log.info("%s (%s)", READY_LINE, app.conf.id)

    logging.Formatter.converter = time.gmtime
    for name in ("faust", "mode"):  # a worker's output is its log: keep assignments and the clean-stop line
        logging.getLogger(name).setLevel(logging.INFO)
    worker = Worker(app, loglevel="INFO", quiet=True, logfile=str(log_file) if log_file else None)
    tune_for_throughput()   # after the registry snapshot is built: frozen, never scanned again
    worker.execute_from_commandline()
