"""Hourly zonal prices: the market operator's (GME) MGP price file or a plain CSV -> Delta.

GME files are XML: one element per period (``<Prezzi>`` in the classic file) with ``<Data>``
(YYYYMMDD, Italian local day), ``<Ora>`` (hour 1..23/24/25 of that day) or ``<Periodo>`` (a
quarter-hour 1..92/96/100 since the 15-minute MGP), then ``<PUN>`` and one element per zone
(``NORD``, ``CNOR``, ``CSUD``, ``SUD``, ``CALA``, ``SICI``, ``SARD`` ...), decimals with a comma.
A quarter-hourly file becomes hourly prices: the mean of the hour's four quarters, rounded half to
even to the µ€/MWh. The plain CSV has ``date,hour,zone,price`` (hour 1..25, € per MWh).

Every day in a file must have every one of its hours (23 on the spring DST day, 25 in autumn)
for each zone it names: a missing hour is an error naming it, never a silent zero.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from lakehouse.settlement.model import HOUR_S
from lakehouse.settlement.rules import SettlementRuleError, eur_to_micro

PRICES_TABLE = "settlement_prices"
GME_TZ = "Europe/Rome"
_NOT_ZONES = {"DATA", "ORA", "PERIODO", "QUARTO", "MERCATO", "INTERVALLO"}


class PriceFileError(SettlementRuleError):
    """A price file is malformed or incomplete (names the day, hour and zone)."""


@dataclass(frozen=True)
class HourPrice:
    zone: str
    day: date          # local (Italian) day
    hour: int          # 1..25
    utc_hour: int      # unix seconds of the hour's start
    price: int         # µ€/MWh


def hours_in_day(day: date, tz: str = GME_TZ) -> int:
    z = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=z).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=z).astimezone(UTC)
    return int((end - start).total_seconds()) // HOUR_S


def utc_hour(day: date, hour: int, tz: str = GME_TZ) -> int:
    """UTC start of hour ``hour`` (1-based) of the local ``day``; DST days count their real hours."""
    z = ZoneInfo(tz)
    midnight = datetime(day.year, day.month, day.day, tzinfo=z).astimezone(UTC)
    return int(midnight.timestamp()) + (hour - 1) * HOUR_S


def _day(text: str, where: str) -> date:
    t = text.strip()
    try:
        return date(int(t[0:4]), int(t[4:6]), int(t[6:8])) if t.isdigit() else date.fromisoformat(t)
    except ValueError:
        raise PriceFileError(f"{where}: {text!r} is not a date (YYYYMMDD or YYYY-MM-DD)") from None


def _int(text: str, what: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise PriceFileError(f"{where}: {what} {text!r} is not an integer") from None


def _price(text: str, where: str) -> int:
    try:
        return eur_to_micro(text)
    except SettlementRuleError:
        raise PriceFileError(f"{where}: price {text!r} is not a number") from None


def parse_gme_xml(data: bytes, name: str = "<xml>") -> list[HourPrice]:
    """Prices of a GME MGP XML file (hourly ``Ora`` or quarter-hourly ``Periodo``)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise PriceFileError(f"{name}: not valid XML: {exc}") from None
    hourly: dict[tuple[str, date, int], int] = {}
    quarters: dict[tuple[str, date, int], dict[int, int]] = defaultdict(dict)
    n = 0
    for el in root:
        fields = {c.tag.split("}")[-1].upper(): (c.text or "") for c in el}
        if "DATA" not in fields:
            continue
        n += 1
        where = f"{name} record {n}"
        day = _day(fields["DATA"], where)
        period = fields.get("ORA") or fields.get("PERIODO") or fields.get("QUARTO")
        if period is None:
            raise PriceFileError(f"{where}: no <Ora> or <Periodo> element")
        p = _int(period, "period", where)
        is_quarter = "ORA" not in fields
        for tag, text in fields.items():
            if tag in _NOT_ZONES or not text.strip():
                continue
            value = _price(text, f"{where} <{tag}>")
            if is_quarter:
                quarters[(tag, day, (p - 1) // 4 + 1)][(p - 1) % 4] = value
            else:
                hourly[(tag, day, p)] = value
    for (zone, day, hour), qs in quarters.items():
        if len(qs) != 4:
            missing = [q + 1 + (hour - 1) * 4 for q in range(4) if q not in qs]
            raise PriceFileError(f"{name}: zone {zone} on {day.isoformat()} lacks quarter-hour period(s) "
                                 f"{missing} of hour {hour}")
        total = sum(qs.values())
        hourly[(zone, day, hour)] = (total // 4) + (1 if (total % 4 > 2 or (total % 4 == 2 and (total // 4) % 2))
                                                    else 0)
    if not hourly:
        raise PriceFileError(f"{name}: no price records (expected elements with <Data> and <Ora>/<Periodo>)")
    return _complete(hourly, name)


def parse_csv(data: bytes, name: str = "<csv>") -> list[HourPrice]:
    """Prices of a plain CSV ``date,hour,zone,price`` (€/MWh, hour 1..25 of the local day)."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    need = {"date", "hour", "zone", "price"}
    if not reader.fieldnames or not need <= {f.strip().lower() for f in reader.fieldnames}:
        raise PriceFileError(f"{name}: header must have columns date,hour,zone,price, got {reader.fieldnames}")
    hourly: dict[tuple[str, date, int], int] = {}
    for n, row in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "") for k, v in row.items() if k}
        where = f"{name} line {n}"
        key = (row["zone"].strip().upper(), _day(row["date"], where), _int(row["hour"], "hour", where))
        hourly[key] = _price(row["price"], where)
    if not hourly:
        raise PriceFileError(f"{name}: no price rows")
    return _complete(hourly, name)


def _complete(hourly: dict[tuple[str, date, int], int], name: str) -> list[HourPrice]:
    """Every (zone, day) must have hours 1..N of that day exactly (N = 23, 24 or 25)."""
    by: dict[tuple[str, date], set[int]] = defaultdict(set)
    for zone, day, hour in hourly:
        by[(zone, day)].add(hour)
    for (zone, day), hours in sorted(by.items()):
        n = hours_in_day(day)
        extra = sorted(h for h in hours if not 1 <= h <= n)
        if extra:
            raise PriceFileError(f"{name}: zone {zone} on {day.isoformat()} has hour {extra[0]} but that day has "
                                 f"{n} hours")
        missing = sorted(set(range(1, n + 1)) - hours)
        if missing:
            raise PriceFileError(f"{name}: zone {zone} on {day.isoformat()} has no price for hour {missing[0]}"
                                 f"{' (and ' + str(len(missing) - 1) + ' more)' if len(missing) > 1 else ''}: "
                                 "a missing hour is never read as zero")
    return [HourPrice(z, d, h, utc_hour(d, h), p) for (z, d, h), p in sorted(hourly.items())]


def parse_file(path: Path) -> list[HourPrice]:
    if not path.exists():
        raise PriceFileError(f"{path} does not exist")
    data = path.read_bytes()
    if path.suffix.lower() == ".xml" or data.lstrip()[:1] == b"<":
        return parse_gme_xml(data, str(path))
    return parse_csv(data, str(path))


def load_prices(lake_uri: str, prices: list[HourPrice], source: str = "") -> int:
    """Upsert into the Delta table ``settlement_prices`` keyed by (zone, utc_hour); returns rows."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from lakehouse.spark.sessions import table_uri

    loaded = datetime.now(UTC)
    table = pa.table({
        "zone": pa.array([p.zone for p in prices], pa.string()),
        "utc_hour": pa.array([p.utc_hour for p in prices], pa.int64()),
        "day": pa.array([p.day for p in prices], pa.date32()),
        "hour": pa.array([p.hour for p in prices], pa.int64()),
        "price_micro": pa.array([p.price for p in prices], pa.int64()),
        "source": pa.array([source] * len(prices), pa.string()),
        "loaded_ts": pa.array([loaded] * len(prices), pa.timestamp("us", tz="UTC")),
    })
    uri = table_uri(lake_uri, PRICES_TABLE)
    if not DeltaTable.is_deltatable(uri):
        write_deltalake(uri, table, mode="overwrite")
        return len(prices)
    (DeltaTable(uri).merge(table, "t.zone = s.zone AND t.utc_hour = s.utc_hour", source_alias="s", target_alias="t")
     .when_matched_update_all().when_not_matched_insert_all().execute())
    return len(prices)


def read_prices(lake_uri: str, start: int, end: int) -> dict[tuple[str, int], int]:
    """(zone, UTC hour) -> µ€/MWh for hours in [start, end); empty when no prices were loaded."""
    from deltalake import DeltaTable

    from lakehouse.spark.sessions import table_uri
    from lakehouse.tables import query

    uri = table_uri(lake_uri, PRICES_TABLE)
    if not DeltaTable.is_deltatable(uri):
        return {}
    rows = query(f"SELECT zone, utc_hour, price_micro FROM p WHERE utc_hour >= {int(start)} "
                 f"AND utc_hour < {int(end)}", {"p": DeltaTable(uri)}).to_pylist()
    return {(r["zone"], r["utc_hour"]): r["price_micro"] for r in rows}
