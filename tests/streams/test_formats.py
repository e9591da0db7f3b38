"""Named supplier formats (streams/formats): Chain 2 JSON, distributor curve CSV and XML, with their traps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from lec.config import Settings
from lec.errors import RegistryFileError
from lec.registry.community_file import parse_community_text
from streams.app import READY_LINE
from streams.formats.chain2 import parse_chain2
from streams.formats.common import day_span, parse_day
from streams.formats.dso_curve_csv import parse_dso_curve_csv
from streams.process import Output, Processor
from tests.support.streams import envelope, item, load_test_registry

P1, P2, P3, P4 = "IT001E00000001", "IT001E00000002", "IT001E00000003", "IT001E00000004"
COMMUNITY = f"""
community: {{id: cer-fmt, name: CER Formats, timezone: Europe/Rome}}
users:
  - {{id: u-a, name: A, wallet: "0x3000000000000000000000000000000000000001"}}
suppliers:
  - {{id: sup-c2, name: Chain2 vendor}}
  - {{id: sup-dso, name: Distributor, kind: dso}}
devices:
  - {{id: {P1}, user: u-a, supplier: sup-c2}}
  - {{id: {P2}, user: u-a, supplier: sup-dso}}
  - {{id: {P3}, user: u-a, supplier: sup-dso}}
  - {{id: {P4}, user: u-a, supplier: sup-dso}}
flows:
  - {{id: c2-w, device: {P1}, supplier: sup-c2, channel: mqtt, syntax: chain2, measurement: grid,
     counter_max_mwh: 1000000000}}
  - {{id: c2-i, device: {P1}, supplier: sup-c2, channel: mqtt, syntax: chain2, measurement: grid,
     sign_convention: generator, counter_max_mwh: 1000000000}}
  - {{id: csv-w2, device: {P2}, supplier: sup-dso, channel: sftp, syntax: dso-curve-csv, measurement: grid}}
  - {{id: csv-i2, device: {P2}, supplier: sup-dso, channel: sftp, syntax: dso-curve-csv, measurement: grid,
     sign_convention: generator}}
  - {{id: csv-w3, device: {P3}, supplier: sup-dso, channel: sftp, syntax: dso-curve-csv, measurement: grid}}
  - {{id: xml-w4, device: {P4}, supplier: sup-dso, channel: http, syntax: dso-curve-xml, measurement: grid}}
  - {{id: xml-i4, device: {P4}, supplier: sup-dso, channel: http, syntax: dso-curve-xml, measurement: grid,
     sign_convention: generator}}
"""
T0 = 1774861200          # 2026-03-30T09:00:00Z, a quarter-hour boundary
RECEIVED = "2026-03-30T10:00:00.000Z"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory):
    return load_test_registry(Settings(run_dir=tmp_path_factory.mktemp("fmt")), COMMUNITY).snapshot()


def run(proc: Processor, payload: Any, mid: str, *, supplier: str, channel: str, flow: str | None = None,
        device: str | None = None, received: str = RECEIVED) -> dict[str, list[dict]]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()   # ints beyond 64 bits too
    env = envelope([item(data, mid, flow=flow, device=device, received_ts=received)], channel=channel,
                   supplier=supplier, community="cer-fmt")
    out = proc.process_envelope(env)
    return {n: [orjson.loads(v) for _, v in getattr(out, n)] for n in ("readings", "deadletters", "feedback",
                                                                       "anomalies")}


def c2(ts: int, last_end: int | None, w_last: int, i_last: int, w_prev: int | None = None,
       i_prev: int | None = None, **extra: Any) -> dict:
    qh: dict[str, Any] = {"last": {"end": last_end, "1-0:1.8.0": w_last, "1-0:2.8.0": i_last}}
    if w_prev is not None:
        qh["previous"] = {"end": (last_end or 0) - 900 if last_end else None, "1-0:1.8.0": w_prev,
                          "1-0:2.8.0": i_prev}
    return {"pod": P1, "device_id": "C2-0001", "ts": ts, "1-0:1.7.0": 400, "1-0:2.7.0": 1200, "qh": qh, **extra}


def send_c2(proc: Processor, msg: Any, mid: str) -> dict[str, list[dict]]:
    return run(proc, msg, mid, supplier="sup-c2", channel="mqtt", flow="c2-w", device=P1)


# -- registry ---------------------------------------------------------------------------------
def test_named_formats_fill_the_flow_settings(snapshot) -> None:
    w, i = snapshot.flows["c2-w"], snapshot.flows["c2-i"]
    assert (w.value_kind, w.units, w.mapping, w.ts_format) == (
        "cumulative", {"energy": "Wh", "power": "W"}, {"ts": "ts", "energy": "energy", "power": "power"}, "iso")
    assert (w.sign_factor, i.sign_factor) == (1, -1)
    c = snapshot.flows["csv-w2"]
    assert (c.value_kind, c.units, c.interval_s) == ("interval", {"energy": "kWh"}, 900)


def test_registry_refuses_settings_that_contradict_the_format() -> None:
    bad = COMMUNITY.replace("syntax: chain2, measurement: grid,\n     counter_max_mwh",
                            "syntax: chain2, measurement: grid, value_kind: interval,\n     counter_max_mwh", 1)
    with pytest.raises(RegistryFileError, match="fixes value_kind"):
        parse_community_text(bad)
    twice = COMMUNITY.replace("sign_convention: generator, counter_max_mwh", "counter_max_mwh", 1)
    with pytest.raises(RegistryFileError, match="one flow per direction"):
        parse_community_text(twice)


# -- Chain 2 ----------------------------------------------------------------------------------
def test_chain2_withdrawal_positive_injection_negative_never_netted(snapshot) -> None:
    proc = Processor(snapshot)
    send_c2(proc, c2(T0 + 5, T0, 1_000_000, 50_000), "a")              # baselines
    out = send_c2(proc, c2(T0 + 905, T0 + 900, 1_000_150, 50_400, 1_000_000, 50_000), "b")
    by_flow = {r["flow_id"]: r for r in out["readings"]}
    assert set(by_flow) == {"c2-w", "c2-i"}
    assert by_flow["c2-w"]["energy_mwh"] == 150_000 and by_flow["c2-w"]["ts"] == "2026-03-30T09:00:00Z"
    assert by_flow["c2-i"]["energy_mwh"] == -400_000 and by_flow["c2-i"]["interval_s"] == 900
    # the 'previous' quarter-hour was already reported as 'last': dropped once, counted
    assert out["feedback"][0]["duplicates"] == 2 and out["feedback"][0]["status"] == "accepted"
    assert out["deadletters"] == []


def test_chain2_rollover_and_meter_replacement(snapshot) -> None:
    proc = Processor(snapshot)
    top = 1_000_000_000 // 1000          # counter_max_mwh in Wh
    send_c2(proc, c2(T0 + 5, T0, top - 100, 0), "a")
    out = send_c2(proc, c2(T0 + 905, T0 + 900, 50, 0), "b")            # wrapped past the top
    w = next(r for r in out["readings"] if r["flow_id"] == "c2-w")
    assert w["energy_mwh"] == 150_000 and not w["estimated"]
    out = send_c2(proc, c2(T0 + 1805, T0 + 1800, 20, 0), "c")          # new meter: register from 0
    w = next(r for r in out["readings"] if r["flow_id"] == "c2-w")
    assert w["energy_mwh"] == 20_000 and w["estimated"]
    assert [a["kind"] for a in out["anomalies"]] == ["counter_reset"]


def test_chain2_epoch_zero_uses_the_profile_slot_or_is_refused(snapshot) -> None:
    proc = Processor(snapshot)
    out = send_c2(proc, c2(0, T0, 1_000, 0), "a")                      # clock unset, profile dated: fine
    assert {r["ts"] for r in out["readings"]} == {"2026-03-30T09:00:00Z"}
    out = send_c2(proc, c2(T0 + 905, None, 1_100, 0), "b")             # profile undated: slot from ts
    assert {r["ts"] for r in out["readings"]} == {"2026-03-30T09:00:00Z"}   # previous instant of the delta
    assert next(r for r in out["readings"] if r["flow_id"] == "c2-w")["energy_mwh"] == 100_000
    out = send_c2(proc, c2(0, None, 1_200, 0), "c")                    # neither: refused, never 1970
    assert out["readings"] == []
    assert {d["reason_code"] for d in out["deadletters"]} == {"ts_unset"}
    live = {"pod": P1, "ts": 0, "1-0:1.8.0": 5, "1-0:2.8.0": 1}
    out = send_c2(proc, live, "d")
    assert out["readings"] == [] and out["deadletters"][0]["reason_code"] == "ts_unset"


def test_chain2_live_sample_dates_production_a_minute_earlier(snapshot) -> None:
    rows = parse_chain2(orjson.dumps({"pod": P1, "ts": T0 + 30, "1-0:1.8.0": 10, "1-0:2.8.0": 20,
                                      "1-0:1.7.0": 100, "1-0:2.7.0": 300}), {})
    assert [(r["direction"], r["ts"], r["power"]) for r in rows] == [
        ("injection", "2026-03-30T08:59:30Z", 300), ("withdrawal", "2026-03-30T09:00:30Z", 100)]
    proc = Processor(snapshot)
    out = send_c2(proc, {"pod": P1, "ts": T0 + 30, "1-0:1.8.0": 10, "1-0:2.8.0": 20, "1-0:1.7.0": 100,
                         "1-0:2.7.0": 300}, "a")
    pw = {r["flow_id"]: r["power_active_w"] for r in out["readings"]}
    assert pw == {"c2-w": 100.0, "c2-i": -300.0}


def test_chain2_catch_up_burst_newest_first(snapshot) -> None:
    proc = Processor(snapshot)
    burst = [c2(T0 + 2700 + 5, T0 + 2700, 1_300, 0, 1_200, 0), c2(T0 + 1805, T0 + 1800, 1_200, 0, 1_100, 0),
             c2(T0 + 905, T0 + 900, 1_100, 0, 1_000, 0)]
    out = run(proc, burst, "burst", supplier="sup-c2", channel="mqtt", flow="c2-w", device=P1,
              received="2026-03-30T12:00:00.000Z")          # after a power cut
    w = [(r["ts"], r["energy_mwh"]) for r in out["readings"] if r["flow_id"] == "c2-w"]
    assert w == [("2026-03-30T09:00:00Z", None), ("2026-03-30T09:00:00Z", 100_000),
                 ("2026-03-30T09:15:00Z", 100_000), ("2026-03-30T09:30:00Z", 100_000)]
    assert out["feedback"][0]["duplicates"] == 4      # each previous already in the burst as a last
    assert all(r["late"] for r in out["readings"] if r["energy_mwh"])


def test_chain2_pod_must_be_the_topic_device(snapshot) -> None:
    proc = Processor(snapshot)
    out = send_c2(proc, {**c2(T0 + 5, T0, 1, 0), "pod": P2}, "x")
    assert {d["reason_code"] for d in out["deadletters"]} == {"flow_device_mismatch"}


# -- distributor curve CSV --------------------------------------------------------------------
def curve_line(pod: str, day: str, n: int, kind: str | None = "PRELIEVO", value: str = "0,25") -> str:
    return ";".join([pod, day, *([kind] if kind else []), *([value] * n)])


def test_day_lengths_of_the_italian_dst_days() -> None:
    assert day_span(parse_day("27/03/2016"), "Europe/Rome")[1] == 92
    assert day_span(parse_day("2016-10-30"), "Europe/Rome")[1] == 100
    assert day_span(parse_day("20160301"), "Europe/Rome")[1] == 96


def test_dso_csv_monthly_multi_pod_file_with_dst_days_and_a_wrong_day(snapshot) -> None:
    text = "\n".join([
        "Distributore: e-distribuzione SpA;Mese: 03/2016",
        "POD;DATA;TIPO;" + ";".join(f"Q{i}" for i in range(1, 101)),
        curve_line(P2, "26/03/2016", 96) + ";;;;",                 # padded to 100 columns
        curve_line(P2, "27/03/2016", 92),                          # spring forward: 92
        curve_line(P2, "27/03/2016", 92, "IMMISSIONE", "1,000"),
        curve_line(P3, "27/03/2016", 96),                          # wrong length for that day: refused
        curve_line(P3, "28/03/2016", 96, None, "0,5"),             # no type column: withdrawal
    ]).encode()
    proc = Processor(snapshot)
    out = run(proc, text, "file-1", supplier="sup-dso", channel="sftp", flow="csv-w2", device=P2,
              received="2026-03-30T10:00:00.000Z")
    by_flow: dict[str, list[dict]] = {}
    for r in out["readings"]:
        by_flow.setdefault(r["flow_id"], []).append(r)
    assert len(by_flow["csv-w2"]) == 96 + 92 and len(by_flow["csv-i2"]) == 92 and len(by_flow["csv-w3"]) == 96
    assert {r["energy_mwh"] for r in by_flow["csv-w2"]} == {250_000}
    assert {r["energy_mwh"] for r in by_flow["csv-i2"]} == {-1_000_000}
    day = sorted(r["ts"] for r in by_flow["csv-i2"])
    assert day[0] == "2016-03-26T23:00:00Z" and day[-1] == "2016-03-27T21:45:00Z"   # 00:00 CET .. 23:45 CEST
    assert len(set(day)) == 92
    assert [(d["reason_code"], d["source"].get("line_start")) for d in out["deadletters"]] == [("day_length", 6)]
    assert "has 96 quarter-hour values, but that day has 92" in out["deadletters"][0]["message"]
    assert out["feedback"][0]["status"] == "partial"


def test_huge_energy_is_a_dead_letter_not_an_internal_error(snapshot) -> None:
    text = curve_line(P2, "01/03/2016", 95) + ";1e400"      # finite for Decimal, beyond any int64 of mWh
    out = run(Processor(snapshot), text.encode(), "big", supplier="sup-dso", channel="sftp", flow="csv-w2",
              device=P2)
    assert len(out["readings"]) == 95
    assert [d["reason_code"] for d in out["deadletters"]] == ["out_of_range"]


def test_routed_rows_take_the_fast_path_with_identical_output(snapshot) -> None:
    text = "\n".join([curve_line(P2, "26/03/2016", 96), curve_line(P2, "27/03/2016", 92, "IMMISSIONE"),
                      curve_line(P3, "27/03/2016", 92, None, "0,5"), curve_line(P3, "28/03/2016", 95)]).encode()
    env = envelope([item(text, "same", flow="csv-w2", device=P2, received_ts=RECEIVED)], channel="sftp",
                   supplier="sup-dso", community="cer-fmt")
    fast, slow = Processor(snapshot).process_envelope(env), Processor(snapshot, fast_path=False).process_envelope(env)
    assert len(fast.readings) == 96 + 92 + 92
    assert fast.readings == slow.readings
    strip = lambda recs: [{k: v for k, v in orjson.loads(r).items() if k != "ts" and not k.endswith("_ts")} for _, r in recs]
    assert strip(fast.deadletters) == strip(slow.deadletters) and strip(fast.feedback) == strip(slow.feedback)


def test_dso_csv_fall_back_day_has_100_distinct_quarter_hours() -> None:
    rows = parse_dso_curve_csv(curve_line(P2, "30/10/2016", 100).encode(), {})
    ts = [r["ts"] for r in rows]
    assert len(set(ts)) == 100 and ts[0] == "2016-10-29T22:00:00Z" and ts[-1] == "2016-10-30T22:45:00Z"


def test_dso_csv_unknown_pod_and_broken_lines_are_dead_letters(snapshot) -> None:
    text = "\n".join([curve_line(P2, "01/03/2016", 96), curve_line("IT001E99999999", "01/03/2016", 96),
                      "garbage;" + ";".join(["x"] * 95), curve_line(P2, "31/02/2016", 96),
                      curve_line(P2, "02/03/2016", 96, "REATTIVA")]).encode()
    out = run(Processor(snapshot), text, "f2", supplier="sup-dso", channel="sftp", flow="csv-w2", device=P2)
    # one dead letter per item (issue 9 finding 11); the feedback lists every rejection
    reasons = [e["reason_code"] for e in out["feedback"][0]["errors"]]
    assert out["deadletters"][0]["rejected_count"] == len(reasons)
    assert reasons.count("unknown_device") == 96
    assert {"dso_line_invalid", "dso_date_invalid", "dso_direction_unknown"} <= set(reasons)
    assert len(out["readings"]) == 96


# -- distributor XML --------------------------------------------------------------------------
def xml_doc(day: str, n_w: int, n_i: int) -> bytes:
    ea = " ".join(f'E{i}="0,1"' for i in range(1, n_w + 1))
    ei = " ".join(f'E{i}="0,2"' for i in range(1, n_i + 1))
    return (f'<?xml version="1.0"?><FlussoMisure xmlns="urn:x"><DatiPod><Pod>{P4}</Pod>'
            f'<Curva><Giorno>{day}</Giorno><Ea {ea}/><Ei {ei}/></Curva></DatiPod></FlussoMisure>').encode()


def test_dso_xml_withdrawal_and_injection_on_the_fall_back_day(snapshot) -> None:
    out = run(Processor(snapshot), xml_doc("30/10/2016", 100, 96), "x1", supplier="sup-dso", channel="http",
              flow="xml-w4", device=P4)
    w = [r for r in out["readings"] if r["flow_id"] == "xml-w4"]
    assert len(w) == 100 and {r["energy_mwh"] for r in w} == {100_000}
    assert [d["reason_code"] for d in out["deadletters"]] == ["day_length"]     # Ei: 96 on a 100-QH day


def test_dso_xml_refuses_entities(snapshot) -> None:
    bad = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><FlussoMisure/>'
    out = run(Processor(snapshot), bad, "x2", supplier="sup-dso", channel="http", flow="xml-w4", device=P4)
    assert [d["reason_code"] for d in out["deadletters"]] == ["xml_forbidden"]


# -- fuzz: every malformed input ends as a dead letter with a reason, nothing raises -------------
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.errors import Reject
from streams.parse import parse_rows

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])
scalar = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12)
stamp = st.one_of(st.just(0), st.integers(-10, 2**40), st.sampled_from([T0, T0 + 900, "2026-03-30T09:00:00Z",
                                                                         "2026-03-30T09:00:00", "x"]), scalar)
qh_entry = st.fixed_dictionaries({}, optional={"end": stamp, "1-0:1.8.0": scalar | st.integers(0, 10**9),
                                               "1-0:2.8.0": scalar | st.integers(0, 10**9)})
chain2_msg = st.fixed_dictionaries({}, optional={
    "pod": st.sampled_from([P1, P2, "", "IT001E99999999"]) | scalar, "ts": stamp, "device_id": scalar,
    "1-0:1.8.0": scalar, "1-0:2.8.0": scalar, "1-0:1.7.0": scalar, "1-0:2.7.0": scalar,
    "qh": st.fixed_dictionaries({}, optional={"last": qh_entry | scalar, "previous": qh_entry}) | scalar,
    "data": st.dictionaries(st.sampled_from(["1-0:1.8.0", "1-0:2.8.0", "x"]), scalar, max_size=3)})
cells = st.sampled_from(["0,25", "1.234,5", "", "x", "=1+1", "-0,1", "NaN", "1e400"])
curve_line_st = st.builds(
    lambda pod, day, kind, vals: ";".join([pod, day, *kind, *vals]),
    st.sampled_from([P2, P3, "IT001E99999999", "POD", "", "IT001E0000000"]),
    st.sampled_from(["27/03/2016", "30/10/2016", "01/03/2016", "2016-13-01", "", "31/02/2016"]),
    st.sampled_from([[], ["PRELIEVO"], ["IMMISSIONE"], ["??"]]),
    st.integers(0, 101).flatmap(lambda n: st.lists(cells, min_size=n, max_size=n)))


def assert_answered(out: dict[str, list[dict]], rows_hint: int | None = None) -> None:
    assert len(out["feedback"]) == 1
    fb = out["feedback"][0]
    assert fb["accepted"] == len(out["readings"])
    assert fb["rejected"] == sum(d.get("rejected_count", 1) for d in out["deadletters"])
    for d in out["deadletters"]:
        assert d["reason_code"] and d["message"] and d["payload_b64"] is not None
        assert d["reason_code"] != "internal_error", d["message"]
    for r in out["readings"]:
        assert r["ts"] >= "2000"      # never an epoch-0 reading


@FUZZ
@given(payload=st.binary(max_size=1500), syntax=st.sampled_from(["chain2", "dso-curve-csv", "dso-curve-xml"]))
def test_fuzz_named_parsers_only_raise_reject(payload: bytes, syntax: str) -> None:
    try:
        rows = parse_rows(payload, syntax, {})
    except Reject as rej:
        assert rej.reason_code and rej.message
    else:
        assert all(isinstance(r, dict) for r in rows)


@FUZZ
@given(msgs=st.lists(chain2_msg, min_size=1, max_size=4) | chain2_msg.map(lambda m: [m]),
       as_list=st.booleans())
def test_fuzz_chain2_through_the_pipeline(snapshot, msgs: list, as_list: bool) -> None:
    out = send_c2(Processor(snapshot), msgs if as_list else msgs[0], "fz")
    assert_answered(out)


@FUZZ
@given(lines=st.lists(curve_line_st | st.text(max_size=30), min_size=1, max_size=5))
def test_fuzz_dso_csv_through_the_pipeline(snapshot, lines: list[str]) -> None:
    out = run(Processor(snapshot), "\n".join(lines).encode(), "fz", supplier="sup-dso", channel="sftp",
              flow="csv-w2", device=P2)
    assert_answered(out)


@FUZZ
@given(day=st.sampled_from(["27/03/2016", "30/10/2016", "2016-03-01", "", "zz"]), n_w=st.integers(0, 101),
       n_i=st.integers(0, 101), value=cells, junk=st.sampled_from(["", "<x/>", "<Curva/>", "<Pod/>"]))
def test_fuzz_dso_xml_through_the_pipeline(snapshot, day: str, n_w: int, n_i: int, value: str, junk: str) -> None:
    doc = xml_doc(day, n_w, n_i).replace(b'"0,1"', f'"{value}"'.encode()).replace(b"</DatiPod>",
                                                                                  f"{junk}</DatiPod>".encode())
    out = run(Processor(snapshot), doc, "fz", supplier="sup-dso", channel="http", flow="xml-w4", device=P4)
    assert_answered(out)


# -- on the real worker ------------------------------------------------------------------------
def test_named_formats_on_the_real_worker(fresh_kafka, settings: Settings) -> None:
    import signal

    from lec import topics
    from lec.kafka import ensure_topics
    from tests.support.streams import log_contains, produce, read_topic, start_worker

    _, bootstrap = fresh_kafka
    ensure_topics(bootstrap)
    load_test_registry(settings, COMMUNITY)
    worker = start_worker(settings.resolved_run_dir(), bootstrap, "streams-formats")

    def env(payload: Any, mid: str, supplier: str, channel: str, flow: str, device: str) -> bytes:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        return envelope([item(data, mid, flow=flow, device=device, received_ts=RECEIVED)], channel=channel,
                        supplier=supplier, community="cer-fmt")

    csv_file = "\n".join(["POD;DATA;TIPO;valori", curve_line(P2, "26/03/2016", 96), curve_line(P2, "27/03/2016", 92),
                          curve_line(P3, "27/03/2016", 96)]).encode()
    try:
        worker.wait_ready(lambda: log_contains(worker, READY_LINE), timeout=240)
        produce(bootstrap, topics.RAW, [
            (P1.encode(), env(c2(T0 + 5, T0, 1_000_000, 50_000), "c2-a", "sup-c2", "mqtt", "c2-w", P1)),
            (P1.encode(), env(c2(T0 + 905, T0 + 900, 1_000_150, 50_400, 1_000_000, 50_000), "c2-b", "sup-c2",
                              "mqtt", "c2-w", P1)),
            (P1.encode(), env({"pod": P1, "ts": 0, "1-0:1.8.0": 1}, "c2-zero", "sup-c2", "mqtt", "c2-w", P1)),
            (P2.encode(), env(csv_file, "csv-month", "sup-dso", "sftp", "csv-w2", P2)),
            (P4.encode(), env(xml_doc("01/03/2016", 96, 96), "xml-day", "sup-dso", "http", "xml-w4", P4)),
        ])
        readings = read_topic(bootstrap, topics.READINGS, lambda o: len(o) >= 4 + 188 + 192, timeout=90)
        dead = read_topic(bootstrap, topics.DEADLETTER, lambda o: len(o) >= 2, timeout=30)
        feedback = read_topic(bootstrap, topics.FEEDBACK, lambda o: len(o) >= 5, timeout=30)
    finally:
        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(timeout=30)
        worker.stop()
    count: dict[str, int] = {}
    for r in readings:
        count[r["flow_id"]] = count.get(r["flow_id"], 0) + 1
    assert count == {"c2-w": 2, "c2-i": 2, "csv-w2": 96 + 92, "xml-w4": 96, "xml-i4": 96}
    signs = {(r["flow_id"], (r["energy_mwh"] or 0) > 0, (r["energy_mwh"] or 0) < 0) for r in readings}
    assert ("c2-w", True, False) in signs and ("c2-i", False, True) in signs and ("xml-i4", False, True) in signs
    assert sorted(d["reason_code"] for d in dead) == ["day_length", "ts_unset"]
    assert {f["message_id"]: f["status"] for f in feedback} == {
        "c2-a": "accepted", "c2-b": "accepted", "c2-zero": "rejected", "csv-month": "partial", "xml-day": "accepted"}


# -- the examples ------------------------------------------------------------------------------
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "formats"


def test_examples_validate_and_every_sample_is_accepted(tmp_path) -> None:
    from jsonschema import Draft202012Validator, FormatChecker

    from lec.schemas import SCHEMA_DIR

    schema = json.loads((SCHEMA_DIR / "formats" / "chain2.json").read_text())
    Draft202012Validator.check_schema(schema)
    v = Draft202012Validator(schema, format_checker=FormatChecker())
    assert list(v.iter_errors(json.loads((EXAMPLES / "f-chain2.json").read_text()))) == []
    snap = load_test_registry(Settings(run_dir=tmp_path), (EXAMPLES / "community.yaml").read_text()).snapshot()
    assert {f.syntax for f in snap.flows.values()} == {"json", "csv", "xml", "chain2", "dso-curve-csv",
                                                       "dso-curve-xml"}
    proc = Processor(snap)
    sent = {"f-json": ("sup-vendor", "mqtt", "f-json.json"), "f-csv": ("sup-vendor", "sftp", "f-csv.csv"),
            "f-xml": ("sup-vendor", "http", "f-xml.xml"), "f-chain2-w": ("sup-chain2", "mqtt", "f-chain2.json"),
            "f-curve-w": ("sup-dso", "sftp", "f-curve.csv"), "f-curvexml-w": ("sup-dso", "sftp", "f-curvexml.xml")}
    per_flow: dict[str, int] = {}
    for flow_id, (supplier, channel, name) in sent.items():
        data = (EXAMPLES / name).read_bytes()
        env = envelope([item(data, name, flow=flow_id, device=snap.flows[flow_id].device_id,
                             received_ts="2026-03-30T10:00:00.000Z")],
                       channel=channel, supplier=supplier, community="cer-formats")
        out = proc.process_envelope(env)
        assert out.deadletters == [], [orjson.loads(d)["message"] for _, d in out.deadletters]
        for _, r in out.readings:
            fid = orjson.loads(r)["flow_id"]
            per_flow[fid] = per_flow.get(fid, 0) + 1
    assert per_flow == {"f-json": 2, "f-csv": 2, "f-xml": 2, "f-chain2-w": 2, "f-chain2-i": 2,
                        "f-curve-w": 96 + 92, "f-curve-i": 92, "f-curvexml-w": 100}


@pytest.mark.parametrize("seed", range(6))
def test_routed_curve_files_fast_and_precise_paths_agree(snapshot, seed: int) -> None:
    """Random distributor files (PODs known and not, DST days, wrong lengths, directions, values exact,
    rounded, huge, signed, garbage; lines resent in later items): the fast path (a line's rows in one
    loop, text values read as integers) gives the precise path's bytes and state."""
    import random

    from tests.streams.test_fastpath import same_outputs

    rnd = random.Random(seed)
    days = ["01/03/2016", "02/03/2016", "27/03/2016", "30/10/2016", "31/10/2016"]
    values = ["0,25", "0,25", "1,5", "12", "0,000001", "0,0000005", "0,1234567", "1e400", "x", "", "-0,5",
              "1.234,5", " 0,3 ", "0,", ",5", "99999999999999999999", "0.75", "+1", "\u0661"]

    def line() -> str:
        pod = rnd.choice([P2, P2, P3, "IT001E99999999"])
        day = rnd.choice(days)
        n = day_span(parse_day(day), "Europe/Rome")[1] + rnd.choice([0, 0, 0, 0, -1, 1])
        kind = rnd.choice(["PRELIEVO", "PRELIEVO", "IMMISSIONE", None, "REATTIVA"])
        cells = [rnd.choice(values) if rnd.random() < 0.05 else "0,25" for _ in range(n)]
        return ";".join([pod, day, *([kind] if kind else []), *cells])

    lines = [line() for _ in range(12)]
    items = [lines[:6], lines[4:10], lines[8:] + lines[:2]]      # overlapping: resent lines are duplicates
    envs = [envelope([item("\n".join(chunk).encode(), f"f{seed}-{k}", flow="csv-w2", device=P2,
                           received_ts=RECEIVED)], channel="sftp", supplier="sup-dso", community="cer-fmt")
            for k, chunk in enumerate(items)]
    envs.append(envs[0])                                          # the same item again: a duplicate message
    slow, fast = Processor(snapshot, fast_path=False), Processor(snapshot)
    out_slow, out_fast = Output(), Output()
    for env in envs:
        out_slow.extend(slow.process_envelope(env))
        out_fast.extend(fast.process_envelope(env))
    assert out_fast.readings, "the generator made no clean line"
    same_outputs(out_slow, out_fast, slow, fast)
