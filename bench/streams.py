"""Readings/s through the streams worker (validate-normalise-sign) beside a Faust pass-through.

For each case it starts a fresh Tansu broker, loads the test community, starts `lec streams
worker` (1 or 2 processes in one group) and, in the same run, `lec streams passthrough` (same
Faust consumer, same fast producer, no processing) on the same input, produces the input, and
times the outputs by their Kafka timestamps (first to last output record).

Cases: (a) one reading per source message, 100 source messages packed per raw record (as the
connectors pack them); (a1) one reading per raw record (Faust's per-record cost, for reference);
(b) 1,000 readings per source message.

    .venv/bin/python bench/streams.py [--scale 1.0] [--cases a,a1,b] [--workers 1,2] [--repeat 1]

With ``--repeat N`` each case runs N times (a fresh broker each time) and a ``median`` line follows.

``--stages`` instead times, in this process on case (b)'s records, what each reading costs per stage
(envelope decode, payload decode with orjson and with Arrow's columnar JSON reader, the whole
pipeline with and without its columnar path, one ``Producer.produce`` call per output record against a local Tansu): what bounds a
single worker, whatever the processing does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from lec.config import Settings
from lec.io import replay
from lec.kafka import ensure_topics
from lec.procs import ManagedProcess
from lec.services import start_broker
from streams.app import READY_LINE
from streams.process import Processor
from tests.support.streams import bulk_envelopes, cli, load_test_registry, log_contains, produce

ENGINE = "kafka"  # --engine: the Kafka engine of the fresh broker (bench/engines.py runs both)

CASES = {  # name: (raw records, source messages per record, readings per source message, batch size)
    "a": (1000, 100, 1, 100),
    "a1": (10000, 1, 1, 2000),
    "b": (200, 1, 1000, 10),
}


def output_span(bootstrap: str, topic: str, expected: int, timeout: float) -> tuple[int, float]:
    """(records seen, seconds between first and last output record timestamps)."""
    n, first, last = output_times(bootstrap, topic, expected, timeout)
    return n, last - first


def output_times(bootstrap: str, topic: str, expected: int, timeout: float) -> tuple[int, float, float]:
    """(records seen, first and last record timestamps in epoch seconds; nan if none), reading until
    ``expected`` records or ``timeout``."""
    n, first, last = 0, None, None
    for msgs in replay(bootstrap, topic, timeout=timeout, batch=20000, poll_s=0.2):
        for msg in msgs:
            n += 1
            ts = msg.timestamp()[1]
            first = ts if first is None else min(first, ts)
            last = ts if last is None else max(last, ts)
        if n >= expected:
            break
    if first is None or last is None:
        return n, float("nan"), float("nan")
    return n, first / 1000.0, last / 1000.0


def start(kind: str, run_dir: Path, bootstrap: str, name: str, args: list[str]) -> ManagedProcess:
    env = {"LEC_RUN_DIR": str(run_dir), "LEC_KAFKA_BOOTSTRAP": bootstrap}
    return ManagedProcess(name, [*cli(), kind, *args], run_dir / "logs" / f"{name}.log", env=env)


def settings_snapshot(settings: Settings) -> object:
    from lec.registry import open_registry

    return open_registry(settings, migrate=False).snapshot()


def run_case(case: str, workers: int, scale: float, root: Path) -> tuple[float, float, float]:
    records_n, items, per_item, batch = CASES[case]
    records_n = max(workers * 4, int(records_n * scale))
    # a fresh folder per run: a repeat in the same folder restarted the broker on the previous run's
    # topics, so its "outputs" were the first run's records again (identical figures)
    work = Path(tempfile.mkdtemp(prefix=f"{case}-{workers}-", dir=root))
    kafka, bootstrap = start_broker(ENGINE, work / "kafka")
    procs: list[ManagedProcess] = []
    try:
        settings = Settings(run_dir=work / "run")
        load_test_registry(settings)
        raw_topic, out_topic, pass_in, pass_out = "bench.raw", "bench.readings", "bench.pass.raw", "bench.pass.out"
        ensure_topics(bootstrap, (raw_topic, out_topic, pass_in, pass_out))
        for w in range(workers):
            procs.append(start("worker", work / "run", bootstrap, f"worker-{w}",
                               ["--app-id", "bench-streams", "--raw-topic", raw_topic, "--readings-topic", out_topic,
                                "--batch-size", str(batch)]))
            procs.append(start("passthrough", work / "run", bootstrap, f"pass-{w}",
                               ["--app-id", "bench-pass", "--raw-topic", pass_in, "--out-topic", pass_out,
                                "--batch-size", str(batch)]))
        for p in procs:
            p.wait_ready(lambda p=p: log_contains(p, READY_LINE), timeout=180)
        time.sleep(3 if workers > 1 else 0.5)
        records, expected = bulk_envelopes(records_n, per_item, items, prefix=f"{case}{workers}")
        readings = len(expected)
        produce(bootstrap, pass_in, records)
        n_pass, span_pass = output_span(bootstrap, pass_out, len(records), timeout=600)
        produce(bootstrap, raw_topic, records)
        n_out, span = output_span(bootstrap, out_topic, readings, timeout=600)
        if n_out < readings or n_pass < len(records):
            raise RuntimeError(f"{case}: got {n_out}/{readings} readings, {n_pass}/{len(records)} pass-through")
        # a span of one flush is ~0 s: floor at 1 ms to keep the ratio finite
        rate = readings / max(span, 1e-3)
        pass_rate = readings / max(span_pass, 1e-3)
        # the pure pipeline on the same records in this process: what bounds the worker
        proc = Processor.from_settings(settings_snapshot(settings), settings)
        t0 = time.perf_counter()
        proc.process_batch(records)
        inproc = readings / (time.perf_counter() - t0)
        return rate, pass_rate, inproc
    finally:
        for p in procs:
            p.stop()
        kafka.stop()


def row_paths(proc: Processor) -> Processor:
    """The processor without its columnar path (streams/columnar.py): the row paths' baseline."""
    proc.columnar_min_rows = 10**9
    return proc


def stages(repeat: int) -> None:
    """Microseconds per reading of each stage (medians of ``repeat``), case (b)'s records."""
    import base64
    import io

    import orjson
    import pyarrow.json as pj

    from lec.io import Producer


    root = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    kafka, bootstrap = start_broker(ENGINE, root / "kafka")
    try:
        settings = Settings(run_dir=root / "run", kafka_bootstrap=bootstrap)
        snapshot = load_test_registry(settings).snapshot()
        records, _ = bulk_envelopes(200, 1000, prefix="st")
        n = 200 * 1000
        payloads = [base64.b64decode(orjson.loads(v)["items"][0]["payload_b64"]) for _, v in records]
        ndjson = [b"\n".join(orjson.dumps(r) for r in orjson.loads(p)["readings"]) for p in payloads]
        outputs = [v for _, v in Processor.from_settings(snapshot, settings).process_batch(records).readings]
        ensure_topics(bootstrap, ("bench-stage",))
        producer = Producer(bootstrap, **{"linger.ms": 5, "queue.buffering.max.messages": 1_000_000,
                                          "queue.buffering.max.kbytes": 1_048_576})

        def produce_all() -> None:
            producer.produce_all("bench-stage", ((b"DEV", v) for v in outputs))
            producer.flush_or_raise(60)

        work = {
            "envelope decode (orjson + base64)": lambda: [base64.b64decode(orjson.loads(v)["items"][0]["payload_b64"])
                                                          for _, v in records],
            "payload decode, orjson (rows as dicts)": lambda: [orjson.loads(p) for p in payloads],
            "payload decode, pyarrow.json (columns)": lambda: [pj.read_json(io.BytesIO(x)) for x in ndjson],
            "whole pipeline, row paths only": lambda: row_paths(Processor.from_settings(snapshot, settings))
            .process_batch(records),
            "whole pipeline (Processor.process_batch)": lambda: Processor.from_settings(snapshot, settings)
            .process_batch(records),
            "produce() + flush, one call per reading": produce_all,
        }
        print(f"{'stage (case b: 200 x 1,000 readings)':<44} {'us/reading':>10} {'readings/s':>12}")
        for name, fn in work.items():
            runs = []
            for _ in range(max(1, repeat)):
                t0 = time.perf_counter()
                fn()
                runs.append((time.perf_counter() - t0) / n * 1e6)
            us = statistics.median(runs)
            print(f"{name:<44} {us:>10.2f} {1e6 / us:>12,.0f}", flush=True)
    finally:
        kafka.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the number of raw records")
    ap.add_argument("--cases", default="a,a1,b")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; prints each and the median")
    ap.add_argument("--engine", default="kafka", choices=["kafka", "tansu"], help="Kafka engine")
    ap.add_argument("--stages", action="store_true", help="per-stage cost per reading, in this process")
    args = ap.parse_args()
    global ENGINE
    ENGINE = args.engine
    if args.stages:
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        stages(args.repeat)
        return
    root = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'case':<5} {'workers':>7} {'readings/s':>12} {'pass-through readings/s':>24} {'ratio':>6} "
          f"{'pipeline in-process readings/s':>31}")
    try:
        for case in args.cases.split(","):
            for workers in map(int, args.workers.split(",")):
                runs = []
                for _ in range(max(1, args.repeat)):
                    rate, pass_rate, inproc = run_case(case, workers, args.scale, root)
                    runs.append((rate, pass_rate, inproc))
                    print(f"{case:<5} {workers:>7} {rate:>12,.0f} {pass_rate:>24,.0f} {rate / pass_rate:>6.2f} "
                          f"{inproc:>31,.0f}", flush=True)
                if len(runs) > 1:
                    rate, pass_rate, inproc = (statistics.median(col) for col in zip(*runs))
                    print(f"{'median':<5} {workers:>7} {rate:>12,.0f} {pass_rate:>24,.0f} {rate / pass_rate:>6.2f} "
                          f"{inproc:>31,.0f}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
