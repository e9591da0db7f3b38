"""Hypothesis: no input makes the parsers or the pipeline raise, and every item gets one feedback."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lec.config import Settings
from streams.errors import Reject
from streams.parse import parse_rows
from streams.process import Processor
from tests.support.streams import envelope, item, load_test_registry

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                     max_size=4), max_leaves=20)
readingish = st.fixed_dictionaries({}, optional={
    "ts": st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.just("2025-03-01T10:00:00Z")),
    "e": st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.booleans(), st.none()),
    "device_id": st.sampled_from(["DEV-LOAD", "DEV-B", "nope", ""]),
    "flow_id": st.sampled_from(["f-load", "f-b", "f-cum", "x"]),
})
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory):
    return load_test_registry(Settings(run_dir=tmp_path_factory.mktemp("reg"))).snapshot()


@FUZZ
@given(payload=st.binary(max_size=2000), syntax=st.sampled_from(["json", "csv", "xml"]),
       header=st.none() | st.text(max_size=40))
def test_parsers_only_raise_reject_on_bytes(payload: bytes, syntax: str, header: str | None) -> None:
    try:
        rows = parse_rows(payload, syntax, {"delimiter": ";"}, header)
    except Reject as rej:
        assert rej.reason_code and rej.message
    else:
        assert isinstance(rows, list)


@FUZZ
@given(text=st.text(max_size=500), syntax=st.sampled_from(["json", "csv", "xml"]))
def test_parsers_only_raise_reject_on_text(text: str, syntax: str) -> None:
    try:
        parse_rows(text.encode(), syntax, {}, "ts,e")
    except Reject as rej:
        assert rej.reason_code


@FUZZ
@given(docs=st.lists(st.one_of(json_values, readingish, st.lists(readingish, max_size=5),
                               st.binary(max_size=200)), min_size=1, max_size=6),
       channel=st.sampled_from(["mqtt", "http", "sftp"]))
def test_pipeline_never_raises_and_answers_each_item_once(snapshot, docs: list, channel: str) -> None:
    proc = Processor(snapshot)
    items = [item(d if isinstance(d, bytes) else json.dumps(d).encode(), f"fz{i}",
                  device=("DEV-LOAD" if i % 3 == 0 else None), flow=("f-load" if i % 3 == 1 else None))
             for i, d in enumerate(docs)]
    out = proc.process_envelope(envelope(items, channel=channel))
    feedback = [orjson.loads(v) for _, v in out.feedback]
    assert sorted(f["message_id"] for f in feedback) == sorted(i["message_id"] for i in items)
    for f in feedback:
        assert f["accepted"] + f["rejected"] + f["duplicates"] >= 1
    assert sum(f["accepted"] for f in feedback) == len(out.readings)
    dead = [orjson.loads(v) for _, v in out.deadletters]
    # one dead letter per item with rejections; per-reading ones count their readings
    assert sum(f["rejected"] for f in feedback) == sum(d.get("rejected_count", 1) for d in dead)
    assert len(dead) == sum(1 for f in feedback if f["rejected"])


@FUZZ
@given(raw=st.binary(max_size=500))
def test_garbage_envelopes_are_dead_lettered(snapshot, raw: bytes) -> None:
    out = Processor(snapshot).process_envelope(raw)
    assert len(out.feedback) == 1 and len(out.deadletters) == 1 and not out.readings
