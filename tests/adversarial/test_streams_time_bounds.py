"""Issue 9 finding 8: years and offsets are bounded in parsing; lateness is bounded per flow.

Timestamps before 1970 or after 9999, or with offsets like +14:00 at year 1, were told "accepted"
and then dropped by the sink and skipped by the oracle. And without a maximum lateness a supplier
could make the oracle re-anchor any number of past quarter-hours.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lec.config import Settings
from streams.normalise import iso_z
from streams.plan import Bounds
from streams.process import Processor
from tests.adversarial.streams_support import assert_consistent
from tests.support.streams import envelope, item, load_test_registry


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory):
    return load_test_registry(Settings(run_dir=tmp_path_factory.mktemp("reg"))).snapshot()


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+14:00", "1969-12-31T23:45:00Z", "1900-06-01T00:00:00Z",
                                "1970-01-01T00:00:00+01:00", "9999-12-31T23:45:00-01:00",
                                "2024-01-01T00:00:00+23:00", "2024-01-01T00:00:00-13:00"])
def test_out_of_range_years_and_offsets_are_rejected_with_a_reason(snapshot, ts: str, fast_path: bool) -> None:
    out = Processor(snapshot, fast_path=fast_path).process_envelope(envelope([
        item({"ts": ts, "e": 1}, "y1", flow="f-grid", received_ts="9999-12-31T00:00:00.000Z")]))
    d = assert_consistent(out, 1)
    assert d["readings"] == []
    [fb] = d["feedback"]
    assert fb["status"] == "rejected" and fb["errors"][0]["reason_code"] == "ts_invalid"
    assert "1970-9999" in fb["errors"][0]["message"] or "offset" in fb["errors"][0]["message"]


@pytest.mark.parametrize("value", ["01/01/1969 10:00", "01/01/0001 00:00"])
def test_local_formats_are_bounded_too(snapshot, value: str) -> None:
    out = Processor(snapshot).process_envelope(envelope([item(f"{value};1\n".encode(), "r1", flow="f-rome",
                                                              source={"file": "a.csv", "header": "datetime;kwh"})],
                                                        channel="sftp"))
    d = assert_consistent(out, 1)
    assert d["readings"] == [] and d["feedback"][0]["errors"][0]["reason_code"] == "ts_invalid"


def quarter(i: int) -> str:
    return iso_z(1740787200 + 900 * i)      # from 2025-03-01T00:00Z


@pytest.mark.parametrize("fast_path", [True, False])
def test_lateness_defaults_from_send_frequency_and_derogation(snapshot, fast_path: bool) -> None:
    # f-fast: send_frequency 1m + derogation 5 s + margin (here 1 h) = 3665 s behind its latest reading
    proc = Processor(snapshot, fast_path=fast_path, bounds=Bounds(lateness_margin_s=3600))
    first = proc.process_envelope(envelope([item({"readings": [{"ts": quarter(100), "e": 1}]}, "l1", flow="f-fast",
                                                 received_ts="2025-03-03T00:00:00.000Z")]))
    assert_consistent(first, 1)
    rows = [{"ts": quarter(96), "e": 1}, {"ts": quarter(95), "e": 1}, {"ts": quarter(10), "e": 1}]
    d = assert_consistent(proc.process_envelope(envelope([item({"readings": rows}, "l2", flow="f-fast",
                                                                received_ts="2025-03-03T00:00:00.000Z")])), 1)
    assert [r["ts"] for r in d["readings"]] == [quarter(96)]       # 3600 s behind: within 3665 s
    assert d["deadletters"][0]["reason_code"] == "too_late" and d["deadletters"][0]["reading_indexes"] == [1, 2]
    assert "maximum lateness" in d["feedback"][0]["errors"][0]["message"]


@pytest.mark.parametrize("fast_path", [True, False])
def test_declared_max_lateness_wins_and_undeclared_flows_use_the_worker_default(snapshot, fast_path: bool) -> None:
    flows = dict(snapshot.flows)
    flows["f-grid"] = replace(flows["f-grid"], max_lateness_s=0)          # no re-anchoring of the past at all
    proc = Processor(replace(snapshot, flows=flows), fast_path=fast_path, bounds=Bounds(max_lateness_s=86400))
    for flow in ("f-grid", "f-grid2"):
        assert_consistent(proc.process_envelope(envelope([item({"ts": quarter(200), "e": 1}, f"{flow}-a",
                                                               flow=flow)])), 1)
    late = {"readings": [{"ts": quarter(199), "e": 2}, {"ts": quarter(200 - 96), "e": 2},
                         {"ts": quarter(200 - 97), "e": 2}]}
    grid = assert_consistent(proc.process_envelope(envelope([item(late, "g-b", flow="f-grid")])), 1)
    assert grid["readings"] == [] and grid["deadletters"][0]["rejected_count"] == 3
    grid2 = assert_consistent(proc.process_envelope(envelope([item(late, "g2-b", flow="f-grid2")])), 1)
    assert [r["ts"] for r in grid2["readings"]] == [quarter(199), quarter(104)]
    assert grid2["deadletters"][0]["reading_indexes"] == [2]


def test_max_lateness_comes_from_the_registry(tmp_path) -> None:
    from lec.registry import Registry
    from tests.support.streams import TEST_COMMUNITY

    doc = TEST_COMMUNITY.replace("send_frequency: 1m, derogation_s: 5}", "send_frequency: 1m, derogation_s: 5, "
                                 "max_lateness_s: 5184000}")
    (tmp_path / "c.yaml").write_text(doc)
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    reg.migrate()
    reg.load_file(tmp_path / "c.yaml")
    assert reg.snapshot().flows["f-fast"].max_lateness_s == 5184000
    assert reg.snapshot().flows["f-load"].max_lateness_s is None


def test_flows_declaring_nothing_are_bounded_by_the_worker_default(snapshot) -> None:
    """A flow with no send frequency and no max_lateness_s (all of the example community's) was unbounded:
    a supplier could make the oracle re-anchor any past quarter-hour. Default: 35 days behind its latest."""
    assert Settings().streams_max_lateness_s == Bounds().max_lateness_s == 35 * 86400
    proc = Processor.from_settings(snapshot, Settings())     # f-grid: nothing declared, the worker's settings
    assert_consistent(proc.process_envelope(envelope([item({"ts": quarter(5000), "e": 1}, "u1", flow="f-grid")])), 1)
    late = {"readings": [{"ts": quarter(5000 - 34 * 96), "e": 1}, {"ts": quarter(5000 - 36 * 96), "e": 1}]}
    d = assert_consistent(proc.process_envelope(envelope([item(late, "u2", flow="f-grid")])), 1)
    assert [r["ts"] for r in d["readings"]] == [quarter(5000 - 34 * 96)]
    assert d["deadletters"][0]["reason_code"] == "too_late" and d["deadletters"][0]["reading_indexes"] == [1]


def test_historic_replays_can_still_opt_out(snapshot) -> None:
    proc = Processor.from_settings(snapshot, Settings(streams_max_lateness_s=0))    # 0 = unbounded
    assert_consistent(proc.process_envelope(envelope([item({"ts": quarter(5000), "e": 1}, "u1", flow="f-grid")])), 1)
    d = assert_consistent(proc.process_envelope(envelope([item({"ts": quarter(0), "e": 1}, "u2", flow="f-grid")])), 1)
    assert len(d["readings"]) == 1
