"""A small month of the example community (examples/community.yaml) for the settlement tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from lakehouse.settlement.prices import load_prices, parse_csv
from tests.support.kpi_sample import SampleFlow, readings_table, write_readings

ROME = ZoneInfo("Europe/Rome")
CID = "cer-example"
ANNA = SampleFlow("f-anna-load", "IT001E00000001", "u-anna", "load", 1)
BRUNO = SampleFlow("f-bruno-load", "IT001E00000002", "u-bruno", "load", 1)
PV = SampleFlow("f-bruno-pv", "PV-0001", "u-bruno", "production", 2)
KWH = 1_000_000


def may_prices() -> bytes:
    lines = ["date,hour,zone,price"]
    day = datetime(2026, 5, 1)
    while day.month == 5:
        lines += [f"{day.date().isoformat()},{h},CNOR,{60 + h}.25" for h in range(1, 25)]
        day += timedelta(days=1)
    return ("\n".join(lines) + "\n").encode()


def day_rows(day: int) -> list:
    """Local 12:00-14:00 of a May day: PV 2 kWh/QH, Anna 1 kWh/QH, Bruno 0.5 kWh/QH."""
    rows = []
    start = datetime(2026, 5, day, 12, tzinfo=ROME)
    for q in range(8):
        t = start + timedelta(minutes=15 * q)
        rows += [(PV, t, -2 * KWH), (ANNA, t, KWH), (BRUNO, t, KWH // 2)]
    return rows


def may_lake(lake: str, rows: list) -> str:
    """A May test lake: these readings and the month's prices; returns the lake."""
    write_readings(lake, readings_table(CID, rows))
    load_prices(lake, parse_csv(may_prices()))
    return lake
