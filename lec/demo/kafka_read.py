"""Read a whole topic (for summaries and tests): consume from the start until it stays quiet."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from lec.kafka import consumer_config


def read_topic(bootstrap: str, topic: str, *, idle_s: float = 3.0, timeout_s: float = 60.0,
               min_records: int = 0) -> list[dict[str, Any]]:
    """All records of ``topic`` as dicts; stops after ``idle_s`` without news once ``min_records`` arrived."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(consumer_config(bootstrap, f"lec-reader-{uuid.uuid4().hex[:8]}"))
    # Assign every partition from the start: no group join to wait for.
    meta = consumer.list_topics(topic, timeout=15).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, timeout=0.5)
            for msg in batch:
                if msg.error() is None and msg.value() is not None:
                    out.append(orjson.loads(msg.value()))
            if batch:
                last = time.monotonic()
            elif len(out) >= min_records and time.monotonic() - last > idle_s:
                break
    finally:
        consumer.close()
    return out
