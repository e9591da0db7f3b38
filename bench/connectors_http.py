"""HTTP ingest throughput (readings/s, 202 = in Kafka) beside a raw confluent-kafka produce of the same bytes.

    .venv/bin/python bench/connectors_http.py [--readings 1000000] [--batch 10000] [--clients 4]

Starts Tansu and `lec connectors http-serve` (uvicorn, one process), then:
  http:     `--clients` threads POST JSON batches of `--batch` readings (bearer token), each answered
            202 only after Kafka acknowledged every item of the batch;
  csv:      the same readings as text/csv;
  baseline: one confluent-kafka idempotent producer sending the same number of records of the same
            size (the raw envelopes the server built) and flushing: the Kafka ceiling on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
import orjson

from connectors.http.tokens import issue_token
from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.procs import ManagedProcess, free_port, port_open
from lec.records import raw_envelope, raw_item
from lec.registry import Registry, SecretStore
from lec.services import start_tansu
from tests.support.mosquitto import worker_env

FLOW = "f-bruno-pv"


def readings(n: int) -> list[dict]:
    return [{"t": f"2024-01-{1 + (i // 96) % 28:02d}T{(i // 4) % 24:02d}:{(i % 4) * 15:02d}:00Z", "wh": i % 5000}
            for i in range(n)]


def post_all(url: str, token: str, bodies: list[bytes], ctype: str, clients: int, flows: list[str] | None = None,
             warm_up: bool = True) -> float:
    """Seconds to POST every body (body i to ``flows[i]``, default FLOW) from ``clients`` threads, each 202."""
    def post(body: bytes, flow: str) -> None:
        r = client.post(f"{url}/v1/readings?flow_id={flow}", content=body,
                        headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
        if r.status_code != 202:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

    flows = flows or [FLOW] * len(bodies)
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        if warm_up:  # the first batch once more: connection and token checked before the clock starts
            post(bodies[0], flows[0])
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, bodies, flows))
        return time.perf_counter() - t0


def start_server(settings: Settings, bootstrap: str, log: Path) -> tuple[ManagedProcess, str]:
    """`lec connectors http-serve` on a free loopback port; returns it and its base URL."""
    port = free_port()
    env = worker_env(settings, bootstrap, 0, LEC_HTTP_PORT=str(port), LEC_LOG_LEVEL="WARNING")
    server = ManagedProcess("http", [sys.executable, "-m", "connectors", "http-serve"], log, env=env, cwd=ROOT)
    server.wait_ready(lambda: port_open(port), 60)
    return server, f"http://127.0.0.1:{port}"


def baseline(bootstrap: str, batch: list[dict], batches: int) -> float:
    """Seconds to produce and flush the same records (one envelope per 1000 readings) with one producer."""
    from lec.io import Producer

    records = []
    for i in range(0, len(batch), 1000):
        item = raw_item(orjson.dumps(batch[i:i + 1000]), message_id=uuid.uuid4().hex,
                        source={"batch_id": "b", "index": i}, device_id="PV-0001", flow_id=FLOW)
        records.append(orjson.dumps(raw_envelope("http", "cer-example", "sup-utility", [item])))
    p = Producer(bootstrap, **{"message.max.bytes": 16 * 1024 * 1024})
    p.produce(topics.RAW, records[0], b"PV-0001")   # warm-up: connection, producer id, metadata
    p.flush(30)
    t0 = time.perf_counter()
    for _ in range(batches):
        for rec in records:
            p.produce(topics.RAW, rec, b"PV-0001")
            p.poll(0)
    p.flush(60)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    batches = args.readings // args.batch
    batch = readings(args.batch)
    json_body = orjson.dumps(batch)
    csv_body = b"t,wh\n" + b"".join(f"{r['t']},{r['wh']}\n".encode() for r in batch)
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        root = Path(tmp)
        settings = Settings(run_dir=root / "run")
        reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
        reg.migrate()
        reg.load_file(ROOT / "examples" / "community.yaml")
        kafka, bootstrap = start_tansu(root)
        server = None
        try:
            ensure_topics(bootstrap)
            server, url = start_server(settings, bootstrap, root / "http.log")
            token = issue_token(settings, "sup-utility")
            total = batches * args.batch
            base_s = baseline(bootstrap, batch, batches)
            base = total / base_s
            print(f"baseline confluent-kafka produce of the same envelopes: {base:,.0f} readings/s")
            for name, body, ctype in (("json", json_body, "application/json"), ("csv", csv_body, "text/csv")):
                secs = post_all(url, token, [body] * batches, ctype, args.clients)
                rate = total / secs
                print(f"http {name}: {batches} POSTs of {args.batch} readings ({len(body) / 1e6:.2f} MB), "
                      f"{args.clients} clients: {rate:,.0f} readings/s = {rate / base:.2f} x baseline")
        finally:
            if server is not None:
                server.stop()
            kafka.stop()
    print(f"machine: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
