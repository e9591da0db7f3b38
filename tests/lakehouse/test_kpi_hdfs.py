"""The KPI job, process 2 and KPI storage on a lake on real HDFS (NameNode + DataNode), Spark on Sail."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse.kpi import jobs as kpi
from lakehouse.kpi.store import store_kpis
from lakehouse.spark.sessions import preprocess_files, read_delta, registry_frames, session_for
from lec.registry import parse_community_text
from tests.support.hdfs import shared_hdfs
from tests.support.kpi_sample import SampleFlow, community_yaml, readings_table, write_readings

CID = "cer-hdfs"
LOAD = SampleFlow("f-h1", "PODH1", "u-h1", "load", 1)
PV = SampleFlow("f-h2", "PVH1", "u-h1", "production", 2)
T0 = datetime(2024, 2, 5, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def hdfs_url() -> str:
    return shared_hdfs().url  # one HDFS 3 per test process; each test writes under its own folder


def test_kpis_process_2_and_storage_on_hdfs(hdfs_url: str, registry, tmp_path: Path) -> None:
    registry.load(parse_community_text(community_yaml(CID, [LOAD, PV])))
    lake = f"{hdfs_url}/lake-{uuid.uuid4().hex[:6]}"
    rows = [(LOAD, T0 + timedelta(minutes=15 * i), 30_000 + 1000 * i) for i in range(8)]
    rows += [(PV, T0 + timedelta(minutes=15 * i), -35_000) for i in range(8)]
    write_readings(lake, readings_table(CID, rows))
    spark = session_for("")
    jfile = tmp_path / "late.json"  # process 2: one late reading of the second hour, from a file
    jfile.write_text(json.dumps({"community_id": CID, "device_id": "PODH1", "flow_id": "f-h1",
                                 "message_id": "late-1", "ts": "2024-02-05T11:00:00Z", "interval_s": 900,
                                 "energy_mwh": 5000, "account": 1, "measurement": "load",
                                 "date": "2024-02-05"}) + "\n")
    assert preprocess_files(spark, [str(jfile)], "json", lake, "readings", "message_id") == 1
    req = kpi.KpiRequest(CID, T0, T0 + timedelta(hours=2), "1h", levels=("community",), fill_gaps=False)
    pdf = kpi.compute_kpis(spark, read_delta(spark, lake, "readings"), registry_frames(spark, registry),
                           req).toPandas()
    l1 = sum(30_000 + 1000 * i for i in range(4))
    l2 = sum(30_000 + 1000 * i for i in range(4, 8)) + 5000
    assert list(pdf.consumption_kwh * 1e6) == pytest.approx([l1, l2])
    assert list(pdf.selfconsumption_kwh * 1e6) == pytest.approx([min(l1, 140_000), min(l2, 140_000)])
    store_kpis(pdf, lake, req)
    assert DeltaTable(f"{lake}/kpi_1h").to_pyarrow_table().num_rows == 2
