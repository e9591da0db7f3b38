"""Issue 9 finding 11: dead-letter amplification.

A 4 KiB payload of 1,365 ``{}`` produced 1,365 dead letters and 8 MB (about 1,960x). Now: one dead
letter per item listing the bad indexes (capped), and a per-supplier byte budget.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from lec.config import Settings
from lec.schemas import errors as schema_errors
from streams.process import MAX_DEADLETTER_INDEXES, DeadLetterBudget, Processor
from tests.adversarial.streams_support import assert_consistent
from tests.support.streams import envelope, item, load_test_registry


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory):
    return load_test_registry(Settings(run_dir=tmp_path_factory.mktemp("reg"))).snapshot()


def test_audit_case_one_dead_letter_per_item_with_the_bad_indexes(snapshot) -> None:
    payload = b"[" + b",".join([b"{}"] * 1365) + b"]"
    assert len(payload) <= 4096
    out = Processor(snapshot).process_envelope(envelope([item(payload, "amp1", flow="f-grid")]))
    d = assert_consistent(out, 1)
    [dead] = d["deadletters"]
    assert dead["rejected_count"] == 1365 and dead["reason_code"] == "missing_field"
    assert dead["reading_indexes"] == list(range(MAX_DEADLETTER_INDEXES))
    assert base64.b64decode(dead["payload_b64"]) == payload            # the original bytes, once
    assert schema_errors("deadletter", dead) == []
    dead_bytes = sum(len(v) for _, v in out.deadletters)
    assert dead_bytes < 4 * len(payload), dead_bytes                  # was ~1,960x


def test_large_item_keeps_the_rejected_readings_own_bytes(snapshot) -> None:
    rows = [{"ts": f"2025-03-01T{i // 4 % 24:02d}:{i % 4 * 15:02d}:00Z", "e": 1, "pad": "x" * 40} for i in range(96)]
    rows[7] = {"ts": "nope", "e": 1}
    rows[50] = {"ts": "2025-03-01T12:30:00Z", "e": "abc"}
    rows += [{"ts": f"2025-03-02T{i // 4 % 24:02d}:{i % 4 * 15:02d}:00Z", "e": 1, "pad": "y" * 700}
             for i in range(96)]
    payload = orjson.dumps({"readings": rows})
    assert len(payload) > 64 * 1024
    d = assert_consistent(Processor(snapshot).process_envelope(envelope([item(payload, "big", flow="f-grid")])), 1)
    [dead] = d["deadletters"]
    assert dead["reading_indexes"] == [7, 50] and dead["payload_truncated"] is True
    assert base64.b64decode(dead["payload_b64"]).splitlines() == [orjson.dumps(rows[7]), orjson.dumps(rows[50])]
    assert len(dead["payload_sha256"]) == 64
    assert schema_errors("deadletter", dead) == []


def test_per_supplier_byte_budget_keeps_the_record_but_not_the_bytes(snapshot) -> None:
    proc = Processor(snapshot, deadletter_bytes_per_s=1000)     # burst 16,000 bytes
    junk = b"\xff" * 3000
    records = []
    for i in range(10):
        out = proc.process_envelope(envelope([item(junk, f"j{i}", flow="f-grid")]))
        records += [orjson.loads(v) for _, v in out.deadletters]
    assert len(records) == 10                                           # every rejection still recorded
    limited = [r for r in records if r.get("payload_rate_limited")]
    assert 3 <= len(limited) <= 6 and all(r["payload_b64"] == "" and len(r["payload_sha256"]) == 64 for r in limited)
    assert all(schema_errors("deadletter", r) == [] for r in records)
    other = proc.process_envelope(envelope([item(junk, "b1", device="DEV-B")], supplier="sup-b"))
    assert not orjson.loads(other.deadletters[0][1]).get("payload_rate_limited")   # another supplier: its own budget


def test_budget_refills_with_time() -> None:
    b = DeadLetterBudget(100, burst_s=2)
    assert b.take("s", 200, now=0.0) and not b.take("s", 1, now=0.0)
    assert b.take("s", 100, now=1.0) and not b.take("s", 50, now=1.2)
