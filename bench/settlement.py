"""Settling a 1,000-member community-month on Spark, against the plain-Python reference.

    .venv/bin/python bench/settlement.py [--members 1000] [--plants 200] [--month 2026-05] [--engine sail|jvm] [--remote sc://…]

Synthetic community: ``--members`` members, each with a grid point read every quarter-hour
(withdrawal; every 10th point also injects at midday), ``--plants`` PV plants owned by members,
spread over 8 primary substations in 2 market zones; a month of readings (2,976 quarter-hours in
May 2026) written to a Delta table ``readings``; hourly prices for both zones. Times: the Spark
job (device hours, perimeters, attribution, TIP, member days) + finalise + digest, then the
plain-Python reference on the same readings, which must give the same summary. Engine: the
in-process Sail server, ``--engine jvm`` (a local JVM Spark Connect server with delta-spark,
lakehouse.spark.jvm; its start is not timed), or any Spark Connect URL with ``--remote``. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lakehouse.settlement.compute import device_hours, finalise, hourly
from lakehouse.settlement.inputs import inputs_digest
from lakehouse.settlement.model import Assignment, Month, Plant, Reading, SettlementInputs
from lakehouse.settlement.rules import StatuteRule
from lakehouse.tables import READINGS_SCHEMA

QH = 900


def community(members: int, plants: int, month: Month) -> SettlementInputs:
    owners, wallets, assignments, plant_terms = {}, {}, [], {}
    for m in range(members):
        uid = f"u{m:05d}"
        wallets[uid] = "0x" + f"{m + 1:040x}"
        sub = f"CP{m % 8}"
        zone = "NORD" if m % 8 < 5 else "CNOR"
        owners[f"pod{m:05d}"] = uid
        assignments.append(Assignment(f"pod{m:05d}", sub, zone, "Lombardia" if zone == "NORD" else "Lazio"))
    for p in range(plants):
        m = (p * 5) % members
        dev = f"pv{p:04d}"
        owners[dev] = f"u{m:05d}"
        a = assignments[m]
        assignments.append(Assignment(dev, a.substation, a.zone, a.region))
        plant_terms[dev] = Plant(dev, date(2022 + p % 3, 1 + p % 12, 1), [6.0, 150.0, 450.0, 900.0][p % 4], "pv",
                                 p % 7 == 0)
    hours = month.hours()
    rng = np.random.default_rng(7)
    prices = {(z, h): int(rng.integers(40_000_000, 200_000_000)) for z in ("NORD", "CNOR") for h in hours}
    rules = [StatuteRule(1, date(2024, 1, 1), 4000, 4500, 1000, 300, 200)]
    return SettlementInputs("bench", month, owners, wallets, assignments, plant_terms, rules, prices)


def readings(inputs: SettlementInputs, members: int, plants: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """Arrow table in the sink's layout, plus the columns for the Python reference."""
    start, end = inputs.month.bounds()
    ts = np.arange(start, end, QH, dtype=np.int64)
    n_qh = len(ts)
    local_h = ((ts + 7200) // 3600) % 24
    sun = np.clip(np.sin((local_h - 6) / 14 * np.pi), 0, None)
    rng = np.random.default_rng(11)
    devs, kinds, tss, energy = [], [], [], []
    for m in range(members):
        base = rng.integers(50_000, 400_000, n_qh)
        e = base - (sun * 600_000 * (m % 10 == 0)).astype(np.int64)   # every 10th point injects at midday
        devs.append(np.full(n_qh, m, np.int32))
        kinds.append(np.zeros(n_qh, np.int8))
        tss.append(ts)
        energy.append(e)
    for p in range(plants):
        kw = inputs.plants[f"pv{p:04d}"].power_kw
        e = -(sun * kw * 250_000 * rng.uniform(0.6, 1.0, n_qh)).astype(np.int64)   # kW x 0.25 h in mWh
        devs.append(np.full(n_qh, members + p, np.int32))
        kinds.append(np.ones(n_qh, np.int8))
        tss.append(ts)
        energy.append(e)
    cols = {"dev": np.concatenate(devs), "kind": np.concatenate(kinds), "ts": np.concatenate(tss),
            "e": np.concatenate(energy)}
    names = np.array([f"pod{m:05d}" for m in range(members)] + [f"pv{p:04d}" for p in range(plants)], dtype=object)
    n = len(cols["ts"])
    is_pv = cols["kind"] == 1
    ts_arr = pa.array(cols["ts"] * 1_000_000, pa.timestamp("us", tz="UTC"))
    data = {
        "community_id": pa.array(["bench"] * n), "date": pa.compute.cast(ts_arr, pa.date32()),
        "supplier_id": pa.array(["sup"] * n), "device_id": pa.array(names[cols["dev"]]),
        "flow_id": pa.array(names[cols["dev"]]), "ts": ts_arr, "interval_s": pa.array(np.full(n, QH, np.int64)),
        "energy_mwh": pa.array(cols["e"]), "measurement": pa.array(np.where(is_pv, "production", "grid")),
        "account": pa.array(np.where(is_pv, 2, 0).astype(np.int64)),
    }
    table = pa.table({f.name: data[f.name] if f.name in data else pa.nulls(n, f.type) for f in READINGS_SCHEMA},
                     schema=READINGS_SCHEMA)
    cols["names"] = names
    return table, cols


def python_readings(cols: dict[str, np.ndarray]) -> Iterator[Reading]:
    names, kinds = cols["names"], ("grid", "production")
    for d, k, t, e in zip(cols["dev"].tolist(), cols["kind"].tolist(), cols["ts"].tolist(), cols["e"].tolist()):
        yield Reading(names[d], kinds[k], t, e)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--plants", type=int, default=200)
    ap.add_argument("--month", default="2026-05")
    ap.add_argument("--engine", choices=["sail", "jvm"], default="sail", help="local engine when --remote is empty")
    ap.add_argument("--remote", default="", help="Spark Connect URL; empty = a local server of --engine")
    ap.add_argument("--skip-python", action="store_true")
    args = ap.parse_args()
    from deltalake import write_deltalake

    from lakehouse.settlement.job import run_hourly
    from lakehouse.spark.sessions import read_delta, session_for

    month = Month.parse(args.month)
    inputs = community(args.members, args.plants, month)
    table, cols = readings(inputs, args.members, args.plants)
    out: dict[str, object] = {"members": args.members, "plants": args.plants, "readings": table.num_rows,
                              "quarter_hours": len(month.hours()) * 4, "engine": args.remote or args.engine}
    with tempfile.TemporaryDirectory() as tmp:
        lake = str(Path(tmp) / "lake")
        write_deltalake(f"{lake}/readings", table, partition_by=["community_id", "date"])
        spark = session_for(args.remote, args.engine)
        t0 = time.perf_counter()
        got, dh = run_hourly(spark, read_delta(spark, lake, "readings"), inputs, f"{tmp}/work")
        t1 = time.perf_counter()
        result = finalise(inputs, got)
        digest = inputs_digest(inputs, dh)
        t2 = time.perf_counter()
        out.update(spark_job_s=round(t1 - t0, 1), finalise_and_digest_s=round(t2 - t1, 1),
                   spark_total_s=round(t2 - t0, 1), readings_per_s_spark=round(table.num_rows / (t2 - t0)),
                   total_cents=result.summary["total_cents"], shared_kwh=result.summary["shared_mwh"] / 1e6)
        if not args.skip_python:
            t3 = time.perf_counter()
            dh_ref = device_hours(python_readings(cols), month.hours())
            ref = finalise(inputs, hourly(inputs, dh_ref))
            t4 = time.perf_counter()
            same = ref.summary == result.summary and ref.members == result.members
            out.update(python_reference_s=round(t4 - t3, 1), speedup_vs_python=round((t4 - t3) / (t2 - t0), 2),
                       same_result=same, digest_equal=inputs_digest(
                           inputs, [(d, h, w, i) for (d, h), (w, i) in dh_ref.items()]) == digest)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
