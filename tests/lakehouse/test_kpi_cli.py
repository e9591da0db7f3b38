"""`lec kpi` (JSON, CSV, plot), KPI storage as derived time series, processes 1 and 2, the refresh pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import select

from lakehouse.kpi import jobs as kpi
from lakehouse.kpi.store import due, mark_refreshed, register_series, store_kpis
from lakehouse.spark.sessions import (
    LakeTableMissingError,
    preprocess_files,
    read_delta,
    registry_frames,
    registry_pandas,
    session_for,
)
from lec.registry import parse_community_text
from lec.registry import schema as t
from tests.support.kpi_sample import SampleFlow, community_yaml, readings_table, write_readings

ROME = ZoneInfo("Europe/Rome")
CID = "cer-cli"
LOAD = SampleFlow("f-l1", "POD1", "u-1", "load", 1)
LOAD2 = SampleFlow("f-l2", "POD2", "u-2", "load", 1)
PV = SampleFlow("f-pv", "PV1", "u-2", "production", 2)
START = datetime(2024, 6, 3, 0, 0, tzinfo=ROME)  # a Monday
LEC = [sys.executable, "-m", "lec.cli"]  # the `lec` console script


@pytest.fixture(scope="module")
def spark():
    return session_for("")


@pytest.fixture()
def community(registry, settings):
    """A two-member community with one day of readings: L1 = 10 Wh/QH, L2 = 20 Wh/QH, PV 40 Wh/QH 10-14h."""
    registry.load(parse_community_text(community_yaml(CID, [LOAD, LOAD2, PV])))
    rows = []
    for i in range(96):
        ts = START + timedelta(minutes=15 * i)
        rows += [(LOAD, ts, 10_000), (LOAD2, ts, 20_000)]
        if 10 <= ts.hour < 14:
            rows.append((PV, ts, -40_000))
    write_readings(settings.resolved_lake_uri(), readings_table(CID, rows))
    return registry


def _run(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEC_RUN_DIR": str(settings.run_dir), "GX_ANALYTICS_ENABLED": "false"}
    return subprocess.run([*LEC, *args], check=False, capture_output=True, text=True, env=env, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])


def test_lec_kpi_json_csv_and_plot(community, settings, tmp_path: Path) -> None:
    png = tmp_path / "kpi.png"
    res = _run(settings, "kpi", "--community", CID, "--from", "2024-06-03", "--to", "2024-06-04",
               "--resolution", "1d", "--format", "json", "--plot", str(png))
    assert res.returncode == 0, res.stderr[-2000:]
    # off a terminal: no progress bar, and no INFO lines (libraries' or ours) around the answer
    assert "━" not in res.stderr and " INFO " not in res.stderr, res.stderr[-2000:]
    rows = json.loads(res.stdout)
    comm = [r for r in rows if r["level"] == "community"]
    assert len(comm) == 1
    # 96 QH x (10 + 20) Wh = 2.88 kWh; PV 16 QH x 40 Wh = 0.64 kWh; each hour 10-14: L 120 Wh < P 160 Wh
    assert comm[0]["consumption_kwh"] == pytest.approx(96 * 0.030)
    assert comm[0]["production_kwh"] == pytest.approx(16 * 0.040)
    assert comm[0]["selfconsumption_kwh"] == pytest.approx(4 * 0.120)
    assert comm[0]["period_start"] == "2024-06-02T22:00:00Z"
    members = {r["member_id"]: r for r in rows if r["level"] == "member"}
    # u-2 alone: hourly L 80 Wh vs P 160 Wh -> 4 x 80 Wh self-consumed
    assert members["u-2"]["selfconsumption_kwh"] == pytest.approx(4 * 0.080)
    assert members["u-1"]["selfconsumption_kwh"] == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    res = _run(settings, "kpi", "--community", CID, "--from", "2024-06-03T10:00:00", "--to", "2024-06-03T12:00:00",
               "--resolution", "15m", "--format", "csv", "--level", "community")
    assert res.returncode == 0, res.stderr[-2000:]
    csv = pd.read_csv(pd.io.common.StringIO(res.stdout))
    assert len(csv) == 8 and list(csv.selfconsumption_kwh) == pytest.approx([0.030] * 8)
    assert list(csv.consumption_f1_kwh) == pytest.approx([0.030] * 8)  # Monday 10-12 is F1


def test_lec_kpi_refuses_unknown_community_and_binary_to_stdout(community, settings) -> None:
    res = _run(settings, "kpi", "--community", "nope", "--from", "2024-06-03", "--to", "2024-06-04")
    assert res.returncode != 0 and "not in the registry" in res.stderr
    res = _run(settings, "kpi", "--community", CID, "--from", "2024-06-03", "--to", "2024-06-04", "--format",
               "parquet")
    assert res.returncode != 0 and "--out" in res.stderr


def test_store_is_idempotent_and_series_are_registered(spark, community, settings) -> None:
    lake = settings.resolved_lake_uri()
    req = kpi.KpiRequest(CID, START, START + timedelta(days=1), "1h")
    pdf = kpi.compute_kpis(spark, read_delta(spark, lake, "readings"), registry_frames(spark, community),
                           req).toPandas()
    store_kpis(pdf, lake, req)
    store_kpis(pdf, lake, req)  # a re-run replaces, never duplicates
    stored = read_delta(spark, lake, "kpi_1h").toPandas()
    assert len(stored) == len(pdf) == 3 * 24
    assert stored.consumption_kwh.sum() == pytest.approx(pdf.consumption_kwh.sum())
    now = datetime(2024, 6, 4, 0, 7, tzinfo=UTC)
    created = register_series(community, CID, "1h", now)
    assert created == 3 * 10  # community + 2 members, 10 KPI types
    assert register_series(community, CID, "1h", now) == 0
    assert due(community, now) == [(CID, "1h")]  # never refreshed yet
    mark_refreshed(community, CID, "1h", now)
    with community.engine.connect() as conn:
        sched = conn.execute(select(t.derivedtimeseries_schedules.c.next_refresh)).all()
        sources = conn.execute(select(t.derivedtimeseries_sources).where(
            t.derivedtimeseries_sources.c.derivedtimeseries_id == f"{CID}/u-2/selfconsumption/1h")).all()
    assert {s[0].replace(tzinfo=UTC) if s[0].tzinfo is None else s[0] for s in sched} == {
        datetime(2024, 6, 4, 1, 5, tzinfo=UTC)}
    assert {s.flow_id for s in sources} == {"f-l2", "f-pv"}
    assert due(community, now) == []
    assert due(community, now + timedelta(hours=1)) == [(CID, "1h")]


def test_process_1_registry_frames(spark, community) -> None:
    frames = registry_frames(spark, community, CID)
    flows = frames["dim_flows"].toPandas()
    assert set(flows.flow_id) == {"f-l1", "f-l2", "f-pv"}
    assert dict(zip(flows.flow_id, flows.account)) == {"f-l1": 1, "f-l2": 1, "f-pv": 2}
    assert set(frames["dim_members"].toPandas().user_id) == {"u-1", "u-2"}
    assert len(registry_pandas(community)["dim_devices"]) >= 3


def test_process_2_files_into_delta_idempotent(spark, community, settings, tmp_path: Path) -> None:
    lake = settings.resolved_lake_uri()
    ts = "2024-06-05T10:00:00Z"
    base = {"community_id": CID, "supplier_id": "sup-sample", "device_id": "POD1", "flow_id": "f-l1",
            "channel": "sftp", "ts": ts, "interval_s": 900, "ingest_ts": ts, "energy_mwh": 12345,
            "measurement": "load", "account": 1, "estimated": False, "interpolated": False, "late": False,
            "conflict": False, "date": "2024-06-05"}
    jfile = tmp_path / "a.json"
    jfile.write_text("\n".join(json.dumps({**base, "message_id": f"m-{i}"}) for i in range(3)) + "\n")
    cfile = tmp_path / "b.csv"
    pd.DataFrame([{**base, "message_id": "m-2"}, {**base, "message_id": "m-9", "energy_mwh": 5}]).to_csv(
        cfile, index=False)
    assert preprocess_files(spark, [str(jfile)], "json", lake, "readings", "message_id") == 3
    assert preprocess_files(spark, [str(jfile)], "json", lake, "readings", "message_id") == 0
    assert preprocess_files(spark, [str(cfile)], "csv", lake, "readings", "message_id") == 1  # m-2 known
    got = read_delta(spark, lake, "readings").where("date = '2024-06-05'").toPandas()
    assert sorted(got.message_id) == ["m-0", "m-1", "m-2", "m-9"]
    assert got.set_index("message_id").energy_mwh.to_dict()["m-9"] == 5
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({**base, "message_id": "m-x", "surprise": 1}) + "\n")
    with pytest.raises(Exception, match="surprise"):
        preprocess_files(spark, [str(bad)], "json", lake, "readings", "message_id")
    with pytest.raises(LakeTableMissingError, match="does not exist"):
        read_delta(spark, lake, "no_such_table")


def test_refresh_pass_moves_inbox_and_computes_due_series(community, settings) -> None:
    from lakehouse.spark.refresh import one_pass

    inbox = settings.resolved_run_dir() / "lake-inbox" / "readings"
    inbox.mkdir(parents=True)
    (inbox / "x.json").write_text(json.dumps({
        "community_id": CID, "device_id": "POD1", "flow_id": "f-l1", "message_id": "inbox-1",
        "ts": "2024-06-03T12:00:00Z", "interval_s": 900, "energy_mwh": 1, "account": 1,
        "measurement": "load", "date": "2024-06-03"}) + "\n")
    report = one_pass(settings, now=datetime(2024, 6, 4, 1, 0, tzinfo=UTC))
    assert report["files"]["readings"] == {"files": 1, "rows": 1}
    assert (inbox / "done" / "x.json").exists() and not (inbox / "x.json").exists()
    assert report["dimensions"]["dim_flows"] >= 3
    done = {(k["community_id"], k["resolution"]) for k in report["kpis"]}
    assert (CID, "1d") in done and (CID, "1h") in done


def test_refresh_worker_runs_and_stops_cleanly_on_sigterm(community, settings) -> None:
    import signal
    import time

    env = {**os.environ, "LEC_RUN_DIR": str(settings.run_dir), "GX_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([*LEC, "lake", "refresh", "--interval", "0.5"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    lake = Path(settings.resolved_lake_uri())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (lake / "kpi_1mo" / "_delta_log").exists():
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "refresh worker stopped" in err
    for res in ("15m", "1h", "1d", "1mo"):
        assert (lake / f"kpi_{res}" / "_delta_log").exists(), res
    assert (lake / "dim_flows" / "_delta_log").exists()


def test_daily_values_copied_to_registry_table_21(spark, community, settings) -> None:
    from lakehouse.kpi.store import store_series_values

    lake = settings.resolved_lake_uri()
    register_series(community, CID, "1d", datetime(2024, 6, 4, tzinfo=UTC))
    req = kpi.KpiRequest(CID, START, START + timedelta(days=1), "1d")
    pdf = kpi.compute_kpis(spark, read_delta(spark, lake, "readings"), registry_frames(spark, community),
                           req).toPandas()
    assert store_series_values(community, pdf) == 3 * 10
    assert store_series_values(community, pdf) == 3 * 10  # replaced, not added
    with community.engine.connect() as conn:
        rows = conn.execute(select(t.derivedtimeseries_values)).all()
    values = {r.derivedtimeseries_id: r.value for r in rows}
    assert len(rows) == 30
    assert values[f"{CID}/*/consumption/1d"] == pytest.approx(96 * 0.030)
    assert values[f"{CID}/*/selfconsumption/1d"] == pytest.approx(4 * 0.120)
    assert values[f"{CID}/u-2/selfconsumption/1d"] == pytest.approx(4 * 0.080)
    assert values[f"{CID}/u-1/selfconsumption_pct/1d"] is None  # no production: no ratio
