"""The main job end to end on the embedded default: every service started and stopped by the
platform, demo traffic through MQTT, SFTP and HTTP into Kafka, streams, lake, KPIs, chain, audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lec.procs import pid_running

pytestmark = pytest.mark.timeout(1800)  # the first test pays for the session's demo (tests/conftest.py)


@pytest.fixture(scope="module")
def demo(demo_run: tuple[dict, str, Path]) -> tuple[dict, str, Path]:
    return demo_run  # one demo per session (tests/conftest.py), shared with the GDPR and README tests


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
    summary, stdout, _run_dir = demo
    settled = summary["settlement"]
    assert settled["version"] == 1 and settled["shared_mwh"] > 0 and settled["total_cents"] > 0
    assert summary["statement"]["verified"] is True
    assert Path(summary["statement"]["html"]).exists() and "verified against the root on chain" in stdout


def test_nothing_left_running(demo) -> None:
    _, _, run_dir = demo
    state = json.loads((run_dir / "stack.json").read_text())
    assert state["running"] is False
    assert [n for n, s in state["services"].items() if pid_running(s["pid"])] == []
