"""KPIs on Sail against values computed here, independently, from the same small input."""

from __future__ import annotations

import io
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lakehouse.kpi import jobs as kpi
from lakehouse.spark.sessions import read_delta, registry_frames, session_for
from tests.support.kpi_sample import SampleFlow, readings_table, write_readings

ROME = ZoneInfo("Europe/Rome")
CID = "cer-example"
ANNA = SampleFlow("f-anna-load", "IT001E00000001", "u-anna", "load", 1)
BRUNO = SampleFlow("f-bruno-load", "IT001E00000002", "u-bruno", "load", 1)
PV = SampleFlow("f-bruno-pv", "PV-0001", "u-bruno", "production", 2)
FLOWS = (ANNA, BRUNO, PV)

# Three blocks of local time, with the ARERA band of each local hour written out by hand.
BLOCKS = [  # (local start, quarter-hours, {local hour: band})
    (datetime(2024, 3, 4, 18, 0, tzinfo=ROME), 8, {18: "F1", 19: "F2"}),   # Monday
    (datetime(2024, 3, 9, 6, 0, tzinfo=ROME), 8, {6: "F3", 7: "F2"}),      # Saturday
    (datetime(2024, 4, 1, 10, 0, tzinfo=ROME), 4, {10: "F3"}),             # Easter Monday (holiday)
]


def _input() -> list[tuple[SampleFlow, datetime, int]]:
    rnd = random.Random(42)
    rows = []
    for start, n, _ in BLOCKS:
        for i in range(n):
            t = start + timedelta(minutes=15 * i)
            rows.append((ANNA, t, rnd.randrange(20_000, 200_000)))
            rows.append((BRUNO, t, rnd.randrange(20_000, 200_000)))
            rows.append((PV, t, -rnd.randrange(0, 300_000)))
    return rows


ROWS = _input()
BAND = {start.replace(hour=h).astimezone(UTC).hour: b for start, _, bands in BLOCKS for h, b in bands.items()}


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    yield session_for("")  # one in-process Sail server for the whole test session


@pytest.fixture()
def lake(spark, registry, settings) -> tuple[object, dict, str]:
    uri = settings.resolved_lake_uri()
    write_readings(uri, readings_table(CID, ROWS))
    return read_delta(spark, uri, "readings"), registry_frames(spark, registry), uri


# -- the independent computation -------------------------------------------------------------

def _member(flow: SampleFlow) -> str:
    return flow.user_id


def _bucket(t: datetime, res: str) -> datetime:
    u = t.astimezone(UTC)
    if res == "15m":
        return u
    if res == "1h":
        return u.replace(minute=0)
    loc = t.astimezone(ROME)
    d = loc.date() if res == "1d" else loc.date().replace(day=1)
    return datetime(d.year, d.month, d.day, tzinfo=ROME).astimezone(UTC)


def expected(res: str) -> dict[tuple[str | None, datetime], dict[str, float]]:
    """Per (member or None, period start UTC) the KPIs, straight from ROWS."""
    qh = defaultdict(lambda: [0, 0])  # (member, qh) -> [L, P] in mWh
    for flow, t, e in ROWS:
        cell = qh[(_member(flow), t.astimezone(UTC))]
        if flow.account == 1:
            cell[0] += e
        else:
            cell[1] += -e
    community = defaultdict(lambda: [0, 0])
    for (m, t), (l, p) in qh.items():
        community[(None, t)][0] += l
        community[(None, t)][1] += p
    out: dict = {}
    for key_qh in (qh, community):
        hourly = defaultdict(lambda: [0, 0])
        for (m, t), (l, p) in key_qh.items():
            h = hourly[(m, t.replace(minute=0))]
            h[0] += l
            h[1] += p
        for (m, t), (l, p) in key_qh.items():
            k = out.setdefault((m, _bucket(t, res)), {"l": 0, "p": 0, "wd": 0, "inj": 0, "sc": 0, "kw": [],
                                                       "F1": 0, "F2": 0, "F3": 0})
            k["l"] += l
            k["p"] += p
            k["kw"].append(l / 1e6 * 4)
            k[BAND[t.hour]] += l
            if res == "15m":
                k["sc"] += min(l, p)
        if res != "15m":
            for (m, h), (l, p) in hourly.items():
                out[(m, _bucket(h, res))]["sc"] += min(l, p)
    # grid exchange: per member per QH, summed for the community
    for (m, t), (l, p) in qh.items():
        for who in (m, None):
            k = out[(who, _bucket(t, res))]
            k["wd"] += max(l - p, 0)
            k["inj"] += max(p - l, 0)
    return out


def _row(df: pd.DataFrame, member: str | None, start: datetime) -> pd.Series:
    sel = df[(df.member_id.isna() if member is None else df.member_id == member)
             & (pd.to_datetime(df.period_start) == pd.Timestamp(start.replace(tzinfo=None)))]
    assert len(sel) == 1, (member, start)
    return sel.iloc[0]


def _check(df: pd.DataFrame, res: str, n_flows: dict[str | None, int]) -> None:
    for (member, start), k in expected(res).items():
        row = _row(df, member, start)
        assert row.consumption_kwh == pytest.approx(k["l"] / 1e6)
        assert row.production_kwh == pytest.approx(k["p"] / 1e6)
        assert row.selfconsumption_kwh == pytest.approx(k["sc"] / 1e6)
        assert row.withdrawal_kwh == pytest.approx(k["wd"] / 1e6)
        assert row.injection_kwh == pytest.approx(k["inj"] / 1e6)
        for band in ("F1", "F2", "F3"):
            assert row[f"consumption_{band.lower()}_kwh"] == pytest.approx(k[band] / 1e6)
        assert row.peak_kw == pytest.approx(np.percentile(k["kw"], 97.5))
        assert row.base_kw == pytest.approx(np.percentile(k["kw"], 2.5))
        assert row.baseload_share_pct == pytest.approx(100 * np.percentile(k["kw"], 2.5) * len(k["kw"]) / 4
                                                       / (k["l"] / 1e6))
        if k["p"]:
            assert row.selfconsumption_pct == pytest.approx(100 * k["sc"] / k["p"])
        assert row.selfsufficiency_pct == pytest.approx(100 * k["sc"] / k["l"])
        assert row.present_readings == len(k["kw"]) * n_flows[member]


N_FLOWS = {"u-anna": 1, "u-bruno": 2, None: 3}


def test_hourly_kpis_match_independent_computation(spark, lake) -> None:
    readings, dims, _ = lake
    req = kpi.KpiRequest(CID, datetime(2024, 3, 1, tzinfo=ROME), datetime(2024, 4, 2, tzinfo=ROME), "1h",
                         fill_gaps=False)
    df = kpi.compute_kpis(spark, readings, dims, req).toPandas()
    _check(df, "1h", N_FLOWS)
    # every hour of the period is there, empty ones with zero energy and zero completeness
    hours = len(pd.date_range("2024-02-29T23:00", "2024-04-01T21:00", freq="1h"))
    assert len(df[df.level == "community"]) == hours
    empty = _row(df, None, datetime(2024, 3, 2, 12, tzinfo=UTC))
    assert empty.consumption_kwh == 0 and empty.completeness_pct == 0 and empty.expected_readings == 12
    full = _row(df, "u-bruno", datetime(2024, 3, 4, 17, tzinfo=UTC))
    assert full.expected_readings == 8 and full.completeness_pct == 100


def test_quarter_hour_self_consumption_is_per_qh(spark, lake) -> None:
    readings, dims, _ = lake
    req = kpi.KpiRequest(CID, datetime(2024, 3, 4, 18, tzinfo=ROME), datetime(2024, 3, 4, 20, tzinfo=ROME), "15m",
                         fill_gaps=False)
    df = kpi.compute_kpis(spark, readings, dims, req).toPandas()
    exp = {k: v for k, v in expected("15m").items() if k[1] < datetime(2024, 3, 4, 19, tzinfo=UTC)}
    assert len(exp) == 3 * 8
    for (member, start), k in exp.items():
        assert _row(df, member, start).selfconsumption_kwh == pytest.approx(min(k["l"], k["p"]) / 1e6)


def test_daily_and_monthly_kpis_local_days_dst_and_ranking(spark, lake) -> None:
    readings, dims, _ = lake
    req = kpi.KpiRequest(CID, datetime(2024, 3, 1, tzinfo=ROME), datetime(2024, 4, 30, tzinfo=ROME), "1d",
                         fill_gaps=False)
    days = kpi.compute_kpis(spark, readings, dims, req).toPandas()
    _check(days, "1d", N_FLOWS)
    # 31 March 2024 has 23 local hours (DST): 92 quarter-hours per flow
    dst = _row(days, None, datetime(2024, 3, 30, 23, tzinfo=UTC))
    assert dst.expected_readings == 3 * 92
    req_m = kpi.KpiRequest(CID, datetime(2024, 3, 1, tzinfo=ROME), datetime(2024, 5, 1, tzinfo=ROME), "1mo",
                           fill_gaps=False)
    months = kpi.compute_kpis(spark, readings, dims, req_m).toPandas()
    _check(months, "1mo", N_FLOWS)
    march = _row(months, None, datetime(2024, 2, 29, 23, tzinfo=UTC))
    assert march.expected_readings == 3 * (31 * 96 - 4)
    assert pd.isna(march.peak_prev_kw)  # February has no data
    april = _row(months, None, datetime(2024, 3, 31, 22, tzinfo=UTC))
    assert april.peak_prev_kw == pytest.approx(march.peak_kw)
    assert april.peak_change_pct == pytest.approx(100 * (april.peak_kw - march.peak_kw) / march.peak_kw)
    # monthly ranking by self-sufficiency: u-anna has no production so ranks last
    mar_members = months[(months.level == "member") & (pd.to_datetime(months.period_start) == "2024-02-29 23:00")]
    ranks = dict(zip(mar_members.member_id, mar_members.rank_selfsufficiency))
    ss = dict(zip(mar_members.member_id, mar_members.selfsufficiency_pct))
    assert ss["u-anna"] == 0 and ss["u-bruno"] > 0
    assert ranks == {"u-bruno": 1, "u-anna": 2}


def test_percentiles_are_user_chosen(spark, lake) -> None:
    readings, dims, _ = lake
    req = kpi.KpiRequest(CID, datetime(2024, 3, 4, tzinfo=ROME), datetime(2024, 3, 5, tzinfo=ROME), "1d",
                         peak_pct=90, base_pct=10, fill_gaps=False, levels=("community",))
    df = kpi.compute_kpis(spark, readings, dims, req).toPandas()
    k = expected("1d")[(None, datetime(2024, 3, 3, 23, tzinfo=UTC))]
    assert df.iloc[0].peak_kw == pytest.approx(np.percentile(k["kw"], 90))
    assert df.iloc[0].base_kw == pytest.approx(np.percentile(k["kw"], 10))
    assert set(df.level) == {"community"}


def test_short_gaps_are_filled_flagged_and_reported(spark, registry, settings) -> None:
    uri = settings.resolved_lake_uri()
    start = datetime(2024, 3, 5, 9, tzinfo=UTC)
    rows = []
    for i in range(16):  # anna: a straight line 100k + 1k*i with a 2-QH gap (filled) ...
        if i not in (5, 6):
            rows.append((ANNA, start + timedelta(minutes=15 * i), 100_000 + 1_000 * i))
    for i in list(range(4)) + list(range(40, 44)):  # ... bruno: a 9-hour gap, longer than 6 h (not filled)
        rows.append((BRUNO, start + timedelta(minutes=15 * i), 50_000))
    write_readings(uri, readings_table(CID, rows))
    spark_dims = registry_frames(spark, registry)
    req = kpi.KpiRequest(CID, start, start + timedelta(hours=12), "1d", levels=("member",))
    df = kpi.compute_kpis(spark, read_delta(spark, uri, "readings"), spark_dims, req).toPandas()
    anna = df[df.member_id == "u-anna"].iloc[0]
    assert anna.consumption_kwh == pytest.approx(sum(100_000 + 1_000 * i for i in range(16)) / 1e6)
    assert anna.filled_readings == 2 and anna.present_readings == 14
    assert anna.filled_share_pct == pytest.approx(100 * (105_000 + 106_000) / sum(100_000 + 1_000 * i
                                                                                 for i in range(16)))
    bruno = df[df.member_id == "u-bruno"].iloc[0]
    assert bruno.filled_readings == 0 and bruno.consumption_kwh == pytest.approx(8 * 50_000 / 1e6)
    assert bruno.expected_readings == 2 * 96 and bruno.present_readings == 8


def test_export_formats_round_trip(spark, lake, tmp_path: Path) -> None:
    readings, dims, _ = lake
    req = kpi.KpiRequest(CID, datetime(2024, 3, 4, 18, tzinfo=ROME), datetime(2024, 3, 4, 20, tzinfo=ROME), "1h",
                         fill_gaps=False)
    pdf = kpi.compute_kpis(spark, readings, dims, req).toPandas()
    records = json.loads(kpi.export(pdf, "json"))
    assert records[0]["period_start"] == "2024-03-04T17:00:00Z" and len(records) == len(pdf)
    csv = pd.read_csv(io.BytesIO(kpi.export(pdf, "csv")))
    assert list(csv.columns) == kpi.KPI_COLUMNS
    assert pd.read_parquet(io.BytesIO(kpi.export(pdf, "parquet"))).consumption_kwh.sum() == pytest.approx(
        pdf.consumption_kwh.sum())
    arrow = pa.ipc.open_file(pa.BufferReader(kpi.export(pdf, "arrow", str(tmp_path / "k.arrow")))).read_all()
    assert arrow.num_rows == len(pdf) and (tmp_path / "k.arrow").exists()
    with pytest.raises(kpi.KpiRequestError, match="format must be"):
        kpi.export(pdf, "xlsx")


def test_bad_requests_are_refused_with_clear_errors() -> None:
    t = datetime(2024, 1, 1, tzinfo=ROME)
    with pytest.raises(kpi.KpiRequestError, match="resolution"):
        kpi.KpiRequest(CID, t, t + timedelta(days=1), "2h")
    with pytest.raises(kpi.KpiRequestError, match="after start"):
        kpi.KpiRequest(CID, t, t, "1h")
    with pytest.raises(kpi.KpiRequestError, match="time zone"):
        kpi.KpiRequest(CID, datetime(2024, 1, 1), datetime(2024, 1, 2), "1h")
    with pytest.raises(kpi.KpiRequestError, match="limit"):
        kpi.KpiRequest(CID, t, t + timedelta(days=3000), "15m")
    assert kpi.KpiRequest(CID, t, t + timedelta(days=3000), "1h").resolution == "1h"
    with pytest.raises(kpi.KpiRequestError, match="ISO-8601"):
        kpi.parse_day_or_time("yesterday", "Europe/Rome")


def test_hourly_and_five_minute_flows_land_in_their_quarter_hours(spark, registry, settings) -> None:
    from dataclasses import replace

    uri = settings.resolved_lake_uri()
    start = datetime(2024, 3, 6, 9, tzinfo=UTC)
    hourly = readings_table(CID, [(ANNA, start, 4_003)])                      # one hourly reading
    hourly = hourly.set_column(hourly.schema.get_field_index("interval_s"), "interval_s", pa.array([3600]))
    five = readings_table(CID, [(BRUNO, start + timedelta(minutes=5 * i), 100 * (i + 1)) for i in range(6)])
    five = five.set_column(five.schema.get_field_index("interval_s"), "interval_s", pa.array([300] * 6))
    write_readings(uri, hourly)
    write_readings(uri, five)
    req = kpi.KpiRequest(CID, start, start + timedelta(hours=1), "15m", levels=("member",))
    df = kpi.compute_kpis(spark, read_delta(spark, uri, "readings"), registry_frames(spark, registry),
                          replace(req, fill_gaps=True)).toPandas()
    anna = df[df.member_id == "u-anna"].sort_values("period_start")
    assert list(anna.consumption_kwh * 1e6) == pytest.approx([1000, 1000, 1000, 1003])  # exact total 4003
    assert list(anna.present_readings) == [1, 1, 1, 1] and anna.completeness_pct.tolist() == [100.0] * 4
    bruno = df[df.member_id == "u-bruno"].sort_values("period_start")
    assert list(bruno.consumption_kwh * 1e6)[:2] == pytest.approx([100 + 200 + 300, 400 + 500 + 600])


def test_plot_of_member_rows_only_sums_them(tmp_path: Path) -> None:
    from lakehouse.kpi.plot import plot_kpis

    starts = pd.date_range("2024-03-04T00:00", periods=4, freq="1h")
    pdf = pd.DataFrame({"level": "member", "member_id": ["a", "b"] * 2, "resolution": "1h",
                        "period_start": starts.repeat(1)[[0, 0, 1, 1]], "period_end": starts[[1, 1, 2, 2]],
                        "consumption_kwh": [1.0, 2.0, 3.0, 4.0], "production_kwh": [0.5, 0.5, 0.0, 0.0],
                        "selfconsumption_kwh": [0.5, 0.5, 0.0, 0.0]})
    out = plot_kpis(pdf, str(tmp_path / "m.png"), "members")
    assert Path(out).read_bytes()[:4] == b"\x89PNG" and Path(out).stat().st_size > 5_000
