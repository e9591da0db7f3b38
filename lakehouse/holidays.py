"""Italian national holidays and ARERA time bands (F1/F2/F3).

ARERA bands (delibera 181/06): F1 Mon-Fri 08-19; F2 Mon-Fri 07-08 and 19-23, Sat 07-23;
F3 Mon-Sat 23-07, all Sunday and national holidays. Hours are local (Europe/Rome).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

# Fixed-date national holidays (month, day): New Year, Epiphany, Liberation, Labour, Republic,
# Assumption, All Saints, Immaculate Conception, Christmas, St Stephen.
FIXED_HOLIDAYS: tuple[tuple[int, int], ...] = (
    (1, 1), (1, 6), (4, 25), (5, 1), (6, 2), (8, 15), (11, 1), (12, 8), (12, 25), (12, 26),
)


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def italian_holidays(year: int) -> list[date]:
    """National holidays of one year, Easter Monday included, sorted."""
    days = {date(year, m, d) for m, d in FIXED_HOLIDAYS}
    days.add(easter_sunday(year) + timedelta(days=1))
    return sorted(days)


def holidays_between(first: date, last: date) -> list[date]:
    """Holidays in [first, last] (both included)."""
    out: list[date] = []
    for year in range(first.year, last.year + 1):
        out.extend(d for d in italian_holidays(year) if first <= d <= last)
    return out


def arera_band(local: datetime, holidays: set[date] | None = None) -> str:
    """The ARERA band ('F1', 'F2', 'F3') of a local wall-clock instant."""
    day = local.date()
    hols = holidays if holidays is not None else set(italian_holidays(day.year))
    weekday, hour = local.weekday(), local.hour  # Monday = 0
    if weekday == 6 or day in hols or hour < 7 or hour >= 23:
        return "F3"
    if weekday == 5:
        return "F2"
    return "F1" if 8 <= hour < 19 else "F2"
