"""The main job end to end on the embedded default: every service started and stopped by the
platform, demo traffic through MQTT, SFTP and HTTP into Kafka, streams, lake, KPIs, chain, audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lec.procs import pid_running


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    base = tmp_path_factory.mktemp("demo")
    out = base / "summary.json"
    r = subprocess.run([sys.executable, "-m", "lec.cli", "demo", "--days", "1", "--households", "4",
                        "--run-dir", str(base / "run"), "--summary-json", str(out)],
                       capture_output=True, text=True, timeout=1500, env={**os.environ, "LEC_LOG_LEVEL": "INFO"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout, base / "run"


def test_traffic_reaches_kafka_through_every_channel(demo) -> None:
    summary, _, _ = demo
    assert set(summary["raw_envelopes"]) == {"mqtt", "sftp", "http"}
    by_channel = summary["readings_by_channel"]
    assert all(by_channel[c] > 0 for c in ("mqtt", "sftp", "http"))


def test_faults_are_explained_not_lost(demo) -> None:
    summary, _, _ = demo
    faults = summary["faults"]
    # kWh sent where Wh was declared: out of the flow's range, dead-lettered with the reason
    assert summary["deadletter_by_reason"].get("out_of_range") == faults["mqtt_kwh_as_wh"]
    # duplicates answered as such, never counted twice
    assert summary["feedback_by_status"].get("duplicate", 0) >= faults["mqtt_duplicate"]
    fb = summary["feedback_by_status"]
    assert fb.get("rejected", 0) + fb.get("partial", 0) > 0
    assert summary["lake_readings"] == summary["readings"]
    assert summary["lake_deadletter"] >= faults["mqtt_kwh_as_wh"]


def test_kpis_anchors_rewards_and_audit(demo) -> None:
    summary, stdout, run_dir = demo
    day = summary["kpi"][0]
    assert day["consumption_kwh"] > 0 and day["production_kwh"] > 0  # PV sent positive, stored negative
    assert 0 < day["selfconsumption_kwh"] <= min(day["consumption_kwh"], day["production_kwh"]) + 1e-9
    assert (run_dir / "kpi.png").stat().st_size > 10_000
    assert summary["anchored_qh"] > 0
    welcome = 10 * 10**18
    assert sum(summary["balances"].values()) > welcome * len(summary["balances"])
    assert "MISMATCH" not in stdout and "OK" in summary["audit"].upper()



def test_demo_month_is_settled_and_a_statement_verified(demo) -> None:
    summary, stdout, run_dir = demo
    settled = summary["settlement"]
    assert settled["version"] == 1 and settled["shared_mwh"] > 0 and settled["total_cents"] > 0
    assert summary["statement"]["verified"] is True
    assert Path(summary["statement"]["html"]).exists() and "verified against the root on chain" in stdout


def test_nothing_left_running(demo) -> None:
    _, _, run_dir = demo
    state = json.loads((run_dir / "stack.json").read_text())
    assert state["running"] is False
    assert [n for n, s in state["services"].items() if pid_running(s["pid"])] == []
