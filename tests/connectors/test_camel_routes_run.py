"""The Camel K routes executed for real on Apache Camel 4 (camel-main), against a local vendor API.

The vendor pages its readings with a cursor, answers 500 and times out once, and returns garbage
once. The route retries with back-off, every page lands on lec.raw once (also after a restart of
the route: idempotent consumer on a Kafka topic), the streams worker turns them into readings with
channel ``camel`` and sends the garbage to lec.deadletter with its reason.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from connectors.camel.run import READY_LINE, ensure_seen_topic, prepare, routes_yaml
from lec import topics
from lec.io import read_topic
from lec.kafka import ensure_topics
from lec.procs import ManagedProcess, wait_until
from lec.registry import Registry, SecretStore
from tests.conftest import EXAMPLE_COMMUNITY
from tests.support.streams import log_contains, start_worker

pytestmark = pytest.mark.slow
FLOW = "f-bruno-api"
PAGES = 4  # cursors 0..3; page 3 comes after the garbage


class Vendor:
    """A vendor API: GET /readings?cursor=N -> {"readings": [...], "next_cursor": "N+1"}."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failures = {"1": ["500"], "2": ["slow"], "3": ["garbage"]}  # once each
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page(self, cursor: int) -> bytes:
        if cursor >= PAGES:  # at the end: the same empty page and cursor
            return json.dumps({"readings": [], "next_cursor": str(PAGES)}).encode()
        rows = [{"ts": f"2025-03-01T{cursor:02d}:{m:02d}:00Z", "e": 100 + cursor * 4 + i}
                for i, m in enumerate((0, 15, 30, 45))]
        return json.dumps({"readings": rows, "next_cursor": str(cursor + 1)}).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                cursor = parse_qs(urlparse(self.path).query).get("cursor", ["0"])[0]
                pending = vendor.failures.get(cursor, [])
                mode = pending.pop(0) if pending else "ok"
                vendor.calls.append(f"{cursor}:{mode}")
                if mode == "500":
                    body, status = b'{"error": "internal"}', 500
                elif mode == "slow":
                    time.sleep(4)  # beyond the route's 2 s response timeout
                    body, status = vendor.page(int(cursor)), 200
                elif mode == "garbage":
                    body, status = b"<html>maintenance \xff\xfe</html>", 200
                else:
                    body, status = vendor.page(int(cursor)), 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the route gave up on a slow answer

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/readings"


@pytest.fixture()
def vendor() -> Iterator[Vendor]:
    v = Vendor()
    v.thread.start()
    yield v
    v.server.shutdown()


def camel_registry(run_dir: Path, flow_id: str, camel: dict[str, Any]) -> Registry:
    """The example community plus one camel flow of sup-utility (JSON readings {"ts", "e"} in Wh)."""
    doc = yaml.safe_load(EXAMPLE_COMMUNITY.read_text())
    doc["flows"].append({
        "id": flow_id, "device": "IT001E00000002", "supplier": "sup-utility", "channel": "camel", "syntax": "json",
        "measurement": "load", "account": "consumption", "units": {"energy": "Wh"},
        "mapping": {"ts": "ts", "energy": "e"}, "timezone": "UTC", "syntax_options": {"camel": camel},
    })
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "community.yaml"
    path.write_text(yaml.safe_dump(doc))
    reg = Registry(f"sqlite:///{run_dir / 'registry.db'}", SecretStore(f"sqlite:///{run_dir / 'secrets' / 'device-secrets.db'}"))
    reg.migrate()
    reg.load_file(path)
    return reg


def camel_routes(bootstrap: str, run_dir: Path, flow_id: str, camel: dict[str, Any]) -> tuple[Any, str]:
    """Topics made, the registry with the camel flow, and its routes (the Integration's text) for this Kafka."""
    ensure_topics(bootstrap)
    ensure_seen_topic(bootstrap)
    snapshot = camel_registry(run_dir, flow_id, camel).snapshot()
    return snapshot, routes_yaml(snapshot, kafka_brokers=bootstrap, max_payload_bytes=1024 * 1024)


def start_camel(work: Path, routes: str, secrets: list[Path] | None = None) -> ManagedProcess:
    """camel-main on the routes (a fresh log per start), ready once Camel says it started."""
    proc = ManagedProcess("camel", prepare(work, routes, secrets=secrets), work.parent / f"camel-{time.monotonic_ns()}.log")
    proc.wait_ready(lambda: READY_LINE in proc.log.read_text(errors="replace"), timeout=240)
    return proc


def flow_records(bootstrap: str, topic: str, flow_id: str) -> list[dict]:
    """The records of one flow on lec.raw (by its item), lec.readings or lec.deadletter."""
    records = read_topic(bootstrap, topic, idle_s=2.0)
    if topic == topics.RAW:
        return [e for e in records if e["items"][0]["flow_id"] == flow_id]
    return [r for r in records if r.get("flow_id") == flow_id]


def _camel_raw(bootstrap: str) -> list[dict]:
    return flow_records(bootstrap, topics.RAW, FLOW)


def test_route_polls_pages_retries_and_lands_once_across_restarts(fresh_kafka: tuple, vendor: Vendor,
                                                                  tmp_path: Path) -> None:
    _, bootstrap = fresh_kafka
    run_dir = tmp_path / "run"
    _, routes = camel_routes(bootstrap, run_dir, FLOW, {
        "kind": "http-poll", "url": vendor.url, "period": 1000, "timeout_ms": 2000, "retry_delay_ms": 200,
        "cursor": {"field": "next_cursor", "param": "cursor"}})
    assert "routeConfigurationId" in routes and "idempotentConsumer" in routes
    worker = start_worker(run_dir, bootstrap, "streams")
    camel = None
    try:
        camel = start_camel(tmp_path / "camel", routes)
        # 4 pages and the garbage: 5 distinct envelopes; the empty end page is one more
        wait_until(lambda: len(_camel_raw(bootstrap)) >= PAGES + 2, 240, "camel envelopes", camel.proc, camel.log)
        assert any(c == "1:500" for c in vendor.calls) and any(c == "2:slow" for c in vendor.calls)
        camel.stop()
        before = _camel_raw(bootstrap)
        camel = None
        camel = start_camel(tmp_path / "camel", routes)  # starts again from no cursor: every page again
        wait_until(lambda: sum(c.startswith(f"{PAGES}:") for c in vendor.calls) >= 3, 240, "second pass",
                   camel.proc, camel.log)
        after = _camel_raw(bootstrap)
        ids = [e["items"][0]["message_id"] for e in after]
        assert len(ids) == len(set(ids)) == len(before)  # nothing sent twice
        assert all(e["channel"] == "camel" and e["supplier_id"] == "sup-utility" for e in after)

        def camel_readings() -> list[dict]:
            return [r for r in flow_records(bootstrap, topics.READINGS, FLOW) if r.get("channel") == "camel"]

        wait_until(lambda: len(camel_readings()) >= PAGES * 4, 180, "camel readings", worker.proc, worker.log)
        readings = camel_readings()
        assert len({r["ts"] for r in readings}) == PAGES * 4
        dead = flow_records(bootstrap, topics.DEADLETTER, FLOW)
        # the garbage with its reason; the vendor's empty end page once (no_readings), not on every poll
        assert sorted(d["reason_code"] for d in dead) == ["json_invalid", "no_readings"]
        assert log_contains(camel, "Failed delivery") or "500" in camel.log.read_text(errors="replace")
    finally:
        if camel is not None:
            camel.stop()
        worker.stop()
