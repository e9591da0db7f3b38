"""Right to be forgotten (seed §4.1.1.6): erase a user's or a device's data everywhere we keep it.

docs/gdpr.md is the inventory of every store and how this reaches it. Order: gather the subject's
ids from the registry; the lake; the files under the run dir (lakehouse.gdpr.files); the search
index; Kafka (lakehouse.gdpr.kafka); last the registry and the device secrets, so a failure
before that leaves the ids known and the command can be rerun. A receipt without personal data
goes to ``run_dir/gdpr/erasure-log.jsonl``.

Every Delta table under the lake root that has a ``device_id``, ``user_id`` or ``member_id``
(KPI tables: the user id, or ``device:<id>``) column loses the matching rows (anchored Merkle
leaves are blanked instead, see :func:`erase_from_table`); then VACUUM with zero retention
deletes the data files older versions still point to, and the log is checkpointed and its older
entries removed, so time travel cannot bring the rows back. Last, the registry rows and the device secrets go (``Registry.erase_*``). The lake is
done first: if it fails, the registry still knows the user's devices and the command can be rerun.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakehouse.gdpr.files import Subject
from lakehouse.tables import arrow_schema, list_tables, open_table, query, table_uri
from lec.errors import LecError

log = logging.getLogger("lec.gdpr")


class ErasureError(LecError):
    """The erasure could not be completed; it is safe to run the command again."""


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


# Columns that identify a device or a person, blanked (not deleted) in anchored-commitment tables.
IDENTITY_COLUMNS = ("device_id", "flow_id", "device_key", "user_id", "member_id", "plant_id", "member")


def _predicate(columns: set[str], device_ids: list[str], user_ids: list[str]) -> str | None:
    clauses = []
    if "device_id" in columns and device_ids:
        clauses.append(f"device_id IN ({_sql_list(device_ids)})")
    if "plant_id" in columns and device_ids:  # settlement tables: a plant is a device
        clauses.append(f"plant_id IN ({_sql_list(device_ids)})")
    if "user_id" in columns and user_ids:
        clauses.append(f"user_id IN ({_sql_list(user_ids)})")
    if "member" in columns and user_ids:  # settlement statements
        clauses.append(f"member IN ({_sql_list(user_ids)})")
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


ERASURE_LOG = Path("gdpr") / "erasure-log.jsonl"


def gather_subject(registry: Any, run_dir: Path, *, user: str | None, device: str | None) -> Subject:
    """The subject's device and flow ids, name and e-mail, and their log pseudonyms."""
    from sqlalchemy import select

    from lec.pseudonym import pseudonym
    from lec.registry import schema as t

    snap = registry.snapshot()
    if user:
        devices = registry.devices_of_user(user)
    else:
        devices = [device]  # type: ignore[list-item]
    flows = sorted(f.id for f in snap.flows.values() if f.device_id in devices)
    names: list[str] = []
    if user:
        with registry.engine.connect() as conn:
            row = conn.execute(select(t.users).where(t.users.c.id == user)).mappings().first()
        if row is not None:
            names = [v for v in (row.get("name"), row.get("email")) if v]
    ids = ([user] if user else []) + list(devices) + flows
    return Subject(user, list(devices), flows, names, [pseudonym(i, run_dir) for i in ids])


def wallets_of(registry: Any, user: str | None) -> list[str]:
    if not user:
        return []
    return sorted({m.wallet for (_, uid), m in registry.snapshot().members.items() if uid == user and m.wallet})


def sweep_registry(registry: Any, subject: Subject) -> dict[str, int]:
    """Rows left in any registry table that still name the subject (derived series, clusters...)."""
    from sqlalchemy import MetaData, String, and_, delete, select

    meta = MetaData()
    meta.reflect(bind=registry.engine)
    pattern = subject.pattern()
    ids = [i for i in subject.ids()]
    out: dict[str, int] = {}
    with registry.engine.begin() as conn:
        for table in meta.sorted_tables[::-1]:  # children before parents
            cols = [c for c in table.columns if isinstance(c.type, String)]
            if not cols:
                continue
            gone = 0
            for row in conn.execute(select(table)).mappings().all():
                if any(isinstance(row[c.name], str) and pattern.search(row[c.name]) for c in cols):
                    conn.execute(delete(table).where(and_(*[
                        (c == row[c.name]) if row[c.name] is not None else c.is_(None) for c in table.columns])))
                    gone += 1
            if gone:
                out[table.name] = gone
    del ids
    return out


def erase_search(url: str, subject: Subject) -> dict[str, int]:
    """Delete the subject's KPI and anomaly documents from every community's indices."""
    from lakehouse.search import client

    es = client(url)
    members = ([subject.user_id] if subject.user_id else []) + [f"device:{d}" for d in subject.device_ids]
    out = {}
    for pattern, match in (
            ("lec-kpi-*", {"terms": {"member_id": members}}),
            ("lec-anomalies-*", {"bool": {"should": [{"terms": {"device_id": subject.device_ids}},
                                                     {"terms": {"flow_id": subject.flow_ids}}]}})):
        r = es.delete_by_query(index=pattern, body={"query": match}, params={"refresh": "true",
                                                                           "ignore_unavailable": "true"})
        out[pattern] = int(r.get("deleted", 0))
    return out


def _kafka_part(settings: Any, subject: Subject, registry: Any) -> dict[str, Any]:
    from lakehouse.gdpr.kafka import erase_kafka

    if not settings.kafka_bootstrap:
        return {"residual_window": "none: the embedded broker keeps its topics in memory and is not running, "
                                   "so no copy is left in Kafka"}
    return erase_kafka(settings.kafka_bootstrap, subject.ids(), settings.kafka_retention_hours,
                       registry_snapshot=registry.snapshot())


def erase(settings: Any = None, *, user: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Erase ``user`` (and all their devices) or one ``device`` from every store; the receipt.

    The returned receipt names the subject (the operator asked for it); the copy appended to the
    erasure log does not: it holds a request id, counts per store and the residual Kafka window.
    """
    from lakehouse.gdpr.files import (
        erase_ingested_files,
        erase_other_files,
        erase_sftp,
        erase_takeouts,
        redact_logs,
    )
    from lakehouse.rawzone import RawZone, erase_raw
    from lakehouse.tables import lake_root
    from lec.config import settings as current
    from lec.errors import ConfigError
    from lec.registry import open_registry

    if bool(user) == bool(device):
        raise ErasureError("give exactly one of --user or --device")
    s = settings or current()
    run_dir = s.resolved_run_dir()
    registry = open_registry(s)
    if device and device not in registry.snapshot().devices and not _lake_knows(s, device):
        raise ErasureError(f"device '{device}' is neither in the registry nor in the lake: nothing to erase "
                           f"(check the id; LEC_RUN_DIR={run_dir})")
    subject = gather_subject(registry, run_dir, user=user, device=device)
    try:  # before anything is deleted: a raw zone that cannot be reached stops the erasure here
        raw_zone = RawZone.from_settings(s)
    except ConfigError as exc:
        raise ErasureError(f"the raw zone of the lake cannot be reached for erasure: {exc}") from exc
    wallets = wallets_of(registry, user)
    receipt: dict[str, Any] = {"request_id": uuid.uuid4().hex, "at": datetime.now(UTC).isoformat(),
                               "scope": "user" if user else "device", "user": user, "devices": subject.device_ids,
                               "tables": {}}
    root = lake_root(s)
    for name in list_tables(root):
        deleted = erase_from_table(table_uri(name, root=root), subject.device_ids, [user] if user else [])
        if deleted is not None:
            receipt["tables"][name] = deleted
            log.info("erased %d rows from %s", deleted, name)
    sftp_root = s.resolved_sftp_root()
    deleted_files: list[str] = []
    receipt["sftp"] = erase_sftp(sftp_root, subject, deleted_files)
    receipt["raw_zone"] = erase_raw(raw_zone, subject.flow_ids, subject.pattern(), deleted_files)
    from lec.pseudonym import pseudonym

    # log lines name files by pseudonym (connectors.sftp.watch.logged): those go with the ids
    subject.pseudonyms += sorted({pseudonym(n, run_dir) for n in deleted_files})
    from connectors.sftp.watch import state_path

    receipt["sftp_ingested_files"] = erase_ingested_files(state_path(run_dir), subject)
    receipt["takeouts"] = erase_takeouts(run_dir, subject, wallets)
    receipt["logs"] = redact_logs(run_dir / "logs", subject)
    done = {p for p in (run_dir / "logs").rglob("*")} if (run_dir / "logs").exists() else set()
    receipt["other_files"] = erase_other_files(run_dir, subject, done)
    receipt["search"] = erase_search(s.search_url, subject) if s.search_url else "search indexing off"
    if user:
        receipt["registry_devices"] = registry.erase_user(user)
    else:
        registry.erase_device(device)  # type: ignore[arg-type]
        receipt["registry_devices"] = [device]
    receipt["registry_rows"] = sweep_registry(registry, subject)
    compact_sqlite(s.resolved_registry_url(), s.resolved_secrets_url())
    receipt["kafka"] = _kafka_part(s, subject, registry)
    append_erasure_log(run_dir, receipt)
    return receipt


def compact_sqlite(*urls: str) -> None:
    """VACUUM SQLite registries: free pages would otherwise keep the deleted rows' bytes on disk."""
    import sqlite3

    for url in urls:
        if url.startswith("sqlite:///"):
            db = sqlite3.connect(url[len("sqlite:///"):], timeout=30)
            try:
                db.execute("VACUUM")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()


def _lake_knows(settings: Any, device: str) -> bool:
    from lakehouse.tables import open_table, table_exists

    uri = table_uri("readings", settings)
    if not table_exists(uri):
        return False
    return bool(query(f"SELECT count(*) AS n FROM t WHERE device_id = {_sql_list([device])}",
                      {"t": open_table(uri)}).column("n")[0].as_py())


def log_record(receipt: dict[str, Any]) -> dict[str, Any]:
    """The receipt without anything that identifies the subject: counts only, file names dropped."""
    rec = {k: v for k, v in receipt.items() if k not in ("user", "devices", "registry_devices")}
    for key in ("takeouts", "logs", "other_files"):  # file names may carry an id: counts only
        if isinstance(rec.get(key), dict):
            rec[key] = {"files": len(rec[key]), "items": sum(abs(n) for n in rec[key].values())}
    rec["devices"] = len(receipt.get("devices", []))
    return rec


def append_erasure_log(run_dir: Path, receipt: dict[str, Any]) -> Path:
    path = run_dir / ERASURE_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(log_record(receipt), sort_keys=True) + "\n")
    return path
