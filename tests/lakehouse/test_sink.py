"""Delta sink against a real Tansu broker: tables, types, rejects, schema evolution, resume, maintenance."""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from lakehouse.maintenance import maintain_table
from lakehouse.sink.config import SinkConfig
from lakehouse.sink.worker import DeltaSink, app_id
from lakehouse.tables import ANOMALIES, DEADLETTER, READINGS, arrow_schema, open_table, query, table_uri
from tests.support.sink_sample import produce, sample_anomaly, sample_deadletter, sample_readings

FAST = SinkConfig(commit_interval_s=0.3, commit_rows=5000, maintain_interval_s=0)


def _specs() -> tuple:
    """The sink tables fed from topics of this test's own (the session broker is shared)."""
    tag = uuid.uuid4().hex[:8]
    return tuple(replace(s, topic=f"{s.topic}.{tag}") for s in (READINGS, DEADLETTER, ANOMALIES))


def _run(bootstrap: str, root: Path, specs: tuple, config: SinkConfig = FAST, group: str | None = None):
    cfg = replace(config, group_id=group or f"g-{uuid.uuid4().hex[:6]}")
    return DeltaSink(bootstrap, str(root), cfg, tables=specs).run(max_idle_s=2.0)


def _sql(name: str, root: Path, sql: str, version: int | None = None) -> list[dict]:
    dt = open_table(table_uri(name, root=str(root)), version=version)
    assert dt is not None, f"table {name} missing"
    return query(sql, {"t": dt}).to_pylist()


def test_three_tables_types_partitions(kafka_bootstrap: str, tmp_path: Path) -> None:
    readings, dead, anomalies = specs = _specs()
    produce(kafka_bootstrap, sample_readings(3000, devices=10, days=2), readings.topic)
    produce(kafka_bootstrap, [sample_deadletter(i) for i in range(5)], dead.topic, key_field="supplier_id")
    produce(kafka_bootstrap, [sample_anomaly(i) for i in range(7)], anomalies.topic)
    stats = _run(kafka_bootstrap, tmp_path, specs)
    assert stats.per_table["readings"] == 3000 and stats.rejects == 0

    dt = open_table(table_uri("readings", root=str(tmp_path)))
    assert dt.metadata().partition_columns == ["community_id", "date"]
    arrow = arrow_schema(dt)
    assert str(arrow.field("ts").type) == "timestamp[us, tz=UTC]"
    assert str(arrow.field("ingest_ts").type) == "timestamp[us, tz=UTC]"
    rows = _sql("readings", tmp_path, "SELECT count(*) n, count(DISTINCT message_id) m, "
                "count(DISTINCT date) d, min(energy_mwh) e FROM t")
    assert rows == [{"n": 3000, "m": 3000, "d": 2, "e": 100_000}]
    one = _sql("readings", tmp_path, "SELECT * FROM t WHERE message_id = 'm0000000051:0'")[0]
    assert one["device_id"] == "dev-0001" and one["community_id"] == "cer-b"
    assert one["ts"].isoformat() == "2024-01-01T01:15:00+00:00" and str(one["date"]) == "2024-01-01"
    assert one["voltage_v"] == 230.5 and one["current_a"] is None and one["estimated"] is False
    # partition directories follow the UTC date of ts
    assert (tmp_path / "readings" / "community_id=cer-a" / "date=2024-01-02").is_dir()

    dl = _sql("deadletter", tmp_path, "SELECT message_id, source, rejected_ts FROM t ORDER BY message_id")
    assert [r["message_id"] for r in dl] == [f"dl-{i}" for i in range(5)]
    assert dl[0]["source"]["file"] == "in/x.csv" and dl[0]["source"]["line_start"] == 4
    an = _sql("anomalies", tmp_path, "SELECT count(*) n, max(value) v FROM t")
    assert an == [{"n": 7, "v": 12.5}]


def test_bad_records_kept_in_deadletter_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    readings, _dead, _anomalies = specs = _specs()
    bad = [b"{not json", b'{"community_id": "cer-a", "device_id": "d"}', b"[1,2]"]
    good = list(sample_readings(100))
    produce(kafka_bootstrap, [*good[:50], *bad, *good[50:]], readings.topic, key_field="x")
    _run(kafka_bootstrap, tmp_path, specs)
    rej = _sql("deadletter", tmp_path, "SELECT reason_code, message, payload_b64, payload_sha256 FROM t")
    assert {r["reason_code"] for r in rej} == {"lake_unreadable_record"} and len(rej) == 3
    assert sorted(base64.b64decode(r["payload_b64"]) for r in rej) == sorted(bad)
    assert all(readings.topic in r["message"] and "offset" in r["message"] for r in rej)
    assert _sql("readings", tmp_path, "SELECT count(*) n FROM t") == [{"n": 100}]

    # Run again with a new Kafka group (no committed offsets): no record stored twice.
    _run(kafka_bootstrap, tmp_path, specs)
    assert _sql("deadletter", tmp_path, "SELECT count(*) n FROM t") == [{"n": 3}]
    assert _sql("readings", tmp_path, "SELECT count(*) n FROM t") == [{"n": 100}]


def test_resume_from_table_txn_not_kafka_offsets(kafka_bootstrap: str, tmp_path: Path) -> None:
    readings, *_ = specs = _specs()
    produce(kafka_bootstrap, sample_readings(2000), readings.topic)
    _run(kafka_bootstrap, tmp_path, specs, group="same")
    produce(kafka_bootstrap, sample_readings(500, start=2000), readings.topic)
    # A brand-new group has no Kafka offsets: only the table's txn versions prevent duplicates.
    _run(kafka_bootstrap, tmp_path, specs, group="other")
    rows = _sql("readings", tmp_path, "SELECT count(*) n, count(DISTINCT message_id) m FROM t")
    assert rows == [{"n": 2500, "m": 2500}]
    dt = open_table(table_uri("readings", root=str(tmp_path)))
    per_partition = _sql("readings", tmp_path, "SELECT kafka_partition p, max(kafka_offset) o FROM t GROUP BY 1")
    for r in per_partition:  # the txn version is the last offset the table holds
        assert dt.transaction_version(app_id(readings.topic, r["p"])) == r["o"]


def test_new_optional_field_merges_schema(kafka_bootstrap: str, tmp_path: Path) -> None:
    readings, *_ = specs = _specs()
    produce(kafka_bootstrap, sample_readings(10), readings.topic)
    _run(kafka_bootstrap, tmp_path, specs)
    old_version = open_table(table_uri("readings", root=str(tmp_path))).version()

    newer = dict(next(sample_readings(1, start=10)), quality_flag="validated", phase_count=3)
    produce(kafka_bootstrap, [newer], readings.topic)
    _run(kafka_bootstrap, tmp_path, specs)
    produce(kafka_bootstrap, sample_readings(5, start=11), readings.topic)  # old producers keep working
    _run(kafka_bootstrap, tmp_path, specs)

    rows = _sql("readings", tmp_path, "SELECT message_id, quality_flag, phase_count FROM t ORDER BY message_id")
    assert len(rows) == 16
    assert [r for r in rows if r["quality_flag"]] == [
        {"message_id": "m0000000010:0", "quality_flag": "validated", "phase_count": 3}]
    # the old version is still readable, with the old columns
    old = _sql("readings", tmp_path, "SELECT count(*) n FROM t", version=old_version)
    assert old == [{"n": 10}]
    old_cols = arrow_schema(open_table(table_uri("readings", root=str(tmp_path)), version=old_version)).names
    assert "quality_flag" not in old_cols
    pa_table = open_table(table_uri("readings", root=str(tmp_path))).to_pyarrow_table(columns=["quality_flag"])
    assert pa_table.num_rows == 16


def test_pretty_printed_and_object_detail_records(kafka_bootstrap: str, tmp_path: Path) -> None:
    _readings, _dead, anomalies = specs = _specs()
    pretty = orjson.dumps(sample_anomaly(1), option=orjson.OPT_INDENT_2)
    obj_detail = orjson.dumps(dict(sample_anomaly(2), detail={"run": 8}))
    produce(kafka_bootstrap, [pretty, obj_detail], anomalies.topic)
    _run(kafka_bootstrap, tmp_path, specs)
    rows = _sql("anomalies", tmp_path, "SELECT anomaly_id, detail FROM t ORDER BY anomaly_id")
    assert rows == [{"anomaly_id": "an-1", "detail": "same value for 8 intervals"},
                    {"anomaly_id": "an-2", "detail": '{"run":8}'}]


def test_maintenance_compacts_checkpoints_vacuums(kafka_bootstrap: str, tmp_path: Path) -> None:
    readings, *_ = specs = _specs()
    root = tmp_path / "lake"
    for i in range(6):  # six separate commits -> many small files per partition
        produce(kafka_bootstrap, sample_readings(200, start=i * 200, days=1), readings.topic)
        _run(kafka_bootstrap, root, specs, config=replace(FAST, commit_rows=100_000))
    uri = table_uri("readings", root=str(root))
    before = open_table(uri)
    files_before = len(before.file_uris())
    report = maintain_table(uri, retention_hours=0)
    after = open_table(uri)
    assert len(after.file_uris()) < files_before
    assert report["files_vacuumed"] >= files_before - len(after.file_uris())
    assert list((root / "readings" / "_delta_log").glob("*.checkpoint.parquet"))
    assert _sql("readings", root, "SELECT count(*) n, count(DISTINCT message_id) m FROM t") == [{"n": 1200, "m": 1200}]
    # txn versions survive compaction and checkpoints: a restart resumes, no duplicates
    _run(kafka_bootstrap, root, specs)
    assert _sql("readings", root, "SELECT count(*) n FROM t") == [{"n": 1200}]


def test_sink_config_from_env() -> None:
    cfg = SinkConfig.from_env({"LEC_LAKE_COMMIT_INTERVAL_S": "2.5", "LEC_LAKE_COMMIT_ROWS": "10",
                               "LEC_LAKE_VACUUM_RETENTION_H": "24"})
    assert (cfg.commit_interval_s, cfg.commit_rows, cfg.vacuum_retention_h) == (2.5, 10, 24)
    from lec.errors import ConfigError

    with pytest.raises(ConfigError, match="LEC_LAKE_COMMIT_ROWS"):
        SinkConfig.from_env({"LEC_LAKE_COMMIT_ROWS": "many"})


def test_empty_batch_schema_is_plain_arrow() -> None:
    # The sink writes these schemas as they are: every field nullable, no view types.
    for spec in (READINGS, DEADLETTER, ANOMALIES):
        assert all(f.nullable for f in spec.schema)
        assert not any(pa.types.is_string_view(f.type) for f in spec.schema)


def test_batch_over_several_parse_blocks_infers_and_rejects_like_one() -> None:
    # The JSON reader parses 1 MiB blocks in parallel: a field first seen (or first non-null) in a
    # later block is still inferred, and a field changing type between blocks still costs only the
    # records that changed it.
    from lakehouse.sink.convert import Batch, convert

    rows = list(sample_readings(12_000))
    for i, r in enumerate(rows):
        r["late_note"] = f"n{i}" if i > 10_000 else None
        if i > 11_000:
            r["late_field"] = i
        r["clash"] = i if i < 6_000 else f"s{i}"
    values = [orjson.dumps(r) for r in rows]
    assert sum(map(len, values)) > 4 << 20  # several blocks
    table, rejects = convert(READINGS, Batch([0] * len(values), list(range(len(values))), values))
    assert table is not None and table.num_rows == 6_000 and len(rejects) == 6_000
    assert {r.offset for r in rejects} == set(range(6_000, 12_000))
    assert all("another type" in r.reason and r.value == values[r.offset] for r in rejects)
    rows_only = [dict(r) for r in rows[:6_000]]
    for r in rows_only:
        r.pop("clash")
    table, rejects = convert(READINGS, Batch([0] * 12_000, list(range(12_000)),
                                              [orjson.dumps(r) for r in rows_only] + values[6_000:]))
    assert table is not None and table.num_rows == 12_000 and not rejects
    assert table.schema.field("late_field").type == pa.int64()
    assert table.column("late_note").null_count == 10_001
    assert table.column("late_field").null_count == 11_001


def test_field_changing_type_is_rejected_not_fatal(kafka_bootstrap: str, tmp_path: Path) -> None:
    readings, *_ = specs = _specs()
    produce(kafka_bootstrap, [dict(r, phase_count=3) for r in sample_readings(5)], readings.topic)
    _run(kafka_bootstrap, tmp_path, specs)
    clash = dict(next(sample_readings(1, start=5)), phase_count="three")
    produce(kafka_bootstrap, [clash, *sample_readings(4, start=6)], readings.topic)
    _run(kafka_bootstrap, tmp_path, specs)
    assert _sql("readings", tmp_path, "SELECT count(*) n FROM t") == [{"n": 9}]
    rej = _sql("deadletter", tmp_path, "SELECT message, payload_b64 FROM t")
    assert len(rej) == 1 and "does not fit the type" in rej[0]["message"]
    assert orjson.loads(base64.b64decode(rej[0]["payload_b64"]))["phase_count"] == "three"


def test_lec_cli_lake_tables_and_maintain(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Through the real `lec` console script: the commands are registered and work."""
    import json
    import subprocess
    import sys

    readings, *_ = specs = _specs()
    for i in range(3):
        produce(kafka_bootstrap, sample_readings(100, start=i * 100, days=1), readings.topic)
        _run(kafka_bootstrap, tmp_path / "lake", specs)
    lec = str(Path(sys.executable).with_name("lec"))
    env = {"LEC_LAKE_URI": str(tmp_path / "lake"), "LEC_RUN_DIR": str(tmp_path / "run"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([lec, "lake", "tables"], capture_output=True, text=True, env=env, check=True).stdout
    info = json.loads(out)["tables"]
    assert info["readings"]["rows"] == 300 and info["readings"]["partition_by"] == ["community_id", "date"]
    out = subprocess.run([lec, "lake", "maintain", "--table", "readings", "--retention-hours", "0"],
                         capture_output=True, text=True, env=env, check=True).stdout
    report = json.loads(out)["readings"]
    assert report["files_removed"] > report["files_added"] >= 1
    assert _sql("readings", tmp_path / "lake", "SELECT count(*) n FROM t") == [{"n": 300}]
    helps = subprocess.run([lec, "gdpr", "erase", "--help"], capture_output=True, text=True, env=env)
    assert helps.returncode == 0 and "--device" in helps.stdout
