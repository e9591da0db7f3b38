"""KPIs and anomalies in Elasticsearch/OpenSearch (index templates + bulk), for Kibana dashboards.

The client is opensearch-py: it speaks plain ``application/json``, which both OpenSearch and
Elasticsearch 8 accept (elasticsearch-py 8 sends a vendor media type that OpenSearch refuses).
Indices: ``lec-kpi-<community>`` and ``lec-anomalies-<community>``; document ids are
deterministic, so re-indexing a period replaces documents instead of duplicating them.
Saved objects for a community dashboard are in ``infra/kibana/``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from lec.errors import LecError

if TYPE_CHECKING:
    import pandas as pd

KPI_TEMPLATE = "lec-kpi"
ANOMALY_TEMPLATE = "lec-anomalies"

_KW = {"type": "keyword"}
_NUM = {"type": "double"}
_DATE = {"type": "date"}

TEMPLATES: dict[str, dict[str, Any]] = {
    KPI_TEMPLATE: {
        "index_patterns": ["lec-kpi-*"],
        "template": {"settings": {"number_of_shards": 1}, "mappings": {"properties": {
            "community_id": _KW, "level": _KW, "member_id": _KW, "resolution": _KW, "period_start": _DATE,
            "period_end": _DATE, "period_local": _KW,
            **{c: _NUM for c in (
                "consumption_kwh", "production_kwh", "selfconsumption_kwh", "selfconsumption_pct",
                "selfsufficiency_pct", "withdrawal_kwh", "injection_kwh", "peak_kw", "base_kw", "peak_prev_kw",
                "base_prev_kw", "peak_change_pct", "base_change_pct", "consumption_f1_kwh", "consumption_f2_kwh",
                "consumption_f3_kwh", "baseload_share_pct", "completeness_pct", "filled_share_pct")},
            "expected_readings": {"type": "long"}, "present_readings": {"type": "long"},
            "filled_readings": {"type": "long"}, "rank_selfsufficiency": {"type": "long"},
        }}},
    },
    ANOMALY_TEMPLATE: {
        "index_patterns": ["lec-anomalies-*"],
        "template": {"settings": {"number_of_shards": 1}, "mappings": {"properties": {
            "anomaly_id": _KW, "kind": _KW, "community_id": _KW, "device_id": _KW, "flow_id": _KW,
            "ts": _DATE, "detected_ts": _DATE, "detail": {"type": "text"}, "value": _NUM,
        }}},
    },
}


class SearchIndexError(LecError):
    """The search cluster refused documents."""


def client(url: str) -> Any:
    """An OpenSearch/Elasticsearch client for ``url`` (credentials may be in the URL)."""
    from opensearchpy import OpenSearch

    return OpenSearch(hosts=[url], timeout=30)


def ensure_templates(es: Any) -> None:
    """Create or update the index templates (idempotent)."""
    for name, body in TEMPLATES.items():
        es.indices.put_index_template(name=name, body=body)


def index_name(prefix: str, community_id: str) -> str:
    return f"{prefix}-{community_id.lower()}"


def _clean(value: Any) -> Any:
    import pandas as pd

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        ts = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def _bulk(es: Any, actions: list[dict[str, Any]]) -> int:
    from opensearchpy import helpers

    if not actions:
        return 0
    ok, errors = helpers.bulk(es, actions, refresh=True, raise_on_error=False)
    if errors:
        raise SearchIndexError(f"{len(errors)} documents refused by the search cluster, first: {errors[0]}")
    return ok


def index_kpis(es: Any, pdf: pd.DataFrame) -> int:
    """Bulk-index KPI rows; id = community|level|member|resolution|period_start."""
    actions = []
    for rec in pdf.to_dict(orient="records"):
        doc = {k: _clean(v) for k, v in rec.items()}
        doc_id = "|".join(str(doc.get(k) or "*") for k in ("community_id", "level", "member_id", "resolution",
                                                          "period_start"))
        actions.append({"_index": index_name("lec-kpi", doc["community_id"]), "_id": doc_id, "_source": doc})
    return _bulk(es, actions)


def index_anomalies(es: Any, records: list[dict[str, Any]]) -> int:
    """Bulk-index anomaly records (``lec.anomaly/1``), id = anomaly_id."""
    actions = [{"_index": index_name("lec-anomalies", r["community_id"]), "_id": r["anomaly_id"],
                "_source": {k: _clean(v) for k, v in r.items() if k not in ("schema", "kafka_partition",
                                                                              "kafka_offset")}}
               for r in records]
    return _bulk(es, actions)


def index_anomalies_from_lake(es: Any, lake_uri: str, community_id: str) -> int:
    """Index the community's rows of the ``anomalies`` Delta table (0 if the table does not exist)."""
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    uri = f"{lake_uri.rstrip('/')}/anomalies"
    if not DeltaTable.is_deltatable(uri):
        return 0
    qb = QueryBuilder().register("a", DeltaTable(uri))
    cid = community_id.replace("'", "''")
    table = pa.table(qb.execute(f"SELECT * FROM a WHERE community_id = '{cid}'").read_all())
    return index_anomalies(es, table.to_pandas().to_dict(orient="records"))
