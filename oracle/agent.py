"""The streaming oracle: a Faust agent over ``lec.readings`` plus anchoring and claiming timers.

State (decided, docs/oracle.md): the per-QH leaf sums live in memory and are **rebuilt at every
start by re-reading ``lec.readings`` from the beginning** with a plain confluent-kafka consumer
(~100k readings/s), before the Faust worker starts. Nothing is anchored until that replay is
done, so a restart never anchors a partial QH; after it, every closed QH is compared with the
chain (through the local ``anchors`` table first) and only new content is anchored. The Faust
agent then consumes from its group's committed offsets; what it sees again is dropped by the
message-id dedupe. ``lec.readings`` must therefore be retained at least as long as late
readings may arrive for a QH (retention is the oracle's memory).

Batches (``stream.take``) never raise: a reading that cannot be parsed is counted and logged
(without its content), never retried forever, and never stops the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from lec import topics
from oracle.anchoring import AnchorJob, Anchorer
from oracle.claims import Claimer
from oracle.qh import QhWindows

log = logging.getLogger("lec.oracle")


@dataclass
class OracleConfig:
    bootstrap: str
    grace_s: int = 300
    claim_interval_s: float = 60.0
    anchor_interval_s: float = 1.0
    readings_topic: str = topics.READINGS
    anchors_topic: str = topics.ANCHORS
    group_id: str = "lec-oracle"
    batch_size: int = 1000


class OracleEngine:
    """The oracle's logic, independent of Faust: ingest readings, anchor due QHs, claim."""

    def __init__(self, windows: QhWindows, anchorer: Anchorer, claimer: Claimer | None) -> None:
        self.windows = windows
        self.anchorer = anchorer
        self.claimer = claimer
        self.bad = 0
        self.chain_lock = asyncio.Lock()  # one signer: anchoring and claiming must not interleave nonces

    def ingest(self, values: list[bytes]) -> int:
        changed = 0
        for value in values:
            try:
                changed += self.windows.add(orjson.loads(value))
            except Exception as exc:  # never let a batch raise (environment.md: it would be skipped)
                self.bad += 1
                log.warning("unusable reading skipped (%s)", type(exc).__name__)
        return changed

    def anchor_due_sync(self) -> int:
        """Anchor every closed, changed QH (blocking; used by the rebuild and the timer's thread)."""
        jobs = [AnchorJob(b.community_id, b.qh, b.revision, b.sums()) for b in self.windows.due()]
        return self._settle(jobs, self.anchorer.run(jobs)) if jobs else 0

    def _settle(self, jobs: list[AnchorJob], result: Any) -> int:
        settled, sent = result
        for job, commitment, version in settled:
            bucket = self.windows.buckets.get((job.community_id, job.qh))
            if bucket is not None:
                bucket.settled_revision = max(bucket.settled_revision, job.revision)
            if commitment is not None and self.claimer is not None and version:
                self.claimer.add(commitment, version)
        return sent

    async def anchor_due(self) -> int:
        # jobs are copied on the loop; trees, salts and RPC run in a thread (heartbeats keep going)
        jobs = [AnchorJob(b.community_id, b.qh, b.revision, b.sums()) for b in self.windows.due()]
        if not jobs:
            return 0
        async with self.chain_lock:
            result = await asyncio.to_thread(self.anchorer.run, jobs)
        return self._settle(jobs, result)

    async def claim(self) -> int:
        if self.claimer is None or not self.claimer.pending:
            return 0
        async with self.chain_lock:
            return await asyncio.to_thread(self.claimer.run_once)


def replay_readings(bootstrap: str, topic: str, on_batch: Callable[[list[bytes]], Any], idle_s: float = 3.0) -> int:
    """Read ``topic`` from the beginning to its end (partition EOF, or no message for ``idle_s``)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from lec.kafka import consumer_config

    consumer = Consumer(consumer_config(bootstrap, f"lec-oracle-replay-{uuid.uuid4().hex[:8]}",
                                        **{"enable.partition.eof": True}))
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        partitions = sorted(meta.partitions) if meta is not None and not meta.error else []
        highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        open_parts = {p for p, h in highs.items() if h > 0}
        count, last = 0, time.monotonic()
        while open_parts:
            msgs = consumer.consume(1000, timeout=0.5)
            if not msgs:
                if time.monotonic() - last > idle_s:
                    break
                continue
            last = time.monotonic()
            values = []
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        open_parts.discard(m.partition())
                    continue
                values.append(m.value())
                if m.offset() + 1 >= highs.get(m.partition(), 0):
                    open_parts.discard(m.partition())
            on_batch(values)
            count += len(values)
        return count
    finally:
        consumer.close()


def build_faust_app(cfg: OracleConfig, engine: OracleEngine, data_dir: str) -> Any:
    """The Faust app: one agent over readings, timers for anchoring and claiming."""
    import faust

    from lec.kafka import FAUST_TUNING

    app = faust.App(
        cfg.group_id, broker=f"kafka://{cfg.bootstrap}", store="memory://", web_enabled=False,
        topic_partitions=4, topic_disable_leader=True, consumer_auto_offset_reset="earliest",
        datadir=data_dir, producer_linger=0.005, **FAUST_TUNING,
    )
    readings = app.topic(cfg.readings_topic, value_type=bytes, value_serializer="raw", key_serializer="raw")

    @app.agent(readings, name="oracle-readings")
    async def ingest(stream: Any) -> None:
        async for batch in stream.take(cfg.batch_size, within=1.0):
            engine.ingest(batch)

    @app.timer(interval=cfg.anchor_interval_s, name="oracle-anchor")
    async def anchor_tick() -> None:
        try:
            await engine.anchor_due()
        except Exception:  # chain or lake unavailable: the QHs stay due and are retried next tick
            log.exception("anchoring failed; will retry")

    @app.timer(interval=cfg.claim_interval_s, name="oracle-claim")
    async def claim_tick() -> None:
        try:
            await engine.claim()
        except Exception:
            log.exception("claiming failed; will retry")

    return app
