"""The one topic reader for replays: every partition assigned from the beginning (no group join to
wait for), read in batches until the caller's condition, the topic's end, quiet, or a timeout."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import orjson

from lec.kafka import consumer_config


def replay(bootstrap: str, topic: str, *, timeout: float | None = None, to_end: bool = False,
           idle_s: float | None = None, batch: int = 1000, poll_s: float = 0.5,
           group: str | None = None) -> Iterator[list[Any]]:
    """Batches of ``topic``'s messages (errors left out) from the beginning, until ``timeout``, until
    every partition reached the end it had when reading began (``to_end``) or ``idle_s`` without a
    message. An empty batch is yielded on each quiet poll, so the caller can decide to stop."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    extra = {"enable.partition.eof": True} if to_end else {}
    consumer = Consumer(consumer_config(bootstrap, group or f"lec-reader-{uuid.uuid4().hex[:12]}", **extra))
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        partitions = _partitions(consumer, topic)
        while not partitions and not to_end and (deadline is None or time.monotonic() < deadline):
            time.sleep(poll_s)  # not created yet (a worker creates it on start): wait for it
            yield []
            partitions = _partitions(consumer, topic)
        open_parts: set[int] = set()
        highs: dict[int, int] = {}
        if to_end:
            highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1] for p in partitions}
            open_parts = {p for p, h in highs.items() if h > 0}
            if not open_parts:
                return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        last = time.monotonic()
        while deadline is None or time.monotonic() < deadline:
            msgs = consumer.consume(batch, timeout=poll_s)
            now = time.monotonic()
            out = []
            for m in msgs:
                err = m.error()
                if err is not None:
                    if to_end and err.code() == KafkaError._PARTITION_EOF:
                        open_parts.discard(m.partition())
                    continue
                out.append(m)
                if to_end and m.offset() + 1 >= highs.get(m.partition(), 0):
                    open_parts.discard(m.partition())
            if msgs:
                last = now
            yield out
            if to_end and not open_parts:
                return
            if idle_s is not None and not msgs and now - last > idle_s:
                return
    finally:
        consumer.close()


def _partitions(consumer: Any, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
    return sorted(meta.partitions) if meta is not None and not meta.error else []


Decode = Literal["json", "bytes", "message"]


def read_topic(bootstrap: str, topic: str, until: Callable[[list[Any]], bool] | None = None,
               timeout: float = 60.0, *, decode: Decode = "json", match: Callable[[Any], bool] | None = None,
               idle_s: float | None = None, min_records: int = 0, to_end: bool = False,
               ensure: bool = False) -> list[Any]:
    """A topic's records from the beginning until ``until(records)`` holds, the timeout, or (with
    ``idle_s``) a quiet spell once ``min_records`` arrived; ``decode``: JSON values, raw value bytes or
    the Kafka messages; ``match`` filters messages; ``ensure`` creates the topic if missing."""
    if ensure:
        from lec.kafka import ensure_topics

        ensure_topics(bootstrap, (topic,))
    out: list[Any] = []
    if until is not None and until(out):
        return out
    last = time.monotonic()
    for msgs in replay(bootstrap, topic, timeout=timeout, to_end=to_end, poll_s=0.2 if until else 0.5):
        for m in msgs:
            if m.value() is None or (match is not None and not match(m)):
                continue
            out.append(orjson.loads(m.value()) if decode == "json" else m.value() if decode == "bytes" else m)
        now = time.monotonic()
        if msgs:
            last = now
        if until is not None and until(out):
            break
        if idle_s is not None and len(out) >= min_records and now - last > idle_s:
            break
    return out
