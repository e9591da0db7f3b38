"""The oracle's Delta tables under the lake root (deltalake, local path or hdfs://).

- ``anchors``        one row per anchor on chain: the ``lec.oracle.anchors`` record (schemas/anchor.json).
- ``oracle_leaves``  one row per leaf of each anchored (community, qh, version): identity, account,
                     deviceKey, energy, owning wallet and the leaf hash. Never the salt: take-outs
                     derive salts on demand from the secret store. The leaf hash (which reveals
                     nothing without the salt) keeps proofs buildable after a device's erasure.
- ``oracle_claims``  one row per (community, qh, version) whose rewards were claimed for members.

All three are append-only; readers take the latest version per (community, qh).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

ANCHORS_TABLE, LEAVES_TABLE, CLAIMS_TABLE = "anchors", "oracle_leaves", "oracle_claims"

ANCHORS_SCHEMA = pa.schema([
    ("community_id", pa.string()), ("communityId", pa.string()), ("qh", pa.int64()), ("version", pa.int64()),
    ("readingsRoot", pa.string()), ("leafCount", pa.int64()), ("consumptionMwh", pa.string()),
    ("productionMwh", pa.string()), ("sharedMwh", pa.string()), ("rewardsRoot", pa.string()),
    ("rewardTotal", pa.string()), ("paramsVersion", pa.int64()), ("txHash", pa.string()),
    ("blockNumber", pa.int64()), ("chainId", pa.int64()), ("notary", pa.string()),
])
LEAVES_SCHEMA = pa.schema([
    ("community_id", pa.string()), ("qh", pa.int64()), ("version", pa.int64()), ("supplier_id", pa.string()),
    ("device_id", pa.string()), ("flow_id", pa.string()), ("account", pa.int64()), ("device_key", pa.string()),
    ("energy_mwh", pa.int64()), ("wallet", pa.string()), ("leaf_hash", pa.string()),
])
CLAIMS_SCHEMA = pa.schema([
    ("community_id", pa.string()), ("qh", pa.int64()), ("version", pa.int64()), ("txHash", pa.string()),
    ("blockNumber", pa.int64()),
])
_INT_FIELDS = {"qh", "version", "leafCount", "paramsVersion", "blockNumber", "chainId"}


@dataclass(frozen=True)
class LeafRow:
    community_id: str
    qh: int
    version: int
    supplier_id: str
    device_id: str
    flow_id: str
    account: int
    device_key: str
    energy_mwh: int
    wallet: str | None
    leaf_hash: str


class OracleLake:
    """Append and read the oracle's tables under ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _append(self, name: str, schema: pa.Schema, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        from deltalake import write_deltalake

        table = pa.Table.from_pylist(rows, schema=schema)
        write_deltalake(self.uri(name), table, mode="append", partition_by=["community_id"])

    def append_anchors(self, records: list[dict[str, Any]]) -> None:
        self._append(ANCHORS_TABLE, ANCHORS_SCHEMA, [{k: r[k] for k in ANCHORS_SCHEMA.names} for r in records])

    def append_leaves(self, rows: Iterable[LeafRow]) -> None:
        self._append(LEAVES_TABLE, LEAVES_SCHEMA, [r.__dict__ for r in rows])

    def append_claims(self, rows: list[dict[str, Any]]) -> None:
        self._append(CLAIMS_TABLE, CLAIMS_SCHEMA, rows)

    def _read(self, name: str, where: str = "") -> list[dict[str, Any]]:
        from lakehouse.tables import open_table, query

        dt = open_table(self.uri(name))
        if dt is None:
            return []
        return query(f"SELECT * FROM t {where}", {"t": dt}).to_pylist()

    def anchors(self, community_id: str | None = None, qh_from: int | None = None,
                qh_to: int | None = None) -> list[dict[str, Any]]:
        """Anchor records, oldest first (every version)."""
        rows = self._read(ANCHORS_TABLE, _where(community_id, qh_from, qh_to))
        return sorted(rows, key=lambda r: (r["community_id"], r["qh"], r["version"]))

    def latest_anchors(self, community_id: str | None = None, qh_from: int | None = None,
                       qh_to: int | None = None) -> dict[tuple[str, int], dict[str, Any]]:
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for r in self.anchors(community_id, qh_from, qh_to):
            out[(r["community_id"], r["qh"])] = r
        return out

    def leaves(self, community_id: str, qh: int, version: int) -> list[LeafRow]:
        rows = self._read(LEAVES_TABLE, f"WHERE community_id = '{_sql(community_id)}' AND qh = {int(qh)} "
                                         f"AND version = {int(version)}")
        return _unique_leaves(rows)

    def leaves_range(self, community_id: str, qh_from: int, qh_to: int) -> dict[tuple[int, int], list[LeafRow]]:
        """(qh, version) -> leaves, for every anchored version in [qh_from, qh_to)."""
        out: dict[tuple[int, int], list[LeafRow]] = {}
        for row in self._read(LEAVES_TABLE, _where(community_id, qh_from, qh_to)):
            out.setdefault((row["qh"], row["version"]), []).append(row)
        return {k: _unique_leaves(v) for k, v in out.items()}

    def claimed(self) -> set[tuple[str, int, int]]:
        return {(r["community_id"], r["qh"], r["version"]) for r in self._read(CLAIMS_TABLE)}


def _unique_leaves(rows: list[dict[str, Any]]) -> list[LeafRow]:
    # a crash between two appends may repeat a write: one row per leaf
    seen: dict[tuple[str, str, str], LeafRow] = {}
    for r in rows:
        # an erased leaf (GDPR: ids blanked) is told apart by its hash, or erased leaves would collapse
        key = (r["supplier_id"], r["device_id"], r["flow_id"]) if r["device_id"] is not None else \
            ("", "erased", r["leaf_hash"])
        seen[key] = LeafRow(**{k: r[k] for k in LEAVES_SCHEMA.names})
    return list(seen.values())


def _sql(value: str) -> str:
    return value.replace("'", "''")


def _where(community_id: str | None, qh_from: int | None, qh_to: int | None) -> str:
    parts = []
    if community_id is not None:
        parts.append(f"community_id = '{_sql(community_id)}'")
    if qh_from is not None:
        parts.append(f"qh >= {int(qh_from)}")
    if qh_to is not None:
        parts.append(f"qh < {int(qh_to)}")
    return ("WHERE " + " AND ".join(parts)) if parts else ""


def anchor_record(data: Any, tx_hash: str, block: int, chain_id: int, notary: str) -> dict[str, Any]:
    """The ``lec.oracle.anchors`` record (schemas/anchor.json) of an AnchorData on chain."""
    return {
        "community_id": data.community_id, "communityId": "0x" + data.communityId.hex(), "qh": data.qh,
        "version": data.version, "readingsRoot": "0x" + data.readingsRoot.hex(), "leafCount": data.leafCount,
        "consumptionMwh": str(data.consumptionMwh), "productionMwh": str(data.productionMwh),
        "sharedMwh": str(data.sharedMwh), "rewardsRoot": "0x" + data.rewardsRoot.hex(),
        "rewardTotal": str(data.rewardTotal), "paramsVersion": data.paramsVersion, "txHash": tx_hash,
        "blockNumber": block, "chainId": chain_id, "notary": notary,
    }
