"""Helpers shared by the named-format parsers: instants, days, decimal commas, error rows."""

from __future__ import annotations

import math
import re
import time
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from streams.errors import Reject
from streams.formats import Row
from streams.normalise import zone
from streams.parse import MAX_ROWS_PER_ITEM

QH = 900
DIRECTIONS = ("withdrawal", "injection")
# the earliest instant a meter can mean; anything before is an unset device clock (epoch 0), never 1970
MIN_VALID_EPOCH = 946_684_800          # 2000-01-01T00:00:00Z
POD = re.compile(r"^[A-Z]{2}\d{3}[A-Z][0-9A-Z]{5,14}$")   # IT001E12345678 (Italian POD: IT + DSO code + E + digits)
_DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d", "%Y%m%d", "%d-%m-%Y", "%d.%m.%Y")


def iso_z(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@lru_cache(maxsize=256)
def qh_stamps(start: int, count: int) -> tuple[str, ...]:
    """The ``count`` quarter-hour stamps from ``start``: a day's curve, formatted once for all its meters."""
    return tuple(iso_z(start + i * QH) for i in range(count))


def error_row(code: str, message: str, **extra: Any) -> Row:
    return {"_error": (code, message), **extra}


def epoch_of(value: Any) -> int | None:
    """Epoch seconds of a device time stamp (seconds, milliseconds or ISO with zone); None if unset/invalid."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        if math.isnan(value) or value in (float("inf"), float("-inf")):
            return None
        secs = value / 1000 if abs(value) >= 1e11 else value
        secs = int(secs)
    elif isinstance(value, str) and 0 < len(value) <= 40:
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None            # a device clock without zone is not trusted: the profile slot decides
        secs = int(dt.timestamp())
    else:
        return None
    return secs if MIN_VALID_EPOCH <= secs < 253_402_300_800 else None


def parse_day(text: str) -> date | None:
    s = text.strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    return None


@lru_cache(maxsize=4096)
def day_span(day: date, tz_name: str) -> tuple[int, int]:
    """(UTC epoch of local midnight, number of quarter-hours of that local day): 92, 96 or 100 in Italy."""
    tz = zone(tz_name)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()
    return int(start), int(end - start) // QH


def decimal_text(value: str) -> str:
    """Italian numbers to decimal-point text: '1.234,5' -> '1234.5', '0,123' -> '0.123'; others unchanged."""
    s = value.strip()
    if "," in s:
        s = s.replace(".", "").replace(",", ".")
    return s


def directions_of(options: dict[str, Any]) -> tuple[str, ...]:
    """Which directions a flow takes (``syntax_options.directions``, default both)."""
    want = options.get("directions", DIRECTIONS)
    if not isinstance(want, (list, tuple)):
        return DIRECTIONS
    return tuple(d for d in DIRECTIONS if d in want)


def bounded(n: int) -> None:
    if n > MAX_ROWS_PER_ITEM:
        raise Reject("too_many_readings", f"the message holds {n} readings, more than {MAX_ROWS_PER_ITEM}")
