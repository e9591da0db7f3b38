"""The published schemas accept good records and reject bad ones; the registry SQL is current."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from lec import records
from lec.schemas import NAMES, SCHEMA_DIR, errors, registry_ddl, validator

TS = "2024-03-31T01:45:00Z"

GOOD: dict[str, dict[str, Any]] = {
    "raw-envelope": records.raw_envelope("mqtt", "cer-1", "sup-1", [records.raw_item(
        b'{"ts":"2024-03-31T03:45:00+02:00","e":12.5}', message_id="m1",
        source={"mqtt_topic": "lec/cer-1/sup-1/POD1/f1"}, device_id="POD1", flow_id="f1")]),
    "reading": {
        "schema": "lec.reading/1", "community_id": "cer-1", "supplier_id": "sup-1", "device_id": "POD1",
        "flow_id": "f1", "channel": "mqtt", "message_id": "m1:0", "ts": TS, "interval_s": 900,
        "ingest_ts": "2024-03-31T01:46:00.123Z", "current_a": None, "voltage_v": 231.2, "power_active_w": -1200.0,
        "power_reactive_var": None, "energy_mwh": -300000, "charge_pct": None, "measurement": "production",
        "account": 2, "estimated": False, "interpolated": False, "late": False, "conflict": False},
    "deadletter": {
        "schema": "lec.deadletter/1", "reason_code": "unknown_device", "message": "device POD9 is not registered",
        "channel": "http", "community_id": "cer-1", "supplier_id": "sup-1", "device_id": "POD9", "flow_id": None,
        "message_id": "m2", "reading_index": 3, "payload_b64": "eyJ4IjoxfQ==",
        "source": {"batch_id": "b1", "index": 0}, "rejected_ts": "2024-03-31T01:46:00.500Z"},
    "feedback": {
        "schema": "lec.feedback/1", "supplier_id": "sup-1", "community_id": "cer-1", "channel": "sftp",
        "message_id": "m3", "batch_id": None, "status": "partial", "accepted": 95, "rejected": 5, "duplicates": 0,
        "errors": [{"index": 4, "line": 7, "reason_code": "not_a_number", "message": "energy 'abc' is not a number"}],
        "source": {"file": "inbox/f1/day.csv", "line_start": 2, "line_end": 101}, "ts": TS},
    "anomaly": {
        "schema": "lec.anomaly/1", "anomaly_id": "a1", "kind": "stuck_meter", "community_id": "cer-1",
        "device_id": "POD1", "flow_id": "f1", "ts": TS, "detected_ts": TS, "detail": "same value for 12 QH",
        "value": 0},
    "anchor": {
        "community_id": "cer-1", "communityId": "0x" + "ab" * 32, "qh": 1704067200, "version": 1,
        "readingsRoot": "0x" + "01" * 32, "leafCount": 42, "consumptionMwh": "123456789012345678901",
        "productionMwh": "0", "sharedMwh": "0", "rewardsRoot": "0x" + "00" * 32, "rewardTotal": "0",
        "paramsVersion": 1, "txHash": "0x" + "cd" * 32, "blockNumber": 12, "chainId": 31337,
        "notary": "0x" + "12" * 20},
}



def _urbandataset() -> dict[str, Any]:
    import pandas as pd

    from lakehouse.urbandataset import Context, document

    rows = pd.DataFrame([{"level": "community", "member_id": None, "period_start": pd.Timestamp(TS),
                          "period_end": pd.Timestamp("2024-03-31T02:45:00Z"), "consumption_kwh": 1.5,
                          "production_kwh": 0.0, "selfconsumption_pct": float("nan")}])
    return document(rows, Context("cer-1", 44.5, 11.3))


GOOD["urbandataset"] = _urbandataset()

# (schema, mutation, what it breaks)
BAD: list[tuple[str, str, Any]] = [
    ("reading", "del:energy_mwh", "missing field"),
    ("reading", "set:energy_mwh=1.5", "wrong type: energy must be an integer"),
    ("reading", "set:energy_mwh='12'", "wrong type"),
    ("reading", "set:ts='2024-03-31 01:45'", "not an ISO UTC instant"),
    ("reading", "set:ts='2024-03-31T03:45:00+02:00'", "not UTC"),
    ("reading", "set:charge_pct=101", "out of range"),
    ("reading", "set:account=3", "out of range"),
    ("reading", "set:interval_s=-900", "out of range"),
    ("reading", "set:channel='ftp'", "unknown channel"),
    ("reading", "set:device_id='../etc'", "unsafe identifier"),
    ("reading", "set:colour='red'", "extra field"),
    ("raw-envelope", "set:items=[]", "no items"),
    ("raw-envelope", "set:channel='smtp'", "unknown channel"),
    ("raw-envelope", "set:extra=1", "extra field"),
    ("deadletter", "del:payload_b64", "original bytes missing"),
    ("deadletter", "set:reason_code='Bad Reason'", "reason code format"),
    ("feedback", "set:status='ok'", "unknown status"),
    ("feedback", "set:accepted=-1", "out of range"),
    ("anomaly", "set:kind='weird'", "unknown kind"),
    ("anchor", "set:qh=1704067201", "not a QH boundary"),
    ("anchor", "set:consumptionMwh=12", "big integers are decimal strings"),
    ("anchor", "set:readingsRoot='0x12'", "not bytes32"),
    ("urbandataset", "set:UrbanDataset={'values': {'line': []}}", "no specification nor context"),
    ("urbandataset", "set:extra=1", "extra field"),
]


def mutate(record: dict[str, Any], mutation: str) -> dict[str, Any]:
    out = copy.deepcopy(record)
    op, _, arg = mutation.partition(":")
    if op == "del":
        del out[arg]
    else:
        key, _, value = arg.partition("=")
        out[key] = eval(value)  # literals written in this file only
    return out


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12_with_versioned_id(name: str) -> None:
    v = validator(name)
    assert v.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert v.schema["$id"].endswith(":1")


@pytest.mark.parametrize("name", NAMES)
def test_good_examples_validate(name: str) -> None:
    assert errors(name, GOOD[name]) == []


@pytest.mark.parametrize("name,mutation,why", BAD)
def test_bad_examples_are_rejected(name: str, mutation: str, why: str) -> None:
    problems = errors(name, mutate(GOOD[name], mutation))
    assert problems, f"{why}: {mutation} was accepted"


def test_every_schema_file_is_tested() -> None:
    assert {p.stem for p in SCHEMA_DIR.glob("*.json")} == set(NAMES)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_published_registry_sql_is_current(dialect: str) -> None:
    assert (SCHEMA_DIR / f"registry-{dialect}.sql").read_text() == registry_ddl(dialect)


def test_published_sql_runs_on_sqlite_and_postgres(tmp_path, postgres_url: str) -> None:
    for url, dialect in ((f"sqlite:///{tmp_path / 'r.db'}", "sqlite"), (postgres_url, "postgresql")):
        engine = create_engine(url)
        ddl = (SCHEMA_DIR / f"registry-{dialect}.sql").read_text()
        with engine.begin() as conn:
            if dialect == "postgresql":
                conn.execute(text("DROP SCHEMA IF EXISTS published CASCADE; CREATE SCHEMA published;"
                                  " SET search_path TO published"))
            for stmt in ddl.split(";\n"):
                if stmt.strip() and not stmt.strip().startswith("--"):
                    conn.execute(text(stmt.split("\n", 1)[1] if stmt.startswith("--") else stmt))
        names = inspect(engine).get_table_names(schema="published" if dialect == "postgresql" else None)
        assert {"flows", "devices", "users_communities", "clusters"} <= set(names)
