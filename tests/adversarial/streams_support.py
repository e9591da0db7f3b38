"""Shared by the streams adversarial tests: a registry snapshot and the output invariants."""

from __future__ import annotations

from typing import Any

import orjson

from streams.process import Output


def decoded(out: Output) -> dict[str, list[dict[str, Any]]]:
    return {name: [orjson.loads(v) for _, v in getattr(out, name)]
            for name in ("readings", "deadletters", "feedback", "anomalies")}


def assert_consistent(out: Output, items: int) -> dict[str, list[dict[str, Any]]]:
    """Exactly one feedback per item; what it says is what was emitted; no internal error."""
    d = decoded(out)
    assert len(d["feedback"]) == items
    assert sum(f["accepted"] for f in d["feedback"]) == len(d["readings"])
    assert sum(f["rejected"] for f in d["feedback"]) == sum(x.get("rejected_count", 1) for x in d["deadletters"])
    assert not [x for x in d["deadletters"] if x["reason_code"] == "internal_error"]
    accepted = {f["message_id"] for f in d["feedback"] if f["accepted"]}
    assert {r["message_id"].rsplit(":", 1)[0] for r in d["readings"]} <= accepted
    return d
