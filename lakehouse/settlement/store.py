"""The settlement's Delta tables: append-only, versioned per (community, month).

- ``settlement_hourly``       per perimeter and hour: kind ``substation`` (injection, withdrawal,
                              shared = incentivised), ``zone`` (shared valued by ARERA, valorisation)
                              and ``plant`` (injection, attributed shared energy, Pz, TIP, incentive).
- ``settlement_member_days``  per member and local day: withdrawal, injection, counted in shared hours.
- ``settlement_members``      per member and month: energies, cents by group, the statement leaf.
- ``settlement_summary``      per (community, month, version): totals, groups, rule, digest, root.
- ``settlement_anchors``      per anchored (community, month, version): transaction and block.

A run whose inputs' digest equals the latest version's writes nothing (idempotent); a run with
other inputs (late readings, a new price file, a registry change) writes version n+1 and the
older versions stay. Readers take the latest version unless asked for another one. The summary
row is written last: rows of a version without a summary (a crash mid-write) are removed before
that version is written again.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

HOURLY, MEMBER_DAYS, MEMBERS, SUMMARY, ANCHORS = (
    "settlement_hourly", "settlement_member_days", "settlement_members", "settlement_summary", "settlement_anchors")

_KEY = [("community_id", pa.string()), ("month", pa.string()), ("version", pa.int64())]
SCHEMAS: dict[str, pa.Schema] = {
    HOURLY: pa.schema(_KEY + [
        ("kind", pa.string()), ("perimeter", pa.string()), ("plant_id", pa.string()), ("zone", pa.string()),
        ("hour", pa.int64()), ("local_day", pa.string()), ("local_hour", pa.int64()),
        ("injection_mwh", pa.int64()), ("withdrawal_mwh", pa.int64()), ("shared_mwh", pa.int64()),
        ("incentivised_mwh", pa.int64()), ("pz_micro", pa.int64()), ("tip_micro", pa.int64()),
        ("valorisation_micro", pa.int64()), ("amount_fe", pa.string())]),
    MEMBER_DAYS: pa.schema(_KEY + [
        ("user_id", pa.string()), ("local_day", pa.string()), ("withdrawal_mwh", pa.int64()),
        ("injection_mwh", pa.int64()), ("counted_withdrawal_mwh", pa.int64()),
        ("counted_injection_mwh", pa.int64()), ("shared_hours", pa.int64())]),
    MEMBERS: pa.schema(_KEY + [
        ("user_id", pa.string()), ("wallet", pa.string()), ("withdrawal_mwh", pa.int64()),
        ("injection_mwh", pa.int64()), ("counted_withdrawal_mwh", pa.int64()),
        ("counted_injection_mwh", pa.int64()), ("shared_hours", pa.int64()), ("producer_cents", pa.int64()),
        ("consumer_cents", pa.int64()), ("amount_cents", pa.int64()), ("tokens", pa.string()),
        ("leaf_index", pa.int64()), ("proof", pa.string())]),
    SUMMARY: pa.schema(_KEY + [
        ("timezone", pa.string()), ("hours", pa.int64()), ("injection_mwh", pa.int64()),
        ("withdrawal_mwh", pa.int64()), ("shared_mwh", pa.int64()), ("zone_shared_mwh", pa.int64()),
        ("incentive_fe", pa.string()), ("valorisation_fe", pa.string()), ("incentive_cents", pa.int64()),
        ("valorisation_cents", pa.int64()), ("total_cents", pa.int64()), ("producers_cents", pa.int64()),
        ("consumers_cents", pa.int64()), ("fund_cents", pa.int64()), ("costs_cents", pa.int64()),
        ("social_cents", pa.int64()), ("unassigned_to_fund_cents", pa.int64()), ("members_cents", pa.int64()),
        ("rule_version", pa.int64()), ("threshold_warning", pa.string()), ("inputs_digest", pa.string()),
        ("statements_root", pa.string()), ("member_count", pa.int64()), ("created_ts", pa.string())]),
    ANCHORS: pa.schema(_KEY + [
        ("chain_version", pa.int64()), ("statements_root", pa.string()), ("inputs_digest", pa.string()), ("total_cents", pa.int64()),
        ("member_count", pa.int64()), ("chainId", pa.int64()), ("notary", pa.string()), ("txHash", pa.string()),
        ("blockNumber", pa.int64())]),
}


class SettlementStore:
    """Reads and appends the settlement tables under the lake root."""

    def __init__(self, lake_uri: str) -> None:
        self.root = lake_uri.rstrip("/")

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _table(self, name: str) -> Any:
        from deltalake import DeltaTable

        uri = self.uri(name)
        return DeltaTable(uri) if DeltaTable.is_deltatable(uri) else None

    def rows(self, name: str, community_id: str, month: str, version: int | None = None,
             where: str = "") -> list[dict[str, Any]]:
        """Rows of one (community, month) at ``version`` (None: the latest with a summary)."""
        from lakehouse.tables import query

        dt = self._table(name)
        if dt is None:
            return []
        if version is None:
            latest = self.latest(community_id, month)
            if latest is None:
                return []
            version = int(latest["version"])
        sql = (f"SELECT * FROM t WHERE community_id = {sql_quote(community_id)} AND month = {sql_quote(month)} "
               f"AND version = {int(version)}{' AND ' + where if where else ''}")
        return query(sql, {"t": dt}).to_pylist()

    def versions(self, community_id: str, month: str) -> list[dict[str, Any]]:
        from lakehouse.tables import query

        dt = self._table(SUMMARY)
        if dt is None:
            return []
        rows = query(f"SELECT * FROM t WHERE community_id = {sql_quote(community_id)} AND month = {sql_quote(month)}",
                     {"t": dt}).to_pylist()
        return sorted(rows, key=lambda r: r["version"])

    def latest(self, community_id: str, month: str) -> dict[str, Any] | None:
        v = self.versions(community_id, month)
        return v[-1] if v else None

    def append(self, name: str, rows: list[dict[str, Any]]) -> None:
        from deltalake import write_deltalake

        if not rows:
            return
        write_deltalake(self.uri(name), pa.Table.from_pylist(rows, schema=SCHEMAS[name]), mode="append")

    def drop_orphans(self, community_id: str, month: str, version: int) -> None:
        """Rows of a version that has no summary (a run that crashed mid-write)."""
        pred = f"community_id = {sql_quote(community_id)} AND month = {sql_quote(month)} AND version = {int(version)}"
        for name in (HOURLY, MEMBER_DAYS, MEMBERS):
            dt = self._table(name)
            if dt is not None:
                dt.delete(pred)


def sql_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
