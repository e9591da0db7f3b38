"""Spark sessions (Sail or a local JVM Spark with Delta, a JVM Spark cluster in production) and the periodic processes 1-2.

Process 1 (periodic): the registry's structured data (members, devices, flows) as Spark
DataFrames, refreshed into the Delta dimension tables ``dim_members``, ``dim_devices``,
``dim_flows``. Locally they are read through ``lec.registry`` (SQLite or PostgreSQL); on a JVM
cluster ``registry_frames_jdbc`` reads the same tables over JDBC.

Process 2 (periodic): semi-structured files (JSON lines, CSV) from a local or HDFS folder and
documents from a search index, pre-processed into Delta tables. Appends are idempotent: rows
whose key is already in the table are left out (anti-join), so a re-run adds nothing twice.

Sail gotchas (docs/lakehouse-analytics.md): no DESCRIBE HISTORY/OPTIMIZE/VACUUM, no DeltaTable
Python API over Spark Connect, appends drop unknown columns silently: table creation and schema
changes go through ``deltalake``; Spark only reads and appends matching frames.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lec.errors import ConfigError, LecError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lec.config import Settings
    from lec.registry import Registry

log = logging.getLogger(__name__)

_sail_lock = threading.Lock()
_sail_server: Any = None


class LakeTableMissingError(LecError):
    """A Delta table the job needs does not exist yet."""


def start_sail() -> str:
    """Start (once per process) an in-process Sail Spark Connect server; returns its ``sc://`` URL."""
    global _sail_server
    with _sail_lock:
        if _sail_server is None:
            import os

            os.environ.setdefault("RUST_LOG", "error")  # Sail logs per query at INFO/WARN; RUST_LOG=info to see them
            from pysail.spark import SparkConnectServer

            server = SparkConnectServer(ip="127.0.0.1", port=0)
            server.start(background=True)
            _sail_server = server
        host, port = _sail_server.listening_address
        return f"sc://{host}:{port}"


def stop_sail() -> None:
    """Stop the in-process Sail server if this process started one."""
    global _sail_server
    with _sail_lock:
        if _sail_server is not None:
            host, port = _sail_server.listening_address
            _sessions.pop(f"sc://{host}:{port}", None)
            _sail_server.stop()
            _sail_server = None


ENGINES = ("sail", "jvm")
_sessions: dict[str, Any] = {}


def engine_url(remote: str = "", engine: str = "sail") -> str:
    """The Spark Connect URL to use: ``remote`` if set, else a local server of ``engine``."""
    if remote:
        if not remote.startswith("sc://"):
            raise ConfigError(f"spark_remote must be a Spark Connect URL like sc://host:15002, got {remote!r}")
        return remote
    if engine == "sail":
        return start_sail()
    if engine == "jvm":
        from lakehouse.spark.jvm import start_jvm

        return start_jvm()
    raise ConfigError(f"spark_engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def session_for(remote: str = "", engine: str = "sail") -> SparkSession:
    """A Spark Connect session, clock in UTC: on ``remote`` if set, else on a local ``engine``
    server started once per process (``sail`` in-process, ``jvm`` a JVM Spark with Delta).

    One session per URL: ``builder.getOrCreate()`` would hand back whichever session came first,
    so a process using both engines (the engine-equivalence test, the benchmark) gets the wrong one.
    """
    from pyspark.sql import SparkSession

    url = engine_url(remote, engine)
    spark = _sessions.get(url)
    if spark is None:
        spark = SparkSession.builder.remote(url).create()
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        _sessions[url] = spark
    return spark


def settings_session(settings: Settings) -> SparkSession:
    """The session the settings describe (``spark_remote``, else ``spark_engine``)."""
    return session_for(settings.spark_remote, settings.spark_engine)


@contextmanager
def spark_session(settings: Settings) -> Iterator[SparkSession]:
    """The session the settings describe (``spark_remote`` or the local ``spark_engine``)."""
    yield settings_session(settings)  # Connect sessions are cheap; the server lives as long as the process


def table_uri(lake_uri: str, name: str) -> str:
    return f"{lake_uri.rstrip('/')}/{name}"


def delta_exists(uri: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(uri)


def read_delta(spark: SparkSession, lake_uri: str, name: str) -> DataFrame:
    """A Delta table of the lake as a DataFrame (never read as plain parquet: removed files)."""
    uri = table_uri(lake_uri, name)
    if not delta_exists(uri):
        raise LakeTableMissingError(f"Delta table '{name}' does not exist under {lake_uri}: "
                                    "start the lake sink (or load data) first")
    return spark.read.format("delta").load(uri)


# -- process 1: registry (structured) --------------------------------------------------------

def registry_pandas(registry: Registry, community_id: str | None = None) -> dict[str, Any]:
    """Members, devices and flows of the registry as pandas frames (one snapshot, no per-row query)."""
    import pandas as pd

    snap = registry.snapshot()
    members = [{"community_id": m.community_id, "user_id": m.user_id, "wallet": m.wallet, "role": m.role,
                "active": m.active} for m in snap.members.values()]
    devices = [{"device_id": d.id, "community_id": d.community_id, "user_id": d.user_id,
                "supplier_id": d.supplier_id, "status": d.status} for d in snap.devices.values()]
    flows = [{"flow_id": f.id, "device_id": f.device_id, "community_id": f.community_id,
              "supplier_id": f.supplier_id, "measurement": f.measurement, "account": f.account,
              "interval_s": f.interval_s, "active": f.active} for f in snap.flows.values()]
    frames = {
        "dim_members": pd.DataFrame(members, columns=["community_id", "user_id", "wallet", "role", "active"]),
        "dim_devices": pd.DataFrame(devices, columns=["device_id", "community_id", "user_id", "supplier_id",
                                                      "status"]),
        "dim_flows": pd.DataFrame(flows, columns=["flow_id", "device_id", "community_id", "supplier_id",
                                                  "measurement", "account", "interval_s", "active"]),
    }
    if community_id is not None:
        frames = {k: v[v["community_id"] == community_id].reset_index(drop=True) for k, v in frames.items()}
    for frame in frames.values():
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = frame[col].astype("string")
    return frames


def registry_frames(spark: SparkSession, registry: Registry,
                    community_id: str | None = None) -> dict[str, DataFrame]:
    """Process 1: the registry's members/devices/flows as Spark DataFrames."""
    from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

    types = {"active": BooleanType(), "account": LongType(), "interval_s": LongType()}
    out = {}
    for name, pdf in registry_pandas(registry, community_id).items():
        schema = StructType([StructField(c, types.get(c, StringType()), True) for c in pdf.columns])
        rows = [tuple(None if _isna(v) else v for v in row) for row in pdf.itertuples(index=False)]
        out[name] = spark.createDataFrame(rows, schema)
    return out


def _isna(v: Any) -> bool:
    import pandas as pd

    return v is None or (not isinstance(v, (list, dict)) and bool(pd.isna(v)))


def registry_frames_jdbc(spark: SparkSession, jdbc_url: str, properties: dict[str, str]) -> dict[str, DataFrame]:
    """Process 1 on a JVM cluster: the same registry tables over JDBC (needs the JDBC driver jar)."""
    read = spark.read.jdbc
    flows = read(jdbc_url, "flows", properties=properties)
    links = read(jdbc_url, "flows_communities", properties=properties)
    return {
        "dim_members": read(jdbc_url, "users_communities", properties=properties),
        "dim_devices": read(jdbc_url, "devices", properties=properties).withColumnRenamed("id", "device_id"),
        "dim_flows": flows.join(links, flows.id == links.flow_id).withColumnRenamed("accountconsumption", "account"),
    }


def refresh_dimensions(registry: Registry, lake_uri: str) -> dict[str, int]:
    """Process 1 output: overwrite the Delta dimension tables; returns row counts."""
    from deltalake import write_deltalake

    counts = {}
    for name, pdf in registry_pandas(registry).items():
        write_deltalake(table_uri(lake_uri, name), pdf, mode="overwrite", schema_mode="overwrite")
        counts[name] = len(pdf)
    return counts


# -- process 2: semi-structured files and search indices -------------------------------------

def preprocess_files(spark: SparkSession, paths: list[str], fmt: str, lake_uri: str, table: str,
                     key: str) -> int:
    """Read JSON-lines or CSV files, cast them onto the Delta table's columns, append new keys only.

    The table must exist (its schema is the contract); columns the files lack become NULL,
    extra columns are refused rather than dropped silently.
    """
    from pyspark.sql import functions as F

    if fmt not in ("json", "csv"):
        raise ConfigError(f"format must be json or csv, got {fmt!r}")
    target = read_delta(spark, lake_uri, table)
    reader = spark.read.option("header", "true") if fmt == "csv" else spark.read
    src = reader.format(fmt).load(paths)
    extra = sorted(set(src.columns) - set(target.columns) - {"_corrupt_record"})
    if extra:
        raise LecError(f"files {paths} have columns {extra} that table '{table}' does not have: "
                       "add them to the table with deltalake first (Spark appends would drop them)")
    cols = [(F.col(f.name) if f.name in src.columns else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in target.schema.fields]
    src = src.select(*cols).dropDuplicates([key])
    new = src.join(target.select(key), on=key, how="left_anti")
    n = new.count()
    if n:
        new.write.format("delta").mode("append").save(table_uri(lake_uri, table))
    return n


def search_index_to_delta(client: Any, index: str, lake_uri: str, table: str, key: str) -> int:
    """Process 2 for search indices: copy an index's documents into a Delta table (new keys only)."""
    import pandas as pd
    from deltalake import DeltaTable, write_deltalake
    from opensearchpy.helpers import scan

    docs = [hit["_source"] for hit in scan(client, index=index, query={"query": {"match_all": {}}})]
    if not docs:
        return 0
    pdf = pd.DataFrame(docs).drop_duplicates(subset=[key])
    uri = table_uri(lake_uri, table)
    if DeltaTable.is_deltatable(uri):
        known = set(DeltaTable(uri).to_pyarrow_table(columns=[key]).column(key).to_pylist())
        pdf = pdf[~pdf[key].isin(known)]
    if len(pdf):
        write_deltalake(uri, pdf.astype({c: "string" for c in pdf.columns if pdf[c].dtype == object}),
                        mode="append", schema_mode="merge")
    return len(pdf)


def inbox_files(inbox: Path) -> dict[str, list[str]]:
    """Files waiting in a process-2 inbox folder ``<inbox>/<table>/*.json|*.csv``, by table."""
    out: dict[str, list[str]] = {}
    if not inbox.exists():
        return out
    for sub in sorted(p for p in inbox.iterdir() if p.is_dir()):
        files = sorted(str(f) for f in sub.iterdir() if f.suffix in (".json", ".jsonl", ".csv"))
        if files:
            out[sub.name] = files
    return out
