"""KPIs and anomalies into the OpenSearch API (osmem-server emulator), Kibana saved objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from osmem_server import resolve_binary

from lakehouse import search
from lakehouse.kpi import jobs as kpi
from lakehouse.spark.sessions import read_delta, registry_frames, search_index_to_delta, session_for
from lec.procs import ManagedProcess, free_port, port_open
from lec.registry import parse_community_text
from tests.support.kpi_sample import SampleFlow, community_yaml, readings_table, write_readings

ROOT = Path(__file__).resolve().parents[2]
KIBANA = ROOT / "infra" / "kibana" / "community-dashboard.ndjson"
CID = "cer-Search"
FLOWS = [SampleFlow("f-s1", "PODS1", "u-s1", "load", 1), SampleFlow("f-s2", "PVS1", "u-s1", "production", 2)]
T0 = datetime(2024, 7, 1, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def search_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = ManagedProcess("osmem-server", [resolve_binary(), "-addr", f"127.0.0.1:{port}", "-no-stdin-watch"],
                          tmp_path_factory.mktemp("osmem") / "osmem.log")
    proc.wait_ready(lambda: port_open(port), 15)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture()
def lake(registry, settings):
    registry.load(parse_community_text(community_yaml(CID, FLOWS)))
    rows = [(FLOWS[0], T0 + timedelta(minutes=15 * i), 1000 * (i + 1)) for i in range(8)]
    rows += [(FLOWS[1], T0 + timedelta(minutes=15 * i), -1500) for i in range(8)]
    write_readings(settings.resolved_lake_uri(), readings_table(CID, rows))
    return registry, settings


def _kpis(registry, settings) -> pd.DataFrame:
    spark = session_for("")
    req = kpi.KpiRequest(CID, T0, T0 + timedelta(hours=2), "1h")
    return kpi.compute_kpis(spark, read_delta(spark, settings.resolved_lake_uri(), "readings"),
                            registry_frames(spark, registry), req).toPandas()


def _anomalies(lake_uri: str) -> None:
    from deltalake import write_deltalake

    from lakehouse.tables import ANOMALIES_SCHEMA

    n = 3
    ts = [T0 + timedelta(hours=i) for i in range(n)]
    write_deltalake(f"{lake_uri}/anomalies", pa.table({
        "community_id": [CID] * n, "anomaly_id": [f"an-{i}" for i in range(n)],
        "kind": ["stuck_meter", "out_of_range", "stuck_meter"], "device_id": ["PODS1"] * n,
        "flow_id": ["f-s1"] * n, "ts": ts, "detected_ts": ts, "detail": ["same value for 6 h", "too big", "again"],
        "value": [1.0, 9e9, 2.0], "kafka_partition": [0] * n, "kafka_offset": list(range(n))}, schema=ANOMALIES_SCHEMA),
        partition_by=["community_id"])


def test_kpis_indexed_idempotently_with_template_mappings(search_url, lake) -> None:
    registry, settings = lake
    es = search.client(search_url)
    search.ensure_templates(es)
    pdf = _kpis(registry, settings)
    assert search.index_kpis(es, pdf) == len(pdf) == 2 * 2  # community + one member, two hours
    search.index_kpis(es, pdf)  # same ids: replaced, not duplicated
    index = search.index_name("lec-kpi", CID)
    assert es.count(index=index)["count"] == len(pdf)
    props = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert props["period_start"]["type"] == "date" and props["member_id"]["type"] == "keyword"
    res = es.search(index="lec-kpi-*", body={"size": 0, "query": {"term": {"level": "community"}},
                                             "aggs": {"l": {"sum": {"field": "consumption_kwh"}}}})
    assert res["aggregations"]["l"]["value"] == pytest.approx(sum(1000 * (i + 1) for i in range(8)) / 1e6)
    hit = es.search(index=index, body={"query": {"bool": {"filter": [
        {"term": {"level": "community"}}, {"range": {"period_start": {"gte": "2024-07-01T09:00:00Z"}}}]}}})
    docs = [h["_source"] for h in hit["hits"]["hits"]]
    assert len(docs) == 1 and docs[0]["period_start"] == "2024-07-01T09:00:00Z"
    assert docs[0]["production_kwh"] == pytest.approx(4 * 1.5 / 1000)


def test_anomalies_from_lake_and_back_into_delta(search_url, lake, tmp_path: Path) -> None:
    _, settings = lake
    lake_uri = settings.resolved_lake_uri()
    _anomalies(lake_uri)
    es = search.client(search_url)
    search.ensure_templates(es)
    assert search.index_anomalies_from_lake(es, lake_uri, CID) == 3
    index = search.index_name("lec-anomalies", CID)
    res = es.search(index=index, body={"size": 0, "aggs": {"k": {"terms": {"field": "kind"}}}})
    assert {b["key"]: b["doc_count"] for b in res["aggregations"]["k"]["buckets"]} == {"stuck_meter": 2,
                                                                                       "out_of_range": 1}
    # process 2: a search index into Delta, new keys only
    out_lake = str(tmp_path / "lake2")
    assert search_index_to_delta(es, index, out_lake, "anomalies_search", "anomaly_id") == 3
    assert search_index_to_delta(es, index, out_lake, "anomalies_search", "anomaly_id") == 0
    spark = session_for("")
    got = read_delta(spark, out_lake, "anomalies_search").toPandas()
    assert sorted(got.anomaly_id) == ["an-0", "an-1", "an-2"]


def test_lec_lake_index_command(search_url, lake) -> None:
    _, settings = lake
    env = {**os.environ, "LEC_RUN_DIR": str(settings.run_dir), "LEC_SEARCH_URL": search_url}
    cmd = [sys.executable, "-m", "lec.cli", "lake", "index", "--community", CID, "--from", "2024-07-01T08:00:00Z", "--to", "2024-07-01T10:00:00Z"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"kpis": 4, "anomalies": 0}


def test_kibana_saved_objects_parse_and_reference_real_fields() -> None:
    objs = [json.loads(line) for line in KIBANA.read_text().splitlines() if line.strip()]
    by_id = {o["id"]: o for o in objs}
    assert {o["type"] for o in objs} == {"index-pattern", "visualization", "dashboard"}
    fields = {p: set(search.TEMPLATES[t]["template"]["mappings"]["properties"]) for p, t in
              (("lec-kpi-pattern", search.KPI_TEMPLATE), ("lec-anomalies-pattern", search.ANOMALY_TEMPLATE))}
    for o in objs:
        for ref in o["references"]:
            assert ref["id"] in by_id and by_id[ref["id"]]["type"] == ref["type"]
        if o["type"] == "index-pattern":
            assert o["attributes"]["timeFieldName"] in fields[o["id"]]
        if o["type"] == "visualization":
            vis = json.loads(o["attributes"]["visState"])
            pattern = o["references"][0]["id"]
            for agg in vis["aggs"]:
                if "field" in agg["params"]:
                    assert agg["params"]["field"] in fields[pattern], (o["id"], agg)
            json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    dash = by_id["lec-community-dashboard"]
    panels = json.loads(dash["attributes"]["panelsJSON"])
    names = {r["name"] for r in dash["references"]}
    assert len(panels) == 6 and all(p["panelRefName"] in names for p in panels)
    # the committed file is what the generator makes
    sys.path.insert(0, str(KIBANA.parent))
    from make_dashboard import objects

    assert [json.loads(json.dumps(o, sort_keys=True)) for o in objects()] == objs
