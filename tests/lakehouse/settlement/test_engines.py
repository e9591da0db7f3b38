"""`lec settlement run` on one lake, on Sail and on JVM Spark + delta-spark: identical tables.

The lake (the example community's readings over three May days, with a grid-exchange meter
beside a consumption one, and the month's prices) is built once and copied, so each engine
settles the same inputs into its own settlement tables; every output column is compared exactly
(integer cents and mWh, strings, the Merkle root and proofs), only ``created_ts`` differs.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from lakehouse.settlement.run import settle_month
from lakehouse.settlement.store import HOURLY, MEMBER_DAYS, MEMBERS, SUMMARY, SettlementStore
from lec.config import Settings
from tests.lakehouse.settlement.sample import CID, KWH, ROME, day_rows, may_lake
from tests.support.kpi_sample import SampleFlow

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the JVM starts in 10-20 s idle, minutes when loaded

ENGINES = ("sail", "jvm")
SORT = {HOURLY: ["kind", "perimeter", "plant_id", "hour"], MEMBER_DAYS: ["user_id", "local_day"],
        MEMBERS: ["user_id"], SUMMARY: ["version"]}
# Anna's point also reads as a grid-exchange meter on one day (+ withdrawal, - injection)
ANNA_GRID = SampleFlow("f-anna-grid", "IT001E00000001", "u-anna", "grid", 0)


def _readings() -> list:
    rows = day_rows(4) + day_rows(5) + day_rows(30)
    start = datetime(2026, 5, 5, 11, tzinfo=ROME)
    rows += [(ANNA_GRID, start + timedelta(minutes=15 * q), (-1) ** q * KWH // 4) for q in range(12)]
    return rows


@pytest.fixture()
def lakes(settings: Settings, tmp_path: Path) -> dict[str, Settings]:
    """One lake (readings + prices), copied once per engine; the settings of each engine on its copy."""
    lake = may_lake(str(tmp_path / "lake"), _readings())
    out = {}
    for engine in ENGINES:
        copy = tmp_path / f"lake-{engine}"
        shutil.copytree(lake, copy)
        out[engine] = settings.model_copy(update={"lake_uri": str(copy), "spark_engine": engine})
    return out


def _table(lake: str, name: str) -> list[dict]:
    """The latest version's rows (plain Python values: None stays None), sorted by the table's key."""
    rows = [{k: v for k, v in r.items() if k != "created_ts"} for r in SettlementStore(lake).rows(name, CID, "2026-05")]
    assert rows, name
    return sorted(rows, key=lambda r: tuple("" if r[k] is None else r[k] for k in SORT[name]))  # plant_id: None


def test_settlement_identical_on_sail_and_jvm(lakes: dict[str, Settings], registry) -> None:
    # settle_month takes its session from the settings: one JVM Spark Connect server per test process
    results = {e: settle_month(lakes[e], CID, "2026-05", registry=registry) for e in ENGINES}
    sail, jvm = results["sail"], results["jvm"]
    assert sail["written"] and jvm["written"]
    assert sail["shared_mwh"] > 0 and sail["total_cents"] > 0
    assert {k: v for k, v in sail.items() if k != "created_ts"} == {k: v for k, v in jvm.items() if k != "created_ts"}
    for name in (HOURLY, MEMBER_DAYS, MEMBERS, SUMMARY):
        a, b = (_table(lakes[e].lake_uri, name) for e in ENGINES)
        assert len(a) == len(b) > 0, name
        for ra, rb in zip(a, b):  # exact: integers as integers, strings (big amounts, proofs, root) as strings
            assert ra == rb, name
    # the other engine over the Sail-settled lake finds the same inputs' digest: nothing new written
    again = settle_month(lakes["sail"].model_copy(update={"spark_engine": "jvm"}), CID, "2026-05", registry=registry)
    assert not again["written"] and again["version"] == 1 and again["inputs_digest"] == sail["inputs_digest"]
