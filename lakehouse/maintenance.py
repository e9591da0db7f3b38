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
