"""The registry reaches workers on the compacted topic ``lec.registry`` (no DB query per message).

``publish`` (CLI ``lec streams publish-registry``, run after ``lec registry load``) writes the
whole :class:`RegistrySnapshot` JSON under the key ``snapshot``; compaction keeps the latest.
Workers start from the registry database when they can reach it, then follow the topic from its
beginning in a background thread and swap in every snapshot they read (a new version within a
second of publishing).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from lec import topics
from lec.kafka import CONSUMER_TUNING, ensure_topics, producer_config
from lec.registry.snapshot import RegistrySnapshot

log = logging.getLogger("lec.streams.registry")
SNAPSHOT_KEY = b"snapshot"
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024


def publish(bootstrap: str, snapshot: RegistrySnapshot, topic: str = topics.REGISTRY) -> str:
    """Publish the snapshot; returns its version."""
    from confluent_kafka import Producer

    ensure_topics(bootstrap, (topic,))
    producer = Producer(producer_config(bootstrap, **{"message.max.bytes": MAX_SNAPSHOT_BYTES}))
    producer.produce(topic, snapshot.to_json(), SNAPSHOT_KEY)
    if producer.flush(30):
        raise RuntimeError("the registry snapshot was not acknowledged by Kafka within 30 s")
    return snapshot.version


class RegistryFollower:
    """Reads ``lec.registry`` in a thread and calls ``on_snapshot`` for each snapshot read."""

    def __init__(self, bootstrap: str, on_snapshot: Callable[[RegistrySnapshot], None],
                 topic: str = topics.REGISTRY) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.on_snapshot = on_snapshot
        self.version: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)

    def start(self) -> RegistryFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:
                log.exception("registry follower failed; retrying in 2 s")
                self._stop.wait(2.0)

    def _follow(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"lec-registry-{uuid.uuid4().hex}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "fetch.max.bytes": MAX_SNAPSHOT_BYTES, "max.partition.fetch.bytes": MAX_SNAPSHOT_BYTES,
                             **CONSUMER_TUNING})
        try:
            ensure_topics(self.bootstrap, (self.topic,))
            consumer.assign([TopicPartition(self.topic, 0, 0)])
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                try:
                    snap = RegistrySnapshot.from_json(msg.value())
                except Exception:
                    log.exception("ignoring an unreadable registry snapshot at offset %s", msg.offset())
                    continue
                if snap.version != self.version:
                    self.version = snap.version
                    self.on_snapshot(snap)
                    log.info("registry snapshot %s: %d flows, %d devices", snap.version, len(snap.flows),
                             len(snap.devices))
        finally:
            consumer.close()
