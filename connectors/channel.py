"""The one interface between a channel and the platform: raw envelopes handed to the kernel's producer.

Every channel (``connectors/mqtt``, ``sftp``, ``http``; ``camel`` runs the same contract in its JVM
routes) turns what a supplier sent into raw items (``lec.records.raw_item``), groups one device's
items into an envelope of ``lec.raw`` (schemas/raw-envelope.json) and gives it to a :class:`RawSink`.
The sink owns the envelope's shape, its key (the device: one device's readings stay on one partition,
in order) and the topic; the channel keeps only its own delivery policy (MQTT acknowledges a PUBLISH
after Kafka did, HTTP answers after Kafka did, SFTP moves a file after Kafka took every chunk).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lec import topics
from lec.io import Producer
from lec.records import RawItem, encode, raw_envelope

Delivery = Callable[[Any, Any], None]


@dataclass(frozen=True)
class RawRecord:
    """One envelope as Kafka takes it: the device's key and the encoded envelope."""

    key: bytes
    value: bytes
    items: int


class RawSink:
    """Envelopes of one channel into ``lec.raw`` through the kernel's producer."""

    def __init__(self, channel: str, producer: Producer, topic: str = topics.RAW) -> None:
        self.channel = channel
        self.producer = producer
        self.topic = topic

    def record(self, community_id: str, supplier_id: str, device_id: str, items: list[RawItem]) -> RawRecord:
        """The envelope of ``items`` (all of one device) as Kafka will store it."""
        envelope = raw_envelope(self.channel, community_id, supplier_id, items)
        return RawRecord(device_id.encode(), encode(envelope), len(items))

    def send(self, record: RawRecord, on_delivery: Delivery | None = None) -> None:
        """Queue the record; blocks (serving deliveries) while the producer's local queue is full."""
        self.producer.produce(self.topic, record.value, record.key, on_delivery)

    def try_send(self, record: RawRecord, on_delivery: Delivery | None = None, wait_s: float = 0.0) -> bool:
        """Queue the record, or return False when the local queue is full (callers that must not block)."""
        return self.producer.try_produce(self.topic, record.value, record.key, on_delivery, wait_s=wait_s)
