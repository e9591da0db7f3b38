"""Benchmark of the Delta sink: readings/s from Kafka into Delta, and latency to queryable.

    .venv/bin/python bench/lake_sink.py [--readings 200000] [--commit-rows 50000] [--no-hdfs]

For local disk and for a real HDFS (started here), it measures:
- sink: `DeltaSink` consuming N canonical readings from a real Tansu broker into `readings`
  (JSON parse, Arrow, partitioned Delta commits with txn offsets), from partition assignment
  until all N are committed (commits by size: N is a multiple of --commit-rows);
- ceiling: a plain `deltalake.write_deltalake` append of the same Arrow batches (no Kafka, no
  parsing), in the same run: the ratio sink/ceiling is the figure to read;
- floors, what the sink cannot go below on the same broker: reading the same records from Kafka
  alone (confluent consumer, values touched, nothing else), and reading plus the JSON -> Arrow
  decode the sink does (`convert`), both in batches of --commit-rows;
- latency: one reading produced every 100 ms while the sink runs (commit interval 1 s); time
  from produce to the reading being returned by a Delta query (p50/p95/max).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lakehouse.sink.config import SinkConfig
from lakehouse.sink.convert import Batch, convert
from lakehouse.sink.worker import DeltaSink
from lakehouse.tables import ANOMALIES, DEADLETTER, READINGS, open_table, query, table_uri
from tests.support.sink_sample import produce, sample_readings


def _specs() -> tuple:
    tag = uuid.uuid4().hex[:8]
    return tuple(replace(s, topic=f"{s.topic}.{tag}") for s in (READINGS, DEADLETTER, ANOMALIES))


def sink_rate(bootstrap: str, root: str, n: int, commit_rows: int) -> tuple[float, int]:
    specs = _specs()
    produce(bootstrap, sample_readings(n, devices=200, days=2), specs[0].topic)
    sink = DeltaSink(bootstrap, root, SinkConfig(commit_interval_s=1.0, commit_rows=commit_rows,
                                                 maintain_interval_s=0), tables=specs)
    worker = threading.Thread(target=sink.run)
    worker.start()
    while len(sink._assigned) < 12:  # start the clock once partitions are assigned (startup excluded)
        time.sleep(0.001)
    start = time.perf_counter()
    while sink.stats.rows < n:
        time.sleep(0.01)
        if not worker.is_alive():
            raise RuntimeError("sink stopped early")
    elapsed = time.perf_counter() - start
    sink.stop()
    worker.join()
    return n / elapsed, sink.stats.commits


def read_rates(bootstrap: str, n: int, commit_rows: int) -> tuple[float, float]:
    """readings/s of reading the sink's input from Kafka alone, and of reading plus decoding it."""
    from lec.io.reader import replay

    topic = _specs()[0].topic
    produce(bootstrap, sample_readings(n, devices=200, days=2), topic)
    rates = []
    for decode in (False, True):
        got, start, batch = 0, None, Batch()
        for msgs in replay(bootstrap, topic, to_end=True, batch=min(20_000, commit_rows)):
            if start is None and msgs:
                start = time.perf_counter()  # from the first record, as the sink's clock
            for m in msgs:
                batch.add(m.partition(), m.offset(), m.value())
            got += len(msgs)
            if decode and (len(batch) >= commit_rows or got >= n):
                convert(READINGS, batch)
            if len(batch) >= commit_rows:
                batch = Batch()
        if got != n or start is None:
            raise RuntimeError(f"read {got} of {n} records")
        rates.append(n / (time.perf_counter() - start))
    return rates[0], rates[1]


def ceiling_rate(root: str, n: int, commit_rows: int) -> float:
    """The same Arrow batches appended with deltalake directly (conversion done beforehand)."""
    import orjson
    from deltalake import write_deltalake

    values = [orjson.dumps(r) for r in sample_readings(n, devices=200, days=2)]
    batches = []
    for i in range(0, n, commit_rows):
        chunk = values[i:i + commit_rows]
        table, _ = convert(READINGS, Batch([0] * len(chunk), list(range(i, i + len(chunk))), chunk))
        batches.append(table)
    uri = f"{root}/ceiling-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    for b in batches:
        write_deltalake(uri, b, mode="append", partition_by=list(READINGS.partition_by))
    return n / (time.perf_counter() - start)


def latency(bootstrap: str, root: str, count: int = 60) -> list[float]:
    specs = _specs()
    sink = DeltaSink(bootstrap, root, SinkConfig(commit_interval_s=1.0, commit_rows=100_000,
                                                 maintain_interval_s=0), tables=specs)
    worker = threading.Thread(target=sink.run)
    worker.start()
    produce(bootstrap, sample_readings(1, start=10**9), specs[0].topic)  # create the table first
    uri = table_uri("readings", root=root)
    while open_table(uri) is None:
        time.sleep(0.05)
    sent: dict[str, float] = {}

    def producer() -> None:
        import orjson

        from lec.io import Producer

        p = Producer(bootstrap, **{"linger.ms": 0})
        for r in sample_readings(count):
            sent[r["message_id"]] = time.perf_counter()
            p.produce(specs[0].topic, orjson.dumps(r), key=r["device_id"].encode())
            p.poll(0)
            time.sleep(0.1)
        p.flush(10)

    feeder = threading.Thread(target=producer)
    feeder.start()
    seen: dict[str, float] = {}
    dt = open_table(uri)
    version = dt.version()
    deadline = time.perf_counter() + count * 0.1 + 30
    while len(seen) < count and time.perf_counter() < deadline:
        dt.update_incremental()
        if dt.version() != version:
            version = dt.version()
            now = time.perf_counter()
            ids = query("SELECT message_id FROM t", {"t": dt}).column("message_id").to_pylist()
            for mid in ids:
                if mid in sent and mid not in seen:
                    seen[mid] = now
        time.sleep(0.02)
    feeder.join()
    sink.stop()
    worker.join()
    return [seen[m] - sent[m] for m in seen]


def dedup_cost(root: str, n: int, commit_rows: int) -> dict[str, float]:
    """The sink's re-emission check (KeyIndex: message ids of the touched partitions) per batch,
    warm (index kept between commits) and cold (partitions re-read from the table), against the
    Delta append of the same batch, on a table growing batch by batch (no Kafka)."""
    import orjson
    from deltalake import write_deltalake

    from lakehouse.sink.worker import KeyIndex

    uri = f"{root}/dedup-{uuid.uuid4().hex[:6]}"
    warm_index = KeyIndex(READINGS, "message_id")
    warm = cold = append = 0.0
    for i in range(0, n, commit_rows):
        values = [orjson.dumps(r) for r in sample_readings(commit_rows, devices=200, days=2, start=i)]
        table, _ = convert(READINGS, Batch([0] * commit_rows, list(range(i, i + commit_rows)), values))
        dt = open_table(uri)
        t0 = time.perf_counter()
        KeyIndex(READINGS, "message_id").fresh(table, dt)
        t1 = time.perf_counter()
        table, _ = warm_index.fresh(table, dt)
        t2 = time.perf_counter()
        write_deltalake(dt if dt is not None else uri, table, mode="append", partition_by=list(READINGS.partition_by))
        t3 = time.perf_counter()
        cold, warm, append = cold + t1 - t0, warm + t2 - t1, append + t3 - t2
    batches = n // commit_rows
    return {"warm": warm / batches, "cold": cold / batches, "append": append / batches}


def run(target: str, root: str, bootstrap: str, n: int, commit_rows: int) -> dict[str, object]:
    ceiling = ceiling_rate(root, n, commit_rows)  # first: also warms up imports for both
    rate, commits = sink_rate(bootstrap, root, n, commit_rows)
    read, decode = read_rates(bootstrap, n, commit_rows)
    lat = sorted(latency(bootstrap, root))
    return {"target": target, "sink": rate, "commits": commits, "ceiling": ceiling, "ratio": rate / ceiling,
            "read": read, "decode": decode,
            "p50": statistics.median(lat), "p95": lat[int(len(lat) * 0.95) - 1], "max": lat[-1], "lat_n": len(lat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--commit-rows", type=int, default=50_000)
    parser.add_argument("--no-hdfs", action="store_true")
    parser.add_argument("--dedup-only", action="store_true", help="only the re-emission check's cost per batch")
    parser.add_argument("--engine", default="kafka", choices=["kafka", "tansu"], help="Kafka engine")
    args = parser.parse_args()
    if args.readings % args.commit_rows:
        parser.error("--readings must be a multiple of --commit-rows (no wait for the commit interval)")
    if args.dedup_only:
        d = dedup_cost(tempfile.mkdtemp(prefix="lec-bench-dedup-"), args.readings, args.commit_rows)
        print(f"re-emission check per batch of {args.commit_rows} rows ({args.readings} readings): "
              f"warm {d['warm'] * 1000:.0f} ms, cold {d['cold'] * 1000:.0f} ms; Delta append of the batch "
              f"{d['append'] * 1000:.0f} ms; warm/append {d['warm'] / d['append']:.2f}")
        return
    from lec.services import start_broker

    work = Path(tempfile.mkdtemp(prefix="lec-bench-lake-"))
    kafka, bootstrap = start_broker(args.engine, work / "kafka")
    results = []
    try:
        results.append(run("local disk", str(work / "lake"), bootstrap, args.readings, args.commit_rows))
        if not args.no_hdfs:
            from tests.support.hdfs import hdfs_cluster

            with hdfs_cluster(work / "hdfs") as url:
                results.append(run("HDFS (1 NameNode + 1 DataNode, loopback)", f"{url}/lake", bootstrap,
                                   args.readings, args.commit_rows))
    finally:
        kafka.stop()
    print(f"engine: {args.engine}; machine: {platform.node()} {platform.machine()} {platform.python_version()}; "
          f"{args.readings} readings, commits of <= {args.commit_rows} rows")
    print("| target | sink readings/s | commits | ceiling: plain deltalake append, readings/s | sink/ceiling "
          "| latency to queryable p50 / p95 / max (s), commit interval 1 s "
          "| floors: Kafka read alone / read + JSON decode, readings/s (/ ceiling) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['target']} | {r['sink']:,.0f} | {r['commits']} | {r['ceiling']:,.0f} | {r['ratio']:.2f} "
              f"| {r['p50']:.2f} / {r['p95']:.2f} / {r['max']:.2f} (n={r['lat_n']}) "
              f"| {r['read']:,.0f} ({r['read'] / r['ceiling']:.2f}) / {r['decode']:,.0f} "
              f"({r['decode'] / r['ceiling']:.2f}) |")


if __name__ == "__main__":
    main()
