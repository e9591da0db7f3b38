"""Finding 10: MQTT packs are keyed by device, always (one device's readings on one partition)."""

from __future__ import annotations

import base64
import uuid

from connectors.mqtt.bridge import BridgeCore, Incoming
from connectors.mqtt.topics import reading_topic
from lec import topics
from lec.kafka import ensure_topics
from lec.records import decode
from tests.support.mosquitto import read_topic


def test_one_supplier_two_devices_never_share_a_pack(registry, kafka_bootstrap: str) -> None:
    from lec.io import Producer

    ensure_topics(kafka_bootstrap)
    acked: list = []
    producer = Producer(kafka_bootstrap)
    core = BridgeCore(producer, registry.snapshot(), acked.extend, max_payload_bytes=1 << 20)
    meter = reading_topic("cer-example", "sup-utility", "IT001E00000002", "f-bruno-load")
    pv = reading_topic("cer-example", "sup-utility", "PV-0001", "f-bruno-pv")
    tag = uuid.uuid4().hex
    # interleaved, within one pack's age: before the fix they shared one envelope keyed by supplier
    for i in range(6):
        topic = meter if i % 2 == 0 else pv
        core.handle(Incoming(topic, b'{"tag":"%s","i":%d}' % (tag.encode(), i), i + 1, 1, 0))
    core.flush_due(force=True)
    producer.flush(30)
    assert len(acked) == 6

    def ours(m) -> bool:
        return any(tag.encode() in base64.b64decode(i["payload_b64"]) for i in decode(m.value())["items"])

    msgs = read_topic(kafka_bootstrap, topics.RAW, lambda f: sum(len(decode(m.value())["items"]) for m in f) >= 6,
                      match=ours)
    assert sum(len(decode(m.value())["items"]) for m in msgs) == 6
    for m in msgs:
        devices = {i["device_id"] for i in decode(m.value())["items"]}
        assert devices == {m.key().decode()}, "a raw envelope must hold one device and be keyed by it"
