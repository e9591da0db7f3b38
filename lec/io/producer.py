"""The platform's one Kafka producer: idempotent, bounded local queue, failures tracked, flush-or-raise."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lec.errors import LecError
from lec.kafka import producer_config

# Waits while the local queue is full: long enough to let deliveries drain, short enough to stay responsive.
BACKOFF_S = 0.05
MAX_KEPT_ERRORS = 10


class DeliveryFailed(LecError):
    """Kafka refused records, or did not acknowledge them in time: they are not stored and must be sent
    again (the producer is idempotent, so a resend never duplicates what did arrive)."""

    def __init__(self, message: str, *, refused: int = 0, pending: int = 0, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.refused, self.pending, self.errors = refused, pending, list(errors or [])


class DeliveryTracker:
    """A delivery callback that counts refused records and keeps the first few errors."""

    def __init__(self) -> None:
        self.refused = 0
        self.errors: list[str] = []

    def __call__(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.refused += 1
            if len(self.errors) < MAX_KEPT_ERRORS:
                self.errors.append(str(err))

    @property
    def error(self) -> str | None:
        """The first delivery error, or None while every record went through."""
        return self.errors[0] if self.errors else None

    def reset(self) -> tuple[int, list[str]]:
        """(refused, errors) so far, and start counting again."""
        out = (self.refused, self.errors)
        self.refused, self.errors = 0, []
        return out


class Producer:
    """An idempotent confluent-kafka producer (``lec.kafka.producer_config``) with a producer-wide
    :class:`DeliveryTracker` (per-record callbacks still override it), a bounded local queue that
    blocks instead of failing (:meth:`produce`), or tells the caller (:meth:`try_produce`), and
    :meth:`flush_or_raise`. ``extra`` are librdkafka settings (e.g. ``message.max.bytes``)."""

    def __init__(self, bootstrap: str, **extra: Any) -> None:
        from confluent_kafka import Producer as KafkaProducer

        self.tracker = DeliveryTracker()
        # one producer-wide callback: produce() without a per-record callback is about twice as fast
        self.client = KafkaProducer(producer_config(bootstrap, **{"on_delivery": self.tracker, **extra}))

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None,
                on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        """Queue one record; while the local queue is full, serve deliveries until there is room."""
        while True:
            try:
                if on_delivery is None:
                    self.client.produce(topic, value, key)
                else:
                    self.client.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:  # bounded memory: wait for acknowledgements, never drop
                self.client.poll(BACKOFF_S)

    def try_produce(self, topic: str, value: bytes, key: bytes | None = None,
                    on_delivery: Callable[[Any, Any], None] | None = None, wait_s: float = BACKOFF_S) -> bool:
        """Queue one record, or return False (after serving deliveries for ``wait_s``; 0 when another
        thread polls) when the local queue is full: for callers that must not block (an event loop,
        a loop that keeps a retry queue)."""
        try:
            if on_delivery is None:
                self.client.produce(topic, value, key)
            else:
                self.client.produce(topic, value, key, on_delivery=on_delivery)
            return True
        except BufferError:
            if wait_s:
                self.client.poll(wait_s)
            return False

    def produce_all(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Queue ``(key, value)`` records (the hot path: no per-record callback); returns how many."""
        produce, poll = self.client.produce, self.client.poll
        n = 0
        for key, value in records:
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    poll(BACKOFF_S)
            n += 1
        return n

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks."""
        return self.client.poll(timeout)

    def flush(self, timeout: float = 60.0) -> int:
        """Wait for acknowledgements; returns how many records are still queued (see flush_or_raise)."""
        return self.client.flush(timeout)

    def flush_or_raise(self, timeout: float = 60.0, what: str = "records") -> None:
        """Block until every record is acknowledged; raise :class:`DeliveryFailed` if any was refused
        (it is gone from the queue) or some are still queued at the timeout."""
        left = self.client.flush(timeout)
        refused, errors = self.tracker.reset()
        if refused:
            raise DeliveryFailed(f"{refused} {what} were refused by Kafka: {errors[:3]}", refused=refused,
                                 pending=left, errors=errors)
        if left:
            raise DeliveryFailed(f"{left} {what} still unacknowledged after {timeout:.0f} s: is Kafka reachable?",
                                 pending=left)

    def __len__(self) -> int:
        return len(self.client)
