"""The distributor's load-curve CSV: one row per POD and day, one column per quarter-hour.

    Distributore: e-distribuzione SpA;Mese: 03/2016          <- optional metadata lines
    POD;DATA;TIPO;00:15;00:30;...;24:00                       <- optional header line
    IT001E00000002;27/03/2016;PRELIEVO;0,123;0,118;...        <- 92 values on the spring-forward day
    IT001E00000002;28/03/2016;PRELIEVO;0,101;...              <- 96 values
    IT001E00000002;30/10/2016;IMMISSIONE;0,000;...            <- 100 values on the fall-back day

``;``-separated, values in kWh with a decimal comma (``1.234,5`` accepted), the day as
``dd/mm/yyyy`` (also ``yyyy-mm-dd``, ``yyyymmdd``). The type column is optional (values from
``syntax_options.direction_values``, default PRELIEVO/A+/PREL -> withdrawal, IMMISSIONE/A-/IMM ->
injection; without it every row is ``syntax_options.direction``, default withdrawal). Monthly files
hold many PODs and days. Quarter-hour *i* of a day starts at local midnight + *i* x 15 min in
``syntax_options.timezone`` (default Europe/Rome), so the DST days are exact. Trailing empty cells
are ignored (exports often pad every row to 100 columns); a day whose value count is not that
day's number of quarter-hours is refused (``day_length``) with the reason, the other days kept.
Files are cut into line chunks by the SFTP connector, so every data row stands alone; lines before
the first data row of a chunk that do not look like data are metadata.
"""

from __future__ import annotations

import csv
from typing import Any

from streams.errors import Reject
from streams.formats import Row
from streams.formats.common import (
    DIRECTIONS,
    POD,
    bounded,
    day_span,
    decimal_text,
    directions_of,
    error_row,
    parse_day,
    qh_stamps,
)
from streams.parse import decode_text

DEFAULT_DIRECTION_VALUES = {"PRELIEVO": "withdrawal", "PREL": "withdrawal", "A+": "withdrawal", "EA+": "withdrawal",
                            "WITHDRAWAL": "withdrawal", "IMMISSIONE": "injection", "IMM": "injection",
                            "A-": "injection", "EA-": "injection", "INJECTION": "injection"}
MIN_DATA_CELLS = 90       # a line this wide that does not start with a POD is a broken data row, not metadata


def direction_values(options: dict[str, Any]) -> dict[str, str]:
    given = options.get("direction_values")
    if isinstance(given, dict):
        return {str(k).strip().upper(): v for k, v in given.items() if v in DIRECTIONS}
    return DEFAULT_DIRECTION_VALUES


def parse_dso_curve_csv(payload: bytes, options: dict[str, Any], header: str | None = None) -> list[Row]:
    text = decode_text(payload, str(options.get("encoding", "utf-8")))
    delimiter = str(options.get("delimiter", ";"))[:1] or ";"
    tz = str(options.get("timezone", "Europe/Rome"))
    default_dir = options.get("direction", "withdrawal")
    if default_dir not in DIRECTIONS:
        raise Reject("syntax_options_invalid", f"syntax_options.direction {str(default_dir)[:40]!r} must be "
                     "withdrawal or injection")
    wanted = directions_of(options)
    dir_values = direction_values(options)
    rows: list[Row] = []
    seen_data = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line], delimiter=delimiter))
        except csv.Error as exc:
            rows.append(error_row("csv_invalid", f"line {lineno} is not valid CSV: {exc}", _line=lineno, _raw=line))
            continue
        first = cells[0].strip().upper() if cells else ""
        if not POD.match(first):
            looks_like_header = "POD" in first or len(cells) < MIN_DATA_CELLS
            if not seen_data and looks_like_header:
                continue                                  # metadata or header line
            rows.append(error_row("dso_line_invalid", f"line {lineno} is not a curve row: it must start with the "
                                  f"POD (e.g. IT001E12345678), not {cells[0][:30]!r}" if cells else
                                  f"line {lineno} is empty of cells", _line=lineno, _raw=line))
            continue
        seen_data = True
        rows.extend(_day_rows(first, cells, lineno, line, tz, default_dir, wanted, dir_values))
        bounded(len(rows))
    return rows


def _day_rows(pod: str, cells: list[str], lineno: int, line: str, tz: str, default_dir: str,
              wanted: tuple[str, ...], dir_values: dict[str, str]) -> list[Row]:
    where = {"_line": lineno, "_raw": line, "device": pod}
    if len(cells) < 3:
        return [error_row("dso_line_invalid", f"line {lineno} has no quarter-hour values", **where)]
    day = parse_day(cells[1])
    if day is None:
        return [error_row("dso_date_invalid", f"line {lineno}: day {cells[1][:30]!r} is not a date "
                          "(dd/mm/yyyy, yyyy-mm-dd or yyyymmdd)", **where)]
    values = cells[2:]
    direction = default_dir
    kind = values[0].strip()
    if kind and not _numeric(kind):
        direction = dir_values.get(kind.upper())
        if direction is None:
            return [error_row("dso_direction_unknown", f"line {lineno}: type {kind[:30]!r} is neither withdrawal "
                              f"nor injection (known: {', '.join(sorted(dir_values))}; set "
                              "syntax_options.direction_values)", **where)]
        values = values[1:]
    if direction not in wanted:
        return []       # the flow declares it takes only the other direction (syntax_options.directions)
    while values and not values[-1].strip():
        values.pop()
    start, expected = day_span(day, tz)
    if len(values) != expected:
        return [error_row("day_length", f"line {lineno}: {pod} on {day.isoformat()} has {len(values)} quarter-hour "
                          f"values, but that day has {expected} in {tz} (96; 92 on the spring-forward day, 100 on "
                          "the fall-back day); the day is refused, the other days are kept", **where)]
    route = (pod, direction)
    return [{"ts": ts, "energy": decimal_text(v), "device": pod, "direction": direction,
             "_route": route, "_line": lineno, "_raw": line} for ts, v in zip(qh_stamps(start, expected), values)]


def _numeric(cell: str) -> bool:
    s = decimal_text(cell).lstrip("+-")
    return s.replace(".", "", 1).isdigit()
