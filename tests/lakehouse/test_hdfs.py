"""The sink, maintenance (deltalake, and delta-spark on JVM Spark) and erasure (`lec gdpr erase`)
against a real HDFS (NameNode + DataNode started here)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake.exceptions import DeltaError

from lakehouse.gdpr.erase import erase_from_table
from lakehouse.maintenance import maintain_table
from lakehouse.sink.config import SinkConfig
from lakehouse.sink.worker import DeltaSink
from lakehouse.tables import ANOMALIES, DEADLETTER, READINGS, list_tables, open_table, query, table_uri
from lec.procs import ManagedProcess
from tests.support.hdfs import shared_hdfs
from tests.support.kpi_sample import SampleFlow, readings_table, write_readings
from tests.support.sink_sample import produce, sample_anomaly, sample_readings

FAST = SinkConfig(commit_interval_s=0.3, commit_rows=4000, maintain_interval_s=0)


@pytest.fixture(scope="module")
def hdfs_url() -> str:
    return shared_hdfs().url  # one HDFS 3 per test process; each test writes under its own folder


def _specs() -> tuple:
    tag = uuid.uuid4().hex[:8]
    return tuple(replace(s, topic=f"{s.topic}.{tag}") for s in (READINGS, DEADLETTER, ANOMALIES))


def _count(uri: str, where: str = "true") -> int:
    dt = open_table(uri)
    return 0 if dt is None else query(f"SELECT count(*) n FROM t WHERE {where}", {"t": dt}).column("n")[0].as_py()


def test_sink_to_hdfs_resume_and_maintain(kafka_bootstrap: str, hdfs_url: str) -> None:
    readings, _dead, anomalies = specs = _specs()
    root = f"{hdfs_url}/lake-{uuid.uuid4().hex[:6]}"
    produce(kafka_bootstrap, sample_readings(20_000, devices=20, days=2), readings.topic)
    produce(kafka_bootstrap, [sample_anomaly(i) for i in range(3)], anomalies.topic)
    DeltaSink(kafka_bootstrap, root, FAST, tables=specs).run(max_idle_s=2.0)
    uri = table_uri("readings", root=root)
    assert root.startswith("hdfs://") and _count(uri) == 20_000
    assert list_tables(root) == ["anomalies", "readings"]
    dt = open_table(uri)
    assert dt.metadata().partition_columns == ["community_id", "date"]
    assert any("community_id=cer-a/date=2024-01-02" in f for f in dt.file_uris())

    produce(kafka_bootstrap, sample_readings(1000, start=20_000), readings.topic)
    DeltaSink(kafka_bootstrap, root, replace(FAST, group_id="another"), tables=specs).run(max_idle_s=2.0)
    rows = query("SELECT count(*) n, count(DISTINCT message_id) m FROM t", {"t": open_table(uri)}).to_pylist()
    assert rows == [{"n": 21_000, "m": 21_000}]

    files_before = len(open_table(uri).file_uris())
    report = maintain_table(uri, retention_hours=0)
    assert len(open_table(uri).file_uris()) < files_before and report["files_vacuumed"] > 0
    assert _count(uri) == 21_000


def test_erase_device_on_hdfs_removes_old_versions(kafka_bootstrap: str, hdfs_url: str) -> None:
    readings, *_ = specs = _specs()
    root = f"{hdfs_url}/lake-{uuid.uuid4().hex[:6]}"
    produce(kafka_bootstrap, sample_readings(2000, devices=10), readings.topic)
    DeltaSink(kafka_bootstrap, root, FAST, tables=specs).run(max_idle_s=2.0)
    uri = table_uri("readings", root=root)
    first_version = open_table(uri).version()
    assert _count(uri, "device_id = 'dev-0003'") == 200
    assert erase_from_table(uri, ["dev-0003"], []) == 200
    assert _count(uri, "device_id = 'dev-0003'") == 0 and _count(uri) == 1800
    with pytest.raises(DeltaError):  # the old version's log entries and files are gone
        old = open_table(uri, version=first_version)
        query("SELECT count(*) n FROM t WHERE device_id = 'dev-0003'", {"t": old})


def _small_appends(lake: str, flows: list[SampleFlow], appends: int = 4) -> str:
    """``appends`` commits of four quarter-hours per flow, one UTC date: small files in one partition each."""
    t0 = datetime(2024, 5, 6, 8, tzinfo=UTC)
    for batch in range(appends):
        rows = [(f, t0 + timedelta(minutes=15 * (4 * batch + i)), 10 + i) for f in flows for i in range(4)]
        uri = write_readings(lake, readings_table("cer-example", rows))
    return uri


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the JVM starts in 10-20 s idle, minutes on a loaded machine
def test_maintenance_on_jvm_spark_on_hdfs(hdfs_url: str) -> None:
    """delta-spark's DESCRIBE HISTORY, OPTIMIZE and VACUUM on hdfs:// (its HDFS log store writes the
    commits); deltalake then reads the compacted table. The JVM is the test process's shared one."""
    from lakehouse.maintenance import history, maintain
    from lakehouse.spark.sessions import session_for

    uri = _small_appends(f"{hdfs_url}/lake-{uuid.uuid4().hex[:6]}", [SampleFlow("f-mt", "POD-MT", "u-mt", "load", 1)])
    spark = session_for("", "jvm")
    assert [h["version"] for h in history(uri, "jvm", spark)] == [3, 2, 1, 0]
    report = maintain(uri, "jvm", spark, retention_hours=0)
    assert (report["version_before"], report["files_removed"], report["files_added"]) == (3, 4, 1), report
    assert report["files_vacuumed"] == 4, report
    ops = [h["operation"] for h in history(uri, "jvm", spark)]
    assert ops[:3] == ["VACUUM END", "VACUUM START", "OPTIMIZE"], ops
    assert len(open_table(uri).file_uris()) == 1 and _count(uri) == 16
    assert spark.read.format("delta").load(uri).count() == 16


def test_lec_gdpr_erase_on_hdfs(hdfs_url: str, settings, registry) -> None:
    """`lec gdpr erase --device` with the lake and its raw zone on hdfs://: rows, old versions and the
    device's original files gone; the other devices' rows untouched."""
    from deltalake import write_deltalake

    from lakehouse.rawzone import RawZone

    root = f"{hdfs_url}/lake-{uuid.uuid4().hex[:6]}"
    flows = [SampleFlow("f-anna-load", "IT001E00000001", "u-anna", "load", 1),
             SampleFlow("f-bruno-pv", "PV-0001", "u-bruno", "production", 2)]
    uri = _small_appends(root, flows, appends=2)
    write_deltalake(f"{root}/kpi/member_daily", pa.table({"member_id": ["u-anna", "device:PV-0001"],
                                                          "day": ["2024-05-06"] * 2, "kwh": [1.0, 2.0]}))
    webhdfs = shared_hdfs().webhdfs_url
    text = b"POD;DATA\nPV-0001;1,0\n"
    with tempfile.TemporaryFile() as fh:
        fh.write(text)
        fh.flush()
        RawZone(root, webhdfs).archive_fd("sup-utility", "f-bruno-pv", "curva_20240506.csv", fh.fileno(),
                                          hashlib.sha256(text).hexdigest())
    assert _count(uri, "device_id = 'PV-0001'") == 8
    env = {"LEC_RUN_DIR": str(settings.resolved_run_dir()), "LEC_LAKE_URI": root, "LEC_WEBHDFS_URL": webhdfs,
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "lec.cli", "gdpr", "erase", "--device", "PV-0001"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    receipt = json.loads(done.stdout)
    assert receipt["tables"] == {"readings": 8, "kpi/member_daily": 1}, receipt
    assert receipt["raw_zone"]["files"] == 1, receipt
    assert _count(uri, "device_id = 'PV-0001'") == 0 and _count(uri) == 8
    for version in (0, 1):  # time travel cannot bring the device's rows back
        try:
            old = query("SELECT count(*) n FROM t WHERE device_id = 'PV-0001'", {"t": open_table(uri, version=version)})
        except DeltaError:
            continue
        assert old.column("n")[0].as_py() == 0, version
    assert not [p for p in RawZone(root, webhdfs).store.walk("") if "PV-0001" in p or "f-bruno-pv" in p]
    assert "PV-0001" not in registry.snapshot().devices


def test_sink_subprocess_killed_on_hdfs(fresh_kafka: tuple, hdfs_url: str, tmp_path: Path) -> None:
    """`lec lake sink` writing to hdfs://, SIGKILLed mid-ingest, restarted, SIGTERMed: exactly once."""
    _, bootstrap = fresh_kafka
    root = f"{hdfs_url}/lake-{uuid.uuid4().hex[:6]}"
    total = 60_000
    produce(bootstrap, sample_readings(total))
    env = {"LEC_KAFKA_BOOTSTRAP": bootstrap, "LEC_LAKE_URI": root, "LEC_RUN_DIR": str(tmp_path / "run"),
           "LEC_LAKE_COMMIT_INTERVAL_S": "0.5", "LEC_LAKE_COMMIT_ROWS": "8000", "LEC_LAKE_MAINTAIN_INTERVAL_S": "0"}
    argv = [str(Path(sys.executable).with_name("lec")), "lake", "sink"]
    uri = table_uri("readings", root=root)
    counts = []
    for i in range(3):
        proc = ManagedProcess(f"sink-{i}", argv, tmp_path / f"sink-{i}.log", env=env)
        before = counts[-1] if counts else 0
        deadline = time.monotonic() + 60
        while _count(uri) <= before and time.monotonic() < deadline:  # until a new commit landed
            time.sleep(0.2)
        time.sleep(0.3 * i)
        proc.kill()
        counts.append(_count(uri))
    assert any(0 < n < total for n in counts), counts
    final = {**env, "LEC_LAKE_COMMIT_INTERVAL_S": "3600", "LEC_LAKE_COMMIT_ROWS": "100000000"}
    for i in range(8):  # commits only on SIGTERM: the final commit takes in what was buffered
        proc = ManagedProcess(f"final-{i}", argv, tmp_path / f"final-{i}.log", env=final)
        time.sleep(6 * (i + 1))  # a loaded machine needs longer to start the sink and read it all
        assert proc.stop(timeout=60) == 0
        if _count(uri) >= total:
            break
    ids = query("SELECT message_id FROM t", {"t": open_table(uri)}).column("message_id").to_pylist()
    assert len(ids) == total and set(ids) == {f"m{i:010d}:0" for i in range(total)}
