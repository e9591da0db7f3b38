"""The KPI job, process 2 and KPI storage on a lake on real HDFS (NameNode + DataNode), Spark on
Sail; `lec kpi` over that lake on Sail and on JVM Spark + delta-spark, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lakehouse.kpi import jobs as kpi
from lakehouse.kpi.store import store_kpis
from lakehouse.spark.sessions import preprocess_files, read_delta, registry_frames, session_for
from lec.registry import parse_community_text
from tests.lakehouse.test_kpi_engines import assert_same_kpis
from tests.support.hdfs import shared_hdfs
from tests.support.kpi_sample import (
    SampleFlow,
    community_yaml,
    readings_table,
    synthetic_year,
    write_readings,
)

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


ENGINES_CID = "cer-hdfs-engines"
DST_START = datetime(2024, 3, 30, tzinfo=ZoneInfo("Europe/Rome"))  # three local days over the spring DST change


@pytest.fixture(scope="module")
def engines_lake(hdfs_url: str) -> tuple[str, str]:
    """Four members and a PV plant, three days on HDFS, a few holes for gap filling to fill."""
    flows, table = synthetic_year(ENGINES_CID, 4, DST_START, 3)
    keep = np.ones(table.num_rows, bool)
    keep[[40, 41, 700, 1000, 1001, 1002]] = False
    lake = f"{hdfs_url}/lake-{uuid.uuid4().hex[:6]}"
    write_readings(lake, table.filter(pa.array(keep)))
    return lake, community_yaml(ENGINES_CID, flows)


def _lec_kpi(settings, lake: str, engine: str, out: Path) -> pd.DataFrame:
    """`lec kpi` in its own process, the lake on hdfs://, Spark the local ``engine`` server it starts."""
    env = {**os.environ, "LEC_RUN_DIR": str(settings.run_dir), "LEC_LAKE_URI": lake, "LEC_SPARK_ENGINE": engine,
           "LEC_SPARK_REMOTE": "", "GX_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "lec.cli", "kpi", "--community", ENGINES_CID,
                           "--from", "2024-03-30", "--to", "2024-04-02", "--resolution", "1h",
                           "--format", "parquet", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=1500,  # the JVM: minutes when loaded
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, f"{engine}: {done.stderr[-3000:]}"
    pdf = pd.read_parquet(out)
    return pdf.sort_values(["level", "member_id", "period_start"], na_position="first").reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_lec_kpi_on_hdfs_identical_on_sail_and_jvm(engines_lake, registry, settings, tmp_path: Path) -> None:
    """Sail and deltalake read hdfs:// with hdfs-native (Rust), the JVM with the HDFS client the pyspark
    wheel ships (hadoop-client-api); the JVM run starts its own Connect server: this module's one JVM start."""
    lake, yaml_text = engines_lake
    registry.load(parse_community_text(yaml_text))
    sail, jvm = (_lec_kpi(settings, lake, e, tmp_path / f"{e}.parquet") for e in ("sail", "jvm"))
    assert_same_kpis(sail[kpi.KPI_COLUMNS], jvm[kpi.KPI_COLUMNS])
    assert len(sail) == 5 * 71  # community + 4 members, 71 hours (the 23-hour DST day)
    community = sail[sail.level == "community"]
    assert community.filled_readings.sum() == 6  # the holes were filled, identically
    assert (sail.consumption_kwh > 0).all()
