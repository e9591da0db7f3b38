"""`lec gdpr erase` reaches the settlement tables: the erased member's rows (user id, wallet, plant)
are gone from every readable version, and the other members' statements still verify against the
month's statements root (the root the notary anchors)."""

from __future__ import annotations

import json

import pytest

from lakehouse.gdpr.erase import erase
from lakehouse.settlement.run import settle_month
from lakehouse.settlement.statements import STATEMENT_TYPES, leaf_values
from lakehouse.settlement.store import HOURLY, MEMBER_DAYS, MEMBERS, SettlementStore
from oracle.merkle import verify
from tests.lakehouse.settlement.sample import CID, day_rows, may_lake
from tests.lec.test_gdpr_stack import lake_hits

BRUNO, BRUNO_WALLET = "u-bruno", "0x1000000000000000000000000000000000000002"   # examples/community.yaml
BRUNO_DEVICES = ["IT001E00000002", "PV-0001"]


def _verifies(store: SettlementStore, user: str) -> bool:
    root = bytes.fromhex(store.latest(CID, "2026-05")["statements_root"][2:])
    row = next(r for r in store.rows(MEMBERS, CID, "2026-05") if r["user_id"] == user)
    return verify(root, list(STATEMENT_TYPES), leaf_values(row["wallet"], 202605, row), json.loads(row["proof"]))


@pytest.mark.slow
def test_erasing_a_member_removes_their_settlement_rows_and_others_still_verify(settings, registry) -> None:
    lake = may_lake(settings.resolved_lake_uri(), day_rows(4) + day_rows(5))
    before = settle_month(settings, CID, "2026-05", registry=registry)
    store = SettlementStore(lake)
    assert {r["user_id"] for r in store.rows(MEMBERS, CID, "2026-05")} == {"u-anna", BRUNO}
    assert store.rows(HOURLY, CID, "2026-05", where="plant_id = 'PV-0001'")
    assert _verifies(store, "u-anna") and _verifies(store, BRUNO)
    anna_days = store.rows(MEMBER_DAYS, CID, "2026-05", where="user_id = 'u-anna'")

    receipt = erase(settings, user=BRUNO)

    assert receipt["tables"][MEMBERS] == 1 and receipt["tables"][MEMBER_DAYS] == 2
    assert lake_hits(lake, [BRUNO, BRUNO_WALLET, *BRUNO_DEVICES]) == []   # every readable version of every table
    assert [r["user_id"] for r in store.rows(MEMBERS, CID, "2026-05")] == ["u-anna"]
    assert _verifies(store, "u-anna")                                      # Anna's statement still checks out
    assert store.rows(MEMBER_DAYS, CID, "2026-05", where="user_id = 'u-anna'") == anna_days
    after = store.latest(CID, "2026-05")
    assert (after["version"], after["statements_root"], after["total_cents"]) == (
        before["version"], before["statements_root"], before["total_cents"])
