"""KPIs out as ENEA UrbanDataset documents: built, schema-validated, exported by `lec export` and
published on a schedule to the lec.urbandataset topic."""

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

from lakehouse.urbandataset import Context, UrbanDatasetError, community_context, document, validate, window
from lec.registry import parse_community_text
from lec.schemas import errors
from tests.support.kpi_sample import SampleFlow, community_yaml, readings_table, write_readings

ROME = ZoneInfo("Europe/Rome")
CID = "cer-ud"
LOAD = SampleFlow("f-l1", "POD1", "u-1", "load", 1)
PV = SampleFlow("f-pv", "PV1", "u-2", "production", 2)
START = datetime(2024, 6, 3, 0, 0, tzinfo=ROME)
LEC = [sys.executable, "-m", "lec.cli"]


def _kpi_rows() -> pd.DataFrame:
    t0 = pd.Timestamp("2024-06-02T22:00:00Z")
    return pd.DataFrame([
        {"level": "community", "member_id": None, "period_start": t0, "period_end": t0 + pd.Timedelta(hours=1),
         "consumption_kwh": 0.12, "production_kwh": 0.0, "selfconsumption_kwh": 0.0,
         "selfconsumption_pct": float("nan"), "selfsufficiency_pct": 0.0, "completeness_pct": 100.0},
        {"level": "member", "member_id": "u-1", "period_start": t0, "period_end": t0 + pd.Timedelta(hours=1),
         "consumption_kwh": 0.12, "production_kwh": None, "peak_kw": 0.4},
    ])


def test_document_has_context_specification_and_one_line_per_row() -> None:
    doc = document(_kpi_rows(), Context(CID, 44.49, 11.34), now=datetime(2024, 6, 4, 8, tzinfo=UTC))
    validate(doc)
    ud = doc["UrbanDataset"]
    assert ud["context"]["timeZone"] == "UTC+0" and ud["context"]["timestamp"] == "2024-06-04T08:00:00"
    assert ud["context"]["coordinates"] == {"format": "WGS84-DD", "latitude": 44.49, "longitude": 11.34}
    assert ud["context"]["producer"] == {"id": f"LEC-{CID}", "schemeID": "SCPS"}
    names = {p["propertyName"] for p in ud["specification"]["properties"]["propertyDefinition"]}
    lines = ud["values"]["line"]
    assert [ln["id"] for ln in lines] == [1, 2]
    assert lines[0]["period"] == {"start_ts": "2024-06-02T22:00:00", "end_ts": "2024-06-02T23:00:00"}
    comm = {p["name"]: p["val"] for p in lines[0]["property"]}
    assert comm["MemberID"] == "community" and comm["ElectricConsumption"] == "0.12"
    assert "SelfConsumptionRate" not in comm          # no production: the rate has no value, not 0
    member = {p["name"]: p["val"] for p in lines[1]["property"]}
    assert member["MemberID"] == "u-1" and member["PeakPower"] == "0.4" and "ElectricProduction" not in member
    assert {p["name"] for ln in lines for p in ln["property"]} <= names   # every value is a declared property


def test_schema_refuses_what_the_specification_forbids() -> None:
    doc = document(_kpi_rows(), Context(CID, 44.49, 11.34))
    bad = json.loads(json.dumps(doc))
    bad["UrbanDataset"]["context"]["coordinates"]["latitude"] = 123
    bad["UrbanDataset"]["values"]["line"][0]["period"]["start_ts"] = "2024-06-02 22:00"
    del bad["UrbanDataset"]["specification"]["id"]
    problems = errors("urbandataset", bad)
    assert len(problems) == 3, problems
    with pytest.raises(UrbanDatasetError, match="does not validate"):
        validate(bad)


def test_window_is_the_last_complete_periods() -> None:
    assert window(datetime(2024, 6, 4, 0, 7, tzinfo=UTC), "1h", 24) == (
        datetime(2024, 6, 3, 0, tzinfo=UTC), datetime(2024, 6, 4, 0, tzinfo=UTC))
    with pytest.raises(UrbanDatasetError, match="15m, 1h or 1d"):
        window(datetime(2024, 6, 4, tzinfo=UTC), "1mo", 1)


@pytest.fixture()
def sample(registry, settings):
    """L1 = 10 Wh/QH all day; PV 40 Wh/QH 10-14h local."""
    registry.load(parse_community_text(community_yaml(CID, [LOAD, PV])))
    rows = []
    for i in range(96):
        ts = START + timedelta(minutes=15 * i)
        rows.append((LOAD, ts, 10_000))
        if 10 <= ts.hour < 14:
            rows.append((PV, ts, -40_000))
    write_readings(settings.resolved_lake_uri(), readings_table(CID, rows))
    return registry


def test_coordinates_come_from_the_community_its_devices_or_the_options(sample) -> None:
    with pytest.raises(UrbanDatasetError, match="--latitude and --longitude"):
        community_context(sample, CID)
    assert community_context(sample, CID, 45.0, 9.0).latitude == 45.0
    with pytest.raises(UrbanDatasetError, match="not in the registry"):
        community_context(sample, "nope", 1.0, 1.0)


def _run(settings, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "LEC_RUN_DIR": str(settings.run_dir), **(env or {})}
    return subprocess.run([*LEC, *args], check=False, capture_output=True, text=True, env=full, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])


def test_lec_export_urbandataset_and_the_scheduled_topic(sample, settings, fresh_kafka, tmp_path: Path) -> None:
    from lec import topics
    from tests.support.streams import read_topic

    out = tmp_path / "ud.json"
    res = _run(settings, "export", "urbandataset", "--community", CID, "--from", "2024-06-03", "--to", "2024-06-04",
               "--resolution", "1h", "--latitude", "44.49", "--longitude", "11.34", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert errors("urbandataset", doc) == []
    lines = doc["UrbanDataset"]["values"]["line"]
    comm = [{p["name"]: p["val"] for p in ln["property"]} | ln["period"] for ln in lines
            if {"name": "MemberID", "val": "community"} in ln["property"]]
    assert len(comm) == 24 and comm[0]["start_ts"] == "2024-06-02T22:00:00"      # local midnight in UTC
    assert {c["ElectricConsumption"] for c in comm} == {"0.04"}                  # 4 x 10 Wh per hour
    noon = next(c for c in comm if c["start_ts"] == "2024-06-03T10:00:00")       # 12:00 local
    assert noon["ElectricProduction"] == "0.16" and noon["SharedEnergy"] == "0.04"

    _, bootstrap = fresh_kafka
    res = _run(settings, "export", "urbandataset-publish", "--community", CID, "--resolution", "1h", "--periods", "24",
               "--once", "--until", "2024-06-03T22:00:00+00:00", "--latitude", "44.49", "--longitude", "11.34",
               env={"LEC_KAFKA_BOOTSTRAP": bootstrap})
    assert res.returncode == 0, res.stderr[-3000:]
    got = read_topic(bootstrap, topics.URBANDATASET, lambda o: len(o) >= 1, timeout=60)
    assert len(got) == 1 and errors("urbandataset", got[0]) == []
    pub = got[0]["UrbanDataset"]["values"]["line"]
    assert [ln["period"] for ln in pub] == [ln["period"] for ln in lines]       # the same day, UTC hours
    assert [ln["property"] for ln in pub] == [ln["property"] for ln in lines]
