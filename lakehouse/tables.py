"""Delta tables of the lake: names, Arrow schemas, partitioning, and how to open them.

Shared contract between the sink (which writes them) and analytics (which reads them):

- ``readings``   from ``lec.readings``,   partitioned by ``community_id`` and ``date`` (UTC date of ts).
- ``deadletter`` from ``lec.deadletter``, partitioned by ``community_id``.
- ``anomalies``  from ``lec.anomalies``,  partitioned by ``community_id``.

Columns are the canonical record's fields (common.md), timestamps as ``timestamp[us, UTC]``; the
``schema`` field of a record is not stored. A new optional field in a record becomes a new
nullable column (schema evolution, ``schema_mode="merge"``): readers must select columns by
name, never by position. Every table also has ``kafka_partition``/``kafka_offset`` (where the
row came from) so a row can be traced back to its Kafka record.

Read with :func:`open_table` / :func:`query` (``QueryBuilder`` SQL: after a DELETE, delta-rs
fails on ``to_pyarrow_table(filters=...)`` over string columns, environment.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lec import topics

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from lec.config import Settings

TS = pa.timestamp("us", tz="UTC")

SOURCE_TYPE = pa.struct([
    ("mqtt_topic", pa.string()), ("file", pa.string()), ("line_start", pa.int64()),
    ("line_end", pa.int64()), ("file_sha256", pa.string()), ("header", pa.string()),
    ("batch_id", pa.string()), ("index", pa.int64()), ("integration", pa.string()),
])

KAFKA_COLUMNS = [pa.field("kafka_partition", pa.int32()), pa.field("kafka_offset", pa.int64())]

READINGS_SCHEMA = pa.schema([
    ("community_id", pa.string()), ("date", pa.date32()), ("supplier_id", pa.string()),
    ("device_id", pa.string()), ("flow_id", pa.string()), ("channel", pa.string()),
    ("message_id", pa.string()), ("ts", TS), ("interval_s", pa.int64()), ("ingest_ts", TS),
    ("current_a", pa.float64()), ("voltage_v", pa.float64()), ("power_active_w", pa.float64()),
    ("power_reactive_var", pa.float64()), ("energy_mwh", pa.int64()), ("charge_pct", pa.float64()),
    ("measurement", pa.string()), ("account", pa.int64()), ("estimated", pa.bool_()),
    ("interpolated", pa.bool_()), ("late", pa.bool_()), ("conflict", pa.bool_()), *KAFKA_COLUMNS,
])

DEADLETTER_SCHEMA = pa.schema([
    ("community_id", pa.string()), ("reason_code", pa.string()), ("message", pa.string()),
    ("channel", pa.string()), ("supplier_id", pa.string()), ("device_id", pa.string()),
    ("flow_id", pa.string()), ("message_id", pa.string()), ("reading_index", pa.int64()),
    ("reading_indexes", pa.list_(pa.int64())), ("rejected_count", pa.int64()),
    ("payload_b64", pa.string()), ("payload_sha256", pa.string()), ("payload_truncated", pa.bool_()),
    ("payload_rate_limited", pa.bool_()),
    ("source", SOURCE_TYPE), ("rejected_ts", TS), *KAFKA_COLUMNS,
])

ANOMALIES_SCHEMA = pa.schema([
    ("community_id", pa.string()), ("anomaly_id", pa.string()), ("kind", pa.string()),
    ("device_id", pa.string()), ("flow_id", pa.string()), ("ts", TS), ("detected_ts", TS),
    ("detail", pa.string()), ("value", pa.float64()), *KAFKA_COLUMNS,
])


@dataclass(frozen=True)
class TableSpec:
    """One Delta table fed from one Kafka topic."""

    name: str
    topic: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    # Fields of the record parsed as given by `schema` (the rest are derived or inferred).
    derived: tuple[str, ...] = ()

    @property
    def record_schema(self) -> pa.Schema:
        """Schema of the JSON record itself (without derived and Kafka columns)."""
        skip = set(self.derived) | {f.name for f in KAFKA_COLUMNS}
        return pa.schema([f for f in self.schema if f.name not in skip])


READINGS = TableSpec("readings", topics.READINGS, READINGS_SCHEMA, ("community_id", "date"), derived=("date",))
DEADLETTER = TableSpec("deadletter", topics.DEADLETTER, DEADLETTER_SCHEMA, ("community_id",))
ANOMALIES = TableSpec("anomalies", topics.ANOMALIES, ANOMALIES_SCHEMA, ("community_id",))

SINK_TABLES: tuple[TableSpec, ...] = (READINGS, DEADLETTER, ANOMALIES)
BY_NAME: dict[str, TableSpec] = {t.name: t for t in SINK_TABLES}


def lake_root(settings: Settings | None = None) -> str:
    """Root URI of the lake (local path or ``hdfs://host:port/path``), without trailing slash."""
    if settings is None:
        from lec.config import settings as current

        settings = current()
    return settings.resolved_lake_uri().rstrip("/")


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def table_uri(name: str, settings: Settings | None = None, root: str | None = None) -> str:
    """URI of the table ``name`` under the lake root."""
    base = (root or lake_root(settings)).rstrip("/")
    return f"{base}/{name}"


def storage_options(uri: str) -> dict[str, str] | None:
    """Storage options delta-rs needs for ``uri`` (none for local paths and hdfs://)."""
    return None


def table_exists(uri: str) -> bool:
    from deltalake import DeltaTable

    if not is_remote(uri) and not Path(uri, "_delta_log").is_dir():
        return False
    return DeltaTable.is_deltatable(uri, storage_options=storage_options(uri))


def open_table(name_or_uri: str, settings: Settings | None = None, version: int | None = None,
               root: str | None = None) -> DeltaTable | None:
    """The Delta table (a name under the lake root, or a full URI), or None if it does not exist yet."""
    from deltalake import DeltaTable

    uri = name_or_uri if ("/" in name_or_uri or "://" in name_or_uri) else table_uri(name_or_uri, settings, root)
    if not table_exists(uri):
        return None
    return DeltaTable(uri, version=version, storage_options=storage_options(uri))


def arrow_schema(dt: DeltaTable) -> pa.Schema:
    """The table's current schema as a pyarrow Schema (delta-rs returns an arro3 one)."""
    return pa.schema(dt.schema().to_arrow())


def query(sql: str, tables: dict[str, DeltaTable]) -> pa.Table:
    """Run DataFusion SQL over registered Delta tables (safe after DELETE/MERGE, unlike filters=)."""
    from deltalake import QueryBuilder

    qb = QueryBuilder()
    for name, dt in tables.items():
        qb = qb.register(name, dt)
    batches = qb.execute(sql).read_all()
    return batches if isinstance(batches, pa.Table) else pa.table(batches)


def list_tables(root: str) -> list[str]:
    """Names of every Delta table directly under the lake root, or one level deeper (``kpi/x``)."""
    names: list[str] = []
    for rel in _child_dirs(root, ""):
        uri = f"{root.rstrip('/')}/{rel}"
        if table_exists(uri):
            names.append(rel)
            continue
        names.extend(f"{rel}/{sub}" for sub in _child_dirs(root, rel)
                     if table_exists(f"{root.rstrip('/')}/{rel}/{sub}"))
    return sorted(names)


def _child_dirs(root: str, rel: str) -> list[str]:
    if not is_remote(root):
        base = Path(root, rel) if rel else Path(root)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    return [d for d in _hdfs_list_dirs(root, rel) if not d.startswith(("_", "."))]


def _hdfs_list_dirs(root: str, rel: str) -> list[str]:
    """Sub-directory names of ``root/rel`` on HDFS (native RPC client, no WebHDFS needed)."""
    from urllib.parse import urlparse

    from hdfs_native import Client

    url = urlparse(root)
    client = Client(f"{url.scheme}://{url.netloc}")
    path = "/".join(p for p in (url.path.rstrip("/"), rel) if p) or "/"
    try:
        return sorted(st.path.rstrip("/").rsplit("/", 1)[-1] for st in client.list_status(path) if st.isdir)
    except FileNotFoundError:
        return []


def describe() -> dict[str, Any]:
    """Names, topics, partitioning and columns of the sink tables (for docs and `lec lake tables`)."""
    return {t.name: {"topic": t.topic, "partition_by": list(t.partition_by),
                     "columns": {f.name: str(f.type) for f in t.schema}} for t in SINK_TABLES}
