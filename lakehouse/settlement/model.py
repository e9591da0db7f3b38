"""Inputs of a settlement: the community's dated perimeters, plants, members, rules and prices.

Built from the registry (``lakehouse.settlement.inputs``) or by hand in tests; both engines (plain
Python and Spark) take the same ``SettlementInputs``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from lakehouse.settlement.rules import (
    DEFAULT_TARIFFS,
    PlantTerms,
    SettlementRuleError,
    StatuteRule,
    TariffParams,
)

HOUR_S = 3600
GRID, CONSUMPTION, PRODUCTION = "grid", "consumption", "production"


@dataclass(frozen=True)
class Assignment:
    """A device's perimeters for [valid_from, valid_to) (UTC instants; None = open).

    An hour counts when its start lies inside the interval: a point that leaves at 14:00 counts
    until the 13:00-14:00 hour included."""

    device_id: str
    substation: str
    zone: str
    region: str
    valid_from: int | None = None   # unix seconds
    valid_to: int | None = None

    def covers(self, hour: int) -> bool:
        return (self.valid_from is None or self.valid_from <= hour) and (self.valid_to is None or hour < self.valid_to)


@dataclass(frozen=True)
class Plant:
    device_id: str
    commissioned: date
    power_kw: float
    plant_type: str = "pv"
    grant: bool = False
    grant_reduction_pct: int | None = None

    def terms(self, region: str) -> PlantTerms:
        return PlantTerms(self.power_kw, self.plant_type, region, self.grant, self.grant_reduction_pct)


@dataclass(frozen=True)
class Month:
    """A local calendar month: its hours are the UTC hours whose start lies in it (743-745)."""

    year: int
    month: int
    timezone: str = "Europe/Rome"

    @classmethod
    def parse(cls, text: str, timezone: str = "Europe/Rome") -> Month:
        try:
            y, m = (int(p) for p in text.split("-"))
            if not 1 <= m <= 12:
                raise ValueError
        except ValueError:
            raise SettlementRuleError(f"month must look like 2026-05, got {text!r}") from None
        return cls(y, m, timezone)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def code(self) -> int:
        """YYYYMM, the month in the statements tree."""
        return self.year * 100 + self.month

    def bounds(self) -> tuple[int, int]:
        tz = ZoneInfo(self.timezone)
        start = datetime(self.year, self.month, 1, tzinfo=tz)
        last = calendar.monthrange(self.year, self.month)[1]
        end = datetime(self.year, self.month, last, tzinfo=tz) + timedelta(days=1)
        end = datetime(end.year, end.month, end.day, tzinfo=tz)  # local midnight after the last day
        return int(start.astimezone(UTC).timestamp()), int(end.astimezone(UTC).timestamp())

    def hours(self) -> list[int]:
        start, end = self.bounds()
        return list(range(start, end, HOUR_S))


def local_hour(hour: int, timezone: str) -> tuple[date, int]:
    """(local date, hour index 1..25 of that day) of the UTC hour starting at ``hour``, as the GME
    numbers them: a 23-hour day has indices 1..23, a 25-hour day 1..25."""
    tz = ZoneInfo(timezone)
    local = datetime.fromtimestamp(hour, UTC).astimezone(tz)
    day = local.date()
    midnight = int(datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC).timestamp())
    return day, (hour - midnight) // HOUR_S + 1


@dataclass
class SettlementInputs:
    community_id: str
    month: Month
    owners: dict[str, str | None]                 # device_id -> user_id (None: nobody's)
    wallets: dict[str, str]                       # user_id -> wallet of the community's members
    assignments: list[Assignment]
    plants: dict[str, Plant]                      # device_id -> plant
    rules: list[StatuteRule]
    prices: dict[tuple[str, int], int]            # (zone, UTC hour) -> µ€/MWh
    tariffs: tuple[TariffParams, ...] = DEFAULT_TARIFFS
    flow_kinds: dict[str, str] = field(default_factory=dict)  # flow_id -> grid | consumption | production

    def assignment_at(self, device_id: str, hour: int) -> Assignment | None:
        for a in self._by_device().get(device_id, ()):
            if a.covers(hour):
                return a
        return None

    def _by_device(self) -> dict[str, list[Assignment]]:
        cache = self.__dict__.get("_assign_cache")
        if cache is None:
            cache = {}
            for a in self.assignments:
                cache.setdefault(a.device_id, []).append(a)
            self.__dict__["_assign_cache"] = cache
        return cache


@dataclass(frozen=True)
class Reading:
    """One accounting reading of a quarter-hour (or shorter), energy signed by Table 13."""

    device_id: str
    kind: str          # grid | consumption | production
    ts: int            # unix seconds
    energy_mwh: int


def split_flow(kind: str, energy_mwh: int) -> tuple[int, int]:
    """(withdrawal, injection) of one reading: a grid flow gives both (+ withdrawal, - injection);
    a consumption flow only withdrawal, a production flow only injection."""
    if kind == GRID:
        return max(energy_mwh, 0), max(-energy_mwh, 0)
    if kind == CONSUMPTION:
        return max(energy_mwh, 0), 0
    if kind == PRODUCTION:
        return 0, max(-energy_mwh, 0)
    return 0, 0
