"""The fast path for clean readings (streams/fast.py) gives byte-identical outputs to the per-reading path."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lec.config import Settings
from streams.fast import utc_seconds
from streams.normalise import iso_z, parse_ts
from streams.process import Output, Processor
from tests.support.streams import bulk_envelopes, envelope, item, load_test_registry

WALL_CLOCK = {"rejected_ts", "detected_ts", "ts"}   # set from the wall clock when the record is made
BASE = 1704067200   # 2024-01-01T00:00Z


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    snap = load_test_registry(Settings(run_dir=tmp_path_factory.mktemp("reg"))).snapshot()
    flows = dict(snap.flows)
    flows["f-grid"] = replace(flows["f-grid"], syntax="csv", syntax_options={"ts_marks": "end"})
    flows["f-grid2"] = replace(flows["f-grid2"], on_error="reject_batch", limits={"energy": [-50_000, 50_000]})
    flows["f-bat"] = replace(flows["f-bat"], interval_s=420, value_kind="instant")
    flows["f-pv"] = replace(flows["f-pv"], timezone="Europe/Rome")
    return {"base": snap, "variant": replace(snap, flows=flows)}


def both(snapshot: Any, envelopes: list[bytes]) -> tuple[Output, Output, Processor, Processor]:
    slow, fast = Processor(snapshot, fast_path=False), Processor(snapshot)
    out_slow, out_fast = Output(), Output()
    for env in envelopes:
        out_slow.extend(slow.process_envelope(env))
        out_fast.extend(fast.process_envelope(env))
    return out_slow, out_fast, slow, fast


def assert_same(snapshot: Any, envelopes: list[bytes]) -> Output:
    out_slow, out_fast, slow, fast = both(snapshot, envelopes)
    same_outputs(out_slow, out_fast, slow, fast)
    return out_fast


def same_outputs(out_slow: Output, out_fast: Output, slow: Processor, fast: Processor) -> None:
    assert out_fast.readings == out_slow.readings          # byte-identical, same order
    for name in ("deadletters", "feedback", "anomalies"):
        a = [(k, {f: v for f, v in orjson.loads(b).items() if f not in WALL_CLOCK}) for k, b in getattr(out_slow, name)]
        b = [(k, {f: v for f, v in orjson.loads(b).items() if f not in WALL_CLOCK}) for k, b in getattr(out_fast, name)]
        assert a == b, name
    assert slow.state.items == fast.state.items
    assert slow.state.flows.keys() == fast.state.flows.keys()
    for fid, s in slow.state.flows.items():
        f = fast.state.flows[fid]
        assert (s.keys, s.source_ids, s.registers, s.stuck_value, s.stuck_run, s.stuck_reported) == \
               (f.keys, f.source_ids, f.registers, f.stuck_value, f.stuck_run, f.stuck_reported)


def iso(t: int) -> str:
    return iso_z(t)


def count_slow(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = Processor._reading

    def counted(self: Processor, *args: Any) -> Any:
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(Processor, "_reading", counted)
    return calls


def test_bulk_batches_identical_and_all_fast(snapshots, monkeypatch: pytest.MonkeyPatch) -> None:
    records, expected = bulk_envelopes(12, 500, prefix="fp")
    envs = [v for _, v in records] + [v for _, v in records[:3]]     # + a redelivery
    out = assert_same(snapshots["base"], envs)
    assert {orjson.loads(v)["message_id"] for _, v in out.readings} == expected
    calls = count_slow(monkeypatch)
    fast = Processor(snapshots["base"])
    for env in envs:
        fast.process_envelope(env)
    assert calls[0] == 0        # every reading of these uniform batches took the fast path


def test_one_reading_items_identical(snapshots) -> None:
    records, _ = bulk_envelopes(20, 1, 50, prefix="fp1")
    assert_same(snapshots["base"], [v for _, v in records])


def test_mixed_batch_every_rule(snapshots, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"ts": iso(BASE + 900 * i), "e": 100 + i % 3} for i in range(40)]
    rows[3]["e"] = "12.5"                          # string: exact decimal, still fast
    rows[4]["e"] = 10.25                           # float
    rows[5]["ts"] = "2024-01-01T01:15:00+00:00"    # offset form: slow path
    rows[6]["ts"] = "2024-01-01T01:31:00Z"         # off grid: interpolated
    rows[7]["e"] = "abc"                           # rejected
    rows[8] = dict(rows[2])                        # duplicate of an earlier row in the same item
    rows[9] = {**rows[1], "e": 999}                # conflict
    rows[10]["p"] = 5                              # power too: slow path
    rows[11]["id"] = "r-11"                        # supplier reading id: slow path
    rows[12]["ts"] = "2030-01-01T00:00:00Z"        # future
    rows[13]["ts"] = "2022-01-01T00:00:00Z"        # before the flow's start
    rows[14]["e"] = 20000                          # over the flow's limit
    rows[15]["ts"] = "2024-02-30T00:00:00Z"        # no such day
    rows[16]["ts"] = "2024-01-01T24:00:00Z"
    rows[17] = 5                                   # not an object
    rows[18].pop("e")                              # no value
    rows[19]["e"] = True
    rows[20]["e"] = 0
    rows[21]["ts"] = " 2024-01-01T05:15:00Z"
    for i in range(22, 32):
        rows[i]["e"] = 7                           # stuck meter
    envs = [envelope([item({"readings": rows}, "mix1", flow="f-load"),
                      item(rows[:20], "mix2", device="DEV-LOAD"),
                      item({"readings": rows}, "mix1", flow="f-load")]),
            envelope([item(rows, f"mix-{fid}", flow=fid) for fid in ("f-grid2", "f-pv", "f-old", "f-fast", "f-bat")]),
            envelope([item([{**r, "flow_id": "f-load"} if isinstance(r, dict) else r for r in rows], "mix3")],
                     channel="mqtt")]
    for name in ("base", "variant"):
        assert_same(snapshots[name], envs)
    calls = count_slow(monkeypatch)
    Processor(snapshots["base"]).process_envelope(envelope([item({"readings": rows}, "solo", flow="f-load")]))
    assert 0 < calls[0] < len(rows) - 10      # both paths were used


def test_csv_chunks_identical(snapshots) -> None:
    lines = ["ts,e"] + [f"{iso(BASE + 900 * i)},{i % 5}" for i in range(30)]
    lines[4] = "2024-01-01T00:45:00Z,1,2"          # wrong field count
    lines[6] = "2024-01-01T01:15:00Z,=1+1"         # formula
    lines[8] = "2024-01-01T01:45:00Z,1.5"
    envs = [envelope([item("\n".join(lines).encode(), "csv1", flow="f-grid", content_type="text/csv",
                           source={"file": "a.csv", "line_start": 10, "line_end": 40})], channel="mqtt")]
    assert_same(snapshots["variant"], envs)


@pytest.mark.parametrize("value", ["2024-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z",
                                   "2024-02-29T12:34:56Z", "2023-02-29T00:00:00Z", "2024-01-01T00:00:60Z",
                                   "2024-01-01T0a:00:00Z", "2024-01-01t00:00:00Z", "2024-01-01T00:00:00z",
                                   "+024-01-01T00:00:00Z", "2024-1-01T00:00:00Z", "2024-01-01T00:00:00.0Z",
                                   "2024-01-01T\u0661\u0662:00:00Z", 5, None])
def test_utc_seconds_agrees_with_parse_ts(value: Any) -> None:
    got = utc_seconds(value)
    if got is not None:
        if got >= 0 and value[0] != "0":
            assert iso_z(got) == value      # the fast path reuses the source text as the canonical ts
        assert (got, None, False) == parse_ts(value, "iso", "UTC") == parse_ts(value, "iso", "Europe/Rome")


# -- property: generated batches with bad rows mixed in -----------------------------------------
good_ts = st.integers(0, 300).map(lambda i: iso(BASE + 900 * i))
any_ts = st.one_of(good_ts, good_ts, good_ts,
                   st.integers(0, 3000).map(lambda i: iso(BASE + 60 * i)),
                   st.sampled_from(["2030-01-01T00:00:00Z", "2022-06-01T00:00:00Z", "2024-06-01T00:00:00Z",
                                    "2024-01-01T01:00:00+01:00", "2024-10-27T02:30:00", "bad", "", "2024-01-01"]),
                   st.text(max_size=22), st.integers(-2**63, 2**63 - 1), st.none())
energy = st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-20_000, 20_000), st.integers(0, 3),
                   st.floats(allow_nan=True), st.decimals(-1000, 1000, places=3).map(str),
                   st.sampled_from(["", "x", "1e400", "NaN", " 12 "]), st.booleans(), st.none())
row = st.fixed_dictionaries({"ts": any_ts, "e": energy}, optional={
    "p": st.integers(0, 100), "id": st.sampled_from(["a", "b", "c"]), "soc": st.integers(0, 120),
    "flow_id": st.sampled_from(["f-load", "f-grid2", "f-pv", "f-old", "nope"])})
rows_st = st.lists(st.one_of(row, row, row, row, row, st.integers(-2**63, 2**63 - 1), st.text(max_size=3)), min_size=1, max_size=40)
FLOWS = ["f-load", "f-grid2", "f-pv", "f-pv2", "f-bat", "f-bat2", "f-old", "f-fast", "f-b", None]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(st.tuples(rows_st, st.sampled_from(FLOWS), st.booleans(), st.integers(0, 3)),
                     min_size=1, max_size=5),
       variant=st.sampled_from(["base", "variant"]))
def test_fast_and_slow_paths_agree(snapshots, data: list, variant: str) -> None:
    envs = []
    for i, (rows, flow, wrap, mid) in enumerate(data):
        payload = {"readings": rows} if wrap else rows
        envs.append(envelope([item(payload, f"p{mid}-{i % 2}", flow=flow)]))
    assert_same(snapshots[variant], envs)


def test_emitter_reports_refused_records() -> None:
    """The producer-wide delivery callback (no per-record callback) still turns a failure into DeliveryFailed."""
    from streams.emit import DeliveryFailed, Emitter

    em = Emitter("127.0.0.1:1", **{"message.timeout.ms": 300, "log_level": 0})
    em.send(Output(readings=[(b"k", b"v")] * 3))
    with pytest.raises(DeliveryFailed, match="3 output records were refused"):
        em.flush(10)


# -- the columnar path (streams/columnar.py): same bytes, same state, as the precise path ----------
def columnar(snapshot: Any) -> Processor:
    proc = Processor(snapshot)
    proc.columnar_min_rows, proc.columnar_min_bytes = 1, 0     # every plain batch item, however small
    return proc


def assert_columnar_same(snapshot: Any, envelopes: list[bytes]) -> tuple[Output, int]:
    """The columnar processor against the precise one; returns its output and how many readings it
    took on the columnar path (counted by the readings the row paths did not make)."""
    slow, col = Processor(snapshot, fast_path=False), columnar(snapshot)
    out_slow, out_col = Output(), Output()
    taken = [0]
    import streams.process as process_mod
    original = process_mod.columnar_prefix

    def counting(*args: Any, **kw: Any) -> Any:
        got = original(*args, **kw)
        if got is not None:
            taken[0] += len(got[0])
        return got

    process_mod.columnar_prefix = counting
    try:
        for env in envelopes:
            out_slow.extend(slow.process_envelope(env))
            out_col.extend(col.process_envelope(env))
    finally:
        process_mod.columnar_prefix = original
    same_outputs(out_slow, out_col, slow, col)
    for fid, s in slow.state.flows.items():     # and the keys' order (what is dropped first) and watermarks
        f = col.state.flows[fid]
        assert (list(s.keys), s.watermark) == (list(f.keys), f.watermark)
    return out_col, taken[0]


def test_columnar_bulk_identical(snapshots) -> None:
    records, expected = bulk_envelopes(12, 300, prefix="col")
    envs = [v for _, v in records] + [v for _, v in records[:3]]     # + a redelivery
    out, taken = assert_columnar_same(snapshots["base"], envs)
    assert {orjson.loads(v)["message_id"] for _, v in out.readings} == expected
    assert taken == len(expected)       # every reading of these plain batches took the columnar path


def test_columnar_prefix_then_rows(snapshots) -> None:
    """A bad row ends the columnar prefix; the rows after it take the row paths, every rule intact."""
    rows = [{"ts": iso(BASE + 900 * i), "e": 100 + i % 3} for i in range(40)]
    cases = {
        "dup": rows[:10] + [rows[3]] + rows[10:],                       # a repeat inside the item
        "conflict": rows[:10] + [{**rows[3], "e": 999}] + rows[10:],
        "future": rows[:5] + [{"ts": "2030-01-01T00:00:00Z", "e": 1}] + rows[5:],
        "offgrid": rows[:5] + [{"ts": iso(BASE + 900 * 50 + 61), "e": 1}] + rows[5:],
        "null": rows[:5] + [{"ts": iso(BASE + 900 * 60), "e": None}] + rows[5:],
        "noday": rows[:5] + [{"ts": "2023-02-29T00:00:00Z", "e": 1}] + rows[5:],
        "stuck": [{"ts": iso(BASE + 900 * i), "e": 7} for i in range(20)],
        "zeros": [{"ts": iso(BASE + 900 * i), "e": 0 if i % 4 else 5} for i in range(20)],
        "limit": rows[:5] + [{"ts": iso(BASE + 900 * 70), "e": 20000}] + rows[5:],
        "huge": rows[:5] + [{"ts": iso(BASE + 900 * 70), "e": 2 ** 62}] + rows[5:],
    }
    for name in ("base", "variant"):
        for fid in ("f-load", "f-grid2", "f-pv", "f-pv2", "f-bat", "f-old", "f-fast"):
            envs = [envelope([item({"readings": r}, f"{c}-{fid}", flow=fid)]) for c, r in cases.items()]
            envs.append(envelope([item({"readings": rows}, f"again-{fid}", flow=fid)]))   # all known now
            _out, taken = assert_columnar_same(snapshots[name], envs)
            if fid == "f-load":
                assert taken > 0


plain_ts = st.one_of(good_ts, good_ts, good_ts, good_ts, st.integers(0, 3000).map(lambda i: iso(BASE + 60 * i)),
                     st.sampled_from(["2030-01-01T00:00:00Z", "2022-06-01T00:00:00Z", "2024-06-01T00:00:00Z",
                                      "2023-02-29T00:00:00Z", "2024-01-01T24:00:00Z", "1969-12-31T23:45:00Z",
                                      "2024-01-01T01:00:00+01:00", "bad", ""]))
plain_e = st.one_of(st.integers(0, 3), st.integers(-20_000, 20_000), st.integers(-20_000, 20_000),
                    st.integers(-2**63, 2**63 - 1), st.none())
plain_row = st.fixed_dictionaries({"ts": plain_ts, "e": plain_e})
plain_rows = st.lists(st.one_of(plain_row, plain_row, plain_row, plain_row, plain_row, plain_row, plain_row, row),
                      min_size=1, max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(st.tuples(plain_rows, st.sampled_from(FLOWS[:-1]), st.integers(0, 3)), min_size=1, max_size=5),
       variant=st.sampled_from(["base", "variant"]))
def test_columnar_and_precise_paths_agree(snapshots, data: list, variant: str) -> None:
    envs = [envelope([item({"readings": rows}, f"c{mid}-{i % 2}", flow=flow)])
            for i, (rows, flow, mid) in enumerate(data)]
    assert_columnar_same(snapshots[variant], envs)


date_like = st.builds(lambda y, m, d, h, mi, s: f"{y:04d}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z",
                      st.integers(1960, 2500), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
                      st.integers(0, 61), st.integers(0, 61))


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(date_like, date_like, st.text(min_size=19, max_size=21), st.none()), max_size=50))
def test_columnar_timestamps_agree_with_utc_seconds(values: list) -> None:
    import pyarrow as pa

    from streams.columnar import utc_epochs

    epochs, bad = utc_epochs(pa.array(values, pa.string()))
    assert [None if b else e for e, b in zip(epochs.tolist(), bad.tolist())] == [
        utc_seconds(v) if v is not None else None for v in values]
