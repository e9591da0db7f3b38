"""Issue 9 finding 5: an item's outputs are all-or-nothing or exactly what its feedback says.

An item with one good reading and one whose energy overflows int64 (or that nests 300 levels
deep) used to put the good reading on lec.readings while its feedback said "rejected" and the whole
item was dead-lettered as internal_error.
"""

from __future__ import annotations

import orjson
import pytest

from lec.config import Settings
from streams.process import Processor
from tests.adversarial.streams_support import assert_consistent
from tests.support.streams import envelope, item, load_test_registry


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory):
    return load_test_registry(Settings(run_dir=tmp_path_factory.mktemp("reg"))).snapshot()


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("huge", [b"9223372036854775808", b"18446744073709551615", b"-9223372036854775808",
                                  b'"1e30"', b'"1e400"', b"1e300", b"1" + b"0" * 30])
def test_int64_overflow_is_a_rejection_of_that_reading_only(snapshot, huge: bytes, fast_path: bool) -> None:
    payload = b'{"readings":[{"ts":"2025-03-01T10:00:00Z","e":5},{"ts":"2025-03-01T10:15:00Z","e":' + huge + b"}]}"
    out = Processor(snapshot, fast_path=fast_path).process_envelope(envelope([item(payload, "ov1", flow="f-grid")]))
    d = assert_consistent(out, 1)
    assert [r["energy_mwh"] for r in d["readings"]] == [5000]
    [fb] = d["feedback"]
    assert (fb["status"], fb["accepted"], fb["rejected"]) == ("partial", 1, 1)
    [dead] = d["deadletters"]
    assert dead["reason_code"] == "out_of_range" and dead["reading_indexes"] == [1]


def test_power_overflowing_to_infinity_is_refused_not_written_as_null(snapshot) -> None:
    payload = orjson.dumps({"ts": 1709287200000, "kw": "1e400"})
    out = Processor(snapshot).process_envelope(envelope([item(payload, "inf1", flow="f-pow")]))
    d = assert_consistent(out, 1)
    assert d["readings"] == [] and d["deadletters"][0]["reason_code"] == "out_of_range"


def deep(levels: int) -> bytes:
    return b"[" * levels + b"1" + b"]" * levels


@pytest.mark.parametrize("fast_path", [True, False])
def test_deep_nesting_rejects_the_item_before_any_output(snapshot, fast_path: bool) -> None:
    good = [{"ts": f"2025-03-01T{10 + i // 4:02d}:{i % 4 * 15:02d}:00Z", "e": 1} for i in range(60)]
    # large enough (> 4 KiB before the fix) that a rejected reading's own bytes are re-encoded
    payload = (b'{"readings":[' + b",".join(orjson.dumps(r) for r in good)
               + b',{"ts":"bad","e":1,"x":' + deep(300) + b"}]}")
    out = Processor(snapshot, fast_path=fast_path).process_envelope(envelope([item(payload, "deep1", flow="f-grid")]))
    d = assert_consistent(out, 1)
    assert d["readings"] == []
    assert d["feedback"][0]["status"] == "rejected"
    assert d["deadletters"][0]["reason_code"] == "json_too_deep"


def test_a_deep_item_does_not_disturb_its_neighbours(snapshot) -> None:
    ok = item({"ts": "2025-03-01T10:00:00Z", "e": 1}, "n1", flow="f-grid")
    bad = item(b'{"ts":"2025-03-01T10:15:00Z","e":1,"x":' + deep(300) + b"}", "n2", flow="f-grid")
    out = Processor(snapshot).process_envelope(envelope([ok, bad]))
    d = assert_consistent(out, 2)
    assert [r["message_id"] for r in d["readings"]] == ["n1:0"]
    assert {f["message_id"]: f["status"] for f in d["feedback"]} == {"n1": "accepted", "n2": "rejected"}


def test_moderate_nesting_in_an_unmapped_field_is_fine(snapshot) -> None:
    payload = b'{"ts":"2025-03-01T10:00:00Z","e":1,"meta":' + deep(10) + b"}"
    d = assert_consistent(Processor(snapshot).process_envelope(envelope([item(payload, "m1", flow="f-grid")])), 1)
    assert len(d["readings"]) == 1
