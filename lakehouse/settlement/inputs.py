"""Settlement inputs from the registry and the lake, and their digest (anchored with the root)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from lakehouse.settlement.model import (
    CONSUMPTION,
    GRID,
    PRODUCTION,
    Assignment,
    Month,
    Plant,
    SettlementInputs,
)
from lakehouse.settlement.rules import DEFAULT_TARIFFS, SettlementRuleError, StatuteRule

if TYPE_CHECKING:
    from lec.registry import Registry


def flow_kind(measurement: str | None, account: int | None) -> str | None:
    """How a flow counts: grid exchange (both), consumption (withdrawal), production (injection)."""
    if measurement == "grid":
        return GRID
    if account == 1:
        return CONSUMPTION
    if account == 2:
        return PRODUCTION
    return None


def _local_midnight(day: str | None, tz: str) -> int | None:
    if day is None:
        return None
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).astimezone(UTC).timestamp())


def from_registry(registry: Registry, community_id: str, month_text: str,
                  prices: dict[tuple[str, int], int]) -> SettlementInputs:
    """The community's members, owners, dated perimeters, plants and statute rules for the month."""
    from lec.registry import settlement as reg_settlement

    snap = registry.snapshot()
    if community_id not in snap.communities:
        from lec.registry.store import unknown_community

        raise SettlementRuleError(unknown_community(community_id, snap.communities))
    tz = snap.communities[community_id].timezone
    month = Month.parse(month_text, tz)
    with registry.engine.connect() as conn:
        data = reg_settlement.read(conn, community_id)
    if not data["statute"]:
        raise SettlementRuleError(f"community '{community_id}' has no statute rule: add a 'statute' section to its "
                                  "community file (docs/settlement.md)")
    owners = {d.id: d.user_id for d in snap.devices.values() if d.community_id == community_id}
    wallets = {m.user_id: m.wallet for (cid, _), m in snap.members.items() if cid == community_id and m.active}
    assignments = [Assignment(dev, p["substation"], p["zone"], p["region"], _local_midnight(p["from"], tz),
                              _local_midnight(p["to"], tz))
                   for dev, ps in data["perimeters"].items() for p in ps]
    plants = {dev: Plant(dev, date.fromisoformat(p["commissioned"]), float(p["power_kw"]), p["type"],
                         bool(p["grant"]), p["grant_reduction_pct"]) for dev, p in data["plants"].items()}
    rules = [StatuteRule(r["version"], date.fromisoformat(r["from"]),
                         *(round(r[g] * 100) for g in ("producers", "consumers", "fund", "costs", "social")))
             for r in data["statute"]]
    flow_kinds = {f.id: k for f in snap.flows.values() if f.community_id == community_id
                  and (k := flow_kind(f.measurement, f.account)) is not None}
    return SettlementInputs(community_id, month, owners, wallets, assignments, plants, rules, prices,
                            DEFAULT_TARIFFS, flow_kinds)


def _jsonable(v: Any) -> Any:
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and v == float("inf"):
        return "inf"
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "__dataclass_fields__"):
        return {k: _jsonable(getattr(v, k)) for k in v.__dataclass_fields__}
    return v


def inputs_digest(inputs: SettlementInputs, device_hours: Iterable[tuple[str, int, int, int]]) -> str:
    """Engine-free digest of everything the month's result depends on: SHA-256 of the
    canonical JSON of the registry terms, tariffs, prices of the month, and every (device, hour,
    withdrawal, injection) in (device, hour) order (docs/oracle-spec.md §11)."""
    start, end = inputs.month.bounds()
    terms = {
        "community_id": inputs.community_id, "month": inputs.month.label, "timezone": inputs.month.timezone,
        "owners": {k: v for k, v in sorted(inputs.owners.items())}, "wallets": inputs.wallets,
        "assignments": [_jsonable(a) for a in sorted(inputs.assignments, key=lambda a: (a.device_id,
                                                                                        a.valid_from or 0))],
        "plants": _jsonable(inputs.plants), "rules": [_jsonable(r) for r in sorted(inputs.rules, key=lambda r: r.version)],
        "tariffs": [_jsonable(t) for t in inputs.tariffs],
        "prices": [[z, h, p] for (z, h), p in sorted(inputs.prices.items()) if start <= h < end],
    }
    h = hashlib.sha256(json.dumps(terms, sort_keys=True, separators=(",", ":")).encode())
    for dev, hour, w, i in sorted(device_hours):
        h.update(f"\n{dev},{hour},{w},{i}".encode())
    return "0x" + h.hexdigest()
