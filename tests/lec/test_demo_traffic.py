"""The demo community comes from real SimBench profiles and its traffic carries real feeds' faults."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from lec.demo.community import COMMUNITY_ID, build_demo
from lec.demo.run import default_start
from lec.demo.traffic import build_traffic, expected_dst_day_hours
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
    assert kinds == {"load", "production", "storage", "grid"}
    assert {f["channel"] for f in doc["flows"]} == {"mqtt", "sftp", "http"}
    assert {f["syntax"] for f in doc["flows"]} == {"json", "chain2", "dso-curve-csv"}
    assert len(series) == 5 + 2 + 2 + 1        # 5 load meters, the Chain 2 point's 2 directions, 2 PV, 1 battery


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
    _, _, _series, traffic = demo
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
    assert {m.topic.split("/")[2] for m in traffic.mqtt} == {"sup-smarthome", "sup-chain2box"}


def test_dst_day_has_92_quarter_hours_in_the_distributor_curve(demo) -> None:
    start, _, series, traffic = demo
    assert expected_dst_day_hours(datetime(2016, 3, 27)) == 23
    assert expected_dst_day_hours(datetime(2016, 10, 30)) == 25
    dst_file = next(f for f in traffic.sftp if f.name == "curva_20160327.csv")
    lines = dst_file.content.decode().strip().splitlines()[2:]          # after the metadata and header lines
    utility = [s for s in series if s.supplier_id == "sup-utility"]
    assert sorted(ln.split(";")[0] for ln in lines) == sorted(s.device_id for s in utility)   # one row per POD
    assert all(ln.split(";")[1:3] == ["27/03/2016", "PRELIEVO"] and len(ln.split(";")) == 3 + 92 for ln in lines)
    # the row's first value is the quarter-hour from local midnight (23:00Z the day before), in kWh
    s = utility[0]
    k = (datetime(2016, 3, 26, 23, tzinfo=UTC) - start).total_seconds() // 900
    row = next(ln for ln in lines if ln.startswith(s.device_id)).split(";")
    assert row[3] == f"{s.energies_wh[int(k)] / 1000:.4f}".replace(".", ",")
    assert start.astimezone(UTC) + timedelta(days=1) == datetime(2016, 3, 26, 23, tzinfo=UTC)


def test_the_curve_files_and_chain2_messages_pass_the_pipeline(demo, tmp_path) -> None:
    """The demo's formats through the real parsers and Processor: nothing dead-lettered."""
    import yaml

    from lec.config import Settings
    from streams.process import Processor
    from tests.support.streams import envelope, item, load_test_registry

    _, doc, series, traffic = demo
    snap = load_test_registry(Settings(run_dir=tmp_path), yaml.safe_dump(doc)).snapshot()
    proc = Processor(snap)
    readings, dead = [], []
    for n, f in enumerate({f.name: f for f in traffic.sftp}.values()):   # the duplicate upload: the watcher's job
        flow = snap.flows[f.flow_folder]
        out = proc.process_envelope(envelope([item(f.content, f"file-{n}", flow=flow.id, device=flow.device_id,
                                                   received_ts="2016-04-01T00:00:00.000Z")],
                                             channel="sftp", supplier="sup-utility", community=COMMUNITY_ID))
        readings += [orjson.loads(v) for _, v in out.readings]
        dead += [orjson.loads(v) for _, v in out.deadletters]
    for n, m in enumerate(x for x in traffic.mqtt if "/sup-chain2box/" in x.topic):
        _, _, supplier, device, flow_id = m.topic.split("/")
        out = proc.process_envelope(envelope([item(m.payload, f"c2-{n}", flow=flow_id, device=device,
                                                   received_ts="2016-04-01T00:00:00.000Z")],
                                             channel="mqtt", supplier=supplier, community=COMMUNITY_ID))
        readings += [orjson.loads(v) for _, v in out.readings]
        dead += [orjson.loads(v) for _, v in out.deadletters]
    assert dead == []
    by_flow: dict[str, int] = {}
    for r in readings:
        if r["energy_mwh"] is not None:
            by_flow[r["flow_id"]] = by_flow.get(r["flow_id"], 0) + r["energy_mwh"]
    for s in series:
        if s.supplier_id == "sup-utility":      # complete local days only: 26, 27, 28 March = 96 + 92 + 96 QH
            # values in kWh with 4 decimals: within 0.05 Wh each
            assert by_flow[s.flow_id] == pytest.approx(sum(s.energies_wh[:96 + 92 + 96]) * 1000, abs=50 * 284)
        if s.supplier_id == "sup-chain2box":    # registers in whole Wh: the sum of rounded quarter-hours
            assert by_flow[s.flow_id] == sum(round(e) for e in s.energies_wh) * 1000


def test_simbench_time_column_is_local_time_with_dst() -> None:
    """The raw SimBench time column across both 2016 DST days maps to contiguous UTC quarter-hours."""
    from lec.demo.community import _load_net, simbench_utc

    raw = _load_net().profiles["load"]["time"].tolist()
    epochs = simbench_utc(raw)
    assert len(epochs) == 366 * 96 and epochs[0] == int(datetime(2015, 12, 31, 23, tzinfo=UTC).timestamp())
    utc = {raw[i]: i for i in range(len(raw))}
    spring = [t for t in raw if t.startswith("27.03.2016")]
    fall = [t for t in raw if t.startswith("30.10.2016")]
    assert len(spring) == 92 and not any(t.endswith((" 02:00", " 02:15", " 02:30", " 02:45")) for t in spring)
    assert len(fall) == 100 and sum(t == "30.10.2016 02:00" for t in fall) == 2
    i = utc["27.03.2016 03:00"]
    assert datetime.fromtimestamp(epochs[i], UTC) == datetime(2016, 3, 27, 1, tzinfo=UTC)
    assert epochs[i] - epochs[i - 1] == 900                             # 01:45 CET -> 03:00 CEST
    first_two = raw.index("30.10.2016 02:00")
    assert [datetime.fromtimestamp(epochs[j], UTC).hour for j in (first_two, first_two + 4)] == [0, 1]
    i = raw.index("01.07.2016 12:00")                                   # summer: CEST, UTC+2
    assert datetime.fromtimestamp(epochs[i], UTC) == datetime(2016, 7, 1, 10, tzinfo=UTC)
    assert all(b - a == 900 for a, b in itertools.pairwise(epochs))


def test_summer_demo_reads_the_right_hour(tmp_path) -> None:
    """A summer start picks SimBench's row of that UTC instant (the old UTC+1 assumption was an hour off)."""
    from lec.demo.community import _load_net

    start = datetime(2016, 7, 1, 10, tzinfo=UTC)
    _, series = build_demo(start, 1, households=1, pv_plants=1)
    net = _load_net()
    raw = net.profiles["load"]["time"].tolist()
    row = raw.index("01.07.2016 12:00")                                 # 12:00 CEST = 10:00Z
    load = net.load.iloc[0]
    expect = load.p_mw * net.profiles["load"][f"{load.profile}_pload"].iloc[row] * 1e6 * 0.25
    assert series[0].energies_wh[0] == pytest.approx(expect)
