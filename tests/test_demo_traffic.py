"""The demo community comes from real SimBench profiles and its traffic carries real feeds' faults."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from lec.demo.community import COMMUNITY_ID, build_demo
from lec.demo.run import default_start
from lec.demo.traffic import ROME, build_traffic, expected_dst_day_hours
from lec.registry import CommunityFile


@pytest.fixture(scope="module")
def demo():
    start = default_start()
    doc, series = build_demo(start, 3, households=6, pv_plants=2)
    return start, doc, series, build_traffic(series)


def test_community_file_is_valid_and_complete(demo) -> None:
    _, doc, series, _ = demo
    parsed = CommunityFile.model_validate(doc)
    assert parsed.check_references() == []
    kinds = {f["measurement"] for f in doc["flows"]}
    assert kinds == {"load", "production", "storage"}
    assert {f["channel"] for f in doc["flows"]} == {"mqtt", "sftp", "http"}
    assert len(series) == 6 + 2 + 1


def test_profiles_are_real_and_plausible(demo) -> None:
    _, _, series, _ = demo
    loads = [s for s in series if s.measurement == "load"]
    pv = [s for s in series if s.measurement == "production"]
    assert all(len(s.energies_wh) == 3 * 96 for s in series)
    assert all(min(s.energies_wh) >= 0 and max(s.energies_wh) > 0 for s in loads)
    for s in pv:  # production is negative (Table 13), zero at night, non-zero at noon
        assert max(s.energies_wh) <= 0 < -min(s.energies_wh)
        night = s.energies_wh[0:16]          # local 00:00-04:00
        assert all(e == 0 for e in night)
    assert len({tuple(s.energies_wh[:96]) for s in loads}) > 1  # households differ


def test_faults_of_real_feeds_are_present(demo) -> None:
    _, _, series, traffic = demo
    f = traffic.faults
    assert f["mqtt_gap"] > 0 and f["mqtt_duplicate"] > 0 and f["mqtt_kwh_as_wh"] > 0
    assert f["sftp_late_day"] == 1 and f["sftp_duplicate_file"] == 1
    payloads = [m.payload for m in traffic.mqtt]
    assert len(payloads) != len(set(payloads))  # duplicates really repeated
    # generation is sent as positive numbers by the PV vendor
    bodies = [orjson.loads(b.body) for b in traffic.http]
    rows = [r for b in bodies if b["device_id"].startswith("PV") for r in b["readings"]]
    assert max(r["wh"] for r in rows) > 0 and min(r["wh"] for r in rows) >= 0
    # the late day: the first file uploaded is not the earliest day
    names = [x.name for x in traffic.sftp]
    days = [n[-12:-4] for n in names]
    assert days[0] > min(days[1:])  # an earlier day arrives after a later one
    assert names[-1] == names[-2]
    assert all(m.topic.startswith(f"lec/{COMMUNITY_ID}/sup-smarthome/") for m in traffic.mqtt)


def test_dst_day_has_23_local_hours_in_the_csv(demo) -> None:
    start, _, series, traffic = demo
    assert expected_dst_day_hours(datetime(2016, 3, 27)) == 23
    assert expected_dst_day_hours(datetime(2016, 10, 30)) == 25
    dst_file = next(f for f in traffic.sftp if f.name.endswith("_20160327.csv"))
    lines = dst_file.content.decode().strip().splitlines()[1:]
    assert len({ln.split(";")[0] for ln in lines}) == 1  # one meter per file
    assert len(lines) == 23 * 4
    assert not any(" 02:" in ln.split(";")[1] for ln in lines)  # 02:00-02:59 does not exist that day
    # local stamps convert back to the true UTC instants
    first = datetime.strptime(lines[0].split(";")[1], "%d/%m/%Y %H:%M").replace(tzinfo=ROME)
    assert first.astimezone(timezone.utc) == datetime(2016, 3, 26, 23, tzinfo=timezone.utc)
    assert start.astimezone(timezone.utc) + timedelta(days=1) == first.astimezone(timezone.utc)
