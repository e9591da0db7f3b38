"""The pure pipeline (parse, validate, normalise, sign, dedup) over a registry loaded from YAML."""

from __future__ import annotations

import base64
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson
import pytest

from lec.config import Settings
from streams.errors import Reject
from streams.normalise import energy_to_mwh, parse_ts, power_to_mwh, snap
from streams.parse import parse_rows
from streams.process import Processor
from tests.support.streams import envelope, item, load_test_registry

RECEIVED = "2026-01-01T00:00:00.000Z"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory):
    return load_test_registry(Settings(run_dir=tmp_path_factory.mktemp("reg"))).snapshot()


def run(proc: Processor, items: list[dict], **kw: Any) -> dict[str, list[dict]]:
    out = proc.process_envelope(envelope(items, **kw))
    return {name: [orjson.loads(v) for _, v in getattr(out, name)]
            for name in ("readings", "deadletters", "feedback", "anomalies")}


def one(snapshot, payload, flow: str | None = None, device: str | None = None, **kw: Any) -> dict[str, list[dict]]:
    return run(Processor(snapshot), [item(payload, "m1", flow=flow, device=device)], **kw)


# -- Table 13 -------------------------------------------------------------------------------
@pytest.mark.parametrize(("flow", "source_wh", "expected_mwh", "case"), [
    ("f-load", 100, 100_000, "load absorption +"),
    ("f-pv", 0.25, -250_000, "PV production reported + by a generator-convention inverter -> -"),
    ("f-pv2", -250, -250_000, "PV production reported - by a consumer-convention meter stays -"),
    ("f-grid", 40, 40_000, "grid withdrawal +"),
    ("f-grid", -40, -40_000, "grid injection -"),
    ("f-grid2", 40, -40_000, "grid injection reported + (generator convention) -> -"),
    ("f-grid2", -40, 40_000, "grid withdrawal reported - (generator convention) -> +"),
    ("f-bat", 30, 30_000, "storage charging +"),
    ("f-bat", -30, -30_000, "storage discharging -"),
    ("f-bat2", 30, -30_000, "storage discharging reported + (generator convention) -> -"),
    ("f-bat2", -30, 30_000, "storage charging reported - (generator convention) -> +"),
])
def test_table13_sign_of_every_case(snapshot, flow: str, source_wh: float, expected_mwh: int, case: str) -> None:
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": source_wh}, flow=flow)
    assert [r["energy_mwh"] for r in out["readings"]] == [expected_mwh], case
    assert out["readings"][0]["measurement"] == snapshot.flows[flow].measurement


def test_power_is_signed_too_and_energy_estimated_from_power(snapshot) -> None:
    out = one(snapshot, {"ts": 1740823200000, "kw": "1.5", "v": 230, "i": 6.5}, flow="f-pow")
    r = out["readings"][0]
    assert r["power_active_w"] == 1500.0 and r["voltage_v"] == 230.0 and r["current_a"] == 6.5
    assert r["estimated"] is True and r["interval_s"] == 900
    assert r["energy_mwh"] == 375_000          # 1.5 kW x 15 min = 375 Wh
    assert r["ts"] == "2025-03-01T10:00:00Z"


# -- units and rounding -----------------------------------------------------------------------
def test_energy_conversion_is_exact_and_half_even() -> None:
    assert energy_to_mwh(Decimal("0.0005"), "Wh") == 0          # 0.5 mWh -> 0 (even)
    assert energy_to_mwh(Decimal("0.0015"), "Wh") == 2          # 1.5 mWh -> 2 (even)
    assert energy_to_mwh(Decimal("0.0025"), "Wh") == 2          # 2.5 mWh -> 2 (even)
    assert energy_to_mwh(Decimal("1.1"), "kWh") == 1_100_000    # no float error (1.1*1e6 = 1100000.0000000002)
    assert energy_to_mwh(Decimal("0.000001"), "MWh") == 1000
    assert power_to_mwh(Decimal(1), 9) == 2                     # 2.5 mWh -> 2
    assert power_to_mwh(Decimal(1), 27) == 8                    # 7.5 mWh -> 8


def test_float_json_values_convert_without_binary_error(snapshot) -> None:
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": 0.1}, flow="f-pv")   # 0.1 kWh
    assert out["readings"][0]["energy_mwh"] == -100_000


# -- time ---------------------------------------------------------------------------------------
def rome_csv(day: str, times: list[str]) -> bytes:
    return "\n".join(f"{day} {t};0,25" for t in times).encode()


def quarter_hours(hours: range) -> list[str]:
    return [f"{h:02d}:{m:02d}" for h in hours for m in (0, 15, 30, 45)]


def test_25_hour_day_fall_back_gives_100_distinct_quarter_hours(snapshot) -> None:
    times = quarter_hours(range(3)) + quarter_hours(range(2, 24))   # 02:00-02:45 appear twice, in order
    payload = rome_csv("27/10/2024", times)
    src = {"file": "rome.csv", "line_start": 2, "line_end": 101, "header": "datetime;kwh"}
    out = run(Processor(snapshot), [item(payload, "f1", flow="f-rome", source=src, content_type="text/csv")],
              channel="sftp")
    ts = [r["ts"] for r in out["readings"]]
    assert len(ts) == 100 and len(set(ts)) == 100 and not out["deadletters"]
    assert ts[0] == "2024-10-26T22:00:00Z" and ts[-1] == "2024-10-27T22:45:00Z"
    assert ts[8:16] == ["2024-10-27T00:00:00Z", "2024-10-27T00:15:00Z", "2024-10-27T00:30:00Z",
                        "2024-10-27T00:45:00Z", "2024-10-27T01:00:00Z", "2024-10-27T01:15:00Z",
                        "2024-10-27T01:30:00Z", "2024-10-27T01:45:00Z"]   # first 02:xx = CEST, second = CET
    assert all(r["energy_mwh"] == 250_000 for r in out["readings"])


def test_23_hour_day_spring_forward_92_quarter_hours_and_gap_refused(snapshot) -> None:
    times = quarter_hours(range(2)) + quarter_hours(range(3, 24))
    out = run(Processor(snapshot), [item(rome_csv("31/03/2024", times), "s1", flow="f-rome",
                                         source={"file": "s.csv", "header": "datetime;kwh"})], channel="sftp")
    ts = [r["ts"] for r in out["readings"]]
    assert len(ts) == 92 and len(set(ts)) == 92
    assert ts[7:9] == ["2024-03-31T00:45:00Z", "2024-03-31T01:00:00Z"]   # 01:45 CET then 03:00 CEST
    gap = run(Processor(snapshot), [item(rome_csv("31/03/2024", ["02:30"]), "s2", flow="f-rome",
                                         source={"file": "s.csv", "line_start": 10, "header": "datetime;kwh"})],
              channel="sftp")
    assert gap["deadletters"][0]["reason_code"] == "ts_nonexistent"
    assert gap["feedback"][0]["errors"][0]["line"] == 10


def test_ambiguous_time_across_messages_takes_the_second_instant(snapshot) -> None:
    proc = Processor(snapshot)
    src = {"file": "x.csv", "header": "datetime;kwh"}
    a = run(proc, [item(rome_csv("27/10/2024", ["02:00"]), "a", flow="f-rome", source=src)], channel="sftp")
    b = run(proc, [item(b"27/10/2024 02:00;0,5", "b", flow="f-rome", source=src)], channel="sftp")
    assert a["readings"][0]["ts"] == "2024-10-27T00:00:00Z"
    assert b["readings"][0]["ts"] == "2024-10-27T01:00:00Z" and not b["readings"][0]["conflict"]


def test_explicit_offset_wins_over_the_flow_zone() -> None:
    assert parse_ts("2024-10-27T02:30:00+01:00", "iso", "Europe/Rome")[0] == parse_ts(
        "2024-10-27T01:30:00Z", "iso", "UTC")[0]


def test_snap_to_grid_and_interpolated_flag(snapshot) -> None:
    assert snap(1_000_000_000 + 7, 900) == 1_000_000_000 - 1_000_000_000 % 900 + (
        900 if (1_000_000_000 % 900 + 7) * 2 > 900 else 0)
    out = one(snapshot, {"ts": "2025-03-01T10:07:31Z", "e": 1}, flow="f-load")
    assert out["readings"][0]["ts"] == "2025-03-01T10:15:00Z" and out["readings"][0]["interpolated"] is True
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": 1}, flow="f-load")
    assert out["readings"][0]["interpolated"] is False


@pytest.mark.parametrize(("ts", "reason"), [
    ("2026-01-01T00:05:01Z", "ts_future"),
    ("2022-12-31T23:45:00Z", "ts_before_start"),
    ("yesterday", "ts_invalid"),
    (None, "missing_field"),
])
def test_timestamp_rules(snapshot, ts, reason: str) -> None:
    out = one(snapshot, {"ts": ts, "e": 1}, flow="f-load")
    assert [d["reason_code"] for d in out["deadletters"]] == [reason]
    assert out["feedback"][0]["status"] == "rejected"


def test_future_within_clock_skew_is_accepted(snapshot) -> None:
    out = one(snapshot, {"ts": "2026-01-01T00:04:59Z", "e": 1}, flow="f-load")
    assert len(out["readings"]) == 1


# -- cumulative registers ---------------------------------------------------------------------
def test_cumulative_register_rollover_and_reset(snapshot) -> None:
    proc = Processor(snapshot)
    t0 = 1740823200  # 2025-03-01T10:00Z
    regs = [99_990, 99_999, 4, 10, 3]    # Wh; counter_max_mwh 100,000,000 = 100,000 Wh: wraps after 99,999
    rows = [{"t": t0 + 900 * i, "reg": r} for i, r in enumerate(regs)]
    out = run(proc, [item({"readings": rows}, "c1", flow="f-cum", source={"batch_id": "b1", "index": 0})],
              channel="http")
    energies = [r["energy_mwh"] for r in out["readings"]]
    assert energies == [None, 9_000, 5_000, 6_000, 3_000]
    assert out["readings"][2]["ts"] == "2025-03-01T10:15:00Z" and out["readings"][2]["interval_s"] == 900
    assert [a["kind"] for a in out["anomalies"]] == ["counter_reset"]
    assert out["readings"][4]["estimated"] is True
    # the next message continues from the stored register
    more = run(proc, [item({"t": t0 + 900 * 5, "reg": 7}, "c2", flow="f-cum")], channel="http")
    assert more["readings"][0]["energy_mwh"] == 4_000


# -- validation -------------------------------------------------------------------------------
def test_supplier_cannot_write_another_suppliers_device(snapshot) -> None:
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": 1}, device="DEV-B")
    assert out["deadletters"][0]["reason_code"] == "not_your_device"
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": 1}, flow="f-b")
    assert out["deadletters"][0]["reason_code"] == "not_your_device"


@pytest.mark.parametrize(("kw", "reason"), [
    ({"community": "cer-other"}, "wrong_community"),
    ({"supplier": "sup-nobody"}, "unknown_supplier"),
])
def test_envelope_identity(snapshot, kw, reason: str) -> None:
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": 1}, flow="f-load", **kw)
    assert out["deadletters"][0]["reason_code"] == reason


def test_inactive_flow_and_after_end_with_anomaly(snapshot) -> None:
    flows = dict(snapshot.flows)
    flows["f-load"] = replace(flows["f-load"], active=False)
    snap2 = replace(snapshot, flows=flows)
    out = one(snap2, {"ts": "2025-03-01T10:00:00Z", "e": 1}, flow="f-load")
    assert out["deadletters"][0]["reason_code"] == "flow_inactive"
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": 1}, flow="f-old")
    assert out["deadletters"][0]["reason_code"] == "after_end"
    assert [a["kind"] for a in out["anomalies"]] == ["after_end"]
    assert len(one(snapshot, {"ts": "2024-05-31T23:45:00Z", "e": 1}, flow="f-old")["readings"]) == 1


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-inf", "abc", True, [1], {"x": 1}, "1" * 100])
def test_values_must_be_finite_numbers(snapshot, value) -> None:
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": value}, flow="f-load")
    assert out["deadletters"][0]["reason_code"] in ("value_not_number", "value_not_finite")
    assert not out["readings"]


def test_limits_reject_with_out_of_range_anomaly(snapshot) -> None:
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": 10_001}, flow="f-load")   # 10,001,000 mWh > limit
    assert out["deadletters"][0]["reason_code"] == "out_of_range"
    assert out["anomalies"][0]["kind"] == "out_of_range" and out["anomalies"][0]["value"] == 10_001_000
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": 1, "soc": 120}, flow="f-bat")
    assert out["deadletters"][0]["reason_code"] == "out_of_range"


# -- duplicates and conflicts ---------------------------------------------------------------------
def test_duplicates_dropped_once_and_conflicts_kept_and_flagged(snapshot) -> None:
    proc = Processor(snapshot)
    reading = {"ts": "2025-03-01T10:00:00Z", "e": 5}
    first = run(proc, [item(reading, "d1", flow="f-load")])
    again = run(proc, [item(reading, "d1", flow="f-load")])            # same message id (redelivery)
    same = run(proc, [item(reading, "d2", flow="f-load")])             # same key, same value, new id
    other = run(proc, [item({**reading, "e": 6}, "d3", flow="f-load")])  # same key, different value
    by_src = run(proc, [item({"ts": "2025-03-01T11:00:00Z", "e": 1, "id": "X"}, "d4", flow="f-load"),
                        item({"ts": "2025-03-01T11:15:00Z", "e": 1, "id": "X"}, "d5", flow="f-load")])
    assert len(first["readings"]) == 1
    assert again["readings"] == [] and again["feedback"][0]["status"] == "duplicate"
    assert same["readings"] == [] and same["feedback"][0]["duplicates"] == 1
    assert same["feedback"][0]["errors"][0]["reason_code"] == "duplicate"
    assert other["readings"][0]["conflict"] is True and other["readings"][0]["energy_mwh"] == 6000
    assert [a["kind"] for a in other["anomalies"]] == ["conflict"]
    assert len(by_src["readings"]) == 1 and by_src["feedback"][1]["status"] == "duplicate"
    assert not any(d for r in (again, same, other) for d in r["deadletters"])


# -- batches, shapes, feedback ---------------------------------------------------------------------
def test_batch_without_device_names_devices_per_reading(snapshot) -> None:
    rows = [{"device_id": "DEV-LOAD", "ts": "2025-03-01T10:00:00Z", "e": 1},
            {"device_id": "DEV-B", "ts": "2025-03-01T10:00:00Z", "e": 1},
            {"flow_id": "f-grid", "ts": "2025-03-01T10:00:00Z", "e": -2},
            {"ts": "2025-03-01T10:00:00Z", "e": 1}]
    out = run(Processor(snapshot), [item(rows, "b1", source={"batch_id": "B-1", "index": 0})])
    assert [(r["device_id"], r["energy_mwh"]) for r in out["readings"]] == [("DEV-LOAD", 1000), ("DEV-GRID", -2000)]
    [d] = out["deadletters"]      # one per item, listing the rejected readings
    assert (d["reading_index"], d["reading_indexes"], d["rejected_count"], d["reason_code"]) == (
        1, [1, 3], 2, "not_your_device")
    assert "not_your_device x1, missing_field x1" in d["message"]
    fb = out["feedback"]
    assert len(fb) == 1 and fb[0]["status"] == "partial" and fb[0]["batch_id"] == "B-1"
    assert (fb[0]["accepted"], fb[0]["rejected"]) == (2, 2)


def test_xml_and_readings_object(snapshot) -> None:
    xml = (b"<batch><reading><time>2025-03-01T10:00:00Z</time><wh>7</wh></reading>"
           b"<reading><time>2025-03-01T10:15:00Z</time><wh>8</wh></reading></batch>")
    out = run(Processor(snapshot), [item(xml, "x1", flow="f-xml", content_type="application/xml")], channel="http")
    assert [r["energy_mwh"] for r in out["readings"]] == [7000, 8000]
    doc = {"device": "DEV-LOAD", "readings": [{"ts": "2025-03-01T10:00:00Z", "e": 1}]}
    assert one(snapshot, doc)["readings"][0]["device_id"] == "DEV-LOAD"


@pytest.mark.parametrize(("payload", "syntax", "reason"), [
    (b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>", "xml", "xml_forbidden"),
    (b"<x><y>", "xml", "xml_invalid"),
    (b"\xff\xfe\x00garbage", "csv", "encoding_invalid"),
    (b"[" * 5000 + b"]" * 5000, "json", "json_invalid"),
    (b"42", "json", "json_shape"),
    (b"", "json", "empty_payload"),
])
def test_hostile_payloads_are_refused(payload: bytes, syntax: str, reason: str) -> None:
    with pytest.raises(Reject) as info:
        parse_rows(payload, syntax, {}, "ts,e")
    assert info.value.reason_code == reason


def test_csv_formula_injection_and_bad_lines_are_per_line(snapshot) -> None:
    payload = b"01/03/2025 10:00;=cmd|' /C calc'!A0\n01/03/2025 10:15;1,5\n01/03/2025 10:30\n@SUM(A1);1"
    src = {"file": "f.csv", "line_start": 2, "line_end": 5, "header": "datetime;kwh"}
    out = run(Processor(snapshot), [item(payload, "c1", flow="f-rome", source=src)], channel="sftp")
    assert [r["energy_mwh"] for r in out["readings"]] == [1_500_000]
    [d] = out["deadletters"]
    assert (d["reason_code"], d["source"]["line_start"], d["source"]["line_end"], d["reading_indexes"]) == (
        "csv_formula", 2, 5, [0, 2, 3])
    assert [(e["reason_code"], e["line"]) for e in out["feedback"][0]["errors"]] == [
        ("csv_formula", 2), ("csv_columns", 4), ("csv_formula", 5)]
    assert base64.b64decode(out["deadletters"][0]["payload_b64"]) == payload   # small item: whole bytes kept


def test_oversized_item_and_truncated_dead_letter(snapshot) -> None:
    huge = b'{"ts": "' + b"x" * (10 * 1024 * 1024) + b'"}'   # a 10 MB string
    out = one(snapshot, huge, flow="f-load")
    d = out["deadletters"][0]
    assert d["reason_code"] == "payload_too_large" and d["payload_truncated"] is True
    assert len(base64.b64decode(d["payload_b64"])) == 64 * 1024 and len(d["payload_sha256"]) == 64


def test_garbage_envelope_gives_dead_letter_and_feedback(snapshot) -> None:
    out = Processor(snapshot).process_envelope(b"\x00\x01not json", b"sup-a")
    assert orjson.loads(out.deadletters[0][1])["reason_code"] == "envelope_invalid"
    assert len(out.feedback) == 1 and orjson.loads(out.feedback[0][1])["supplier_id"] == "sup-a"


def test_reject_batch_flow_refuses_the_whole_message(snapshot) -> None:
    flows = dict(snapshot.flows)
    flows["f-load"] = replace(flows["f-load"], on_error="reject_batch")
    proc = Processor(replace(snapshot, flows=flows))
    rows = [{"ts": "2025-03-01T10:00:00Z", "e": 1}, {"ts": "bad", "e": 1}]
    out = run(proc, [item(rows, "r1", flow="f-load")])
    assert out["readings"] == [] and [d["reason_code"] for d in out["deadletters"]] == ["batch_rejected"]
    assert out["deadletters"][0]["rejected_count"] == 2
    assert sorted(e["reason_code"] for e in out["feedback"][0]["errors"]) == ["batch_rejected", "ts_invalid"]
    fixed = run(proc, [item(rows[:1], "r2", flow="f-load")])        # the corrected resend is not a duplicate
    assert len(fixed["readings"]) == 1


# -- anomalies from state ---------------------------------------------------------------------------
def test_stuck_meter_and_silent_flow(snapshot) -> None:
    proc = Processor(snapshot)
    rows = [{"ts": f"2025-03-01T{10 + i // 4:02d}:{(i % 4) * 15:02d}:00Z", "e": 3} for i in range(10)]
    out = run(proc, [item(rows, "s1", flow="f-load")])
    assert [a["kind"] for a in out["anomalies"]] == ["stuck_meter"]
    import time
    assert proc.silent_flows(time.time() + 100).anomalies == []
    late = proc.silent_flows(time.time() + 961)
    assert [orjson.loads(v)["kind"] for _, v in late.anomalies] == ["silent_flow"]
    assert proc.silent_flows(time.time() + 2000).anomalies == []          # reported once per silence


def test_late_flag(snapshot) -> None:
    out = one(snapshot, {"ts": "2025-12-31T22:00:00Z", "e": 1}, flow="f-load")
    assert out["readings"][0]["late"] is True
    out = one(snapshot, {"ts": "2025-12-31T23:30:00Z", "e": 1}, flow="f-load")
    assert out["readings"][0]["late"] is False


def test_every_record_matches_the_published_contract(snapshot) -> None:
    fields = {"schema", "community_id", "supplier_id", "device_id", "flow_id", "channel", "message_id", "ts",
              "interval_s", "ingest_ts", "current_a", "voltage_v", "power_active_w", "power_reactive_var",
              "energy_mwh", "charge_pct", "measurement", "account", "estimated", "interpolated", "late", "conflict"}
    out = one(snapshot, {"ts": "2025-03-01T10:00:00Z", "e": 1, "p": 4}, flow="f-load")
    assert set(out["readings"][0]) == fields
    assert out["readings"][0]["message_id"] == "m1:0" and out["readings"][0]["account"] == 1
    assert out["readings"][0]["ingest_ts"] == RECEIVED


def test_outputs_validate_against_the_published_json_schemas(snapshot) -> None:
    from lec.schemas import errors

    proc = Processor(snapshot)
    big_csv = b"\n".join(b"01/03/2025 10:%02d;=1+1" % (i % 60) for i in range(300)) + b"\n" + b"x" * 5000
    items = [item({"ts": "2025-03-01T10:00:00Z", "e": 1, "p": 2}, "ok", flow="f-load"),
             item({"ts": "2025-03-01T10:00:00Z", "e": 2}, "conflict", flow="f-load"),
             item({"ts": "2025-03-01T10:00:00Z", "e": 1}, "theirs", device="DEV-B"),
             item(b"\xff" * 70_000, "big", flow="f-load"),
             item(big_csv, "csv", flow="f-rome", source={"file": "a.csv", "line_start": 2, "header": "datetime;kwh"}),
             item({"ts": "2025-03-01T10:00:00Z", "e": 1}, "old", flow="f-old")]
    out = proc.process_envelope(envelope(items))
    out.extend(proc.process_envelope(b"garbage"))
    kinds = {"readings": "reading", "deadletters": "deadletter", "feedback": "feedback", "anomalies": "anomaly"}
    for name, schema in kinds.items():
        records = [orjson.loads(v) for _, v in getattr(out, name)]
        assert records, name
        for rec in records:
            assert errors(schema, rec) == [], (name, rec)
