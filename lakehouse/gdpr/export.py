"""Access and portability (GDPR art. 15 and 20): everything the platform holds about a user or device.

``lec gdpr export --user U | --device D --out FILE.zip`` writes one zip archive:

- ``manifest.json``: subject, time, and for each file its rows and sha256;
- ``registry.json``: every registry row naming the subject (user, memberships, devices, flows...);
- ``tables/<table>.parquet`` and ``.csv`` for every lake table with rows of the subject: readings,
  dead letters, anomalies, KPI tables (``member_id``), settlement lines when that table exists,
  anchored leaves, claims;
- ``anchors.json``: the on-chain anchors (tx hash, block, roots) of the quarter-hours holding the
  subject's leaves, and ``takeout.json``: their Merkle proofs (oracle.md §10) when the chain answers.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lakehouse.gdpr.erase import ErasureError, _predicate, gather_subject
from lakehouse.tables import arrow_schema, lake_root, list_tables, open_table, query, table_uri


class ExportError(ErasureError):
    """The export could not be written."""


def registry_rows(registry: Any, pattern: Any) -> dict[str, list[dict[str, Any]]]:
    """Registry rows with a text column naming the subject, by table (secrets are not exported)."""
    from sqlalchemy import MetaData, String, select

    meta = MetaData()
    meta.reflect(bind=registry.engine)
    out: dict[str, list[dict[str, Any]]] = {}
    with registry.engine.connect() as conn:
        for table in meta.sorted_tables:
            cols = [c.name for c in table.columns if isinstance(c.type, String)]
            if not cols or "password" in " ".join(c.name for c in table.columns):
                continue
            rows = [dict(r) for r in conn.execute(select(table)).mappings().all()
                    if any(isinstance(r[c], str) and pattern.search(r[c]) for c in cols)]
            if rows:
                out[table.name] = rows
    return out


def _plain_type(t: pa.DataType) -> pa.DataType:
    if t == pa.string_view():
        return pa.string()
    if t == pa.binary_view():
        return pa.binary()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain_type(f.type), f.nullable) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(_plain_type(t.value_type))
    return t


def plain_types(table: pa.Table) -> pa.Table:
    """View types (what the query engine returns) as plain string/binary: CSV and older readers need them."""
    return table.cast(pa.schema([pa.field(f.name, _plain_type(f.type), f.nullable) for f in table.schema]))


def _csv_ready(table: pa.Table) -> pa.Table:
    """Nested columns (a dead letter's source coordinates) as JSON text: CSV has no nesting."""
    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            values = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(f.name, pa.string()), pa.array(values, pa.string()))
        elif pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            values = [None if v is None else v.hex() for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(f.name, pa.string()), pa.array(values, pa.string()))
    return table


def lake_rows(root: str, device_ids: list[str], user_ids: list[str]) -> dict[str, pa.Table]:
    out = {}
    for name in list_tables(root):
        dt = open_table(table_uri(name, root=root))
        if dt is None:
            continue
        predicate = _predicate(set(arrow_schema(dt).names), device_ids, user_ids)
        if predicate is None:
            continue
        rows = query(f"SELECT * FROM t WHERE {predicate}", {"t": dt})
        if rows.num_rows:
            out[name] = plain_types(rows)
    return out


def _anchors(root: str, leaves: pa.Table | None) -> list[dict[str, Any]]:
    """The anchors (lake copy of the chain's records) of the QHs where the subject has leaves."""
    from oracle.store import OracleLake

    if leaves is None or "qh" not in leaves.column_names:
        return []
    qhs = set(leaves.column("qh").to_pylist())
    return [a for a in OracleLake(root).anchors() if a.get("qh") in qhs]


def _takeout(settings: Any, device_ids: list[str], anchors: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Merkle proofs of the subject's leaves, built as `lec audit takeout --device` does; None without a chain."""
    if not anchors or not settings.chain_rpc:
        return None
    from lec.registry import SecretStore
    from oracle.agent import default_deployment_path
    from oracle.chain.client import load_deployment
    from oracle.store import OracleLake
    from oracle.takeout import build_takeout
    from oracle.verify import read_only_client

    try:
        dep = load_deployment(default_deployment_path(settings))
        client = read_only_client(settings.chain_rpc, dep.chainId, dep.notary, dict(dep.tokens))
        lake = OracleLake(settings.resolved_lake_uri())
        docs = []
        for cid in sorted({a["community_id"] for a in anchors}):
            qh_from = min(a["qh"] for a in anchors if a["community_id"] == cid)
            qh_to = max(a["qh"] for a in anchors if a["community_id"] == cid) + 900
            for dev in device_ids:
                docs.append(build_takeout(lake, client, SecretStore(settings.resolved_secrets_url()), community_id=cid,
                                          qh_from=qh_from, qh_to=qh_to, device=dev))
    except Exception as exc:  # noqa: BLE001 - chain down or deployment missing: the anchors are still exported
        return {"error": f"proofs not built: {exc}"}
    if not docs:
        return None
    merged = dict(docs[0])
    merged["anchors"] = [a for d in docs for a in d["anchors"]]
    return merged


def export(settings: Any = None, *, user: str | None = None, device: str | None = None, out: Path) -> dict[str, Any]:
    """Write the archive; returns its manifest."""
    from lec.config import settings as current
    from lec.registry import open_registry

    if bool(user) == bool(device):
        raise ExportError("give exactly one of --user or --device")
    s = settings or current()
    registry = open_registry(s)
    subject = gather_subject(registry, s.resolved_run_dir(), user=user, device=device)
    subject.pseudonyms = []
    reg = registry_rows(registry, subject.pattern())
    if not reg:
        raise ExportError(f"{'user' if user else 'device'} '{user or device}' is not in the registry: nothing to export")
    root = lake_root(s)
    tables = lake_rows(root, subject.device_ids, [user] if user else [])
    anchors = _anchors(root, tables.get("oracle_leaves"))
    takeout = _takeout(s, subject.device_ids, anchors)
    manifest: dict[str, Any] = {"subject": {"user": user, "devices": subject.device_ids, "flows": subject.flow_ids},
                                "created": datetime.now(UTC).isoformat(), "files": {}}
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        def put(name: str, data: bytes, rows: int | None = None) -> None:
            zf.writestr(name, data)
            manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                       **({"rows": rows} if rows is not None else {})}

        put("registry.json", json.dumps(reg, indent=2, default=str).encode(), sum(len(v) for v in reg.values()))
        for name, table in tables.items():
            safe = name.replace("/", "__")
            buf = io.BytesIO()
            pq.write_table(table, buf)
            put(f"tables/{safe}.parquet", buf.getvalue(), table.num_rows)
            csv = io.BytesIO()
            pacsv.write_csv(_csv_ready(table), csv)
            put(f"tables/{safe}.csv", csv.getvalue(), table.num_rows)
        put("anchors.json", json.dumps(anchors, indent=2, default=str).encode(), len(anchors))
        if takeout is not None:
            put("takeout.json", json.dumps(takeout, indent=2, default=str).encode())
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
    return manifest


def read_export(path: Path) -> dict[str, Any]:
    """Read an archive back (for the member's own tools and the round-trip test); checks the sha256s."""
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        out: dict[str, Any] = {"manifest": manifest, "tables": {}, "csv": {}}
        for name, meta in manifest["files"].items():
            data = zf.read(name)
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise ExportError(f"{path}: {name} does not match its checksum in manifest.json")
            if name.endswith(".parquet"):
                out["tables"][name[len("tables/"):-len(".parquet")].replace("__", "/")] = pq.read_table(io.BytesIO(data))
            elif name.endswith(".csv"):
                out["csv"][name[len("tables/"):-len(".csv")].replace("__", "/")] = pacsv.read_csv(io.BytesIO(data))
            else:
                out[name[:-len(".json")]] = json.loads(data)
    return out
