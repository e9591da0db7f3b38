"""Numbers, units and time: source values to canonical SI fields, integer mWh and UTC seconds.

Energy is converted once with exact decimal arithmetic and rounded half to even to integer mWh.
Local times are read in the flow's IANA zone; DST gaps are refused and fall-back repeats are
resolved by an explicit offset, else by order (see ``local_to_epoch``).
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.errors import Reject

ENERGY_TO_MWH = {"mWh": 1, "Wh": 1000, "kWh": 1_000_000, "MWh": 1_000_000_000}
# quantity -> (canonical field, default unit, {unit: factor to the canonical unit})
QUANTITIES: dict[str, tuple[str, str, dict[str, float]]] = {
    "power": ("power_active_w", "W", {"W": 1.0, "kW": 1e3, "MW": 1e6}),
    "reactive": ("power_reactive_var", "var", {"var": 1.0, "kvar": 1e3}),
    "current": ("current_a", "A", {"A": 1.0, "mA": 1e-3}),
    "voltage": ("voltage_v", "V", {"V": 1.0, "kV": 1e3}),
    "charge": ("charge_pct", "pct", {"pct": 1.0, "ratio": 100.0}),
}
DEFAULT_ENERGY_UNIT = "Wh"
MAX_MWH = 2**63 - 1
MAX_EPOCH = 253402300800          # 10000-01-01T00:00Z: years 1970-9999 only (the lake, the chain, ISO-8601)
# real UTC offsets run from -12:00 (Baker Island) to +14:00 (Line Islands); anything else is a typo or a trick
MIN_OFFSET, MAX_OFFSET = timedelta(hours=-12), timedelta(hours=14)
_UTC = UTC
_ONE = Decimal(1)
# a number as text: ASCII digits only. Decimal() alone also reads '1_000' and Arabic-Indic or
# full-width digits ('١٢' is 12), which no meter writes and other programs read differently.
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_NOT_FINITE = {"nan", "snan", "inf", "infinity"}


def to_decimal(value: Any, what: str, decimal_comma: bool = False) -> Decimal:
    """A finite number from JSON numbers or numeric strings; anything else is refused."""
    if isinstance(value, bool) or value is None:
        raise Reject("value_not_number", f"{what} is {value!r}, not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Reject("value_not_finite", f"{what} is {value}, not a finite number")
        return Decimal(repr(value))
    if isinstance(value, str):
        s = value.strip()
        if len(s) > 64:
            raise Reject("value_not_number", f"{what} is a {len(value)}-character string, not a number")
        if decimal_comma:
            s = s.replace(".", "").replace(",", ".") if "," in s else s
        if not _NUMBER_TEXT.fullmatch(s):
            if s.lstrip("+-").lower() in _NOT_FINITE:
                raise Reject("value_not_finite", f"{what} is {value!r}, not a finite number")
            raise Reject("value_not_number", f"{what} is {value[:40]!r}, not a number (digits 0-9, '.', "
                         "an optional sign and exponent)")
        try:
            d = Decimal(s)
        except InvalidOperation:
            raise Reject("value_not_number", f"{what} is {value[:40]!r}, not a number") from None
        if not d.is_finite():
            raise Reject("value_not_finite", f"{what} is {value!r}, not a finite number")
        return d
    raise Reject("value_not_number", f"{what} is a {type(value).__name__}, not a number")


def energy_to_mwh(value: Decimal, unit: str) -> int:
    """Exact conversion to integer milliwatt-hours, rounded half to even (once)."""
    factor = ENERGY_TO_MWH.get(unit)
    if factor is None:
        raise Reject("unit_unknown", f"energy unit '{unit}' is not one of {', '.join(ENERGY_TO_MWH)}")
    mwh = int((value * factor).to_integral_value(rounding=ROUND_HALF_EVEN))
    if not -MAX_MWH <= mwh <= MAX_MWH:      # e.g. '1e400' kWh: finite, but no reading (nor int64) holds it
        raise Reject("out_of_range", f"energy {value} {unit} is beyond any meter's range (|mWh| <= 2^63-1)")
    return mwh


def quantity_to_si(quantity: str, value: Decimal, unit: str | None) -> float:
    _field, default, factors = QUANTITIES[quantity]
    factor = factors.get(unit or default)
    if factor is None:
        raise Reject("unit_unknown", f"{quantity} unit '{unit}' is not one of {', '.join(factors)}")
    return float(value) * factor


def power_to_mwh(power_w: Decimal, interval_s: int) -> int:
    """Energy of a constant active power over the interval: W x s / 3.6 = mWh, half-even."""
    return int((power_w * interval_s / Decimal("3.6")).to_integral_value(rounding=ROUND_HALF_EVEN))


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo | timezone:
    if name in ("UTC", "Z", "Etc/UTC", ""):
        return _UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Reject("timezone_unknown", f"the flow's timezone '{name}' is not an IANA zone") from None


def local_to_epoch(naive: datetime, tz: ZoneInfo | timezone, second_occurrence: bool = False) -> tuple[int, bool]:
    """UTC epoch seconds of a wall-clock time in ``tz``; returns (epoch, ambiguous).

    Spring-forward gap (the 23-hour day): the wall time does not exist -> Reject ts_nonexistent.
    Fall-back repeat (the 25-hour day): fold=0 (the first, summer-time instant) unless
    ``second_occurrence`` (the caller saw the same wall time before in order) -> fold=1.
    """
    if tz is _UTC:
        return int(naive.replace(tzinfo=_UTC).timestamp()), False
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    off0, off1 = first.utcoffset(), second.utcoffset()
    if off0 == off1:
        return int(first.timestamp()), False
    # in a gap, fold=0 uses the offset before the transition; round-tripping changes the wall time
    back = datetime.fromtimestamp(first.timestamp(), tz).replace(tzinfo=None)
    if back != naive:
        raise Reject("ts_nonexistent", f"local time {naive.isoformat()} does not exist in {tz} (clocks went "
                     "forward); send UTC or an explicit offset")
    return int((second if second_occurrence else first).timestamp()), True


def parse_ts(value: Any, ts_format: str, tz_name: str) -> tuple[int, datetime | None, bool]:
    """Epoch seconds of a source timestamp; also the naive local time when it was ambiguous.

    Returns (epoch, naive_if_local_else_None, ambiguous). Explicit offsets (ISO ``+01:00``,
    ``Z``, strftime ``%z``) always win over the flow's zone.
    """
    if value is None or value == "":
        raise Reject("missing_field", "the timestamp is missing")
    if ts_format in ("epoch_s", "epoch_ms"):
        d = to_decimal(value, "the timestamp")
        secs = d / 1000 if ts_format == "epoch_ms" else d
        if not (Decimal(0) <= secs < Decimal(MAX_EPOCH)):
            raise Reject("ts_invalid", f"timestamp {value!r} is outside years 1970-9999")
        return int(secs), None, False
    if not isinstance(value, str) or len(value) > 64:
        raise Reject("ts_invalid", f"timestamp {str(value)[:40]!r} is not a date-time string")
    try:
        if ts_format == "iso":
            dt = datetime.fromisoformat(value.strip())
        else:
            dt = datetime.strptime(value.strip(), ts_format)
    except ValueError:
        fmt = "ISO-8601" if ts_format == "iso" else f"the flow's format {ts_format!r}"
        raise Reject("ts_invalid", f"timestamp {value[:40]!r} does not match {fmt}") from None
    if not 1970 <= dt.year <= 9999:
        raise Reject("ts_invalid", f"timestamp {value[:40]!r} is in year {dt.year}; only years 1970-9999 are "
                     "accepted")
    if dt.tzinfo is not None:
        off = dt.utcoffset()
        if off is None or not MIN_OFFSET <= off <= MAX_OFFSET:
            raise Reject("ts_invalid", f"timestamp {value[:40]!r} has UTC offset {off}; real offsets run from "
                         "-12:00 to +14:00")
        epoch = int(dt.timestamp())
    else:
        try:
            epoch, ambiguous = local_to_epoch(dt, zone(tz_name))
        except (OverflowError, ValueError):
            raise Reject("ts_invalid", f"timestamp {value[:40]!r} is outside years 1970-9999 in UTC") from None
        if ambiguous:
            return _in_range(epoch, value), dt, True
    return _in_range(epoch, value), None, False


def _in_range(epoch: int, value: str) -> int:
    """1970-01-01 local time east of UTC, or 9999-12-31 west of it, falls outside the years: refused."""
    if not 0 <= epoch < MAX_EPOCH:
        raise Reject("ts_invalid", f"timestamp {value[:40]!r} is outside years 1970-9999 in UTC")
    return epoch


def snap(epoch: int, interval_s: int) -> int:
    """The expected instant nearest ``epoch`` on the flow's grid (epoch-aligned, grids up to 1 h)."""
    if interval_s <= 0 or interval_s > 3600 or 3600 % interval_s:
        return epoch
    rem = epoch % interval_s
    return epoch - rem + (interval_s if rem * 2 > interval_s else 0)


_DAYS: dict[int, str] = {}


def iso_z(epoch: int) -> str:
    """UTC ISO-8601 seconds with Z; the date part is cached per day (readings cluster in days)."""
    day, sod = divmod(epoch, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        if len(_DAYS) > 100_000:
            _DAYS.clear()
        prefix = _DAYS[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
    h, rem = divmod(sod, 3600)
    m, sec = divmod(rem, 60)
    return f"{prefix}{h:02d}:{m:02d}:{sec:02d}Z"


def iso_to_epoch(value: str) -> float:
    """Epoch seconds of an ISO timestamp with zone (Z accepted)."""
    return datetime.fromisoformat(value).timestamp()


def dt_epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.timestamp()


__all__ = ["energy_to_mwh", "local_to_epoch", "parse_ts", "power_to_mwh", "quantity_to_si", "snap", "to_decimal"]
