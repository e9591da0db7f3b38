"""Siblings of the audited findings on the input paths (issue 9): JSON that two programs read differently.

- Duplicate keys: ``{"e": 1, "e": 5000}`` was accepted as 5000 Wh (orjson keeps the last value) while a
  supplier's gateway, a proxy or a validator keeping the first sees 1 Wh; over HTTP two ``flow_id``s
  in one body were resolved the same silent way. Now refused with the key named, on every path.
- Numbers as text: ``"1_000"`` and Arabic-Indic digits (``"١٢"``) were read by ``Decimal`` as 1000 and
  12; only ASCII decimal notation is a number now.
NaN/Infinity literals and 1e400 were already refused (``json_invalid``); "NaN" as a string is
``value_not_finite``; those stay covered here.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from lec.config import Settings
from lec.records import duplicate_json_key
from streams.process import Processor
from tests.adversarial.streams_support import assert_consistent
from tests.support.streams import envelope, item, load_test_registry

TS = "2025-03-01T00:15:00Z"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory):
    return load_test_registry(Settings(run_dir=tmp_path_factory.mktemp("reg"))).snapshot()


def _one(snapshot, payload: bytes, fast_path: bool) -> dict:
    out = Processor(snapshot, fast_path=fast_path).process_envelope(envelope([item(payload, "j1", flow="f-grid")]))
    return assert_consistent(out, 1)


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("payload", [
    b'{"ts":"2025-03-01T00:15:00Z","e":1,"e":5000}',
    b'{"ts":"2025-03-01T00:15:00Z","ts":"2025-03-01T00:30:00Z","e":1}',
    b'{"readings":[{"ts":"2025-03-01T00:15:00Z","e":1},{"ts":"2025-03-01T00:30:00Z","e":2,"e":3}]}',
    b'{"readings":[{"ts":"2025-03-01T00:15:00Z","e":1}],"readings":[{"ts":"2025-03-01T00:15:00Z","e":9}]}',
])
def test_duplicate_keys_are_refused_not_resolved_silently(snapshot, payload: bytes, fast_path: bool) -> None:
    d = _one(snapshot, payload, fast_path)
    assert d["readings"] == []
    [fb] = d["feedback"]
    assert fb["status"] == "rejected" and fb["errors"][0]["reason_code"] == "json_invalid"
    assert "appears twice" in fb["errors"][0]["message"]
    assert d["deadletters"] and d["deadletters"][0]["reason_code"] == "json_invalid"


@pytest.mark.parametrize("fast_path", [True, False])
def test_the_same_readings_without_duplicates_are_accepted(snapshot, fast_path: bool) -> None:
    body = b'{"readings":[{"ts":"2025-03-01T00:15:00Z","e":1},{"ts":"2025-03-01T00:30:00Z","e":3}],"note":"a:b"}'
    assert len(_one(snapshot, body, fast_path)["readings"]) == 2


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("value,reason", [("1_000", "value_not_number"), ("\u0661\u0662", "value_not_number"),
                                          ("\uff11\uff12", "value_not_number"), ("0x10", "value_not_number"),
                                          ("NaN", "value_not_finite"), ("-Infinity", "value_not_finite")])
def test_numbers_as_text_are_ascii_decimal_only(snapshot, value: str, reason: str, fast_path: bool) -> None:
    d = _one(snapshot, orjson.dumps({"ts": TS, "e": value}), fast_path)
    assert d["readings"] == [] and d["feedback"][0]["errors"][0]["reason_code"] == reason


@pytest.mark.parametrize("value", ["12", " 12.5 ", "-3", "1e3", ".5", "+7."])
def test_plain_numbers_as_text_still_work(snapshot, value: str) -> None:
    assert len(_one(snapshot, orjson.dumps({"ts": TS, "e": value}), False)["readings"]) == 1


@pytest.mark.parametrize("payload", [b'{"ts":"2025-03-01T00:15:00Z","e":NaN}', b'{"ts":"2025-03-01T00:15:00Z","e":1e400}',
                                     b'{"ts":"2025-03-01T00:15:00Z","e":-Infinity}'])
def test_non_finite_json_numbers_are_invalid_json(snapshot, payload: bytes) -> None:
    d = _one(snapshot, payload, True)
    assert d["readings"] == [] and d["deadletters"][0]["reason_code"] == "json_invalid"


def test_duplicate_key_detection_is_exact() -> None:
    for text, key in [(b'{"a":1,"a":2}', "a"), (b'{"a":"x:y","b":{"c":1,"c":2}}', "c"),
                      (b'[{"t":"00:15:00"},{"t":"00:30:00"}]', None), (b'{"a\\":":1,"b":[{"x":"\\"::"}]}', None),
                      (b'{"k" : 1 , "k" :2}', "k"), (b'"a:b"', None), (b'{}', None),
                      # compact: the '":' count path (a key's '":' inside a value only adds, never hides)
                      (b'{"ts":"x\\":","e":1,"e":2}', "e"), (b'{"":1,"":2}', ""), (b'{"a":{"":{"":1}}}', None),
                      (b'{"a":"\\":","b":1}', None), (b'{"a":1,"b":{"a":2}}', None), (b'{"x":[{"y":1,"y":1}]}', "y")]:
        assert duplicate_json_key(text, orjson.loads(text)) == key, text


def test_duplicate_key_detection_matches_a_reference_on_random_documents() -> None:
    """Random nested documents, compact or spaced, keys and string values drawn from an alphabet full of
    quotes and colons: the answer is always the standard library's first repeated key (or None)."""
    import json
    import random

    rnd = random.Random(7)
    alphabet = ['a', 'b', '', ':', '":', '\\"', 'a:b', '" :']

    def text(v: Any) -> str:
        return json.dumps(v)

    def gen(depth: int) -> str:
        if depth > 2 or rnd.random() < 0.3:
            return rnd.choice([text(rnd.choice(alphabet)), "1", "null", "[]"])
        if rnd.random() < 0.3:
            return "[" + ",".join(gen(depth + 1) for _ in range(rnd.randint(0, 3))) + "]"
        pairs = [f"{text(rnd.choice(alphabet))}{rnd.choice([':', ' :', ': '])}{gen(depth + 1)}"
                 for _ in range(rnd.randint(0, 4))]
        return "{" + ",".join(pairs) + "}"

    def reference(raw: bytes) -> str | None:
        found: list[str] = []

        def hook(items: list[tuple[str, Any]]) -> dict:
            keys = [k for k, _ in items]
            for k in keys:
                if keys.count(k) > 1 and not found:
                    found.append(k)
            return {}

        json.loads(raw, object_pairs_hook=hook)
        return found[0] if found else None

    compact = 0
    for _ in range(3000):
        raw = gen(0).encode()
        if rnd.random() < 0.5:
            raw = raw.replace(b" :", b":").replace(b": ", b":")
        compact += b" " not in raw
        got = duplicate_json_key(raw, orjson.loads(raw))
        assert (got is None) == (reference(raw) is None), raw
    assert compact > 500
