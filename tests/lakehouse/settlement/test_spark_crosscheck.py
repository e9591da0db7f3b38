"""The Spark job equals the plain-Python reference on random communities (hypothesis, Sail)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.settlement.compute import MissingPriceError, device_hours, finalise, hourly
from lakehouse.settlement.inputs import inputs_digest
from lakehouse.settlement.job import run_hourly
from lakehouse.settlement.model import Assignment, Month, Plant, Reading, SettlementInputs
from lakehouse.settlement.rules import StatuteRule

MONTHS = [Month(2026, 3), Month(2026, 10), Month(2026, 5)]
REGIONS = ["Lazio", "Lombardia", "Sicilia"]


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    from lakehouse.spark.sessions import session_for

    yield session_for("")


def readings_frame(spark, community_id: str, readings: list[tuple[str, str, int, int]]):
    from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

    account = {"grid": 0, "consumption": 1, "production": 2}
    schema = StructType([StructField("community_id", StringType()), StructField("device_id", StringType()),
                         StructField("ts", TimestampType()), StructField("energy_mwh", LongType()),
                         StructField("measurement", StringType()), StructField("account", LongType())])
    rows = [(community_id, dev, datetime.fromtimestamp(ts, UTC), e,
             "grid" if kind == "grid" else ("load" if kind == "consumption" else "production"), account[kind])
            for dev, kind, ts, e in readings]
    rows.append(("other-community", "x", datetime.fromtimestamp(MONTHS[0].hours()[5], UTC), 99, "load", 1))
    return spark.createDataFrame(rows, schema)


@st.composite
def communities(draw: st.DrawFn) -> tuple[SettlementInputs, list[Reading]]:
    month = draw(st.sampled_from(MONTHS))
    hours = month.hours()
    n_dev = draw(st.integers(2, 6))
    devices = [f"d{k}" for k in range(n_dev)]
    owners: dict[str, str | None] = {}
    wallets: dict[str, str] = {}
    kinds: dict[str, str] = {}
    assignments: list[Assignment] = []
    plants: dict[str, Plant] = {}
    for k, dev in enumerate(devices):
        owner = draw(st.sampled_from(["u0", "u1", "u2", "outsider", None]))
        owners[dev] = owner
        if owner and owner != "outsider":
            wallets[owner] = "0x" + f"{int(owner[1:]) + 1:040x}"
        kinds[dev] = draw(st.sampled_from(["grid", "consumption", "production"]))
        sub, zone, region = (draw(st.sampled_from(["CP1", "CP2"])), draw(st.sampled_from(["NORD", "CNOR"])),
                             draw(st.sampled_from(REGIONS)))
        cut = draw(st.sampled_from([None, hours[30], hours[-40]]))
        if cut is None:
            assignments.append(Assignment(dev, sub, zone, region))
        else:
            assignments.append(Assignment(dev, sub, zone, region, valid_to=cut))
            if draw(st.booleans()):  # reassigned, else it left
                assignments.append(Assignment(dev, draw(st.sampled_from(["CP1", "CP2"])), zone, region, valid_from=cut))
        if kinds[dev] != "consumption" and draw(st.booleans()):
            plants[dev] = Plant(dev, draw(st.sampled_from([date(2023, 1, 1), date(2024, 6, 1)])),
                                draw(st.sampled_from([50.0, 200.0, 450.0, 600.0, 900.0])),
                                draw(st.sampled_from(["pv", "wind"])), draw(st.booleans()),
                                draw(st.sampled_from([None, 30])))
    picked = draw(st.lists(st.sampled_from(hours[:48] + hours[-48:] + hours[29:32]), min_size=1, max_size=12,
                           unique=True))
    readings: list[Reading] = []
    for h in picked:
        for dev in devices:
            for q in range(4):
                e = draw(st.integers(0, 3_000_000))
                if kinds[dev] == "production" or (kinds[dev] == "grid" and draw(st.booleans())):
                    e = -e
                readings.append(Reading(dev, kinds[dev], h + 900 * q, e))
    prices = {(z, h): draw(st.integers(-10_000_000, 300_000_000)) if h in picked else 100_000_000
              for z in ("NORD", "CNOR") for h in hours}
    rules = [StatuteRule(1, date(2024, 1, 1), 4000, 4500, 1000, 300, 200)]
    return SettlementInputs("cer", month, owners, wallets, assignments, plants, rules, prices), readings


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=communities())
def test_spark_job_equals_reference(spark, case: tuple[SettlementInputs, list[Reading]]) -> None:
    inputs, readings = case
    ref_dh = device_hours(readings, inputs.month.hours())
    ref = hourly(inputs, ref_dh)
    frame = readings_frame(spark, inputs.community_id, [(r.device_id, r.kind, r.ts, r.energy_mwh) for r in readings])
    got, dh = run_hourly(spark, frame, inputs)
    assert got.substations == ref.substations
    assert got.zones == ref.zones
    assert got.plants == ref.plants
    assert got.member_days == ref.member_days
    assert inputs_digest(inputs, dh) == inputs_digest(inputs, [(d, h, w, i) for (d, h), (w, i) in ref_dh.items()])
    a, b = finalise(inputs, got), finalise(inputs, ref)
    assert a.members == b.members and a.summary == b.summary


def test_spark_job_names_a_missing_price(spark) -> None:
    month = MONTHS[2]
    h = month.hours()[100]
    inputs = SettlementInputs("cer", month, {"pv": "u0", "pod": "u1"}, {"u0": "0x" + "1" * 40, "u1": "0x" + "2" * 40},
                              [Assignment("pv", "CP1", "SUD", "Puglia"), Assignment("pod", "CP1", "SUD", "Puglia")],
                              {"pv": Plant("pv", date(2024, 1, 1), 10.0)},
                              [StatuteRule(1, date(2024, 1, 1), 4000, 4500, 1000, 300, 200)], {})
    frame = readings_frame(spark, "cer", [("pv", "production", h, -5000), ("pod", "consumption", h, 3000)])
    with pytest.raises(MissingPriceError, match="zone SUD on 2026-05-05 hour 5 "):
        run_hourly(spark, frame, inputs)
