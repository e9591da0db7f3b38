"""Every settlement rule against hand-computed cases (docs/settlement.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from lakehouse.settlement.compute import MissingPriceError, settle
from lakehouse.settlement.model import Assignment, Month, Plant, Reading, SettlementInputs, local_hour
from lakehouse.settlement.rules import (
    DEFAULT_TARIFFS,
    PlantTerms,
    SettlementRuleError,
    StatuteRule,
    TariffParams,
    eur_to_micro,
    split_exact,
    tariff_for,
    threshold_check,
    tip,
)

M = 1_000_000
P = DEFAULT_TARIFFS[0]
KWH = 1_000_000  # mWh


def pv(kw: float, region: str = "", **kw_args: object) -> PlantTerms:
    return PlantTerms(kw, "pv", region, **kw_args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "pz", "expected"), [
    (100, 150, 110), (100, 100, 120), (100, 200, 80), (200, 170, 90), (200, 50, 120),     # <= 200 kW, cap 120
    (200.5, 150, 100), (600, 100, 110), (450, 250, 70),                                    # 200-600, cap 110
    (600.5, 150, 90), (1000, 50, 100), (1000, 180, 60),                                    # > 600, cap 100
])
def test_tip_bands_and_caps(kw: float, pz: int, expected: int) -> None:
    assert tip(pz * M, PlantTerms(kw, "wind", "Lombardia"), P) == expected * M


def test_regional_corrections_after_the_cap_pv_only() -> None:
    assert tip(100 * M, pv(100, "Lazio"), P) == 124 * M             # capped 120, +4 after the cap
    assert tip(100 * M, pv(100, "Lombardia"), P) == 130 * M         # +10
    assert tip(150 * M, pv(700, "Veneto"), P) == 100 * M            # 90 + 10
    assert tip(150 * M, pv(100, "Sicilia"), P) == 110 * M           # no correction in the south
    assert tip(100 * M, PlantTerms(100, "hydro", "Lazio"), P) == 120 * M   # not PV: none


def test_capital_grant_reduces_the_tip() -> None:
    assert tip(150 * M, pv(100, "Lombardia", grant=True), P) == 60 * M               # (110 + 10) x 50%
    assert tip(150 * M, pv(100, "Lombardia", grant=True, grant_reduction_pct=30), P) == 84 * M
    assert tip(150_000_001, pv(100, grant=True), P) == 54_999_999                    # floor of the half


def test_dated_parameters() -> None:
    v2 = TariffParams(effective_from=date(2026, 6, 1), tras_e=11 * M, btau_max=M)
    versions = (TariffParams(effective_from=date(2024, 1, 1)), v2)
    assert tariff_for(date(2026, 5, 31), versions).valorisation == 11_220_000   # 10.57 + 0.65
    assert tariff_for(date(2026, 6, 1), versions).valorisation == 12 * M
    with pytest.raises(SettlementRuleError, match="no tariff parameters are in force on 2023-12-31"):
        tariff_for(date(2023, 12, 31), versions)


def test_price_text_to_micro() -> None:
    assert eur_to_micro("112,450000") == 112_450_000
    assert eur_to_micro("0.0000005") == 0 and eur_to_micro("0.0000015") == 2  # half even
    assert eur_to_micro(-3.5) == -3_500_000


def test_split_exact_largest_remainder() -> None:
    assert split_exact(100, [("a", 1), ("b", 1), ("c", 1)]) == {"a": 34, "b": 33, "c": 33}
    assert split_exact(53, [("p", 4500), ("c", 3000), ("f", 2000), ("k", 300), ("s", 200)]) == \
        {"p": 24, "c": 16, "f": 11, "k": 1, "s": 1}
    assert split_exact(7, [("x", 0), ("y", 0)]) == {}
    parts = split_exact(10_001, [(str(i), i * 7 + 1) for i in range(37)])
    assert sum(parts.values()) == 10_001


def rule(*bps: int, version: int = 1, start: date = date(2024, 1, 1)) -> StatuteRule:
    return StatuteRule(version, start, *bps)


def test_statute_rule_checks() -> None:
    with pytest.raises(SettlementRuleError, match="add up to 9900"):
        rule(4500, 3000, 2000, 300, 100)
    assert "68%" in (threshold_check(rule(4500, 3000, 2000, 300, 200), False) or "")
    assert threshold_check(rule(4000, 4500, 1000, 300, 200), False) is None       # 53% <= 55%
    assert "45% threshold (capital grant)" in (threshold_check(rule(4000, 4500, 1000, 300, 200), True) or "")


# -- the month ------------------------------------------------------------------------------------

MAY = Month(2026, 5)
H0 = int(datetime(2026, 5, 4, 10, tzinfo=UTC).timestamp())   # 12:00 local


def community(**over: object) -> SettlementInputs:
    base = dict(
        community_id="cer", month=MAY,
        owners={"pod-a": "anna", "pod-b": "bruno", "pv-old": "bruno", "pv-new": "carla"},
        wallets={"anna": "0x" + "a" * 40, "bruno": "0x" + "b" * 40, "carla": "0x" + "c" * 40},
        assignments=[Assignment(d, "CP1", "CNOR", "Lazio") for d in ("pod-a", "pod-b", "pv-old", "pv-new")],
        plants={"pv-old": Plant("pv-old", date(2023, 1, 10), 100.0),
                "pv-new": Plant("pv-new", date(2024, 6, 1), 100.0)},
        rules=[rule(4500, 3000, 2000, 300, 200)],
        prices={("CNOR", h): 100 * M for h in MAY.hours()},
    )
    base.update(over)
    return SettlementInputs(**base)  # type: ignore[arg-type]


def qh_readings(device: str, kind: str, hour: int, kwh_per_hour: float) -> list[Reading]:
    e = int(kwh_per_hour * KWH / 4) * (-1 if kind == "production" else 1)
    return [Reading(device, kind, hour + 900 * k, e) for k in range(4)]


def test_one_hour_by_hand() -> None:
    """PV 100 kW in Lazio at Pz 100: TIP 124 €/MWh; shared 4 kWh -> 49.6 c incentive, 4.488 c ARERA."""
    inputs = community(plants={"pv-old": Plant("pv-old", date(2023, 1, 10), 100.0)})
    s = settle(inputs, qh_readings("pv-old", "production", H0, 10) + qh_readings("pod-a", "consumption", H0, 4))
    assert s.hourly.substations[("CP1", H0)] == [10 * KWH, 4 * KWH, 4 * KWH]
    assert s.hourly.plants[("pv-old", H0)] == ("CP1", "CNOR", 10 * KWH, 4 * KWH, 100 * M, 124 * M)
    assert s.summary["incentive_cents"] == 49 and s.summary["valorisation_cents"] == 4
    assert s.summary["total_cents"] == 53
    assert [s.summary[f"{g}_cents"] for g in ("producers", "consumers", "fund", "costs", "social")] == [24, 16, 11, 1, 1]
    assert s.members["bruno"]["producer_cents"] == 24 and s.members["anna"]["consumer_cents"] == 16
    assert "68%" in str(s.summary["threshold_warning"])


def test_commissioning_order_oldest_first() -> None:
    readings = (qh_readings("pv-new", "production", H0, 5) + qh_readings("pv-old", "production", H0, 3)
                + qh_readings("pod-a", "consumption", H0, 6))
    s = settle(community(), readings)
    assert s.hourly.plants[("pv-old", H0)][3] == 3 * KWH      # oldest: all its injection
    assert s.hourly.plants[("pv-new", H0)][3] == 3 * KWH      # the rest of the 6 kWh shared


def test_grid_flow_gives_withdrawal_and_injection() -> None:
    # a prosumer's grid meter: +2 kWh in the first half hour, -2 kWh in the second
    readings = [Reading("pod-b", "grid", H0 + 900 * k, (1 if k < 2 else -1) * KWH) for k in range(4)]
    readings += qh_readings("pv-old", "production", H0, 1)
    s = settle(community(plants={"pv-old": Plant("pv-old", date(2023, 1, 10), 100.0)}), readings)
    assert s.hourly.substations[("CP1", H0)] == [1 * KWH, 2 * KWH, 1 * KWH]   # grid injection of a non-plant
    assert s.members["bruno"]["withdrawal_mwh"] == 2 * KWH                     # point is not counted


def test_member_leaving_mid_month() -> None:
    leave = int(datetime(2026, 5, 15, tzinfo=UTC).timestamp())
    after = H0 + 14 * 86400
    assignments = [Assignment("pod-a", "CP1", "CNOR", "Lazio", valid_to=leave),
                   *[Assignment(d, "CP1", "CNOR", "Lazio") for d in ("pv-old",)]]
    readings = []
    for h in (H0, after):
        readings += qh_readings("pv-old", "production", h, 5) + qh_readings("pod-a", "consumption", h, 2)
    s = settle(community(assignments=assignments, plants={"pv-old": Plant("pv-old", date(2023, 1, 10), 100.0)}),
               readings)
    assert s.hourly.substations[("CP1", H0)][2] == 2 * KWH
    assert s.hourly.substations[("CP1", after)] == [5 * KWH, 0, 0]       # anna has left: nothing shared
    assert s.members["anna"]["withdrawal_mwh"] == 2 * KWH


def test_substation_change_mid_month() -> None:
    move = int(datetime(2026, 5, 15, tzinfo=UTC).timestamp())
    after = H0 + 14 * 86400
    assignments = [Assignment("pod-a", "CP1", "CNOR", "Lazio", valid_to=move),
                   Assignment("pod-a", "CP2", "CNOR", "Lazio", valid_from=move),
                   Assignment("pv-old", "CP1", "CNOR", "Lazio")]
    readings = []
    for h in (H0, after):
        readings += qh_readings("pv-old", "production", h, 5) + qh_readings("pod-a", "consumption", h, 2)
    s = settle(community(assignments=assignments, plants={"pv-old": Plant("pv-old", date(2023, 1, 10), 100.0)}),
               readings)
    assert s.hourly.substations[("CP1", H0)][2] == 2 * KWH
    assert s.hourly.substations[("CP1", after)][2] == 0                     # not incentivised: other substation
    assert s.hourly.substations[("CP2", after)] == [0, 2 * KWH, 0]
    assert s.hourly.zones[("CNOR", after)][2] == 2 * KWH                    # still shared in the market zone
    assert s.summary["zone_shared_mwh"] == 4 * KWH and s.summary["shared_mwh"] == 2 * KWH


def test_dst_days_have_23_and_25_hours() -> None:
    assert len(Month(2026, 3).hours()) == 31 * 24 - 1
    assert len(Month(2026, 10).hours()) == 31 * 24 + 1
    assert len(MAY.hours()) == 31 * 24
    # 25 October 2026: 02:00-03:00 local twice; UTC 00:00 and 01:00 are hours 3 and 4 of the day
    first = int(datetime(2026, 10, 25, 0, tzinfo=UTC).timestamp())
    assert local_hour(first, "Europe/Rome") == (date(2026, 10, 25), 3)
    assert local_hour(first + 3600, "Europe/Rome") == (date(2026, 10, 25), 4)
    assert local_hour(int(datetime(2026, 10, 25, 22, tzinfo=UTC).timestamp()), "Europe/Rome") == \
        (date(2026, 10, 25), 25)
    # 29 March 2026: 02:00 local does not exist; UTC 01:00 is hour 3, the day ends at hour 23
    assert local_hour(int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp()), "Europe/Rome") == (date(2026, 3, 29), 3)
    assert local_hour(int(datetime(2026, 3, 29, 21, tzinfo=UTC).timestamp()), "Europe/Rome") == \
        (date(2026, 3, 29), 23)
    # both 02:00-03:00 hours of 25 October are settled as separate hours
    octo = Month(2026, 10)
    inputs = community(month=octo, plants={"pv-old": Plant("pv-old", date(2023, 1, 10), 100.0)},
                       prices={("CNOR", h): 100 * M for h in octo.hours()})
    readings = []
    for h in (first, first + 3600):
        readings += qh_readings("pv-old", "production", h, 1) + qh_readings("pod-a", "consumption", h, 1)
    s = settle(inputs, readings)
    assert s.hourly.substations[("CP1", first)][2] == s.hourly.substations[("CP1", first + 3600)][2] == KWH
    assert s.summary["hours"] == 745


def test_missing_price_hour_is_named() -> None:
    prices = {("CNOR", h): 100 * M for h in MAY.hours() if h != H0}
    with pytest.raises(MissingPriceError, match=r"zone CNOR on 2026-05-04 hour 13"):
        settle(community(prices=prices), qh_readings("pv-old", "production", H0, 1)
               + qh_readings("pod-a", "consumption", H0, 1))


def test_members_add_up_and_group_without_weights_goes_to_the_fund() -> None:
    readings = []
    for k in range(50):
        h = H0 + 3600 * k
        readings += qh_readings("pv-old", "production", h, 7 + k % 3) + qh_readings("pv-new", "production", h, 2)
        readings += qh_readings("pod-a", "consumption", h, 3 + k % 5) + qh_readings("pod-b", "consumption", h, 2.5)
    s = settle(community(), readings)
    summ = s.summary
    groups = sum(int(summ[f"{g}_cents"]) for g in ("producers", "consumers", "fund", "costs", "social"))
    assert groups == summ["total_cents"]
    assert summ["members_cents"] == int(summ["producers_cents"]) + int(summ["consumers_cents"])
    # nobody consumes: the consumers' share goes to the fund
    s2 = settle(community(), [r for r in readings if r.kind == "production"])
    assert s2.summary["total_cents"] == 0
