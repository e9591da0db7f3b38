"""Outputs through one fast confluent-kafka producer, flushed before a batch's offsets commit."""

from __future__ import annotations

from typing import Any

from lec import topics
from lec.kafka import producer_config
from streams.errors import StreamsError
from streams.process import Output


class Emitter:
    """Sends an :class:`Output` to the four output topics; ``flush`` waits until all are acknowledged."""

    def __init__(self, bootstrap: str, *, readings_topic: str = topics.READINGS, **extra: Any) -> None:
        from confluent_kafka import Producer

        self.topics = {"readings": readings_topic, "deadletters": topics.DEADLETTER, "feedback": topics.FEEDBACK,
                       "anomalies": topics.ANOMALIES}
        self._errors: list[str] = []
        self.producer = Producer(producer_config(bootstrap, **{"linger.ms": 5, "queue.buffering.max.messages": 1_000_000,
                                                               "queue.buffering.max.kbytes": 1_048_576,
                                                               # callbacks only for failures: no per-record Python call
                                                               "delivery.report.only.error": True,
                                                               # one producer-wide callback: produce() without it is
                                                               # about twice as fast per record
                                                               "on_delivery": self._on_delivery, **extra}))

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def send(self, out: Output) -> int:
        n = 0
        produce, poll = self.producer.produce, self.producer.poll
        for name, topic in self.topics.items():
            for key, value in getattr(out, name):
                while True:
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        poll(0.05)
                n += 1
        poll(0)
        return n

    def flush(self, timeout: float = 60.0) -> None:
        """Block until every record is acknowledged.

        Raises :class:`DeliveryFailed` if any record was refused (it is gone from the queue: the
        batch must be redelivered) and :class:`StreamsError` if some are still queued at the timeout.
        """
        left = self.producer.flush(timeout)
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryFailed(f"{len(errors)} output records were refused by Kafka: {errors[:3]}")
        if left:
            raise StreamsError(f"{left} output records still unacknowledged after {timeout:.0f} s")


class DeliveryFailed(StreamsError):
    """Kafka refused output records: the input batch must not be acknowledged."""
