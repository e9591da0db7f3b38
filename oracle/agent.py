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
from oracle.anchoring import Anchorer, AnchorJob
from oracle.claims import Claimer
from oracle.qh import QhWindows, expected_from_snapshot

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
    restate_after_s: float = 10.0   # a changed anchored QH waits this long without change before version n+1
    batch_size: int = 1000


class OracleEngine:
    """The oracle's logic, independent of Faust: ingest readings, anchor due QHs, claim."""

    def __init__(self, windows: QhWindows, anchorer: Anchorer, claimer: Claimer | None) -> None:
        self.windows = windows
        self.anchorer = anchorer
        self.claimer = claimer
        self.bad = 0
        self.max_jobs = 2000
        self.chain_lock = asyncio.Lock()  # one signer: anchoring and claiming must not interleave nonces

    def ingest(self, values: list[bytes]) -> int:
        changed = 0
        for value in values:
            try:
                changed += self.windows.add(orjson.loads(value))
            except Exception as exc:  # noqa: BLE001 - never let a batch raise (environment.md: it would be skipped)
                self.bad += 1
                log.warning("unusable reading skipped (%s)", type(exc).__name__)
        return changed

    def due_jobs(self) -> list[AnchorJob]:
        """Copies of the closed, changed QHs, oldest first, at most ``max_jobs`` per round (a
        backlog after a long outage is anchored in rounds, with records written as it goes)."""
        return [AnchorJob(b.community_id, b.qh, b.revision, b.sums()) for b in self.windows.due()[:self.max_jobs]]

    def anchor_due_sync(self) -> int:
        """Anchor every closed, changed QH (blocking: tests and tools; the worker uses anchor_due)."""
        sent = 0
        while jobs := self.due_jobs():
            sent += self._settle(jobs, self.anchorer.run(jobs))
        return sent

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
        jobs = self.due_jobs()
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
    from lec.io import replay

    count = 0
    for msgs in replay(bootstrap, topic, to_end=True, idle_s=idle_s, group=f"lec-oracle-replay-{uuid.uuid4().hex[:8]}"):
        if msgs:
            values = [m.value() for m in msgs]
            on_batch(values)
            count += len(values)
    return count


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


# ---- the `lec oracle run` worker ----------------------------------------------------------------

def default_deployment_path(settings: Any) -> Any:
    return settings.resolved_run_dir() / "chain" / "deployment.json"


def oracle_key(deployment: Any, key_file: Any = None) -> str:
    """The oracle signer: --key-file, LEC_ORACLE_KEY or LEC_CHAIN_KEY; on a local anvil (chain 31337)
    the development account holding the deployment's oracle role."""
    import os

    from lec.errors import ConfigError
    from oracle.chain.keys import ANVIL_CHAIN_ID, address_of, dev_key, load_key

    if key_file is not None:
        return load_key(file=key_file)
    for name in ("LEC_ORACLE_KEY", "LEC_CHAIN_KEY"):
        if os.environ.get(name, "").strip():
            return load_key(env_var=name)
    if deployment.chainId == ANVIL_CHAIN_ID:
        wanted = (deployment.oracle or deployment.deployer).lower()
        for i in range(10):
            key = dev_key(i)
            if address_of(key).lower() == wanted:
                log.warning("no oracle key configured: using anvil development account %d (local chain only)", i)
                return key
    raise ConfigError("no oracle key: set LEC_ORACLE_KEY (0x-hex private key with the notary's ORACLE_ROLE) "
                      "or pass --key-file")


def kafka_publisher(bootstrap: str, topic: str) -> Callable[[list[dict[str, Any]]], None]:
    from lec.io import Producer

    producer = Producer(bootstrap)

    def publish(records: list[dict[str, Any]]) -> None:
        for r in records:
            producer.produce(topic, orjson.dumps(r), r["community_id"].encode())
        producer.flush_or_raise(30, "anchor records")

    return publish


def run_oracle(settings: Any, deployment_path: Any = None, key_file: Any = None) -> None:
    """Foreground worker: replay readings, then the Faust agent with anchoring and claiming timers."""
    import faust

    from lec.errors import ConfigError
    from lec.kafka import ensure_topics
    from lec.registry import SecretStore
    from lec.registry.view import RegistryView
    from oracle.chain.client import NotaryClient, load_deployment
    from oracle.store import OracleLake

    if not settings.kafka_bootstrap:
        raise ConfigError("LEC_KAFKA_BOOTSTRAP is empty: start the stack with `lec up` or point it at a broker")
    if not settings.chain_rpc:
        raise ConfigError("LEC_CHAIN_RPC is empty: start the stack with `lec up` or point it at a JSON-RPC URL")
    path = deployment_path or default_deployment_path(settings)
    while not path.exists():  # `lec up` may deploy the contracts after starting workers
        log.info("waiting for the contracts' deployment record at %s", path)
        time.sleep(5)
    deployment = load_deployment(path)
    client = NotaryClient(settings.chain_rpc, deployment, oracle_key(deployment, key_file))
    cfg = OracleConfig(bootstrap=settings.kafka_bootstrap, grace_s=settings.oracle_grace_s,
                       claim_interval_s=float(settings.oracle_claim_interval_s))
    ensure_topics(cfg.bootstrap, (cfg.readings_topic, cfg.anchors_topic))
    lake = OracleLake(settings.resolved_lake_uri())
    snapshots = RegistryView(settings, bootstrap=cfg.bootstrap).start()   # follows lec.registry (1-2 s)
    anchorer = Anchorer(client, lake, SecretStore(settings.resolved_secrets_url()), snapshots,
                        chain_id=deployment.chainId, notary=deployment.notary,
                        publish=kafka_publisher(cfg.bootstrap, cfg.anchors_topic))
    claimer = Claimer(client, lake)
    # a QH is anchored once every expected accounting flow delivered it (one version instead of
    # one per arriving source), or when each missing flow's declared lateness has passed and the flow
    # has moved past the QH or gone silent
    windows = QhWindows(cfg.grace_s, settings.clock_skew_s, cfg.restate_after_s,
                        expected=expected_from_snapshot(snapshots), silence_s=settings.oracle_silence_s)
    engine = OracleEngine(windows, anchorer, claimer)
    t0 = time.monotonic()
    n = replay_readings(cfg.bootstrap, cfg.readings_topic, engine.ingest)
    log.info("replayed %d readings (%d counted, %d duplicates) in %.1f s; %d QHs in memory", n,
             engine.windows.counted, engine.windows.duplicates, time.monotonic() - t0, len(engine.windows.buckets))
    log.info("%d QHs await claims", claimer.load_unclaimed())
    data_dir = settings.resolved_run_dir() / "oracle"
    data_dir.mkdir(parents=True, exist_ok=True)
    app = build_faust_app(cfg, engine, str(data_dir))
    log.info("oracle running: notary %s on chain %d, grace %d s, claims every %d s", deployment.notary,
             deployment.chainId, cfg.grace_s, settings.oracle_claim_interval_s)
    faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False).execute_from_commandline()
