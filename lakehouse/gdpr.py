"""Right to be forgotten (seed §4.1.1.6): erase a user's or a device's data everywhere we keep it.

Every Delta table under the lake root that has a ``device_id``, ``user_id`` or ``member_id``
(KPI tables: the user id, or ``device:<id>``) column loses the matching rows (anchored Merkle
leaves are blanked instead, see :func:`erase_from_table`); then VACUUM with zero retention
deletes the data files older versions still point to, and the log is checkpointed and its older
entries removed, so time travel cannot bring the rows back. Last, the registry rows and the device secrets go (``Registry.erase_*``). The lake is
done first: if it fails, the registry still knows the user's devices and the command can be rerun.
"""

from __future__ import annotations

import logging
from typing import Any

from lakehouse.tables import arrow_schema, list_tables, open_table, query, table_uri
from lec.errors import LecError

log = logging.getLogger("lec.gdpr")


class ErasureError(LecError):
    """The erasure could not be completed; it is safe to run the command again."""


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


# Columns that identify a device or a person, blanked (not deleted) in anchored-commitment tables.
IDENTITY_COLUMNS = ("device_id", "flow_id", "device_key", "user_id", "member_id")


def _predicate(columns: set[str], device_ids: list[str], user_ids: list[str]) -> str | None:
    clauses = []
    if "device_id" in columns and device_ids:
        clauses.append(f"device_id IN ({_sql_list(device_ids)})")
    if "user_id" in columns and user_ids:
        clauses.append(f"user_id IN ({_sql_list(user_ids)})")
    if "member_id" in columns and (user_ids or device_ids):  # KPI tables: user id, or "device:<id>"
        clauses.append(f"member_id IN ({_sql_list(user_ids + [f'device:{d}' for d in device_ids])})")
    return " OR ".join(clauses) or None


def erase_from_table(uri: str, device_ids: list[str], user_ids: list[str]) -> int | None:
    """Erase the rows of these devices/users from one table and purge its history; rows erased.

    Rows are deleted, except in tables holding anchored Merkle leaves (a ``leaf_hash`` column,
    e.g. the oracle's ``oracle_leaves``): there the identifying columns are blanked and the row
    kept, because every leaf is needed to rebuild the anchored roots for the other members
    (oracle.md §4); with the device secret gone, the leaf's salt can no longer be derived.
    """
    from deltalake.exceptions import DeltaError

    dt = open_table(uri)
    if dt is None:
        return None
    columns = set(arrow_schema(dt).names)
    predicate = _predicate(columns, device_ids, user_ids)
    if predicate is None:
        return None
    try:
        found = query(f"SELECT count(*) AS n FROM t WHERE {predicate}", {"t": dt}).column("n")[0].as_py()
        if found and "leaf_hash" in columns:
            dt.update(updates={c: "NULL" for c in IDENTITY_COLUMNS if c in columns}, predicate=predicate)
        elif found:
            dt.delete(predicate)
        _purge_history(dt)
    except DeltaError as exc:
        raise ErasureError(f"erasing from {uri} failed: {exc}; run the command again") from exc
    return int(found)


def _purge_history(dt: Any) -> None:
    """Delete files and log entries of older versions, so time travel cannot return erased rows."""
    dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    dt.create_checkpoint()
    old = dt.metadata().configuration.get("delta.logRetentionDuration")
    dt.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"}, raise_if_not_exists=False)
    dt.create_checkpoint()
    dt.cleanup_metadata()
    dt.alter.set_table_properties({"delta.logRetentionDuration": old or "interval 30 days"},
                                  raise_if_not_exists=False)


def erase(settings: Any = None, *, user: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Erase ``user`` (and all their devices) or one ``device`` from the lake and the registry."""
    from lakehouse.tables import lake_root
    from lec.registry import open_registry

    if bool(user) == bool(device):
        raise ErasureError("give exactly one of --user or --device")
    registry = open_registry(settings)
    devices = registry.devices_of_user(user) if user else [device]  # type: ignore[list-item]
    users = [user] if user else []
    root = lake_root(settings)
    report: dict[str, Any] = {"user": user, "devices": devices, "tables": {}}
    for name in list_tables(root):
        deleted = erase_from_table(table_uri(name, root=root), devices, users)  # type: ignore[arg-type]
        if deleted is not None:
            report["tables"][name] = deleted
            log.info("erased %d rows from %s", deleted, name)
    if user:
        report["registry_devices"] = registry.erase_user(user)
    else:
        registry.erase_device(device)  # type: ignore[arg-type]
        report["registry_devices"] = [device]
    return report
