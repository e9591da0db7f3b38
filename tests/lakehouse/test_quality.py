"""great-expectations suites on lake tables: clean data passes, each planted fault is reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse.quality import QualityError, run_quality
from tests.support.kpi_sample import SampleFlow, readings_table, write_readings

LOAD = SampleFlow("f-l", "POD1", "u-1", "load", 1)
PV = SampleFlow("f-pv", "PV1", "u-1", "production", 2)
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _rows(n: int) -> list:
    rows = []
    for i in range(n):
        ts = T0 + timedelta(minutes=15 * i)
        rows += [(LOAD, ts, 1000 + i), (PV, ts, -500)]
    return rows


def test_clean_readings_and_kpis_pass_and_docs_are_built(tmp_path: Path) -> None:
    import pandas as pd
    from deltalake import write_deltalake

    lake = str(tmp_path / "lake")
    write_readings(lake, readings_table("c1", _rows(8)))
    write_deltalake(f"{lake}/kpi_1h", pd.DataFrame({
        "community_id": ["c1", "c1"], "level": ["community", "community"], "member_id": [None, None],
        "period_start": pd.to_datetime(["2024-05-01T00:00Z", "2024-05-01T01:00Z"]),
        "consumption_kwh": [1.0, 2.0], "production_kwh": [0.5, 3.0], "selfconsumption_kwh": [0.5, 2.0],
        "selfconsumption_pct": [100.0, 66.7], "selfsufficiency_pct": [50.0, 100.0],
        "completeness_pct": [100.0, 100.0], "filled_share_pct": [0.0, 0.0],
        "withdrawal_kwh": [0.5, 0.0], "injection_kwh": [0.0, 1.0]}))
    out = tmp_path / "quality"
    report = run_quality(lake, out)
    assert report["success"], report
    assert set(report["tables"]) == {"readings", "kpi_1h"}
    assert report["tables"]["readings"]["rows"] == 16 and report["tables"]["readings"]["evaluated"] >= 13
    assert json.loads(Path(report["results_file"]).read_text())["success"] is True
    assert Path(report["data_docs"]).exists()
    assert "lake-readings" in Path(report["data_docs"]).read_text()


def test_faults_are_reported_with_the_expectation_that_caught_them(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    rows = _rows(4)
    rows.append((LOAD, T0, -70))                 # consumption with a negative sign (Table 13 broken)
    table = readings_table("c1", rows)
    ids = table.column("message_id").to_pylist()
    ids[1] = ids[0]                               # a duplicate message id
    table = table.set_column(table.schema.get_field_index("message_id"), "message_id",
                             __import__("pyarrow").array(ids))
    write_readings(lake, table)
    report = run_quality(lake, tmp_path / "q", ["readings"], community="c1")
    assert not report["success"]
    failed = {(f["expectation"], f["kwargs"].get("row_condition")) for f in report["tables"]["readings"]["failed"]}
    assert ("expect_column_values_to_be_unique", None) in failed
    assert ("expect_column_values_to_be_between", "account==1") in failed
    assert ("expect_column_values_to_be_between", "account==2") not in failed
    sign = next(f for f in report["tables"]["readings"]["failed"] if f["kwargs"].get("row_condition") == "account==1")
    assert sign["unexpected_count"] == 1 and sign["sample"] == [-70]


def test_missing_table_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QualityError, match="does not exist"):
        run_quality(str(tmp_path / "lake"), tmp_path / "q", ["readings"])


def test_lec_lake_quality_command_exit_code_and_report(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    run = tmp_path / "run"
    rows = _rows(4)
    rows.append((PV, T0, 900))  # production with the wrong sign
    write_readings(str(run / "lake"), readings_table("c1", rows))
    env = {**os.environ, "LEC_RUN_DIR": str(run), "GX_ANALYTICS_ENABLED": "false"}
    res = subprocess.run([sys.executable, "-m", "lec.cli", "lake", "quality"], check=False, capture_output=True, text=True,
                         env=env, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 1, res.stderr[-2000:]
    report = json.loads(res.stdout)
    failed = report["tables"]["readings"]["failed"]
    assert [f["kwargs"]["row_condition"] for f in failed] == ["account==2"]
    assert Path(report["data_docs"]).exists() and str(run / "quality") in report["results_file"]
