"""KPI query time for one community-year: the Spark KPI job on Sail and on JVM Spark + delta-spark
side by side (--engines), and a pandas/pyarrow baseline.

Generates a year of 15-minute readings for N devices (default 20: 16 loads + 4 PV) into a
temporary Delta lake and registry, then times (median of --runs):
- spark: ``lakehouse.kpi.jobs.compute_kpis`` at 1h for the community and every member, collected
  to pandas (every KPI: L, P, hourly shared energy, grid curves, peak/base percentiles with the
  previous-period comparison, ARERA bands, completeness, ranking);
- baseline: the same core with deltalake -> pyarrow -> pandas in one process (L, P, hourly
  shared energy, withdrawal/injection, peak/base percentiles; no bands/completeness/ranking).
Both are checked to agree on the community's totals. Prints figures and the ratio.

    .venv/bin/python bench/lake_kpi.py [--devices 20] [--days 365] [--runs 3] [--engines sail,jvm]

The JVM engine is a local Spark Connect server (lakehouse.spark.jvm); its start-up is timed
apart and its first (JIT warm-up) run is not counted.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

CID = "cer-bench"


def baseline(lake: str, owners: dict[str, str], start: datetime, end: datetime) -> pd.DataFrame:
    """Hourly community + member KPIs with pandas (the single-process way)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    t = DeltaTable(f"{lake}/readings").to_pyarrow_table(
        columns=["device_id", "ts", "energy_mwh", "account"],
        filters=[("community_id", "=", CID)])
    df = pa.table(t).to_pandas()
    df = df[(df.ts >= pd.Timestamp(start)) & (df.ts < pd.Timestamp(end)) & df.account.isin([1, 2])]
    df["member"] = df.device_id.map(owners)
    df["l"] = np.where(df.account == 1, df.energy_mwh, 0)
    df["p"] = np.where(df.account == 2, -df.energy_mwh, 0)
    df["qh"] = df.ts.dt.floor("15min")
    q = df.groupby(["member", "qh"], as_index=False)[["l", "p"]].sum()
    comm = q.groupby("qh", as_index=False)[["l", "p"]].sum()
    comm["member"] = "*"
    frames = []
    for part in (q, comm):
        part = part.copy()
        part["wd"] = (part.l - part.p).clip(lower=0)
        part["inj"] = (part.p - part.l).clip(lower=0)
        part["hour"] = part.qh.dt.floor("1h")
        part["kw"] = part.l / 1e6 * 4
        g = part.groupby(["member", "hour"])
        h = g[["l", "p", "wd", "inj"]].sum()
        h["sc"] = np.minimum(h.l, h.p)
        h["peak_kw"] = g.kw.quantile(0.975)
        h["base_kw"] = g.kw.quantile(0.025)
        frames.append(h.reset_index())
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engines", default="sail,jvm", help="comma-separated: sail, jvm")
    args = ap.parse_args()

    from lakehouse.kpi import jobs as kpi
    from lakehouse.spark.sessions import read_delta, registry_frames, session_for
    from lec.config import Settings
    from lec.registry import Registry, SecretStore, parse_community_text
    from tests.support.kpi_sample import community_yaml, synthetic_year, write_readings

    tmp = Path(tempfile.mkdtemp(prefix="lec-bench-kpi-"))
    settings = Settings(run_dir=tmp / "run")
    registry = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    registry.migrate()
    n_members = round(args.devices * 0.8)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    flows, table = synthetic_year(CID, n_members, start, args.days)
    registry.load(parse_community_text(community_yaml(CID, flows)))
    t0 = time.perf_counter()
    lake = settings.resolved_lake_uri()
    write_readings(lake, table, mode="overwrite")
    print(f"generated {table.num_rows:,} readings of {len(flows)} devices ({args.days} days) "
          f"in {time.perf_counter() - t0:.1f}s")
    end = start + pd.Timedelta(days=args.days).to_pytimedelta()
    owners = {f.device_id: f.user_id for f in flows}

    req = kpi.KpiRequest(CID, start, end, "1h", timezone="UTC", fill_gaps=False)
    req_fill = kpi.KpiRequest(CID, start, end, "1h", timezone="UTC", fill_gaps=True)

    def timed(fn) -> tuple[float, object]:
        times, out = [], None
        for _ in range(args.runs):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times), out

    results: dict[str, tuple[float, float, pd.DataFrame]] = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        t = time.perf_counter()
        spark = session_for("", engine)
        print(f"{engine}: session ready in {time.perf_counter() - t:.1f}s")
        dims = registry_frames(spark, registry)
        readings = read_delta(spark, lake, "readings")
        kpi.compute_kpis(spark, readings, dims, req).toPandas()  # warm-up (JIT, caches), not counted
        t_spark, sp = timed(lambda s=spark, r=readings, d=dims: kpi.compute_kpis(s, r, d, req).toPandas())
        t_fill, _ = timed(lambda s=spark, r=readings, d=dims: kpi.compute_kpis(s, r, d, req_fill).toPandas())
        results[engine] = (t_spark, t_fill, sp)
    t_base, bl = timed(lambda: baseline(lake, owners, start, end))
    bl_comm = bl[bl.member == "*"]
    for engine, (_, _, sp) in results.items():
        sp_comm = sp[sp.level == "community"]
        assert abs(sp_comm.consumption_kwh.sum() - bl_comm.l.sum() / 1e6) < 1e-6, engine
        assert abs(sp_comm.selfconsumption_kwh.sum() - bl_comm.sc.sum() / 1e6) < 1e-6, engine
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} "
          f"python {platform.python_version()}, cores {__import__('os').cpu_count()}")
    print(f"rows out: {', '.join(f'{e} {len(r[2]):,}' for e, r in results.items())}, baseline {len(bl):,}; "
          "community totals agree")
    for engine, (t_spark, t_fill, _) in results.items():
        print(f"spark ({engine}) KPI job, 1h, community + members:  {t_spark:7.2f} s  "
              f"({table.num_rows / t_spark:,.0f} readings/s)")
        print(f"spark ({engine}) KPI job with spline gap filling:     {t_fill:7.2f} s")
    print(f"baseline deltalake+pandas (core KPIs only):           {t_base:7.2f} s  "
          f"({table.num_rows / t_base:,.0f} readings/s)")
    for engine, (t_spark, t_fill, _) in results.items():
        print(f"ratio {engine} / baseline: {t_spark / t_base:.2f}x time; with filling {t_fill / t_base:.2f}x")
    if "sail" in results and "jvm" in results:
        print(f"ratio jvm / sail: {results['jvm'][0] / results['sail'][0]:.2f}x time; "
              f"with filling {results['jvm'][1] / results['sail'][1]:.2f}x")

if __name__ == "__main__":
    main()
