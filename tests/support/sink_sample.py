"""Canonical sample records and a fast producer, for the sink's tests and benchmark."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from lec import topics

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def sample_readings(n: int, devices: int = 50, communities: tuple[str, ...] = ("cer-a", "cer-b"),
                    start: int = 0, days: int = 3) -> Iterator[dict[str, Any]]:
    """``n`` canonical readings (lec.reading/1), 15-minute intervals spread over ``days`` UTC dates."""
    slots = days * 96
    for i in range(start, start + n):
        dev = i % devices
        t = T0 + timedelta(minutes=15 * ((i // devices) % slots))
        yield {
            "schema": "lec.reading/1", "community_id": communities[dev % len(communities)],
            "supplier_id": "sup-1", "device_id": f"dev-{dev:04d}", "flow_id": f"flow-{dev:04d}",
            "channel": "mqtt", "message_id": f"m{i:010d}:0", "ts": _iso(t), "interval_s": 900,
            "ingest_ts": "2024-01-05T00:00:00.123Z", "current_a": None, "voltage_v": 230.5,
            "power_active_w": 400.0 + dev, "power_reactive_var": None, "energy_mwh": 100_000 + i % 997,
            "charge_pct": None, "measurement": "load", "account": 1, "estimated": False,
            "interpolated": False, "late": False, "conflict": False,
        }


def sample_anomaly(i: int, device: str = "dev-0001", community: str = "cer-a") -> dict[str, Any]:
    return {"schema": "lec.anomaly/1", "anomaly_id": f"an-{i}", "kind": "stuck_meter",
            "community_id": community, "device_id": device, "flow_id": "flow-0001",
            "ts": "2024-01-01T00:00:00Z", "detected_ts": "2024-01-01T01:00:00.000Z",
            "detail": "same value for 8 intervals", "value": 12.5}


def sample_deadletter(i: int, device: str | None = "dev-0001", community: str | None = "cer-a") -> dict[str, Any]:
    return {"schema": "lec.deadletter/1", "reason_code": "bad_timestamp", "message": "ts is not ISO-8601",
            "channel": "sftp", "community_id": community, "supplier_id": "sup-1", "device_id": device,
            "flow_id": None, "message_id": f"dl-{i}", "reading_index": 3, "payload_b64": "eyJhIjoxfQ==",
            "source": {"file": "in/x.csv", "line_start": 4, "line_end": 4}, "rejected_ts": "2024-01-01T00:00:00.000Z"}


def produce(bootstrap: str, records: Iterable[dict[str, Any] | bytes], topic: str = topics.READINGS,
            key_field: str = "device_id") -> int:
    """Send records (dicts as JSON, or raw bytes) with the idempotent producer; returns the count."""
    from lec.io import Producer

    def keyed() -> Iterable[tuple[bytes | None, bytes]]:
        for rec in records:
            if isinstance(rec, bytes):
                yield None, rec
            else:
                key = rec.get(key_field)
                yield (key.encode() if key else None), orjson.dumps(rec)

    producer = Producer(bootstrap, **{"linger.ms": 20, "batch.num.messages": 10000})
    count = producer.produce_all(topic, keyed())
    producer.flush_or_raise(60)
    return count
