"""The CACER rules of a settlement (DM 414/2023, ARERA TIAD) as exact integer arithmetic.

Units, chosen so that every engine gets the same integers (docs/settlement.md):

- energy in integer milliwatt-hours (mWh), the lake's unit;
- prices and tariffs in integer micro-euro per MWh (µ€/MWh): a GME price of ``112.450000``
  €/MWh is ``112_450_000``; TIP bands, caps and corrections are exact in this unit;
- an hourly amount ``mWh × µ€/MWh`` is in units of 1e-15 € ("femto-euro", ``FE_PER_CENT`` =
  1e13 per cent); a month's amounts are summed exactly and floored to cents once.

Every parameter is dated (``effective_from``, a local day): the version in force on a day is the
latest one with ``effective_from <= day``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from lec.errors import LecError

MICRO = 1_000_000          # µ€ per €
FE_PER_CENT = 10 ** 13     # (mWh × µ€/MWh) units per euro-cent: 1e-9 MWh × 1e-6 € = 1e-15 €

PHOTOVOLTAIC = "pv"
PLANT_TYPES = ("pv", "wind", "hydro", "biomass", "other")
GROUPS = ("producers", "consumers", "fund", "costs", "social")


class SettlementRuleError(LecError):
    """A settlement parameter or statute rule is invalid or missing for a date."""


def eur_to_micro(value: str | float | Decimal) -> int:
    """€/MWh as text or number -> integer µ€/MWh (half-even on the 7th decimal, as GME has 6)."""
    try:
        d = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        raise SettlementRuleError(f"{value!r} is not a price in €/MWh") from None
    return int((d * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class TipBand:
    """One power band of the TIP: ``min(cap, base + max(0, 180 - Pz))`` for power <= ``max_kw``."""

    max_kw: float            # inclusive upper bound; the last band has float('inf')
    base: int                # µ€/MWh
    cap: int                 # µ€/MWh


@dataclass(frozen=True)
class TariffParams:
    """Dated tariff parameters (defaults: DM 414/2023 and ARERA 2024 values)."""

    effective_from: date
    bands: tuple[TipBand, ...] = (
        TipBand(200.0, 80 * MICRO, 120 * MICRO),
        TipBand(600.0, 70 * MICRO, 110 * MICRO),
        TipBand(float("inf"), 60 * MICRO, 100 * MICRO),
    )
    price_ref: int = 180 * MICRO                      # the 180 €/MWh of max(0, 180 - Pz)
    # photovoltaic regional correction, added after the cap (µ€/MWh)
    regional: dict[str, int] = field(default_factory=lambda: {
        **{r: 4 * MICRO for r in ("Lazio", "Marche", "Toscana", "Umbria", "Abruzzo")},
        **{r: 10 * MICRO for r in ("Emilia-Romagna", "Friuli-Venezia Giulia", "Liguria", "Lombardia", "Piemonte",
                                    "Trentino-Alto Adige", "Valle d'Aosta", "Veneto")},
    })
    grant_reduction_pct: int = 50                     # default TIP reduction with a capital grant
    tras_e: int = 10_570_000                          # TRAS_E, µ€/MWh (2024: 10.57 €/MWh)
    btau_max: int = 650_000                           # max BTAU, µ€/MWh (2024: 0.65 €/MWh)

    @property
    def valorisation(self) -> int:
        """ARERA unit valorisation of shared energy, µ€/MWh: TRAS_E + max BTAU."""
        return self.tras_e + self.btau_max


# The 2024 values (DM 414/2023, ARERA 2024), in force from 2000-01-01 so that historical data (the
# demo's SimBench year 2016) can be settled too; add a dated version for every change of values.
DEFAULT_TARIFFS: tuple[TariffParams, ...] = (TariffParams(effective_from=date(2000, 1, 1)),)


def tariff_for(day: date, versions: Sequence[TariffParams] = DEFAULT_TARIFFS) -> TariffParams:
    """The version in force on ``day`` (the latest with effective_from <= day)."""
    best = None
    for v in versions:
        if v.effective_from <= day and (best is None or v.effective_from >= best.effective_from):
            best = v
    if best is None:
        raise SettlementRuleError(f"no tariff parameters are in force on {day.isoformat()}: "
                                  f"the earliest start on {min(v.effective_from for v in versions)}")
    return best


@dataclass(frozen=True)
class PlantTerms:
    """What the TIP of a plant depends on."""

    power_kw: float
    plant_type: str = PHOTOVOLTAIC
    region: str = ""
    grant: bool = False
    grant_reduction_pct: int | None = None   # None: the tariff's default (50%) when grant


def tip(pz: int, plant: PlantTerms, params: TariffParams) -> int:
    """TIP of a plant in µ€/MWh for zonal price ``pz`` (µ€/MWh), floor of the grant reduction.

    band formula with its cap -> + regional correction (PV only, after the cap) -> x (1 - reduction).
    """
    band = next(b for b in params.bands if plant.power_kw <= b.max_kw)
    value = min(band.cap, band.base + max(0, params.price_ref - pz))
    if plant.plant_type == PHOTOVOLTAIC:
        value += params.regional.get(plant.region, 0)
    if plant.grant:
        pct = params.grant_reduction_pct if plant.grant_reduction_pct is None else plant.grant_reduction_pct
        value = value * (100 - pct) // 100
    return value


# -- statute rule ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatuteRule:
    """A version of the community's repartition rule, shares in basis points summing to 10000."""

    version: int
    effective_from: date
    producers_bps: int
    consumers_bps: int
    fund_bps: int
    costs_bps: int
    social_bps: int

    def __post_init__(self) -> None:
        parts = self.shares()
        if any(v < 0 for v in parts.values()):
            raise SettlementRuleError(f"statute rule v{self.version}: shares must not be negative")
        if sum(parts.values()) != 10_000:
            raise SettlementRuleError(f"statute rule v{self.version}: shares add up to {sum(parts.values())} bps, "
                                      "they must add up to 10000 (100%)")

    def shares(self) -> dict[str, int]:
        return {g: getattr(self, f"{g}_bps") for g in GROUPS}


def rule_for(day: date, rules: Sequence[StatuteRule]) -> StatuteRule:
    best = None
    for r in rules:
        if r.effective_from <= day and (best is None or (r.effective_from, r.version) >= (best.effective_from,
                                                                                           best.version)):
            best = r
    if best is None:
        raise SettlementRuleError(f"no statute rule is in force on {day.isoformat()}: add a version with "
                                  f"effective_from <= {day.isoformat()} to the community's settlement.statute")
    return best


def threshold_check(rule: StatuteRule, any_grant: bool) -> str | None:
    """The DM 414/2023 threshold: the incentive beyond 55% (45% with a capital grant) must go to
    consumers and/or social purposes. Shares that are neither (producers, fund, costs) above the
    threshold are flagged; returns the message or None."""
    limit = 4_500 if any_grant else 5_500
    kept = rule.producers_bps + rule.fund_bps + rule.costs_bps
    if kept > limit:
        return (f"statute rule v{rule.version}: {kept / 100:g}% goes to producers, fund and costs, above the "
                f"{limit / 100:g}% threshold{' (capital grant)' if any_grant else ''}: the rest must go to "
                "consumers or social purposes")
    return None


# -- exact-sum rounding ---------------------------------------------------------------------------

def split_exact(total: int, weights: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Largest-remainder split of integer ``total`` by integer ``weights`` (key, weight).

    Each key gets floor(total × w / W); the cents left over go one each to the largest remainders
    (total × w mod W), ties to the smaller key. The parts add up to ``total`` exactly. All weights
    zero (or no keys): empty dict, the caller decides where ``total`` goes.
    """
    if total < 0:
        raise SettlementRuleError("cannot split a negative amount")
    wsum = sum(w for _, w in weights)
    if wsum <= 0:
        return {}
    out = {k: total * w // wsum for k, w in weights}
    left = total - sum(out.values())
    order = sorted(weights, key=lambda kw: (-(total * kw[1] % wsum), kw[0]))
    for k, _ in order[:left]:
        out[k] += 1
    return out
