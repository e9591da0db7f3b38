"""GME MGP price files (hourly and 15-minute) and plain CSV -> the settlement_prices Delta table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from lakehouse.settlement.prices import (
    PriceFileError,
    hours_in_day,
    load_prices,
    parse_csv,
    parse_file,
    parse_gme_xml,
    read_prices,
    utc_hour,
)


def gme_xml(day: str, hours: range, *, quarter: bool = False, skip: int | None = None) -> bytes:
    rows = []
    for p in hours:
        if p == skip:
            continue
        period = f"<Periodo>{p}</Periodo>" if quarter else f"<Ora>{p}</Ora>"
        rows.append(f"<Prezzi><Data>{day}</Data><Mercato>MGP</Mercato>{period}<PUN>{100 + p},5</PUN>"
                    f"<NORD>{90 + p},25</NORD><CNOR>{80 + p},000001</CNOR></Prezzi>")
    return ("<?xml version='1.0'?><NewDataSet>" + "".join(rows) + "</NewDataSet>").encode()


def test_hourly_xml() -> None:
    prices = parse_gme_xml(gme_xml("20260504", range(1, 25)))
    assert len(prices) == 3 * 24
    nord = {p.hour: p for p in prices if p.zone == "NORD"}
    assert nord[13].price == 103_250_000 and nord[1].utc_hour == utc_hour(date(2026, 5, 4), 1)
    assert {p.zone for p in prices} == {"PUN", "NORD", "CNOR"}
    assert nord[1].utc_hour == 1777845600   # 2026-05-04 00:00 CEST = 22:00 UTC the day before


def test_quarter_hour_xml_averages_each_hour() -> None:
    prices = parse_gme_xml(gme_xml("20260504", range(1, 97), quarter=True))
    nord = {p.hour: p.price for p in prices if p.zone == "NORD"}
    assert len(nord) == 24
    # hour 1 = periods 1..4: (91.25 + 92.25 + 93.25 + 94.25) / 4 = 92.75
    assert nord[1] == 92_750_000
    with pytest.raises(PriceFileError, match=r"zone \w+ on 2026-05-04 lacks quarter-hour period\(s\) \[7\] of hour 2"):
        parse_gme_xml(gme_xml("20260504", range(1, 97), quarter=True, skip=7))


def test_missing_hour_is_named() -> None:
    with pytest.raises(PriceFileError, match="on 2026-05-04 has no price for hour 17"):
        parse_gme_xml(gme_xml("20260504", range(1, 25), skip=17))


def test_dst_days() -> None:
    assert hours_in_day(date(2026, 3, 29)) == 23 and hours_in_day(date(2026, 10, 25)) == 25
    assert len(parse_gme_xml(gme_xml("20261025", range(1, 26)))) == 75
    with pytest.raises(PriceFileError, match="on 2026-10-25 has no price for hour 25"):
        parse_gme_xml(gme_xml("20261025", range(1, 25)))
    with pytest.raises(PriceFileError, match="on 2026-03-29 has hour 24 but that day has 23 hours"):
        parse_gme_xml(gme_xml("20260329", range(1, 25)))
    # the two 02:00 hours of 25 October are distinct UTC hours
    assert utc_hour(date(2026, 10, 25), 4) - utc_hour(date(2026, 10, 25), 3) == 3600


def test_csv_and_delta_table(tmp_path: Path) -> None:
    lines = ["date,hour,zone,price"] + [f"2026-05-04,{h},SUD,{50 + h}.5" for h in range(1, 25)]
    path = tmp_path / "p.csv"
    path.write_text("\n".join(lines) + "\n")
    prices = parse_file(path)
    assert prices[0].price == 51_500_000
    lake = str(tmp_path / "lake")
    assert load_prices(lake, prices, "p.csv") == 24
    assert load_prices(lake, parse_gme_xml(gme_xml("20260504", range(1, 25))), "x") == 72   # upsert
    start = utc_hour(date(2026, 5, 4), 1)
    got = read_prices(lake, start, start + 24 * 3600)
    assert len(got) == 96 and got[("SUD", start)] == 51_500_000
    load_prices(lake, parse_csv(b"date,hour,zone,price\n" + "".join(
        f"2026-05-04,{h},SUD,1\n" for h in range(1, 25)).encode()))
    assert read_prices(lake, start, start + 3600) [("SUD", start)] == 1_000_000
    with pytest.raises(PriceFileError, match="line 3: price 'abc' is not a number"):
        parse_csv(b"date,hour,zone,price\n2026-05-04,1,SUD,1\n2026-05-04,2,SUD,abc\n")


def test_demo_price_file_is_a_complete_gme_month() -> None:
    from lakehouse.settlement.demo import price_xml
    from lakehouse.settlement.model import Month

    prices = parse_gme_xml(price_xml(Month(2016, 3), ("NORD", "CNOR")))
    assert len([p for p in prices if p.zone == "NORD"]) == 31 * 24 - 1      # 27 March 2016 has 23 hours
    assert {p.zone for p in prices} == {"PUN", "NORD", "CNOR"}
