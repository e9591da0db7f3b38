"""Settlement columns of `lec kpi`: the latest settled version of each month, joined onto monthly rows.

- ``settlement_version``     the settlement version the figures come from (null: month not settled)
- ``settlement_shared_kwh``  community: shared energy in the primary substations (incentivised);
                             member: its energy counted in shared hours (the repartition weight)
- ``settlement_eur``         community: the month's total (incentive + ARERA valorisation);
                             member: its share (producer + consumer parts)

Only ``1mo`` rows get values (a settlement is monthly); other resolutions get the columns empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.settlement.store import MEMBERS, SettlementStore

if TYPE_CHECKING:
    import pandas as pd

SETTLEMENT_COLUMNS = ["settlement_version", "settlement_shared_kwh", "settlement_eur"]


def add_settlement_columns(pdf: pd.DataFrame, lake_uri: str, community_id: str, resolution: str) -> pd.DataFrame:
    out = pdf.copy()
    for c in SETTLEMENT_COLUMNS:
        out[c] = None
    if resolution != "1mo" or out.empty:
        return out
    store = SettlementStore(lake_uri)
    for month in sorted({str(p)[:7] for p in out["period_local"]}):
        latest = store.latest(community_id, month)
        if latest is None:
            continue
        members = {r["user_id"]: r for r in store.rows(MEMBERS, community_id, month, version=int(latest["version"]))}
        rows = out["period_local"].astype(str).str.startswith(month)
        for i in out.index[rows]:
            if out.at[i, "level"] == "community":
                shared, cents = latest["shared_mwh"], latest["total_cents"]
            elif out.at[i, "member_id"] in members:
                m = members[out.at[i, "member_id"]]
                shared, cents = m["counted_withdrawal_mwh"] + m["counted_injection_mwh"], m["amount_cents"]
            else:
                continue
            out.at[i, "settlement_version"] = int(latest["version"])
            out.at[i, "settlement_shared_kwh"] = shared / 1_000_000
            out.at[i, "settlement_eur"] = cents / 100
    return out
