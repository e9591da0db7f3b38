"""Registry load of a large community file: seconds for ``lec registry load`` of a distributor's meters.

    .venv/bin/python bench/registry_load.py [--meters 1000,10000] [--repeat 3]

The file is bench/e2e.py's community (one dso-curve-csv flow per meter, plus MQTT and HTTP flows),
loaded into a fresh SQLite registry with its secret store (one random secret per device), as
`lec registry load` does. Prints each run and the median, and meters per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import community
from lec.config import Settings
from lec.registry import Registry, SecretStore


def load_seconds(meters: int) -> float:
    with tempfile.TemporaryDirectory(prefix="lec-bench-registry-") as tmp:
        base = Path(tmp)
        settings = Settings(run_dir=base / "run")
        reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
        reg.migrate()
        path = base / "community.yaml"
        path.write_text(community(meters, 20))
        t0 = time.perf_counter()
        reg.load_file(path)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", default="1000,10000", help="comma-separated community sizes")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{'meters':>8} {'runs (s)':>28} {'median s':>9} {'meters/s':>9}")
    for meters in (int(m) for m in args.meters.split(",")):
        runs = [load_seconds(meters) for _ in range(args.repeat)]
        med = statistics.median(runs)
        print(f"{meters:>8,} {' / '.join(f'{r:.2f}' for r in runs):>28} {med:>9.2f} {meters / med:>9,.0f}", flush=True)


if __name__ == "__main__":
    main()
