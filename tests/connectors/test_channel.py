"""The connector interface: channels are subpackages found by the CLI, and envelopes are built once."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson

from connectors.channel import RawSink
from connectors.cli import channels
from lec import topics
from lec.records import raw_item

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


class _Recorder:
    """The kernel producer's two send calls, recorded (what Kafka would be given)."""

    def __init__(self, full: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.full = full

    def produce(self, topic: str, value: bytes, key: bytes | None = None, on_delivery: object = None) -> None:
        self.sent.append((topic, value, key))

    def try_produce(self, topic: str, value: bytes, key: bytes | None = None, on_delivery: object = None,
                    wait_s: float = 0.0) -> bool:
        if self.full:
            return False
        self.sent.append((topic, value, key))
        return True


def test_every_channel_folder_is_a_command_group() -> None:
    assert channels() == ["camel", "http", "mqtt", "sftp"]


def test_the_sink_builds_a_published_raw_envelope_keyed_by_device() -> None:
    schema = json.loads((SCHEMAS / "raw-envelope.json").read_text())
    producer = _Recorder()
    sink = RawSink("sftp", producer)  # type: ignore[arg-type]
    items = [raw_item(b'{"ts": "2024-01-01T00:00:00Z", "e": 1}', message_id=f"m-{i}", source={"file": "a.csv"},
                      device_id="DEV-1", flow_id="f-1") for i in range(2)]
    record = sink.record("cer-a", "sup-a", "DEV-1", items)
    sink.send(record)
    topic, value, key = producer.sent[0]
    envelope = orjson.loads(value)
    jsonschema.validate(envelope, schema)
    assert (topic, key, record.items) == (topics.RAW, b"DEV-1", 2)
    assert (envelope["channel"], envelope["community_id"], envelope["supplier_id"]) == ("sftp", "cer-a", "sup-a")
    assert [i["message_id"] for i in envelope["items"]] == ["m-0", "m-1"]


def test_a_full_queue_is_reported_not_dropped() -> None:
    sink = RawSink("mqtt", _Recorder(full=True))  # type: ignore[arg-type]
    record = sink.record("cer-a", "sup-a", "DEV-1", [raw_item(b"{}", message_id="m", source={"mqtt_topic": "t"})])
    assert sink.try_send(record) is False
