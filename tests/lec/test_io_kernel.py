"""The I/O kernel (lec.io): one producer, one topic reader, one logging setup."""

from __future__ import annotations

import logging
import uuid

import pytest

from lec.io import DeliveryFailed, Producer, configure_logging, read_topic, replay
from lec.procs import free_port


def test_refused_records_raise_a_typed_error_with_the_count() -> None:
    p = Producer(f"127.0.0.1:{free_port()}", **{"message.timeout.ms": 300, "log_level": 0})
    assert p.produce_all("t", [(b"k", b"v")] * 3) == 3
    with pytest.raises(DeliveryFailed, match="3 records were refused by Kafka") as err:
        p.flush_or_raise(10)
    assert err.value.refused == 3 and err.value.errors
    p.flush_or_raise(1)  # the failures were reported once: nothing left to raise


def test_full_local_queue_is_reported_not_dropped() -> None:
    p = Producer(f"127.0.0.1:{free_port()}", **{"queue.buffering.max.messages": 1, "message.timeout.ms": 300,
                                                 "log_level": 0})
    assert p.try_produce("t", b"a", wait_s=0)
    assert not p.try_produce("t", b"b", wait_s=0)  # the caller keeps it for later
    with pytest.raises(DeliveryFailed):
        p.flush_or_raise(10)


def test_worker_logging_names_the_worker(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()  # basicConfig configures only an unconfigured root, as in a fresh worker
    try:
        configure_logging("bridge-0", level="info")
        logging.getLogger("lec.x").info("bridge stopped")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert " bridge-0 INFO bridge stopped" in capsys.readouterr().err


def test_reader_replays_a_topic_from_the_start(kafka_bootstrap: str) -> None:
    topic = f"kernel-{uuid.uuid4().hex[:8]}"
    p = Producer(kafka_bootstrap)
    p.produce_all(topic, [(str(i).encode(), b'{"i": %d}' % i) for i in range(20)])
    p.flush_or_raise(120)
    got = read_topic(kafka_bootstrap, topic, lambda out: len(out) >= 20, 60)
    assert sorted(r["i"] for r in got) == list(range(20))
    assert sum(len(b) for b in replay(kafka_bootstrap, topic, to_end=True, timeout=60)) == 20  # stops at the end
    quiet = read_topic(kafka_bootstrap, topic, timeout=60, decode="bytes", idle_s=1.0, min_records=20)
    assert len(quiet) == 20
