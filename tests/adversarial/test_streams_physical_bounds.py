"""Issue 9 finding 7: energy is bounded by the device's rated power over the interval.

9*10^15 Wh in one quarter-hour from a PV flow was accepted and anchored. Limits now default from
the device's rated power (registry ``rated_power_w``; else a 1 MW ceiling) times the interval,
with a margin, so a supplier owning a load and a PV flow cannot inflate the shared energy.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lec.config import Settings
from streams.plan import Bounds
from streams.process import Processor
from tests.adversarial.streams_support import assert_consistent
from tests.support.streams import TEST_COMMUNITY, envelope, item, load_test_registry


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory):
    return load_test_registry(Settings(run_dir=tmp_path_factory.mktemp("reg"))).snapshot()


def rated(snapshot, **watts: float):
    devices = dict(snapshot.devices)
    for dev, w in watts.items():
        devices[dev] = replace(devices[dev], rated_power_w=w)
    return replace(snapshot, devices=devices)


@pytest.mark.parametrize("fast_path", [True, False])
def test_audit_case_9e15_wh_from_a_pv_flow_is_refused(snapshot, fast_path: bool) -> None:
    out = Processor(snapshot, fast_path=fast_path).process_envelope(envelope([
        item({"ts": "2025-03-01T10:00:00Z", "e": 9e12}, "pv1", flow="f-pv")]))     # kWh: 9*10^15 Wh
    d = assert_consistent(out, 1)
    assert d["readings"] == []
    assert d["deadletters"][0]["reason_code"] == "out_of_range"
    assert "rated power" in d["feedback"][0]["errors"][0]["message"]
    assert [a["kind"] for a in d["anomalies"]] == ["out_of_range"]


@pytest.mark.parametrize("fast_path", [True, False])
def test_load_and_pv_of_one_supplier_are_each_bounded_by_their_rating(snapshot, fast_path: bool) -> None:
    snap = rated(snapshot, **{"DEV-LOAD": 3000, "DEV-PV": 6000})
    # 3 kW x 900 s = 750 Wh, x 1.5 margin = 1125 Wh; 6 kW PV: 2250 Wh per quarter-hour
    proc = Processor(snap, fast_path=fast_path)
    out = proc.process_envelope(envelope([
        item({"readings": [{"ts": "2025-03-01T10:00:00Z", "e": 1125}, {"ts": "2025-03-01T10:15:00Z", "e": 1126}]},
             "load1", flow="f-load"),
        item({"readings": [{"ts": "2025-03-01T10:00:00Z", "e": 2.25}, {"ts": "2025-03-01T10:15:00Z", "e": 2.251}]},
             "pv1", flow="f-pv")]))
    d = assert_consistent(out, 2)
    assert sorted((r["flow_id"], r["energy_mwh"]) for r in d["readings"]) == [
        ("f-load", 1_125_000), ("f-pv", -2_250_000)]
    assert sorted((x["flow_id"], x["reading_indexes"]) for x in d["deadletters"]) == [
        ("f-load", [1]), ("f-pv", [1])]


def test_power_is_bounded_too(snapshot) -> None:
    snap = rated(snapshot, **{"DEV-POW": 5000})
    out = Processor(snap).process_envelope(envelope([
        item({"readings": [{"ts": 1740823200000, "kw": 7.5}, {"ts": 1740824100000, "kw": 7.6}]}, "p1",
             flow="f-pow")]))
    d = assert_consistent(out, 1)
    assert [r["power_active_w"] for r in d["readings"]] == [7500.0]


def test_default_rating_and_margin_come_from_the_worker_bounds(snapshot) -> None:
    proc = Processor(snapshot, bounds=Bounds(default_rated_power_w=4000, power_margin=1.0))
    out = proc.process_envelope(envelope([item({"readings": [
        {"ts": "2025-03-01T10:00:00Z", "e": 1000}, {"ts": "2025-03-01T10:15:00Z", "e": 1001}]}, "d1", flow="f-grid")]))
    d = assert_consistent(out, 1)
    assert [r["energy_mwh"] for r in d["readings"]] == [1_000_000]


def test_cumulative_register_jump_beyond_the_rating_is_refused(snapshot) -> None:
    snap = rated(snapshot, **{"DEV-CUM": 3000})
    proc = Processor(snap)
    t0 = 1740823200
    rows = [{"t": t0, "reg": 1000}, {"t": t0 + 900, "reg": 1500}, {"t": t0 + 1800, "reg": 90_000_000}]
    d = assert_consistent(proc.process_envelope(envelope([item({"readings": rows}, "c1", flow="f-cum")],
                                                         channel="http")), 1)
    assert [r["energy_mwh"] for r in d["readings"]] == [None, 500_000]
    assert d["deadletters"][0]["reading_indexes"] == [2]


def test_rated_power_travels_from_the_community_file_to_the_snapshot(tmp_path) -> None:
    from lec.registry import Registry

    doc = TEST_COMMUNITY.replace("- {id: DEV-PV, user: u-a, supplier: sup-a}",
                                 "- {id: DEV-PV, user: u-a, supplier: sup-a, rated_power_w: 6000}")
    path = tmp_path / "c.yaml"
    path.write_text(doc)
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    reg.migrate()
    reg.load_file(path)
    snap = reg.snapshot()
    assert snap.devices["DEV-PV"].rated_power_w == 6000 and snap.devices["DEV-LOAD"].rated_power_w is None
    from lec.registry.snapshot import RegistrySnapshot

    assert RegistrySnapshot.from_json(snap.to_json()).devices["DEV-PV"].rated_power_w == 6000
