"""The distributor's XML measurement flow: quarter-hour values per POD and day.

    <FlussoMisure>
      <DatiPod>
        <Pod>IT001E00000002</Pod>
        <Curva>
          <Giorno>27/03/2016</Giorno>
          <Ea E1="0,123" E2="0,118" ... E92="0,101"/>      <- withdrawn active energy (kWh)
          <Ei E1="0,000" ... E92="0,000"/>                  <- injected active energy (kWh)
        </Curva>
      </DatiPod>
    </FlussoMisure>

Modelled on the measurement flows distributors send to sellers (per POD, per day, one value per
quarter-hour). Element names are matched without namespace; the day is a ``Giorno``/``Data``
child or attribute of ``Curva``; values are attributes ``E1..En`` (or ``Q1..Qn``) or, in order,
the texts of child elements. Tags for the directions: ``syntax_options.direction_tags`` (default
Ea/Prelievo -> withdrawal, Ei/Immissione -> injection). Like the CSV curve, quarter-hour *i*
starts at local midnight + *i* x 15 min and a day of the wrong length is refused on its own.
DTDs and entities are refused.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree import ElementTree

from streams.errors import Reject
from streams.formats import Row
from streams.formats.common import (
    DIRECTIONS,
    bounded,
    day_span,
    decimal_text,
    directions_of,
    error_row,
    parse_day,
    qh_stamps,
)
from streams.parse import xml_root

DEFAULT_TAGS = {"Ea": "withdrawal", "Prelievo": "withdrawal", "EaPrel": "withdrawal",
                "Ei": "injection", "Immissione": "injection", "EaImm": "injection"}
_INDEXED = re.compile(r"^[EQ](\d{1,3})$")


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def parse_dso_curve_xml(payload: bytes, options: dict[str, Any], header: str | None = None) -> list[Row]:
    root = xml_root(payload)
    tz = str(options.get("timezone", "Europe/Rome"))
    tags = options.get("direction_tags")
    tags = {str(k): v for k, v in tags.items() if v in DIRECTIONS} if isinstance(tags, dict) else DEFAULT_TAGS
    wanted = directions_of(options)
    points = [e for e in root.iter() if _local(e.tag) == "DatiPod"] or ([root] if _child(root, "Pod") else [])
    if not points:
        raise Reject("dso_xml_shape", "the XML holds no DatiPod element (one per POD, with Pod and Curva)")
    rows: list[Row] = []
    for p, point in enumerate(points):
        pod = (_child_text(point, "Pod") or "").strip().upper()
        if not pod:
            rows.append(error_row("missing_field", f"DatiPod {p + 1} has no Pod"))
            continue
        curves = [c for c in point if _local(c.tag) == "Curva"]
        if not curves:
            rows.append(error_row("dso_xml_shape", f"DatiPod {p + 1} ({pod}) has no Curva", device=pod))
        for c, curve in enumerate(curves):
            rows.extend(_curve_rows(pod, curve, f"DatiPod {p + 1} ({pod}) Curva {c + 1}", tz, tags, wanted))
            bounded(len(rows))
    return rows


def _curve_rows(pod: str, curve: ElementTree.Element, where: str, tz: str, tags: dict[str, str],
                wanted: tuple[str, ...]) -> list[Row]:
    day_text = _child_text(curve, "Giorno") or _child_text(curve, "Data") or curve.get("Giorno") or curve.get("Data")
    day = parse_day(day_text) if day_text else None
    if day is None:
        return [error_row("dso_date_invalid", f"{where}: day {str(day_text)[:30]!r} is missing or not a date",
                          device=pod)]
    rows: list[Row] = []
    start, expected = day_span(day, tz)
    for series in curve:
        direction = tags.get(_local(series.tag))
        if direction is None or direction not in wanted:
            continue
        values = _values(series)
        if isinstance(values, str):
            rows.append(error_row("dso_xml_shape", f"{where} {_local(series.tag)}: {values}", device=pod))
            continue
        while values and not values[-1].strip():
            values.pop()
        if len(values) != expected:
            rows.append(error_row("day_length", f"{where} {_local(series.tag)}: {len(values)} quarter-hour values on "
                                  f"{day.isoformat()}, but that day has {expected} in {tz} (96; 92 on the "
                                  "spring-forward day, 100 on the fall-back day); the day is refused, the other days "
                                  "are kept", device=pod))
            continue
        route = (pod, direction)
        rows.extend({"ts": ts, "energy": decimal_text(v), "device": pod, "direction": direction,
                     "day": day.isoformat(), "_route": route} for ts, v in zip(qh_stamps(start, len(values)), values))
    if not rows:
        rows.append(error_row("missing_value", f"{where} holds no series of a direction this flow takes "
                              f"({', '.join(t for t, d in tags.items() if d in wanted)})", device=pod))
    return rows


def _values(series: ElementTree.Element) -> list[str] | str:
    indexed: dict[int, str] = {}
    for k, v in series.attrib.items():
        m = _INDEXED.match(_local(k))
        if m:
            indexed[int(m.group(1))] = v
    if indexed:
        if min(indexed) < 1 or max(indexed) > 100:
            return "quarter-hour attributes must be numbered 1 to 100"
        return [indexed.get(i, "") for i in range(1, max(indexed) + 1)]
    return [(child.text or "").strip() for child in series]


def _child(elem: ElementTree.Element, name: str) -> ElementTree.Element | None:
    return next((c for c in elem if _local(c.tag) == name), None)


def _child_text(elem: ElementTree.Element, name: str) -> str | None:
    c = _child(elem, name)
    return c.text if c is not None else None
