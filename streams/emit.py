"""Outputs through the kernel's producer (lec.io), flushed before a batch's offsets commit."""

from __future__ import annotations

from typing import Any

from lec import topics
from lec.io.producer import DeliveryFailed as KernelDeliveryFailed
from lec.io.producer import Producer
from streams.errors import StreamsError
from streams.process import Output


class Emitter:
    """Sends an :class:`Output` to the four output topics; ``flush`` waits until all are acknowledged."""

    def __init__(self, bootstrap: str, *, readings_topic: str = topics.READINGS, **extra: Any) -> None:
        self.topics = {"readings": readings_topic, "deadletters": topics.DEADLETTER, "feedback": topics.FEEDBACK,
                       "anomalies": topics.ANOMALIES}
        self.kafka = Producer(bootstrap, **{"linger.ms": 5, "queue.buffering.max.messages": 1_000_000,
                                            "queue.buffering.max.kbytes": 1_048_576,
                                            # callbacks only for failures: no per-record Python call
                                            "delivery.report.only.error": True, **extra})
        self.producer = self.kafka.client

    def send(self, out: Output) -> int:
        n = 0
        for name, topic in self.topics.items():
            records = getattr(out, name)
            if records:
                n += self.kafka.produce_all(topic, records)
        self.kafka.poll(0)
        return n

    def flush(self, timeout: float = 60.0) -> None:
        """Block until every record is acknowledged.

        Raises :class:`DeliveryFailed` if any record was refused (it is gone from the queue: the
        batch must be redelivered) and :class:`StreamsError` if some are still queued at the timeout.
        """
        try:
            self.kafka.flush_or_raise(timeout, "output records")
        except KernelDeliveryFailed as exc:
            if exc.refused:
                raise DeliveryFailed(str(exc)) from exc
            raise StreamsError(str(exc)) from exc


class DeliveryFailed(StreamsError):
    """Kafka refused output records: the input batch must not be acknowledged."""
