"""Helpers shared by the streams tests and benchmark: produce envelopes, read topics, run workers."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from lec.kafka import consumer_config, producer_config
from lec.procs import ManagedProcess

LEC = str(Path(sys.executable).with_name("lec"))


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    from confluent_kafka import Producer

    p = Producer(producer_config(bootstrap, **{"queue.buffering.max.messages": 1_000_000,
                                               "queue.buffering.max.kbytes": 2_097_151}))
    n = 0
    for key, value in records:
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
        n += 1
    if p.flush(60):
        raise RuntimeError("produce: not all records acknowledged")
    return n


def read_topic(bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 60.0,
               decode: bool = True) -> list[Any]:
    """All records of a topic from the beginning until ``until(records)`` or the timeout."""
    from confluent_kafka import Consumer

    c = Consumer(consumer_config(bootstrap, f"reader-{uuid.uuid4().hex}"))
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            for msg in c.consume(10000, 0.5):
                if msg.error():
                    continue
                out.append(orjson.loads(msg.value()) if decode else msg.value())
    finally:
        c.close()
    return out


def cli() -> list[str]:
    """argv prefix of the streams commands: ``lec streams`` (LEC_STREAMS_CLI=module: ``python -m streams``)."""
    if os.environ.get("LEC_STREAMS_CLI") == "module":
        return [sys.executable, "-m", "streams", "streams"]
    return [LEC, "streams"]


def start_worker(run_dir: Path, bootstrap: str, name: str = "streams", *args: str,
                 env: dict[str, str] | None = None) -> ManagedProcess:
    """`lec streams worker` as a child process (its own process group, log in run_dir/logs)."""
    full_env = {"LEC_RUN_DIR": str(run_dir), "LEC_KAFKA_BOOTSTRAP": bootstrap, "LEC_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1", **(env or {})}
    argv = [*cli(), "worker", *args]
    return ManagedProcess(name, argv, run_dir / "logs" / f"{name}.log", env=full_env)


def log_contains(proc: ManagedProcess, text: str) -> bool:
    return proc.log.exists() and text in proc.log.read_text(errors="replace")
