"""SFTP file ingestion throughput: the watcher (scan + chunk + envelope + produce + flush + move) on a large
CSV, beside a baseline measured in the same run: the same file cut into the same chunks and produced raw
(no envelope, no checks, no checksum) with plain confluent-kafka to the same broker.

    .venv/bin/python bench/connectors_sftp.py --size 1024     # MB of CSV (1 GB, the issue's figure)
    .venv/bin/python bench/connectors_sftp.py --size 64       # quick run
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.sftp.area import SftpArea
from connectors.sftp.state import IngestedFiles
from connectors.sftp.watch import Outcome, SftpWatcher, WatchOptions, kafka_producer
from lec.services import start_tansu

COMMUNITY = """\
community: {id: cer-bench, name: Bench}
users: [{id: u-1, name: One, wallet: "0x3000000000000000000000000000000000000001"}]
suppliers: [{id: sup-bench, name: Bench supplier, password: "bench-password"}]
devices: [{id: DEV-BENCH, user: u-1, supplier: sup-bench}]
flows:
  - {id: f-bench, device: DEV-BENCH, supplier: sup-bench, channel: sftp, syntax: csv, measurement: load,
     mapping: {ts: ts, energy: kwh, power: kw}, units: {energy: kWh, power: kW}}
"""


def write_csv(path: Path, size_mb: int) -> int:
    """A CSV of ~size_mb MB of 15-minute readings; returns the number of data lines."""
    target = size_mb * 1024 * 1024
    lines = 0
    with open(path, "wb", buffering=8 << 20) as fh:
        fh.write(b"ts,kwh,kw\n")
        written = 10
        day = 0
        while written < target:
            block = []
            for q in range(96):
                block.append(f"2024-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{q // 4:02d}:{q % 4 * 15:02d}:00Z,"
                             f"{(q * 37 + day) % 1000 / 1000:.3f},{(q * 53 + day) % 4000 / 1000:.3f}\n")
            data = "".join(block).encode() * 10  # 10 devices' worth per day keeps generation fast
            fh.write(data)
            written += len(data)
            lines += 960
            day += 1
    return lines


def ingest_file(watcher: SftpWatcher, area: SftpArea, src: Path, supplier: str, flow: str) -> tuple[Outcome, float]:
    """Drop ``src`` in the flow's upload folder (a hard link: no copy) and run one scan of the watcher:
    (its outcome, seconds until every chunk is acknowledged by Kafka and the file moved)."""
    [outcome], secs = ingest_files(watcher, area, [(src, supplier, flow)])
    return outcome, secs


def ingest_files(watcher: SftpWatcher, area: SftpArea, drops: list[tuple[Path, str, str]]
                 ) -> tuple[list[Outcome], float]:
    """Drop each (file, supplier, flow) in its upload folder, then one scan: the outcomes, and seconds until
    every file is in Kafka and moved."""
    for src, supplier, flow in drops:
        os.link(src, area.folder(supplier, "inbox", flow) / src.name)
    t0 = time.perf_counter()
    outcomes = watcher.scan_once()
    secs = time.perf_counter() - t0
    if len(outcomes) != len(drops) or any(o.status != "processed" for o in outcomes):
        raise RuntimeError(f"the watcher did not process all {len(drops)} files: {outcomes}")
    return outcomes, secs


def baseline(path: Path, bootstrap: str, chunk_bytes: int, chunk_lines: int) -> float:
    """Same chunks, produced raw with plain confluent-kafka; returns seconds."""
    from connectors.sftp.chunks import chunks
    from lec.io import Producer

    producer = Producer(bootstrap, **{"queue.buffering.max.kbytes": 65536, "message.max.bytes": 4 * 1024 * 1024})
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    for chunk in chunks(fd, chunk_bytes=chunk_bytes, chunk_lines=chunk_lines, skip_header=True):
        producer.produce("bench.baseline", chunk.payload, b"DEV-BENCH")
        producer.poll(0)
    producer.flush_or_raise(300)
    os.close(fd)
    return time.perf_counter() - t0


def cat_seconds(path: Path) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        while fh.read(1 << 20):
            pass
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="CSV size in MB (default 1024 = 1 GB)")
    parser.add_argument("--chunk-bytes", type=int, default=256 * 1024)
    parser.add_argument("--chunk-lines", type=int, default=10_000)
    args = parser.parse_args()

    from lec.registry import Registry, SecretStore

    with tempfile.TemporaryDirectory(prefix="lec-bench-sftp-") as tmp:
        base = Path(tmp)
        tansu, bootstrap = start_tansu(base / "kafka")
        try:
            reg = Registry(f"sqlite:///{base / 'registry.db'}", SecretStore(f"sqlite:///{base / 'secrets.db'}"))
            reg.migrate()
            (base / "community.yaml").write_text(COMMUNITY)
            reg.load_file(base / "community.yaml")
            area = SftpArea(base / "sftp")
            area.ensure(reg.snapshot())
            src = base / "bench.csv"
            t0 = time.perf_counter()
            n_lines = write_csv(src, args.size)
            size = src.stat().st_size
            print(f"generated {size / 1e6:.0f} MB, {n_lines} readings in {time.perf_counter() - t0:.1f}s", flush=True)
            cat_s = cat_seconds(src)

            state = IngestedFiles(base / "state.sqlite")
            watcher = SftpWatcher(reg, area, state, kafka_producer(bootstrap),
                                  WatchOptions(chunk_bytes=args.chunk_bytes, chunk_lines=args.chunk_lines,
                                               settle_s=0))
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            outcome, lec_s = ingest_file(watcher, area, src, "sup-bench", "f-bench")
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            state.close()
            base_s = baseline(src, bootstrap, args.chunk_bytes, args.chunk_lines)
        finally:
            tansu.stop()

    mb = size / 1e6
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"file: {mb:.0f} MB, {n_lines} readings, {outcome.chunks} chunks of <= {args.chunk_bytes} B / "
          f"{args.chunk_lines} lines")
    print(f"cat (page cache read):            {mb / cat_s:8.1f} MB/s")
    print(f"baseline raw chunks -> Kafka:     {mb / base_s:8.1f} MB/s  {n_lines / base_s:12,.0f} readings/s  "
          f"({base_s:.1f}s)")
    print(f"lec sftp-watch -> lec.raw:        {mb / lec_s:8.1f} MB/s  {n_lines / lec_s:12,.0f} readings/s  "
          f"({lec_s:.1f}s)")
    print(f"ratio lec / baseline:             {base_s / lec_s:8.2f}")
    print(f"max RSS growth during ingestion:  {(rss1 - rss0) / 1024:8.1f} MB (constant memory: independent of "
          f"file size)")


if __name__ == "__main__":
    main()
