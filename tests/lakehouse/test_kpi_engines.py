"""One lake, two Spark engines: the KPI job gives the same results on Sail and on JVM Spark +
delta-spark, at every resolution, with and without gap filling.

Tolerance: energies are sums of integer mWh, compared exactly as integer mWh (round(kWh * 1e6));
counts and ranks exactly; derived floats (percentiles, percentages, kW means) to a relative 1e-9,
since the engines may add the same doubles in another order.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lakehouse.kpi import jobs as kpi
from lakehouse.spark.sessions import read_delta, registry_frames, session_for
from lec.registry import parse_community_text
from tests.support.kpi_sample import community_yaml, synthetic_year, write_readings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the JVM starts in 10-20 s idle, minutes on a loaded machine

ROME = ZoneInfo("Europe/Rome")
CID = "cer-engines"
START = datetime(2024, 3, 25, tzinfo=ROME)  # two weeks over the spring DST change
DAYS = 14
INT_COLS = ["expected_readings", "present_readings", "filled_readings", "rank_selfsufficiency"]
MWH_COLS = ["consumption_kwh", "production_kwh", "selfconsumption_kwh", "withdrawal_kwh", "injection_kwh",
            "consumption_f1_kwh", "consumption_f2_kwh", "consumption_f3_kwh"]


@pytest.fixture(scope="module")
def engines() -> dict[str, object]:
    # one JVM Spark Connect server per test process (lakehouse.spark.jvm), shared by every module
    return {"sail": session_for("", "sail"), "jvm": session_for("", "jvm")}


@pytest.fixture(scope="module")
def one_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, list]]:
    root = tmp_path_factory.mktemp("engines")
    flows, table = synthetic_year(CID, 6, START, DAYS)
    # a few holes, so gap filling (pandas UDF on both engines) has work to do
    keep = np.ones(table.num_rows, bool)
    keep[[100, 101, 2000, 5000, 5001, 5002]] = False
    table = table.filter(pa.array(keep))
    lake = str(root / "lake")
    write_readings(lake, table)
    yield lake, community_yaml(CID, flows), flows


@pytest.fixture()
def loaded(one_lake, registry):
    lake, yaml_text, _ = one_lake
    registry.load(parse_community_text(yaml_text))
    return lake, registry


def _frame(spark, lake: str, registry, req: kpi.KpiRequest) -> pd.DataFrame:
    pdf = kpi.compute_kpis(spark, read_delta(spark, lake, "readings"), registry_frames(spark, registry),
                           req).toPandas()
    return pdf.sort_values(["level", "member_id", "period_start"], na_position="first").reset_index(drop=True)


def assert_same_kpis(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) == kpi.KPI_COLUMNS
    assert len(a) == len(b) > 0
    for col in ["community_id", "level", "member_id", "resolution", "period_local"]:
        assert a[col].fillna("").tolist() == b[col].fillna("").tolist(), col
    for col in ["period_start", "period_end"]:
        assert (pd.to_datetime(a[col]) == pd.to_datetime(b[col])).all(), col
    for col in INT_COLS:
        assert a[col].fillna(-1).astype("int64").tolist() == b[col].fillna(-1).astype("int64").tolist(), col
    for col in MWH_COLS:  # integer mWh, to the last digit
        assert (a[col] * 1e6).round().astype("int64").tolist() == (b[col] * 1e6).round().astype("int64").tolist(), col
    for col in [c for c in kpi.KPI_COLUMNS if c not in INT_COLS + MWH_COLS and a[c].dtype.kind == "f"]:
        assert a[col].isna().tolist() == b[col].isna().tolist(), col
        np.testing.assert_allclose(a[col].dropna().to_numpy(), b[col].dropna().to_numpy(), rtol=1e-9, atol=0,
                                   err_msg=col)


@pytest.mark.parametrize("resolution,days,fill", [("15m", 1, False), ("1h", 14, True), ("1d", 14, True),
                                                  ("1mo", 14, False)])
def test_kpis_identical_on_sail_and_jvm(engines, loaded, resolution: str, days: int, fill: bool) -> None:
    lake, registry = loaded
    req = kpi.KpiRequest(CID, START, START + timedelta(days=days), resolution, fill_gaps=fill)
    sail, jvm = (_frame(engines[e], lake, registry, req) for e in ("sail", "jvm"))
    assert_same_kpis(sail, jvm)
    if fill:
        assert sail.filled_readings.sum() > 0  # the holes were filled, identically


def test_data_engineer_plain_pyspark_time_travel_and_anchors(engines, tmp_path: Path) -> None:
    """What the README shows a data engineer: plain pyspark on JVM Spark + delta-spark, nothing of
    ours but the table paths (and here the URL of the JVM Connect server the fixture started)."""
    from pyspark.sql import SparkSession

    from lakehouse.spark.jvm import start_jvm
    from oracle.store import ANCHORS_SCHEMA
    from tests.support.kpi_sample import SampleFlow, readings_table

    lake = str(tmp_path / "lake")
    flow = SampleFlow("f-de", "POD-DE", "u-de", "load", 1)
    t0 = datetime(2024, 5, 6, 10, tzinfo=ROME)
    write_readings(lake, readings_table(CID, [(flow, t0 + timedelta(minutes=15 * i), 1000 + i) for i in range(4)]))
    write_readings(lake, readings_table(CID, [(flow, t0 + timedelta(hours=1), 5000)]))
    anchor = {n: None for n in ANCHORS_SCHEMA.names} | {"community_id": CID, "qh": int(t0.timestamp()) // 900,
                                                      "version": 1, "readingsRoot": "0x" + "ab" * 32}
    from deltalake import write_deltalake

    write_deltalake(f"{lake}/anchors", pa.Table.from_pylist([anchor], schema=ANCHORS_SCHEMA),
                    partition_by=["community_id"])

    spark = SparkSession.builder.remote(start_jvm()).create()
    versions = [r.version for r in spark.sql(f"DESCRIBE HISTORY delta.`{lake}/readings`").collect()]
    assert versions == [1, 0]
    assert spark.read.format("delta").option("versionAsOf", 0).load(f"{lake}/readings").count() == 4
    assert spark.sql(f"SELECT count(*) n FROM delta.`{lake}/readings` VERSION AS OF 1").collect()[0].n == 5
    readings = spark.read.format("delta").load(f"{lake}/readings")
    anchors = spark.read.format("delta").load(f"{lake}/anchors")
    joined = (readings.withColumn("qh", (readings.ts.cast("long") / 900).cast("long"))
              .join(anchors.select("community_id", "qh", "readingsRoot"), ["community_id", "qh"]))
    rows = joined.select("energy_mwh", "readingsRoot").collect()
    assert [(r.energy_mwh, r.readingsRoot) for r in rows] == [(1000, "0x" + "ab" * 32)]


def _clusters(registry, gid: str) -> list[tuple]:
    from sqlalchemy import select

    from lec.registry import schema as t

    with registry.engine.connect() as conn:
        rows = conn.execute(select(t.clusters).where(t.clusters.c.clustergroup_id == gid)
                            .order_by(t.clusters.c.idx)).all()
        idx = conn.execute(select(t.clustergroups_idx.c.item, t.clustergroups_idx.c.cluster_idx)
                           .where(t.clustergroups_idx.c.clustergroup_id == gid)
                           .order_by(t.clustergroups_idx.c.position)).all()
    return [(r.idx, r.size, list(r.mean_curve), list(r.std_curve), r.cv) for r in rows] + [tuple(idx)]


def test_clustering_identical_on_sail_and_jvm(engines, loaded) -> None:
    """The clustering job (Spark daily curves -> k-means -> registry) on both engines, same lake:
    the same curves (kW to rel 1e-9), the same items, labels, sizes and stored centroids."""
    from lakehouse.clustering import cluster_and_store, daily_curves_frame

    lake, registry = loaded
    end = START + timedelta(days=DAYS)
    curves, runs = {}, {}
    for name in ("sail", "jvm"):
        spark = engines[name]
        readings, dims = read_delta(spark, lake, "readings"), registry_frames(spark, registry)
        curves[name] = (daily_curves_frame(readings, dims, CID, START, end, "Europe/Rome").toPandas()
                        .sort_values(["member_id", "day", "slot"]).reset_index(drop=True))
        out = {kind: cluster_and_store(spark, readings, dims, registry, CID, START, end, k, kind)
               for kind, k in (("daytype", 2), ("member", 2))}
        runs[name] = (out, {kind: _clusters(registry, o["clustergroup_id"]) for kind, o in out.items()})
    a, b = curves["sail"], curves["jvm"]
    assert a[["member_id", "day", "slot"]].equals(b[["member_id", "day", "slot"]])
    np.testing.assert_allclose(a.kw.to_numpy(), b.kw.to_numpy(), rtol=1e-9, atol=0)
    # every local day of the period is a complete curve, the 23-hour DST day (2024-03-31) too:
    # 92 quarter-hours (91 for the member with a hole that day) >= the 88 a curve needs, the
    # missing hour filled linearly
    assert sorted(a.day.unique()) == [(START + timedelta(days=d)).date().isoformat() for d in range(DAYS)]
    assert sorted(a[a.day == "2024-03-31"].groupby("member_id").slot.count()) == [91] + [92] * 5
    (out_s, stored_s), (out_j, stored_j) = runs["sail"], runs["jvm"]
    assert out_s["daytype"]["items"] == DAYS and out_s["member"]["items"] == 6
    for kind in ("daytype", "member"):
        s, j = out_s[kind], out_j[kind]
        assert (s["clustergroup_id"], s["items"], s["idx"]) == (j["clustergroup_id"], j["items"], j["idx"])
        assert [c["size"] for c in s["clusters"]] == [c["size"] for c in j["clusters"]]
        assert s["inertia"] == pytest.approx(j["inertia"], rel=1e-9)
        # stored curves are rounded to 1e-6 kW: equal up to one rounding step
        for cs, cj in zip(stored_s[kind][:-1], stored_j[kind][:-1]):
            assert cs[:2] == cj[:2]
            np.testing.assert_allclose(cs[2], cj[2], atol=1.01e-6, rtol=0)
            np.testing.assert_allclose(cs[3], cj[3], atol=1.01e-6, rtol=0)
        assert stored_s[kind][-1] == stored_j[kind][-1]


def test_maintenance_on_both_engines(engines, tmp_path: Path) -> None:
    """What Sail cannot do through Spark (history, OPTIMIZE, VACUUM, schema evolution) goes
    through deltalake on Sail and through Spark SQL on JVM Spark: the same outcome on twin tables."""
    from lakehouse.maintenance import add_columns, history, maintain
    from tests.support.kpi_sample import SampleFlow, readings_table

    flow = SampleFlow("f-mt", "POD-MT", "u-mt", "load", 1)
    t0 = datetime(2024, 5, 6, 10, tzinfo=ROME)  # 16 quarter-hours within one UTC date: one partition
    results = {}
    for name in ("sail", "jvm"):
        lake = str(tmp_path / name)
        for batch in range(4):  # four appends: four small files in one partition
            write_readings(lake, readings_table(CID, [(flow, t0 + timedelta(minutes=15 * (4 * batch + i)), 10 + i)
                                                      for i in range(4)]))
        uri = f"{lake}/readings"
        spark = engines[name]
        before = history(uri, name, spark)
        add_columns(uri, {"note": "string"}, name, spark)
        report = maintain(uri, name, spark, retention_hours=0)
        after = history(uri, name, spark)
        df = spark.read.format("delta").load(uri)
        results[name] = (before, report, after, df.columns, df.count(), df.where(df.note.isNotNull()).count(),
                         len(list((Path(uri) / "community_id=cer-engines").rglob("*.parquet"))))
    for name, (before, report, after, cols, n, notes, files) in results.items():
        assert [h["version"] for h in before] == [3, 2, 1, 0], (name, before)
        assert [h["operation"] for h in before][:3] == ["WRITE"] * 3, (name, before)
        assert (report["version_before"], report["files_removed"], report["files_added"]) == (4, 4, 1), (name, report)
        assert report["files_vacuumed"] == 4, (name, report)
        ops = [h["operation"] for h in after]  # deltalake logs "ADD COLUMN", delta-spark "ADD COLUMNS"
        assert ops[:3] == ["VACUUM END", "VACUUM START", "OPTIMIZE"] and ops[3].startswith("ADD COLUMN"), (name, ops)
        assert report["version_after"] == after[0]["version"] > 4
        assert "note" in cols and n == 16 and notes == 0
        assert files == 1, (name, files)  # the four small files compacted into one, the old ones vacuumed
