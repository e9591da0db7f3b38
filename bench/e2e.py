"""End to end, source to Delta: readings/s from three sources into the Delta ``readings`` table, one run.

Sources, one after the other in the same minutes on one Kafka broker (``--engine``), each on fresh topics:
  sftp  a distributor's daily load-curve file (``dso-curve-csv``: one row per POD and day, 96 quarter-hours)
        of ``--meters`` meters, dropped in the SFTP area and taken by the watcher (``scan_once``);
  mqtt  one reading per MQTT message: ``mosquitto_pub -l`` (QoS 1) -> Mosquitto -> ``lec connectors
        mqtt-bridge`` (as bench/connectors_mqtt.py);
  http  JSON batches of ``--http-batch`` readings POSTed by ``--http-clients`` threads with a token to ``lec
        connectors http-serve`` (as bench/connectors_http.py), one flow per batch (concurrent batches of one
        flow would arrive out of order, and the streams worker refuses readings later than the flow's
        maximum lateness).
For each: its own ``lec streams worker`` and lake sink (``DeltaSink`` in this process, own Delta folder), all
stages at once. Per stage, readings/s on its own output: the connector from the first byte sent until every
item is acknowledged by Kafka; the streams worker over the span of its ``lec.readings`` records (Kafka
timestamps); the sink from its first to its last commit (one commit: from the first ``lec.readings`` record);
end to end = readings / (first byte sent -> last Delta commit). The slowest stage bounds it. ``sink lag``:
seconds from the worker's last record to the last Delta commit (about the commit interval, 1 s, when the
sink keeps up). Every reading must reach Delta: a loss stops the run with the count of each stage.

MQTT and HTTP send minute readings (``interval_s: 60`` flows): one flow's 10k readings then span a week.

The MQTT bridge and the HTTP server write ``lec.raw`` only: their workers' consumer groups are started at
its end, so each source's worker sees only that source's records.

    .venv/bin/python bench/e2e.py [--engine kafka|tansu] [--sources sftp,mqtt,http] [--repeat N]
                                  [--meters 1000] [--communities 1] [--mqtt-messages 20000] [--http-readings 200000]

The issue's distributor is ``--meters 100000 --communities 2`` (9.6M readings in two daily files: a community
file is capped at 16 MiB, about 70k meters).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson
import yaml

from bench.connectors_http import post_all, start_server
from bench.connectors_mqtt import publish_and_count, start_bridge
from bench.connectors_sftp import ingest_files
from bench.streams import output_times, start
from connectors.http.tokens import issue_token
from connectors.mqtt.config import bridge_password
from connectors.mqtt.topics import reading_topic
from connectors.sftp.area import SftpArea
from connectors.sftp.state import IngestedFiles
from connectors.sftp.watch import SftpWatcher, WatchOptions, kafka_producer
from lakehouse.sink.config import SinkConfig
from lakehouse.sink.worker import DeltaSink
from lakehouse.tables import ANOMALIES, DEADLETTER, READINGS
from lec import topics
from lec.config import Settings
from lec.kafka import consumer_config, ensure_topics
from lec.registry import Registry, SecretStore
from lec.services import start_broker
from streams.app import READY_LINE
from streams.formats.common import day_span, iso_z
from tests.support.mosquitto import mosquitto_broker
from tests.support.streams import log_contains

SOURCES = ("sftp", "mqtt", "http")
STAGES = ("connector -> lec.raw", "streams -> lec.readings", "sink -> Delta", "end to end")
SINK_LAG = "sink lag"   # seconds from the last lec.readings record to the last Delta commit (not a stage)
DSO, HTTP_SUPPLIER = "sup-dso", "sup-e2e-http"
MQTT_USER, MQTT_PASSWORD = "sup-e2e-mqtt", "e2e-mqtt-secret"
MQTT_TOPIC = reading_topic("cer-e2e", MQTT_USER, "E2E-M", "e2e-mqtt")
STALL_S = 120   # no new Delta rows this long after the source finished sending: readings were lost


@dataclass
class Feed:
    """One source, ready to send: how many readings, to which raw topic, and the send (-> seconds)."""
    readings: int
    raw_topic: str
    send: Callable[[], float]


@dataclass
class Figures:
    source: str
    readings: int
    seconds: dict[str, float]   # per stage (STAGES) and SINK_LAG

    def rate(self, stage: str) -> float:
        s = self.seconds[stage]
        return self.readings / s if s > 0 else math.nan

    def bound(self) -> str:
        """The stage with the lowest rate (end to end excluded)."""
        return min(STAGES[:3], key=lambda st: self.rate(st) if not math.isnan(self.rate(st)) else math.inf)


@dataclass
class Env:
    """What every source shares: one broker, one registry, one run folder."""
    base: Path
    bootstrap: str
    settings: Settings
    registry: Registry
    args: argparse.Namespace


def shares(meters: int, communities: int) -> list[range]:
    """The distributor's meters (pod indexes) of each community: as even as they divide."""
    k = max(1, communities)
    return [range(meters * j // k, meters * (j + 1) // k) for j in range(k)]


def community_id(j: int) -> str:
    return "cer-e2e" if j == 0 else f"cer-e2e-{j}"


def dso_account(j: int) -> str:
    """The distributor's supplier account in community ``j`` (a supplier id belongs to one community)."""
    return DSO if j == 0 else f"{DSO}-{j}"


def community(meters: range, http_flows: int, j: int = 0) -> str:
    """A bench community: its share of the distributor's meters (one dso-curve-csv flow each) and, for the
    first, the MQTT flow and the HTTP flows. MQTT and HTTP flows take minute readings (10k quarter-hours
    would span 104 days). A community file is capped at 16 MiB (about 70k meters here): the issue's 100k
    meters are split over ``--communities`` files, as one distributor serves many communities (one supplier
    account in each)."""
    if j > 0:
        doc = {"community": {"id": community_id(j), "name": f"E2E bench {j}", "timezone": "Europe/Rome"},
               "users": [{"id": f"u-e2e-{j}", "name": "E2E", "wallet": f"0x6{j:039x}"}],
               "suppliers": [{"id": dso_account(j), "name": "Distributor"}],
               "devices": [{"id": pod(i), "user": f"u-e2e-{j}", "supplier": dso_account(j)} for i in meters],
               "flows": [dso_flow(i, j) for i in meters]}
        return yaml.safe_dump(doc, sort_keys=False, width=200)

    def device(dev: str, supplier: str) -> dict:
        return {"id": dev, "user": "u-e2e", "supplier": supplier}

    def minute_flow(flow: str, dev: str, supplier: str, channel: str, mapping: dict) -> dict:
        units = {"energy": "Wh", "power": "W"} if "power" in mapping else {"energy": "Wh"}
        return {"id": flow, "device": dev, "supplier": supplier, "channel": channel, "syntax": "json",
                "measurement": "load", "interval_s": 60, "units": units, "mapping": mapping, "timezone": "UTC"}

    http = [f"E2E-H{i:05d}" for i in range(http_flows)]
    doc = {
        "community": {"id": "cer-e2e", "name": "E2E bench", "timezone": "Europe/Rome"},
        "users": [{"id": "u-e2e", "name": "E2E", "wallet": "0x6000000000000000000000000000000000000001"}],
        "suppliers": [{"id": DSO, "name": "Distributor"}, {"id": HTTP_SUPPLIER, "name": "HTTP vendor"},
                      {"id": MQTT_USER, "name": "MQTT box", "password": MQTT_PASSWORD}],
        "devices": [device("E2E-M", MQTT_USER), *(device(pod(i), DSO) for i in meters),
                    *(device(d, HTTP_SUPPLIER) for d in http)],
        "flows": [minute_flow("e2e-mqtt", "E2E-M", MQTT_USER, "mqtt", {"ts": "ts", "energy": "e", "power": "p"}),
                  *(dso_flow(i) for i in meters),
                  *(minute_flow(f"http-{i}", d, HTTP_SUPPLIER, "http", {"ts": "t", "energy": "wh"})
                    for i, d in enumerate(http))],
    }
    return yaml.safe_dump(doc, sort_keys=False, width=200)


def dso_flow(i: int, j: int = 0) -> dict:
    return {"id": f"dso-{i}", "device": pod(i), "supplier": dso_account(j), "channel": "sftp", "syntax": "dso-curve-csv",
            "measurement": "load", "syntax_options": {"directions": ["withdrawal"]}}


def pod(i: int) -> str:
    return f"IT002E{i:08d}"


def write_curve(path: Path, meters: range, day: date) -> int:
    """The distributor's daily file: a metadata line, a header, one row per POD (96 values, decimal comma)."""
    _, qh = day_span(day, "Europe/Rome")
    with open(path, "w", buffering=8 << 20) as fh:
        fh.write(f"Distributore E2E;curve di carico quartorarie;giorno {day:%Y%m%d};kWh\n")
        fh.write("POD;DATA;TIPO;" + ";".join(f"Q{k}" for k in range(1, qh + 1)) + "\n")
        for i in meters:
            cells = ";".join(f"0,{(i + k) % 900 + 100}" for k in range(qh))
            fh.write(f"{pod(i)};{day:%d/%m/%Y};PRELIEVO;{cells}\n")
    return len(meters) * qh


def minutes(n: int, start: datetime) -> list[str]:
    """``n`` consecutive minutes from ``start`` (distinct: a repeated instant would be a duplicate)."""
    t0 = int(start.timestamp())
    return [iso_z(t0 + 60 * i) for i in range(n)]


@contextmanager
def sftp_feed(env: Env, run: int) -> Iterator[Feed]:
    day = date(2024, 1, 8) + timedelta(days=run)   # a new file (and day) per run
    files = [(env.base / f"curve-{run}-{j}.csv", share) for j, share in
             enumerate(shares(env.args.meters, env.args.communities))]
    n = sum(write_curve(src, share, day) for src, share in files)
    area = SftpArea(env.base / "sftp")
    area.ensure(env.registry.snapshot())
    state = IngestedFiles(env.base / f"sftp-state-{run}.sqlite")
    raw = f"e2e.sftp{run}.raw"
    watcher = SftpWatcher(env.registry, area, state, kafka_producer(env.bootstrap), WatchOptions(settle_s=0),
                          raw_topic=raw)
    try:
        drops = [(src, dso_account(j), f"dso-{share[0]}") for j, (src, share) in enumerate(files)]
        yield Feed(n, raw, lambda: ingest_files(watcher, area, drops)[1])
    finally:
        state.close()


@contextmanager
def mqtt_feed(env: Env, run: int) -> Iterator[Feed]:
    n, tag = env.args.mqtt_messages, uuid.uuid4().hex
    data = b"".join(b'{"ts":"%s","e":%d,"p":%d,"tag":"%s"}\n' % (ts.encode(), i % 1000, i % 3000, tag.encode())
                    for i, ts in enumerate(minutes(n, datetime(2020, 1, 1, tzinfo=UTC))))
    bridge_password(env.settings, create=True)
    hashes = env.registry.supplier_password_hashes()
    with mosquitto_broker(env.settings, hashes, env.base / f"mosquitto-{run}") as port:
        bridge = start_bridge(env.settings, env.bootstrap, port, 1, env.base / "logs", "5")
        try:
            yield Feed(n, topics.RAW, lambda: publish_and_count(env.bootstrap, port, data, tag, n, topic=MQTT_TOPIC,
                                                                user=MQTT_USER, password=MQTT_PASSWORD))
        finally:
            bridge.stop(30)


@contextmanager
def http_feed(env: Env, run: int) -> Iterator[Feed]:
    """The same batch of minutes to each of the bench's HTTP flows (one flow per batch)."""
    a = env.args
    batches = http_batches(a)
    body = orjson.dumps([{"t": ts, "wh": i % 5000}
                         for i, ts in enumerate(minutes(a.http_batch, datetime(2024, 1, 1, tzinfo=UTC)))])
    server, url = start_server(env.settings, env.bootstrap, env.base / "logs" / f"http-{run}.log")
    try:
        token = issue_token(env.settings, HTTP_SUPPLIER)
        flows = [f"http-{k}" for k in range(batches)]
        yield Feed(batches * a.http_batch, topics.RAW,
                   lambda: post_all(url, token, [body] * batches, "application/json", a.http_clients, flows,
                                    warm_up=False))
    finally:
        server.stop()


FEEDS = {"sftp": sftp_feed, "mqtt": mqtt_feed, "http": http_feed}


def http_batches(args: argparse.Namespace) -> int:
    return max(1, args.http_readings // args.http_batch)


def start_group_at_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit ``group``'s offsets at the end of ``topic``: a worker of that group skips what is already there.

    The end is where a consumer stops finding records (read through, idle 2 s), not the high watermark:
    Tansu answers the latest offset with the last batch's first offset, so that batch would be read again."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(consumer_config(bootstrap, group))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 2.0:
            if c.consume(10_000, timeout=0.5):
                idle_since = time.monotonic()
        ends = [tp for tp in c.position([TopicPartition(topic, p) for p in parts]) if tp.offset > 0]
        if ends:   # an empty partition: "earliest" is its end already
            c.commit(offsets=ends, asynchronous=False)
    finally:
        c.close()


class CommitWatch(threading.Thread):
    """Wall-clock times of each Delta commit that added readings, until ``n`` rows, a stall after the
    source finished sending, or the sink's end (a thread: the source sends from this one, SQLite needs it)."""

    def __init__(self, sink: DeltaSink, sink_thread: threading.Thread, n: int) -> None:
        super().__init__(daemon=True)
        self.sink, self.sink_thread, self.n = sink, sink_thread, n
        self.commits: list[float] = []
        self.sent_at: float | None = None   # monotonic time the source finished (set by the sender)

    def run(self) -> None:
        rows, last_change = 0, time.monotonic()
        while rows < self.n and self.sink_thread.is_alive():
            now_rows = self.sink.stats.per_table.get(READINGS.name, 0)
            if now_rows != rows:
                rows, last_change = now_rows, time.monotonic()
                self.commits.append(time.time())
            elif self.sent_at is not None and time.monotonic() - max(last_change, self.sent_at) > STALL_S:
                return
            time.sleep(0.02)


def measure(env: Env, source: str, run: int) -> Figures:
    """One source through its own streams worker and lake sink into its own Delta table."""
    tag = f"{source}{run}"
    with FEEDS[source](env, run) as feed:
        n, out = feed.readings, f"e2e.{tag}.readings"
        specs = (replace(READINGS, topic=out), replace(DEADLETTER, topic=f"e2e.{tag}.deadletter"),
                 replace(ANOMALIES, topic=f"e2e.{tag}.anomalies"))
        ensure_topics(env.bootstrap, (feed.raw_topic, out))
        app_id = f"e2e-streams-{tag}-{uuid.uuid4().hex[:6]}"
        start_group_at_end(env.bootstrap, app_id, feed.raw_topic)
        worker = start("worker", env.settings.run_dir, env.bootstrap, f"worker-{tag}",
                       ["--app-id", app_id, "--raw-topic", feed.raw_topic, "--readings-topic", out])
        try:
            worker.wait_ready(lambda: log_contains(worker, READY_LINE), timeout=300)
            sink = DeltaSink(env.bootstrap, str(env.base / f"lake-{tag}"),
                             SinkConfig(commit_interval_s=1.0, commit_rows=100_000, maintain_interval_s=0,
                                        group_id=f"e2e-sink-{tag}"), tables=specs)
            sink_thread = threading.Thread(target=sink.run, daemon=True)
            sink_thread.start()
            watch = CommitWatch(sink, sink_thread, n)
            watch.start()
            try:
                t0 = time.time()
                connector_s = feed.send()
                watch.sent_at = time.monotonic()
                watch.join()
            finally:
                sink.stop()
                sink_thread.join()
            commits = watch.commits
            rows = sink.stats.per_table.get(READINGS.name, 0)
            # reading the topic back runs at ~130k records/s here: 9.6M take more than a minute
            got, first_out, last_out = output_times(env.bootstrap, out, n,
                                                    timeout=max(60.0, n / 50_000) if rows == n else 20)
        finally:
            worker.stop()
    if rows != n or got != n:
        raise RuntimeError(f"{source}: {n:,} readings sent, {got:,} on {out}, {rows:,} in Delta: the stage "
                           f"that lost readings is the first short one (rejects are on {topics.DEADLETTER}; "
                           f"logs under {env.base}/run/logs)")
    # one commit took everything: its span is from the first record it could read
    sink_s = commits[-1] - (commits[0] if len(commits) > 1 else first_out)
    seconds = dict(zip(STAGES, (connector_s, last_out - first_out, sink_s, commits[-1] - t0), strict=True))
    return Figures(source, n, {**seconds, SINK_LAG: commits[-1] - last_out})


def print_table(title: str, rows: list[Figures]) -> None:
    print(f"\n{title}")
    print(f"| source | readings | {' | '.join(STAGES)} (readings/s) | end to end s | sink lag s | bounded by |")
    print("|---|---:|" + "---:|" * len(STAGES) + "---:|---:|---|")
    for f in rows:
        rates = " | ".join(f"{f.rate(st):,.0f}" for st in STAGES)
        print(f"| {f.source} | {f.readings:,} | {rates} | {f.seconds['end to end']:.1f} | {f.seconds[SINK_LAG]:.1f} "
              f"| {f.bound()} |", flush=True)


def median(runs: list[list[Figures]]) -> list[Figures]:
    """Per source, the median of each stage's seconds (so of its rate: same readings every run)."""
    out = []
    for i, first in enumerate(runs[0]):
        secs = {st: statistics.median(r[i].seconds[st] for r in runs) for st in (*STAGES, SINK_LAG)}
        out.append(Figures(first.source, first.readings, secs))
    return out


def setup(base: Path, args: argparse.Namespace, bootstrap: str) -> Env:
    settings = Settings(run_dir=base / "run")
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    files = []
    for j, share in enumerate(shares(args.meters, args.communities)):
        files.append(base / f"e2e-community-{j}.yaml")
        files[-1].write_text(community(share, http_batches(args), j))
    t0 = time.perf_counter()
    for path in files:
        reg.load_file(path)
    print(f"registry: {args.meters:,} meters in {max(1, args.communities)} communities + {http_batches(args)} "
          f"HTTP flows loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    ensure_topics(bootstrap)
    return Env(base, bootstrap, settings, reg, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="kafka", choices=["kafka", "tansu"], help="Kafka engine of the broker")
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, of " + ",".join(SOURCES))
    ap.add_argument("--repeat", type=int, default=1, help="runs; prints each and the median per figure")
    ap.add_argument("--meters", type=int, default=1000, help="meters in the distributor's daily files (x 96 QH)")
    ap.add_argument("--communities", type=int, default=1, help="communities the meters are split over (one daily "
                    "file each; a community file holds at most about 70k meters)")
    ap.add_argument("--mqtt-messages", type=int, default=20_000, help="MQTT messages (one reading each)")
    ap.add_argument("--http-readings", type=int, default=200_000)
    ap.add_argument("--http-batch", type=int, default=10_000, help="readings per POST")
    ap.add_argument("--http-clients", type=int, default=4)
    args = ap.parse_args()
    sources = [s for s in args.sources.split(",") if s]
    if unknown := set(sources) - set(SOURCES):
        ap.error(f"unknown sources {', '.join(sorted(unknown))}: use {', '.join(SOURCES)}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load}; engine {args.engine}", flush=True)
    runs: list[list[Figures]] = []
    with tempfile.TemporaryDirectory(prefix="lec-bench-e2e-") as tmp:
        base = Path(tmp)
        kafka, bootstrap = start_broker(args.engine, base / "kafka")
        try:
            env = setup(base, args, bootstrap)
            for run in range(max(1, args.repeat)):
                runs.append([measure(env, source, run) for source in sources])
                print_table(f"run {run + 1} (load average {os.getloadavg()[0]:.1f})", runs[-1])
        finally:
            kafka.stop()
    if len(runs) > 1:
        print_table(f"median of {len(runs)} runs", median(runs))


if __name__ == "__main__":
    main()
