"""End to end, source to Delta: readings/s of a distributor's daily CSV file over the SFTP watcher,
through `lec streams worker`, into the Delta `readings` table by the lake sink, with per-stage rates.

All three stages run at once on one Tansu broker (as in production); each stage's rate is measured on
its own output: the watcher from its start to the last ``lec.raw`` record, the streams worker over the
span of its ``lec.readings`` records (Kafka timestamps), the sink from its first to its last commit.
End to end = readings / (file dropped -> last row committed in Delta). The slowest stage bounds it.

    .venv/bin/python bench/e2e.py [--readings 200000]

MQTT (one reading per message) and HTTP batches are measured per stage by bench/connectors_mqtt.py and
bench/connectors_http.py; this script covers the file path, the one the 200k readings/s target is for.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.connectors_sftp import COMMUNITY
from bench.streams import output_span, start
from connectors.sftp.area import SftpArea
from connectors.sftp.state import IngestedFiles
from connectors.sftp.watch import SftpWatcher, WatchOptions, kafka_producer
from lakehouse.sink.config import SinkConfig
from lakehouse.sink.worker import DeltaSink
from lakehouse.tables import ANOMALIES, DEADLETTER, READINGS
from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.services import start_tansu
from streams.app import READY_LINE
from tests.support.streams import log_contains


def write_csv(path: Path, readings: int) -> int:
    """One meter's quarter-hours in order from 2020-01-01, energy only as a distributor's curve (no
    repeats: a repeat would be a duplicate)."""
    import datetime as dt

    t0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    with open(path, "w", buffering=8 << 20) as fh:
        fh.write("ts,kwh\n")
        for i in range(readings):
            t = t0 + dt.timedelta(minutes=15 * i)
            fh.write(f"{t:%Y-%m-%dT%H:%M:%SZ},{i % 1000 / 1000:.3f}\n")
    return readings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=200_000, help="lines of the daily file")
    args = ap.parse_args()
    from lec.registry import Registry, SecretStore

    with tempfile.TemporaryDirectory(prefix="lec-bench-e2e-") as tmp:
        base = Path(tmp)
        kafka, bootstrap = start_tansu(base / "kafka")
        worker = None
        try:
            settings = Settings(run_dir=base / "run")
            reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
            reg.migrate()
            (base / "community.yaml").write_text(COMMUNITY)
            reg.load_file(base / "community.yaml")
            raw, out = "e2e.raw", "e2e.readings"
            specs = (replace(READINGS, topic=out), replace(DEADLETTER, topic="e2e.deadletter"),
                     replace(ANOMALIES, topic="e2e.anomalies"))
            ensure_topics(bootstrap, (raw, out, *topics.ALL))
            worker = start("worker", settings.run_dir, bootstrap, "worker",
                           ["--app-id", "e2e-streams", "--raw-topic", raw, "--readings-topic", out])
            worker.wait_ready(lambda: log_contains(worker, READY_LINE), timeout=300)
            area = SftpArea(base / "sftp")
            area.ensure(reg.snapshot())
            src = base / "day.csv"
            n = write_csv(src, args.readings)
            sink = DeltaSink(bootstrap, str(base / "lake"), SinkConfig(commit_interval_s=1.0, commit_rows=100_000,
                                                                       maintain_interval_s=0), tables=specs)
            commits: list[float] = []
            sink_thread = threading.Thread(target=sink.run, daemon=True)
            sink_thread.start()
            state = IngestedFiles(base / "state.sqlite")
            watcher = SftpWatcher(reg, area, state, kafka_producer(bootstrap),
                                  WatchOptions(settle_s=0), raw_topic=raw)
            os.link(src, area.folder("sup-bench", "inbox", "f-bench") / "day.csv")
            t0 = time.perf_counter()
            [outcome] = watcher.scan_once()
            watch_s = time.perf_counter() - t0
            assert outcome.status == "processed", outcome
            rows = 0
            deadline = time.monotonic() + 1800
            while rows < n and time.monotonic() < deadline and sink_thread.is_alive():
                if sink.stats.rows != rows:
                    rows = sink.stats.rows
                    commits.append(time.perf_counter())
                time.sleep(0.02)
            total_s = time.perf_counter() - t0
            sink.stop()
            sink_thread.join()
            state.close()
            got, streams_s = output_span(bootstrap, out, n, timeout=600)
        finally:
            if worker is not None:
                worker.stop()
            kafka.stop()
    sink_s = (commits[-1] - commits[0]) if len(commits) > 1 else float("nan")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; file "
          f"{n:,} readings, {outcome.chunks} raw records; {rows:,} rows in Delta, {got:,} on {out}")
    print(f"{'stage':<36} {'seconds':>8} {'readings/s':>12}")
    stages = {"SFTP watcher -> lec.raw": watch_s, "streams worker -> lec.readings": streams_s,
              "lake sink -> Delta (first..last commit)": sink_s}
    for name, s in stages.items():
        print(f"{name:<36} {s:>8.1f} {n / s:>12,.0f}")
    print(f"{'end to end (file -> last Delta row)':<36} {total_s:>8.1f} {n / total_s:>12,.0f}")
    print(f"bounding stage: {min(stages, key=lambda k: n / stages[k] if stages[k] == stages[k] else 1e18)}")


if __name__ == "__main__":
    main()
