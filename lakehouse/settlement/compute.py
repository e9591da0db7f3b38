"""The settlement of one community-month in plain Python: the reference the Spark job must equal.

Steps (docs/settlement.md has the exact rule):

1. ``device_hours``: readings -> withdrawal and injection per device and UTC hour of the local month.
2. ``hourly``: per primary substation and per market zone and hour, Σ injection of plants, Σ
   withdrawal of members' points, shared = min of both; shared energy of a substation attributed
   to its plants oldest first; TIP and incentive per plant-hour; ARERA valorisation per zone-hour;
   each member's energy counted in its substation's shared hours (the repartition weights).
3. ``finalise`` (shared by both engines): exact sums, cents, repartition by the statute rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from lakehouse.settlement.model import HOUR_S, Reading, SettlementInputs, local_hour, split_flow
from lakehouse.settlement.rules import (
    FE_PER_CENT,
    GROUPS,
    SettlementRuleError,
    rule_for,
    split_exact,
    tariff_for,
    threshold_check,
    tip,
)


class MissingPriceError(SettlementRuleError):
    """A zonal price the settlement needs is not in the prices table."""


def device_hours(readings: Iterable[Reading], hours: list[int]) -> dict[tuple[str, int], tuple[int, int]]:
    """(device, hour) -> (withdrawal, injection) in mWh over the month's hours."""
    start, end = hours[0], hours[-1] + HOUR_S
    acc: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for r in readings:
        if not start <= r.ts < end:
            continue
        w, i = split_flow(r.kind, r.energy_mwh)
        cell = acc[(r.device_id, r.ts - r.ts % HOUR_S)]
        cell[0] += w
        cell[1] += i
    return {k: (v[0], v[1]) for k, v in acc.items()}


@dataclass
class Hourly:
    """Everything per hour the settlement needs; the Spark job produces the same rows."""

    # (substation, hour) -> [injection, withdrawal, shared]
    substations: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    # (zone, hour) -> [injection, withdrawal, shared]
    zones: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    # (plant, hour) -> (substation, zone, injection, attributed, pz, tip)
    plants: dict[tuple[str, int], tuple[str, str, int, int, int, int]] = field(default_factory=dict)
    # (user, local day) -> [withdrawal, injection, counted withdrawal, counted injection, shared hours]
    member_days: dict[tuple[str, str], list[int]] = field(default_factory=dict)


def price_of(inputs: SettlementInputs, zone: str, hour: int) -> int:
    try:
        return inputs.prices[(zone, hour)]
    except KeyError:
        day, idx = local_hour(hour, inputs.month.timezone)
        raise MissingPriceError(
            f"no zonal price for zone {zone} on {day.isoformat()} hour {idx} (UTC {hour}): load the market "
            "operator's MGP file for that day with `lec settlement prices load FILE`") from None


def hourly(inputs: SettlementInputs, dh: dict[tuple[str, int], tuple[int, int]]) -> Hourly:
    out = Hourly()
    tz = inputs.month.timezone
    by_hour: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for (dev, hour), (w, i) in dh.items():
        by_hour[hour].append((dev, w, i))
    for hour in inputs.month.hours():
        day = local_hour(hour, tz)[0].isoformat()
        sub_in: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        zone_in: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        plants_here: dict[str, list[tuple]] = defaultdict(list)
        points: list[tuple[str, str, int]] = []          # (user, substation, withdrawal)
        producers: list[tuple[str, str, int]] = []       # (user, substation, injection)
        for dev, w, i in by_hour.get(hour, ()):
            a = inputs.assignment_at(dev, hour)
            if a is None:
                continue
            user = inputs.owners.get(dev)
            member = user if user in inputs.wallets else None
            if member is not None and w:
                sub_in[a.substation][1] += w
                zone_in[a.zone][1] += w
                points.append((member, a.substation, w))
            plant = inputs.plants.get(dev)
            if plant is not None and i:
                sub_in[a.substation][0] += i
                zone_in[a.zone][0] += i
                plants_here[a.substation].append((plant.commissioned, dev, a, i))
                if member is not None:
                    producers.append((member, a.substation, i))
        params = tariff_for(local_hour(hour, tz)[0], inputs.tariffs)
        shared_sub = {}
        for sub, (inj, wd) in sub_in.items():
            shared = min(inj, wd)
            shared_sub[sub] = shared
            out.substations[(sub, hour)] = [inj, wd, shared]
            left = shared
            for _, dev, a, inj_p in sorted(plants_here[sub], key=lambda p: (p[0], p[1])):
                got = min(inj_p, left)
                left -= got
                pz = price_of(inputs, a.zone, hour)
                t = tip(pz, inputs.plants[dev].terms(a.region), params)
                out.plants[(dev, hour)] = (sub, a.zone, inj_p, got, pz, t)
        for zone, (inj, wd) in zone_in.items():
            out.zones[(zone, hour)] = [inj, wd, min(inj, wd)]
        for user, sub, w in points:
            cell = out.member_days.setdefault((user, day), [0, 0, 0, 0, 0])
            cell[0] += w
            if shared_sub.get(sub, 0) > 0:
                cell[2] += w
        for user, sub, i in producers:
            cell = out.member_days.setdefault((user, day), [0, 0, 0, 0, 0])
            cell[1] += i
            if shared_sub.get(sub, 0) > 0:
                cell[3] += i
        for user in {u for u, s, _ in points + producers if shared_sub.get(s, 0) > 0}:
            out.member_days[(user, day)][4] += 1
    return out


@dataclass
class Settlement:
    """The month's result: hourly rows, member rows (integer cents) and the summary."""

    hourly: Hourly
    members: dict[str, dict[str, int | str]]
    summary: dict[str, object]


def finalise(inputs: SettlementInputs, h: Hourly) -> Settlement:
    """Exact sums -> cents -> repartition. Rounding (docs/settlement.md §Rounding): the month's
    incentive and valorisation are summed exactly in 1e-15 € and each floored to a cent once; the
    total is split among the statute's groups, then producers' and consumers' groups among members,
    each split by largest remainder so that the parts add up to the whole exactly."""
    tz = inputs.month.timezone
    incentive_fe = sum(att * t for (_, _, _, att, _, t) in h.plants.values())
    valorisation_fe = 0
    for (zone, hour), (_, _, shared) in h.zones.items():
        valorisation_fe += shared * tariff_for(local_hour(hour, tz)[0], inputs.tariffs).valorisation
    incentive_cents = incentive_fe // FE_PER_CENT
    valorisation_cents = valorisation_fe // FE_PER_CENT
    total = incentive_cents + valorisation_cents
    first_day = date(inputs.month.year, inputs.month.month, 1)
    rule = rule_for(first_day, inputs.rules)
    groups = split_exact(total, sorted(rule.shares().items(), key=lambda kv: GROUPS.index(kv[0])))
    groups = {g: groups.get(g, 0) for g in GROUPS}
    stats: dict[str, list[int]] = {}
    for (user, _), cell in h.member_days.items():
        s = stats.setdefault(user, [0, 0, 0, 0, 0])
        for k in range(5):
            s[k] += cell[k]
    prod = split_exact(groups["producers"], sorted((u, s[3]) for u, s in stats.items() if s[3] > 0))
    cons = split_exact(groups["consumers"], sorted((u, s[2]) for u, s in stats.items() if s[2] > 0))
    # a group with nobody to weigh (no counted energy) goes to the community fund: nothing is lost
    unassigned = (groups["producers"] if not prod else 0) + (groups["consumers"] if not cons else 0)
    groups["fund"] += unassigned
    groups["producers"] = groups["producers"] if prod else 0
    groups["consumers"] = groups["consumers"] if cons else 0
    members: dict[str, dict[str, int | str]] = {}
    for user in sorted(set(stats) | set(inputs.wallets)):
        if user not in inputs.wallets:
            continue
        s = stats.get(user, [0, 0, 0, 0, 0])
        p, c = prod.get(user, 0), cons.get(user, 0)
        members[user] = {"wallet": inputs.wallets[user], "withdrawal_mwh": s[0], "injection_mwh": s[1],
                         "counted_withdrawal_mwh": s[2], "counted_injection_mwh": s[3], "shared_hours": s[4],
                         "producer_cents": p, "consumer_cents": c, "amount_cents": p + c}
    any_grant = any(p.grant for p in inputs.plants.values())
    summary = {
        "community_id": inputs.community_id, "month": inputs.month.label, "hours": len(inputs.month.hours()),
        "injection_mwh": sum(v[0] for v in h.substations.values()),
        "withdrawal_mwh": sum(v[1] for v in h.substations.values()),
        "shared_mwh": sum(v[2] for v in h.substations.values()),
        "zone_shared_mwh": sum(v[2] for v in h.zones.values()),
        "incentive_fe": str(incentive_fe), "valorisation_fe": str(valorisation_fe),
        "incentive_cents": incentive_cents, "valorisation_cents": valorisation_cents, "total_cents": total,
        **{f"{g}_cents": groups[g] for g in GROUPS},
        "unassigned_to_fund_cents": unassigned,
        "rule_version": rule.version, "threshold_warning": threshold_check(rule, any_grant) or "",
        "members_cents": sum(int(m["amount_cents"]) for m in members.values()),
    }
    return Settlement(h, members, summary)


def settle(inputs: SettlementInputs, readings: Iterable[Reading]) -> Settlement:
    """The whole month in plain Python (the reference implementation)."""
    return finalise(inputs, hourly(inputs, device_hours(readings, inputs.month.hours())))
