"""The streams and lake sink benchmarks on Apache Kafka and on Tansu, side by side in one run.

Runs ``bench/streams.py`` and ``bench/lake_sink.py`` once per engine (``--engine kafka|tansu``,
interleaved so both see the same machine load), then prints each figure with the ratio
Apache Kafka / Tansu.

    .venv/bin/python bench/engines.py [--streams-args "--cases a,b --workers 1 --scale 0.5"]
                                      [--lake-args "--readings 100000 --no-hdfs"]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("kafka", "tansu")


def run(script: str, engine: str, extra: str) -> str:
    cmd = [sys.executable, str(ROOT / "bench" / script), "--engine", engine, *shlex.split(extra)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr[-3000:]}")
    return r.stdout


def streams_rates(out: str) -> dict[str, float]:
    """case/workers -> readings/s of the worker (first figure of each result line)."""
    rates = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s+([\d,]+)\s+([\d,]+)", line)
        if m and m.group(1) != "median":
            rates[f"streams case {m.group(1)}, {m.group(2)} worker(s)"] = float(m.group(3).replace(",", ""))
    return rates


def lake_rates(out: str) -> dict[str, float]:
    """target -> sink readings/s."""
    rates = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"[\d,]+", cells[1] or "x"):
            rates[f"lake sink, {cells[0]}"] = float(cells[1].replace(",", ""))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams-args", default="--cases a,b --workers 1")
    ap.add_argument("--lake-args", default="--readings 100000 --commit-rows 50000 --no-hdfs")
    args = ap.parse_args()
    figures: dict[str, dict[str, float]] = {e: {} for e in ENGINES}
    for engine in ENGINES:
        out = run("streams.py", engine, args.streams_args)
        print(f"--- streams.py --engine {engine}\n{out}", flush=True)
        figures[engine].update(streams_rates(out))
    for engine in ENGINES:
        out = run("lake_sink.py", engine, args.lake_args)
        print(f"--- lake_sink.py --engine {engine}\n{out}", flush=True)
        figures[engine].update(lake_rates(out))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("| figure (readings/s) | Apache Kafka 4.4 | Tansu | Kafka / Tansu |")
    print("|---|---|---|---|")
    for name, kafka in figures["kafka"].items():
        tansu = figures["tansu"].get(name)
        ratio = f"{kafka / tansu:.2f}" if tansu else "n/a"
        print(f"| {name} | {kafka:,.0f} | {tansu or 0:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
