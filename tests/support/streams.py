"""Helpers shared by the streams tests and benchmark: produce envelopes, read topics, run workers."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from lec.io import Producer
from lec.io import read_topic as kernel_read
from lec.procs import ManagedProcess

LEC = str(Path(sys.executable).with_name("lec"))


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send ``(key, value)`` records and wait for every acknowledgement (lec.io's producer)."""
    p = Producer(bootstrap, **{"queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 2_097_151})
    n = p.produce_all(topic, records)
    p.flush_or_raise(60)
    return n


def read_topic(bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 60.0,
               decode: bool = True) -> list[Any]:
    """All records of a topic (JSON, or raw bytes) from the beginning until ``until(records)`` or the timeout."""
    return kernel_read(bootstrap, topic, until, timeout, decode="json" if decode else "bytes", ensure=True)


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


# A community exercising every normalisation rule (tests and benchmark load it into a registry).
TEST_COMMUNITY = """
community: {id: cer-test, name: CER Test, timezone: Europe/Rome}
users:
  - {id: u-a, name: A, wallet: "0x2000000000000000000000000000000000000001"}
  - {id: u-b, name: B, wallet: "0x2000000000000000000000000000000000000002"}
suppliers:
  - {id: sup-a, name: Vendor A}
  - {id: sup-b, name: Vendor B}
devices:
  - {id: DEV-LOAD, user: u-a, supplier: sup-a}
  - {id: DEV-PV, user: u-a, supplier: sup-a}
  - {id: DEV-PV2, user: u-a, supplier: sup-a}
  - {id: DEV-GRID, user: u-a, supplier: sup-a}
  - {id: DEV-GRID2, user: u-a, supplier: sup-a}
  - {id: DEV-BAT, user: u-a, supplier: sup-a}
  - {id: DEV-BAT2, user: u-a, supplier: sup-a}
  - {id: DEV-CUM, user: u-a, supplier: sup-a}
  - {id: DEV-ROME, user: u-a, supplier: sup-a}
  - {id: DEV-POW, user: u-a, supplier: sup-a}
  - {id: DEV-XML, user: u-a, supplier: sup-a}
  - {id: DEV-OLD, user: u-a, supplier: sup-a, end: "2024-06-01T00:00:00Z"}
  - {id: DEV-B, user: u-b, supplier: sup-b}
  - {id: DEV-FAST, user: u-a, supplier: sup-a}
flows:
  - {id: f-load, device: DEV-LOAD, supplier: sup-a, channel: mqtt, syntax: json, measurement: load,
     account: consumption, units: {energy: Wh, power: W}, mapping: {ts: ts, energy: e, power: p, message_id: id},
     limits: {energy_mwh: [0, 10000000]}, send_frequency: 15m, derogation_s: 60,
     start: "2023-01-01T00:00:00Z"}
  - {id: f-pv, device: DEV-PV, supplier: sup-a, channel: mqtt, syntax: json, measurement: production,
     account: production, sign_convention: generator, units: {energy: kWh}, mapping: {ts: ts, energy: e}}
  - {id: f-pv2, device: DEV-PV2, supplier: sup-a, channel: mqtt, syntax: json, measurement: production,
     sign_convention: consumer, units: {energy: Wh}, mapping: {ts: ts, energy: e}}
  - {id: f-grid, device: DEV-GRID, supplier: sup-a, channel: mqtt, syntax: json, measurement: grid,
     sign_convention: consumer, units: {energy: Wh}, mapping: {ts: ts, energy: e}}
  - {id: f-grid2, device: DEV-GRID2, supplier: sup-a, channel: mqtt, syntax: json, measurement: grid,
     sign_convention: generator, units: {energy: Wh}, mapping: {ts: ts, energy: e}}
  - {id: f-bat, device: DEV-BAT, supplier: sup-a, channel: mqtt, syntax: json, measurement: storage,
     sign_convention: consumer, units: {energy: Wh, charge: pct}, mapping: {ts: ts, energy: e, charge: soc}}
  - {id: f-bat2, device: DEV-BAT2, supplier: sup-a, channel: mqtt, syntax: json, measurement: storage,
     sign_convention: generator, units: {energy: Wh}, mapping: {ts: ts, energy: e}}
  - {id: f-cum, device: DEV-CUM, supplier: sup-a, channel: http, syntax: json, measurement: load,
     account: consumption, value_kind: cumulative, counter_max_mwh: 100000000, units: {energy: Wh},
     mapping: {ts: t, energy: reg}, ts_format: epoch_s}
  - {id: f-rome, device: DEV-ROME, supplier: sup-a, channel: sftp, syntax: csv, measurement: load,
     account: consumption, units: {energy: kWh}, mapping: {ts: datetime, energy: kwh},
     ts_format: "%d/%m/%Y %H:%M", timezone: Europe/Rome, syntax_options: {delimiter: ";", decimal_comma: true},
     max_lateness_s: 31536000}   # a DSO's curve files: corrections of past months, a year back (docs/streams.md)
  - {id: f-pow, device: DEV-POW, supplier: sup-a, channel: mqtt, syntax: json, measurement: load,
     value_kind: instant, units: {power: kW, voltage: V, current: A}, mapping: {ts: ts, power: kw, voltage: v, current: i},
     ts_format: epoch_ms}
  - {id: f-xml, device: DEV-XML, supplier: sup-a, channel: http, syntax: xml, measurement: load,
     units: {energy: Wh}, mapping: {ts: time, energy: wh}, syntax_options: {record_path: ".//reading"}}
  - {id: f-old, device: DEV-OLD, supplier: sup-a, channel: mqtt, syntax: json, measurement: load,
     units: {energy: Wh}, mapping: {ts: ts, energy: e}}
  - {id: f-fast, device: DEV-FAST, supplier: sup-a, channel: mqtt, syntax: json, measurement: load,
     units: {energy: Wh}, mapping: {ts: ts, energy: e}, send_frequency: 1m, derogation_s: 5}
  - {id: f-b, device: DEV-B, supplier: sup-b, channel: mqtt, syntax: json, measurement: load,
     units: {energy: Wh}, mapping: {ts: ts, energy: e}}
"""


def load_test_registry(settings: Any, community: str = TEST_COMMUNITY) -> Any:
    """A registry (SQLite in the settings' run dir) holding TEST_COMMUNITY (or ``community``); returns it."""
    from lec.registry import Registry, SecretStore

    path = settings.resolved_run_dir() / "community-test.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(community)
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(path)
    return reg


def envelope(items: list[dict], *, channel: str = "mqtt", supplier: str = "sup-a",
             community: str = "cer-test") -> bytes:
    from lec.records import raw_envelope

    return orjson.dumps(raw_envelope(channel, community, supplier, items))


def item(payload: bytes | dict | list, message_id: str, *, device: str | None = None, flow: str | None = None,
         source: dict | None = None, content_type: str = "application/json",
         received_ts: str = "2026-01-01T00:00:00.000Z") -> dict:
    from lec.records import raw_item

    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return dict(raw_item(data, message_id=message_id, source=source or {"mqtt_topic": "t"}, device_id=device,
                         flow_id=flow, content_type=content_type, received_ts=received_ts))


BULK_FLOWS = ("f-load", "f-grid", "f-grid2", "f-bat", "f-bat2", "f-pv2")
BULK_DEVICES = {"f-load": "DEV-LOAD", "f-grid": "DEV-GRID", "f-grid2": "DEV-GRID2", "f-bat": "DEV-BAT",
                "f-bat2": "DEV-BAT2", "f-pv2": "DEV-PV2"}


def bulk_envelopes(envelopes: int, readings_per_item: int, items_per_envelope: int = 1, *,
                   prefix: str = "bulk", flows: tuple[str, ...] = BULK_FLOWS) -> tuple[list[tuple[bytes, bytes]],
                                                                                    set[str]]:
    """Envelopes of TEST_COMMUNITY readings, each of one device (keyed by it), quarter-hours without
    repeats; returns the records and the message ids of the readings they must produce."""
    from lec.records import raw_envelope, raw_item

    records, expected = [], set()
    base = 1704067200  # 2024-01-01T00:00Z
    counters = dict.fromkeys(flows, 0)
    for e in range(envelopes):
        flow = flows[e % len(flows)]
        items = []
        for i in range(items_per_envelope):
            rows = []
            for _ in range(readings_per_item):
                t = base + 900 * counters[flow]
                counters[flow] += 1
                rows.append({"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), "e": 100 + counters[flow] % 7})
            mid = f"{prefix}-{e}-{i}"
            payload = orjson.dumps(rows[0] if readings_per_item == 1 else {"readings": rows})
            items.append(raw_item(payload, message_id=mid, source={"mqtt_topic": f"lec/{flow}"},
                                  device_id=BULK_DEVICES[flow], flow_id=flow, received_ts="2026-01-01T00:00:00.000Z"))
            expected.update(f"{mid}:{n}" for n in range(readings_per_item))
        records.append((BULK_DEVICES[flow].encode(), orjson.dumps(raw_envelope("mqtt", "cer-test", "sup-a", items))))
    return records, expected


def count_topic(bootstrap: str, topic: str, stop: Callable[[int], bool], timeout: float = 60.0) -> list[bytes]:
    """Raw values of a topic until ``stop(count)``."""
    return read_topic(bootstrap, topic, lambda out: stop(len(out)), timeout, decode=False)
