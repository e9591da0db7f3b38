"""`lec settlement run` on Sail over the example community: versions, idempotence, late readings."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.settlement.run import SETTLE_STEPS, settle_month
from lakehouse.settlement.store import HOURLY, MEMBER_DAYS, MEMBERS, SettlementStore
from tests.lakehouse.settlement.sample import CID, KWH, ROME, day_rows, may_lake
from tests.support.kpi_sample import readings_table, write_readings


@pytest.mark.slow
def test_run_versions_and_idempotence(settings, registry) -> None:
    lake = may_lake(settings.resolved_lake_uri(), day_rows(4) + day_rows(5))
    first = settle_month(settings, CID, "2026-05", registry=registry)
    assert first["written"] and first["version"] == 1
    # two days x 2 hours x 4 QH: shared per QH = min(2, 1.5) kWh -> 16 x 1.5 = 24 kWh
    assert first["shared_mwh"] == 24 * KWH and first["hours"] == 744
    # TIP: 6 kW PV in Lazio: min(120, 80 + 180 - Pz) + 4; Pz of local hours 13 and 14 = 73.25, 74.25
    # -> 120 + 4 = 124 €/MWh: 24 kWh x 124 = 2.976 € ; ARERA 24 kWh x 11.22 = 0.26928 €
    assert first["incentive_cents"] == 297 and first["valorisation_cents"] == 26
    assert first["total_cents"] == 323
    parts = [first[f"{g}_cents"] for g in ("producers", "consumers", "fund", "costs", "social")]
    assert sum(parts) == 323 and parts == [129, 145, 32, 10, 7]   # 129.2 145.35 32.3 9.69 6.46: +1 to .69, .46
    assert first["threshold_warning"] == ""                         # 53% <= 55%
    store = SettlementStore(lake)
    members = {r["user_id"]: r for r in store.rows(MEMBERS, CID, "2026-05")}
    assert members["u-bruno"]["producer_cents"] == 129
    assert members["u-anna"]["consumer_cents"] + members["u-bruno"]["consumer_cents"] == 145
    # consumers by withdrawal in shared hours: Anna 16 kWh, Bruno 8 kWh -> 96.67 / 48.33
    assert (members["u-anna"]["consumer_cents"], members["u-bruno"]["consumer_cents"]) == (97, 48)
    assert len(store.rows(MEMBER_DAYS, CID, "2026-05")) == 4
    plants = store.rows(HOURLY, CID, "2026-05", where="kind = 'plant'")
    assert len(plants) == 4 and {r["tip_micro"] for r in plants} == {124_000_000}

    # lec kpi's settlement columns on the monthly rows
    from datetime import datetime

    from lakehouse.kpi import jobs as kpi
    from lakehouse.settlement.kpi import add_settlement_columns
    from lakehouse.spark.sessions import read_delta, registry_frames, session_for

    spark = session_for("")
    req = kpi.KpiRequest(CID, datetime(2026, 5, 1, tzinfo=ROME), datetime(2026, 6, 1, tzinfo=ROME), "1mo")
    pdf = kpi.compute_kpis(spark, read_delta(spark, lake, "readings"), registry_frames(spark, registry), req).toPandas()
    rows = add_settlement_columns(pdf, lake, CID, "1mo").set_index("member_id", drop=False)
    community = rows[rows["level"] == "community"].iloc[0]
    assert community["settlement_eur"] == 3.23 and community["settlement_shared_kwh"] == 24.0
    assert rows.loc["u-anna", "settlement_eur"] == 0.97 and rows.loc["u-anna", "settlement_version"] == 1
    assert add_settlement_columns(pdf, lake, CID, "1d")["settlement_eur"].isna().all()

    again = settle_month(settings, CID, "2026-05", registry=registry)        # same inputs: nothing new
    assert not again["written"] and again["version"] == 1 and again["inputs_digest"] == first["inputs_digest"]

    write_readings(lake, readings_table(CID, day_rows(6)))                   # late readings
    phases: list = []      # `lec settlement run` moves its terminal bar (lec.progress) once per phase
    second = settle_month(settings, CID, "2026-05", registry=registry,
                          advance=lambda n=1, description=None: phases.append(description))
    assert len(phases) == SETTLE_STEPS
    assert second["written"] and second["version"] == 2 and second["shared_mwh"] == 36 * KWH
    assert second["statements_root"] != first["statements_root"]
    assert [v["version"] for v in store.versions(CID, "2026-05")] == [1, 2]
    assert len(store.rows(MEMBER_DAYS, CID, "2026-05", version=1)) == 4     # the old version stays
    assert len(store.rows(MEMBER_DAYS, CID, "2026-05")) == 6
    work = Path(lake) / "_settlement_work"
    assert not work.exists() or not any(work.iterdir())                   # scratch folders removed
