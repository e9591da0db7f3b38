"""The record contract has one owner: the lake's Arrow schemas follow schemas/*.json, one payload cap,
one dead-letter builder, one rejection type (issue 10)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pytest

from lakehouse.tables import ANOMALIES, DEADLETTER, READINGS, TableSpec
from lec.records import MAX_DEADLETTER_PAYLOAD, Rejection, deadletter_record

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def arrow_type(prop: dict[str, Any]) -> pa.DataType:
    """The Arrow type a JSON Schema property is stored as in the lake."""
    for key in ("anyOf", "oneOf"):
        if key in prop:
            [only] = [p for p in prop[key] if p.get("type") != "null"]
            return arrow_type(only)
    if "enum" in prop:
        kinds = {type(v) for v in prop["enum"] if v is not None}
        return pa.int64() if kinds == {int} else pa.string()
    kind = prop.get("type")
    if isinstance(kind, list):
        [kind] = [k for k in kind if k != "null"]
    if kind == "string":
        return pa.timestamp("us", tz="UTC") if prop.get("format") == "date-time" else pa.string()
    if kind == "array":
        return pa.list_(arrow_type(prop["items"]))
    if kind == "object":
        return pa.struct([(name, arrow_type(p)) for name, p in prop["properties"].items()])
    return {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}[kind]


@pytest.mark.parametrize(("spec", "name"), [(READINGS, "reading"), (DEADLETTER, "deadletter"),
                                            (ANOMALIES, "anomaly")])
def test_lake_schema_matches_the_published_json_schema(spec: TableSpec, name: str) -> None:
    props = json.loads((SCHEMAS / f"{name}.json").read_text())["properties"]
    expected = {k: arrow_type(p) for k, p in props.items() if k != "schema"}  # `schema` is not stored
    stored = {f.name: f.type for f in spec.record_schema}
    assert sorted(stored) == sorted(expected), f"{spec.name}: columns drifted from schemas/{name}.json"
    for column, kind in expected.items():
        assert stored[column] == kind, f"{spec.name}.{column}: lake {stored[column]}, schemas/{name}.json {kind}"


def test_one_deadletter_builder_caps_the_payload_and_validates() -> None:
    schema = json.loads((SCHEMAS / "deadletter.json").read_text())
    big = bytes(range(256)) * (MAX_DEADLETTER_PAYLOAD // 256 + 3)
    rec = deadletter_record(reason_code="too_large", message="too big", channel="mqtt", supplier_id="sup-a",
                            message_id="m-1", payload=big, source={"mqtt_topic": "lec/c/s/d/f"})
    jsonschema.validate(rec, schema)
    assert base64.b64decode(rec["payload_b64"]) == big[:MAX_DEADLETTER_PAYLOAD]
    assert rec["payload_truncated"] is True and rec["payload_sha256"] == hashlib.sha256(big).hexdigest()
    small = deadletter_record(reason_code="bad", message="m", channel="sftp", supplier_id="s", message_id="m-2",
                              payload=b"x", source={"file": "inbox/a.csv"})
    jsonschema.validate(small, schema)
    assert "payload_truncated" not in small and base64.b64decode(small["payload_b64"]) == b"x"
    # a file's head read in blocks: the digest and size of the whole file are the caller's
    head = deadletter_record(reason_code="bad", message="m", channel="sftp", supplier_id="s", message_id="m-3",
                             payload=big[:MAX_DEADLETTER_PAYLOAD], source={"file": "inbox/a.csv"},
                             whole_sha256="ab" * 32, whole_size=len(big))
    assert head["payload_truncated"] is True and head["payload_sha256"] == "ab" * 32


def test_every_layer_rejects_with_the_one_rejection_type() -> None:
    from connectors.http.app import ApiError
    from streams.errors import Reject

    for exc in (Reject("out_of_range", "energy out of range", value=1.0), ApiError(413, "too_large", "too big"),
                Rejection("bad_topic", "topic is wrong", source={"mqtt_topic": "x"}, index=3)):
        assert isinstance(exc, Rejection) and exc.reason_code and str(exc) == exc.message
    assert Rejection("r", "m", source={"file": "f"}, index=2).source == {"file": "f"}
