"""Table maintenance: compact small files, checkpoint the log, vacuum removed files.

The sink commits every few seconds, so each commit adds small files per partition; compaction
rewrites them into big ones (readers open fewer files), a checkpoint lets readers skip replaying
the whole JSON log, and VACUUM deletes files no version younger than the retention needs
(time travel further back than the retention stops working, by design).
"""

from __future__ import annotations

from typing import Any

from lakehouse.tables import list_tables, open_table, table_uri
from lec.errors import LecError


class MaintenanceError(LecError):
    """A maintenance step failed on a table."""


def maintain_table(uri: str, retention_hours: int = 168, compact: bool = True, vacuum: bool = True,
                   target_size: int | None = None) -> dict[str, Any] | None:
    """Compact, checkpoint and vacuum one table; returns what was done, or None if no table."""
    dt = open_table(uri)
    if dt is None:
        return None
    report: dict[str, Any] = {"version_before": dt.version()}
    try:
        if compact:
            metrics = dt.optimize.compact(target_size=target_size)
            report["files_removed"] = metrics.get("numFilesRemoved", 0)
            report["files_added"] = metrics.get("numFilesAdded", 0)
        dt.create_checkpoint()
        dt.cleanup_metadata()
        if vacuum:
            deleted = dt.vacuum(retention_hours=retention_hours, dry_run=False,
                                enforce_retention_duration=retention_hours >= 168)
            report["files_vacuumed"] = len(deleted)
    except Exception as exc:  # delta-rs raises its own DeltaError family
        raise MaintenanceError(f"maintenance of {uri} failed: {exc}") from exc
    report["version_after"] = dt.version()
    return report


def maintain_lake(root: str, retention_hours: int = 168, names: list[str] | None = None) -> dict[str, Any]:
    """Maintain every table under the lake root (or the given ones)."""
    results: dict[str, Any] = {}
    for name in names or list_tables(root):
        results[name] = maintain_table(table_uri(name, root=root), retention_hours=retention_hours)
    return results


# -- the same operations on either Spark engine ----------------------------------------------
# Sail (Spark Connect in Rust) has no DESCRIBE HISTORY / OPTIMIZE / VACUUM / ALTER TABLE and
# drops unknown columns on append, so on Sail these go through deltalake; on JVM Spark with
# delta-spark they are plain Spark SQL on `delta.`<uri>``, as a data engineer would type them.

def _sql_path(uri: str) -> str:
    if "`" in uri:
        raise MaintenanceError(f"table path {uri!r} contains a backtick: rename it")
    return f"delta.`{uri}`"


def history(uri: str, engine: str = "sail", spark: Any = None) -> list[dict[str, Any]]:
    """The table's commits, newest first: version, timestamp, operation."""
    if engine == "jvm":
        rows = spark.sql(f"DESCRIBE HISTORY {_sql_path(uri)}").select("version", "timestamp", "operation").collect()
        return [{"version": int(r.version), "timestamp": r.timestamp, "operation": r.operation} for r in rows]
    dt = open_table(uri)
    if dt is None:
        raise MaintenanceError(f"no Delta table at {uri}")
    return [{"version": int(h["version"]), "timestamp": h.get("timestamp"), "operation": h.get("operation")}
            for h in sorted(dt.history(), key=lambda h: -int(h["version"]))]


def maintain(uri: str, engine: str = "sail", spark: Any = None, retention_hours: int = 168) -> dict[str, Any] | None:
    """Compact and vacuum one table on the given engine; same report keys on both."""
    if engine != "jvm":
        return maintain_table(uri, retention_hours=retention_hours)
    path = _sql_path(uri)
    try:
        before = int(spark.sql(f"DESCRIBE HISTORY {path} LIMIT 1").collect()[0].version)
        metrics = spark.sql(f"OPTIMIZE {path}").collect()[0].metrics
        # a retention under Delta's 7-day safety check must be asked for explicitly (as in deltalake)
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", str(retention_hours >= 168).lower())
        doomed = spark.sql(f"VACUUM {path} RETAIN {retention_hours} HOURS DRY RUN").count()
        spark.sql(f"VACUUM {path} RETAIN {retention_hours} HOURS").collect()
        after = int(spark.sql(f"DESCRIBE HISTORY {path} LIMIT 1").collect()[0].version)
    except Exception as exc:  # Spark Connect raises its own exception family
        raise MaintenanceError(f"maintenance of {uri} on JVM Spark failed: {exc}") from exc
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
    return {"version_before": before, "files_removed": int(metrics.numFilesRemoved),
            "files_added": int(metrics.numFilesAdded), "files_vacuumed": doomed, "version_after": after}


def add_columns(uri: str, columns: dict[str, str], engine: str = "sail", spark: Any = None) -> None:
    """Schema evolution: add nullable columns (name -> Delta type such as string, long, double)."""
    if engine == "jvm":
        cols = ", ".join(f"`{name}` {kind}" for name, kind in columns.items())
        spark.sql(f"ALTER TABLE {_sql_path(uri)} ADD COLUMNS ({cols})").collect()
        return
    from deltalake import Field

    dt = open_table(uri)
    if dt is None:
        raise MaintenanceError(f"no Delta table at {uri}")
    dt.alter.add_columns([Field(name, kind, nullable=True) for name, kind in columns.items()])
