"""Readings/s of the named formats through the pipeline (Processor, in process), beside the generic path.

Same run, same readings: (1) a distributor's monthly load curve (``dso-curve-csv``: one row per POD
and day, 96 values, decimal comma) against the same quarter-hours as a generic CSV (one reading a
line, ``ts;kwh``); (2) Chain 2 JSON (one message per quarter-hour with the last and previous
quarter-hour registers of both directions) against a generic JSON batch of the same registers
(cumulative flow, one direction). Median of ``--repeat`` runs, each on a fresh Processor.

    .venv/bin/python bench/formats.py [--pods 20] [--days 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from lec.config import Settings
from streams.formats.common import day_span, iso_z
from streams.process import Processor
from tests.support.streams import envelope, item, load_test_registry

T0 = 1456786800   # 2016-03-01T00:00 Europe/Rome


def community(pods: int) -> str:
    lines = ["community: {id: cer-bench, name: Bench, timezone: Europe/Rome}",
             "users: [{id: u-1, name: U, wallet: \"0x5000000000000000000000000000000000000001\"}]",
             "suppliers: [{id: sup-dso, name: DSO}, {id: sup-c2, name: C2}]", "devices:"]
    lines += [f"  - {{id: IT001E{i:08d}, user: u-1, supplier: sup-dso}}" for i in range(pods)]
    lines += [f"  - {{id: IT001E{90000000 + i:08d}, user: u-1, supplier: sup-dso}}" for i in range(pods)]
    lines += ["  - {id: IT001E99999999, user: u-1, supplier: sup-c2}", "  - {id: C2-JSON, user: u-1, supplier: sup-c2}",
              "flows:"]
    lines += [f"  - {{id: dso-{i}, device: IT001E{i:08d}, supplier: sup-dso, channel: sftp, syntax: dso-curve-csv, "
              "measurement: load, syntax_options: {directions: [withdrawal]}}" for i in range(pods)]
    lines += [f"  - {{id: csv-{i}, device: IT001E{90000000 + i:08d}, supplier: sup-dso, channel: sftp, syntax: csv, "
              "measurement: load, units: {energy: kWh}, mapping: {ts: ts, energy: kwh}, "
              "syntax_options: {delimiter: ';', decimal_comma: true}}" for i in range(pods)]
    lines += ["  - {id: c2-w, device: IT001E99999999, supplier: sup-c2, channel: mqtt, syntax: chain2, measurement: grid}",
              "  - {id: c2-i, device: IT001E99999999, supplier: sup-c2, channel: mqtt, syntax: chain2, measurement: grid,"
              " sign_convention: generator}",
              "  - {id: json-cum, device: C2-JSON, supplier: sup-c2, channel: mqtt, syntax: json, measurement: grid,"
              " value_kind: cumulative, units: {energy: Wh}, mapping: {ts: ts, energy: reg}}"]
    return "\n".join(lines) + "\n"


def curve_items(pods: int, days: int) -> tuple[list[bytes], list[bytes], int]:
    """(dso envelopes, generic csv envelopes, readings): one item per POD holding its month."""
    from datetime import date, timedelta

    dso, gen, n = [], [], 0
    for p in range(pods):
        rows, lines = [], ["ts;kwh"]
        for d in range(days):
            day = date(2016, 3, 1) + timedelta(days=d)
            start, qh = day_span(day, "Europe/Rome")
            vals = [f"0,{(p + d + k) % 900 + 100}" for k in range(qh)]
            rows.append(f"IT001E{p:08d};{day:%d/%m/%Y};PRELIEVO;" + ";".join(vals))
            lines += [f"{iso_z(start + 900 * k)};{v}" for k, v in enumerate(vals)]
            n += qh
        dso.append(envelope([item("\n".join(rows).encode(), f"dso-{p}", flow=f"dso-{p}", device=f"IT001E{p:08d}",
                                  received_ts="2016-04-02T00:00:00.000Z")], channel="sftp", supplier="sup-dso",
                            community="cer-bench"))
        gen.append(envelope([item("\n".join(lines).encode(), f"csv-{p}", flow=f"csv-{p}",
                                  device=f"IT001E{90000000 + p:08d}", received_ts="2016-04-02T00:00:00.000Z")],
                            channel="sftp", supplier="sup-dso", community="cer-bench"))
    return dso, gen, n


def chain2_items(messages: int) -> tuple[list[bytes], list[bytes], int]:
    """Chain 2 messages (2 directions x last/previous) vs generic JSON registers (1 direction, no repeat)."""
    c2, js = [], []
    w, i = 10_000_000, 1_000_000
    for k in range(messages):
        end = T0 + 900 * (k + 1)
        msg = {"pod": "IT001E99999999", "ts": end + 7, "qh": {
            "last": {"end": end, "1-0:1.8.0": w + 100 * (k + 1), "1-0:2.8.0": i + 50 * (k + 1)},
            "previous": {"end": end - 900, "1-0:1.8.0": w + 100 * k, "1-0:2.8.0": i + 50 * k}}}
        c2.append(envelope([item(orjson.dumps(msg), f"c2-{k}", flow="c2-w", device="IT001E99999999",
                                 received_ts="2016-04-02T00:00:00.000Z")], supplier="sup-c2", community="cer-bench"))
        js.append(envelope([item(orjson.dumps({"ts": iso_z(end), "reg": w + 100 * (k + 1)}), f"js-{k}",
                                 flow="json-cum", device="C2-JSON", received_ts="2016-04-02T00:00:00.000Z")],
                           supplier="sup-c2", community="cer-bench"))
    return c2, js, messages


def rate(snapshot, envelopes: list[bytes]) -> tuple[float, int]:
    proc = Processor(snapshot)
    t = time.perf_counter()
    readings = 0
    for env in envelopes:
        readings += len(proc.process_envelope(env).readings)
    return readings / (time.perf_counter() - t), readings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = load_test_registry(Settings(run_dir=Path(tmp)), community(a.pods)).snapshot()
    dso, gen, n = curve_items(a.pods, a.days)
    c2, js, m = chain2_items(a.messages)
    results: dict[str, list[float]] = {k: [] for k in ("dso-curve-csv", "csv", "chain2", "json-cumulative")}
    for _ in range(a.repeat):
        for name, envs in (("dso-curve-csv", dso), ("csv", gen), ("chain2", c2), ("json-cumulative", js)):
            r, count = rate(snapshot, envs)
            results[name].append(r)
            print(f"{name:16s} {count:7d} readings  {r:9.0f} readings/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"median readings/s: {', '.join(f'{k} {v:.0f}' for k, v in med.items())}")
    print(f"ratio dso-curve-csv / csv: {med['dso-curve-csv'] / med['csv']:.2f}; "
          f"chain2 / json-cumulative: {med['chain2'] / med['json-cumulative']:.2f} "
          f"({n} curve readings, {m} Chain 2 messages = {2 * m} readings)")


if __name__ == "__main__":
    main()
