"""Completeness (snapping, repeats, NULL rows, spline fills) and calendar (Easter, ARERA bands)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from scipy.interpolate import CubicSpline

from lakehouse.completeness import regularise, summary
from lakehouse.holidays import arera_band, easter_sunday, holidays_between, italian_holidays

T0 = pd.Timestamp("2024-03-30T20:00:00Z")
ROME = ZoneInfo("Europe/Rome")


def _frame(points: list[tuple[pd.Timestamp, float]], **extra) -> pd.DataFrame:
    return pd.DataFrame({"flow_id": "f", "device_id": "d", "account": 1, "ts": [p[0] for p in points],
                         "energy_mwh": [p[1] for p in points], **extra})


def qh(i: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=15 * i)


def test_gap_filled_by_cubic_spline_through_neighbours_and_flagged() -> None:
    values = {i: 1000 + 50 * i + 3 * i * i for i in range(12) if i not in (5, 6, 7)}
    out = regularise(_frame([(qh(i), v) for i, v in values.items()]))
    assert list(out.ts) == [qh(i) for i in range(12)]
    known = sorted(values)
    left, right = [k for k in known if k < 5][-4:], [k for k in known if k > 7][:4]
    xs = left + right
    spline = CubicSpline(xs, [values[x] for x in xs], bc_type="natural")
    assert list(out.energy_mwh[5:8]) == [round(float(spline(i))) for i in (5, 6, 7)]
    assert list(out.interpolated) == [i in (5, 6, 7) for i in range(12)]
    assert summary(out) == {"slots": 12, "present": 9, "snapped": 0, "repeats": 0, "filled": 3, "missing": 0}


def test_long_gap_stays_null_and_edges_appear_as_missing_rows() -> None:
    pts = [(qh(0), 10.0), (qh(1), 10.0), (qh(30), 10.0)]  # 28 missing quarter-hours = 7 h > 6 h
    out = regularise(_frame(pts), start=qh(-2).to_pydatetime(), end=qh(32).to_pydatetime())
    assert len(out) == 34 and out.energy_mwh.isna().sum() == 31
    assert not out.interpolated.any() and out.missing.sum() == 31
    # at exactly 6 h (24 quarter-hours) the gap is filled
    pts = [(qh(0), 10.0), (qh(1), 10.0), (qh(26), 10.0), (qh(27), 10.0)]
    out = regularise(_frame(pts))
    assert out.interpolated.sum() == 24 and list(out.energy_mwh) == [10] * 28


def test_snapped_and_repeated_instants() -> None:
    pts = [(qh(0), 1.0), (qh(1) + pd.Timedelta(seconds=40), 2.0), (qh(2), 3.0), (qh(2), 4.0),
           (qh(3) - pd.Timedelta(seconds=20), 5.0)]
    ingest = [qh(10)] * 3 + [qh(11), qh(12)]
    out = regularise(_frame(pts, ingest_ts=ingest))
    assert list(out.energy_mwh) == [1, 2, 4, 5]  # the later of two readings of qh 2 wins
    assert list(out.snapped) == [False, True, False, True]
    assert list(out.repeats) == [0, 0, 1, 0]


def test_dst_night_is_a_plain_utc_grid() -> None:
    # 31 March 2024 02:00 local does not exist; the UTC grid around it has no hole
    start = pd.Timestamp("2024-03-31T00:00:00Z")
    pts = [(start + pd.Timedelta(minutes=15 * i), 7.0) for i in range(12)]
    out = regularise(_frame(pts))
    assert len(out) == 12 and out.missing.sum() == 0
    local = [t.tz_convert("Europe/Rome").hour for t in out.ts]
    assert local[:4] == [1, 1, 1, 1] and local[4:8] == [3, 3, 3, 3]


@pytest.mark.parametrize("year", [1990, 2000, 2019, 2024, 2025, 2038])
def test_easter_matches_an_independent_algorithm(year: int) -> None:
    # Gauss's algorithm with the Gregorian corrections, independent from Meeus/Jones/Butcher
    a, b, c = year % 19, year % 4, year % 7
    k = year // 100
    p = (13 + 8 * k) // 25
    q = k // 4
    m = (15 - p + k - q) % 30
    n = (4 + k - q) % 7
    d = (19 * a + m) % 30
    e = (2 * b + 4 * c + 6 * d + n) % 7
    day = 22 + d + e
    expected = date(year, 3, day) if day <= 31 else date(year, 4, day - 31)
    if d == 29 and e == 6:
        expected = date(year, 4, 19)
    elif d == 28 and e == 6 and (11 * m + 11) % 30 < 19:
        expected = date(year, 4, 18)
    assert easter_sunday(year) == expected
    assert expected + timedelta(days=1) in italian_holidays(year)


def test_arera_bands_by_hand() -> None:
    assert len(italian_holidays(2024)) == 11
    assert date(2024, 4, 1) in holidays_between(date(2024, 3, 1), date(2024, 4, 30))
    cases = {  # local wall-clock -> band
        datetime(2024, 3, 4, 7, 59): "F2", datetime(2024, 3, 4, 8, 0): "F1", datetime(2024, 3, 4, 18, 59): "F1",
        datetime(2024, 3, 4, 19, 0): "F2", datetime(2024, 3, 4, 22, 59): "F2", datetime(2024, 3, 4, 23, 0): "F3",
        datetime(2024, 3, 4, 6, 59): "F3", datetime(2024, 3, 9, 12, 0): "F2", datetime(2024, 3, 9, 6, 0): "F3",
        datetime(2024, 3, 10, 12, 0): "F3", datetime(2024, 4, 1, 12, 0): "F3", datetime(2024, 12, 25, 10, 0): "F3",
        datetime(2024, 6, 3, 12, 0): "F1", datetime(2024, 6, 2, 12, 0): "F3",
    }
    for local, band in cases.items():
        assert arera_band(local.replace(tzinfo=ROME)) == band, local
