"""Settlement data of the registry (docs/settlement.md): in the community YAML, in the database.

YAML (all dates are local days of the community; ``to`` is exclusive)::

    statute:                       # repartition rule versions, percent of the month's total
      - {version: 1, from: 2024-01-01, producers: 45, consumers: 30, fund: 20, costs: 3, social: 2}
    devices:
      - id: IT001E00000001
        perimeters:                # dated: points join, leave and are reassigned
          - {from: 2024-01-01, to: 2026-05-15, substation: AC001E00123, zone: CNOR, region: Lazio}
        plant: {power_kw: 6, type: pv, commissioned: 2023-05-10, grant: false}
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from lec.registry import schema as t

MARKET_ZONES = ("NORD", "CNOR", "CSUD", "SUD", "CALA", "SICI", "SARD")
REGIONS = ("Abruzzo", "Basilicata", "Calabria", "Campania", "Emilia-Romagna", "Friuli-Venezia Giulia", "Lazio",
           "Liguria", "Lombardia", "Marche", "Molise", "Piemonte", "Puglia", "Sardegna", "Sicilia", "Toscana",
           "Trentino-Alto Adige", "Umbria", "Valle d'Aosta", "Veneto")
GROUPS = ("producers", "consumers", "fund", "costs", "social")


class _Doc(BaseModel):
    model_config = {"extra": "forbid", "populate_by_name": True}


class PerimeterDoc(_Doc):
    """Where a point or plant is connected, from ``from`` (included) to ``to`` (excluded)."""

    valid_from: date | None = Field(None, alias="from")
    valid_to: date | None = Field(None, alias="to")
    substation: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    zone: Literal["NORD", "CNOR", "CSUD", "SUD", "CALA", "SICI", "SARD"]
    region: str

    @field_validator("region")
    @classmethod
    def _known_region(cls, v: str) -> str:
        if v not in REGIONS:
            raise ValueError(f"unknown region '{v}' (one of: {', '.join(REGIONS)})")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> PerimeterDoc:
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError(f"'to' {self.valid_to} must be after 'from' {self.valid_from}")
        return self


class PlantDoc(_Doc):
    power_kw: float = Field(gt=0)
    type: Literal["pv", "wind", "hydro", "biomass", "other"] = "pv"
    commissioned: date
    grant: bool = False
    grant_reduction_pct: int | None = Field(None, ge=0, le=100)


class StatuteDoc(_Doc):
    """One version of the repartition rule; shares in percent (two decimals at most), sum 100."""

    version: int = Field(ge=1)
    effective_from: date = Field(alias="from")
    producers: float = Field(ge=0, le=100)
    consumers: float = Field(ge=0, le=100)
    fund: float = Field(0, ge=0, le=100)
    costs: float = Field(0, ge=0, le=100)
    social: float = Field(0, ge=0, le=100)

    def bps(self) -> dict[str, int]:
        return {g: round(getattr(self, g) * 100) for g in GROUPS}

    @model_validator(mode="after")
    def _sums_to_100(self) -> StatuteDoc:
        for g in GROUPS:
            if abs(getattr(self, g) * 100 - round(getattr(self, g) * 100)) > 1e-6:
                raise ValueError(f"{g} share {getattr(self, g)} has more than two decimals")
        total = sum(self.bps().values())
        if total != 10_000:
            raise ValueError(f"shares add up to {total / 100:g}%, they must add up to 100%")
        return self


def check_settlement(doc: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Cross-checks of the settlement sections: (location, message) pairs like check_references."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    seen: set[int] = set()
    for i, s in enumerate(doc.statute):
        if s.version in seen:
            problems.append((("statute", i, "version"), f"duplicate statute version {s.version}"))
        seen.add(s.version)
    for i, d in enumerate(doc.devices):
        spans = sorted((p.valid_from or date.min, p.valid_to or date.max, j) for j, p in enumerate(d.perimeters))
        for (_, end_a, _), (start_b, _, j) in itertools.pairwise(spans):
            if start_b < end_a:
                problems.append((("devices", i, "perimeters", j, "from"),
                                 f"perimeter {j + 1} of device '{d.id}' overlaps another one"))
        if d.plant is not None and not d.perimeters:
            problems.append((("devices", i, "plant"), f"plant '{d.id}' needs perimeters (substation, zone, region)"))
    return problems


# -- database ---------------------------------------------------------------------------------------

def _day_utc(d: date | None) -> datetime | None:
    return None if d is None else datetime(d.year, d.month, d.day, tzinfo=UTC)


def delete_rows(conn: Connection, cid: str, device_ids: list[str]) -> None:
    """Settlement rows of these devices and of community ``cid``'s devices and statute ("" = none)."""
    old_devs = select(t.devices.c.id).where(t.devices.c.community_id == cid)
    for table in (t.device_perimeters, t.plants):
        conn.execute(delete(table).where(table.c.device_id.in_(device_ids) | table.c.device_id.in_(old_devs)))
    if cid:
        conn.execute(delete(t.statute_rules).where(t.statute_rules.c.community_id == cid))


def insert_rows(conn: Connection, doc: Any) -> None:
    cid = doc.community.id
    for d in doc.devices:
        for p in d.perimeters:
            conn.execute(insert(t.device_perimeters).values(
                device_id=d.id, valid_from=_day_utc(p.valid_from), valid_to=_day_utc(p.valid_to),
                primary_substation=p.substation, market_zone=p.zone, region=p.region))
        if d.plant is not None:
            conn.execute(insert(t.plants).values(
                device_id=d.id, power_kw=d.plant.power_kw, plant_type=d.plant.type,
                commissioned=_day_utc(d.plant.commissioned), capital_grant=d.plant.grant,
                grant_reduction_pct=d.plant.grant_reduction_pct))
    for s in doc.statute:
        conn.execute(insert(t.statute_rules).values(
            community_id=cid, version=s.version, effective_from=_day_utc(s.effective_from),
            **{f"{g}_bps": v for g, v in s.bps().items()}))


def _day(v: datetime | None) -> str | None:
    return None if v is None else v.date().isoformat()


def read(conn: Connection, cid: str) -> dict[str, Any]:
    """The community's settlement rows: {"perimeters": {device: [...]}, "plants": {device: {...}},
    "statute": [...]}; days as ISO strings (UTC midnight in the database = the local day)."""
    devs = select(t.devices.c.id).where(t.devices.c.community_id == cid)
    per: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(select(t.device_perimeters).where(t.device_perimeters.c.device_id.in_(devs))
                          .order_by(t.device_perimeters.c.device_id, t.device_perimeters.c.valid_from)):
        per.setdefault(r.device_id, []).append({"from": _day(r.valid_from), "to": _day(r.valid_to),
                                                "substation": r.primary_substation, "zone": r.market_zone,
                                                "region": r.region})
    plants = {r.device_id: {"power_kw": r.power_kw, "type": r.plant_type, "commissioned": _day(r.commissioned),
                            "grant": bool(r.capital_grant), "grant_reduction_pct": r.grant_reduction_pct}
              for r in conn.execute(select(t.plants).where(t.plants.c.device_id.in_(devs)))}
    statute = [{"version": r.version, "from": _day(r.effective_from),
                **{g: getattr(r, f"{g}_bps") / 100 for g in GROUPS}}
               for r in conn.execute(select(t.statute_rules).where(t.statute_rules.c.community_id == cid)
                                     .order_by(t.statute_rules.c.version))]
    return {"perimeters": per, "plants": plants, "statute": statute}
