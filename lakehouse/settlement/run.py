"""`lec settlement run`: one community-month from the lake's readings to versioned Delta tables."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lakehouse.settlement.compute import Settlement, finalise
from lakehouse.settlement.inputs import from_registry, inputs_digest
from lakehouse.settlement.model import Month, SettlementInputs, local_hour
from lakehouse.settlement.prices import read_prices
from lakehouse.settlement.rules import tariff_for
from lakehouse.settlement.statements import build_tree
from lakehouse.settlement.store import HOURLY, MEMBER_DAYS, MEMBERS, SUMMARY, SettlementStore
from oracle.merkle import hex32

if TYPE_CHECKING:
    from lec.config import Settings
    from lec.registry import Registry

log = logging.getLogger("lec.settlement")


def load_inputs(registry: Registry, lake_uri: str, community_id: str, month_text: str) -> SettlementInputs:
    tz = registry.snapshot().communities.get(community_id)
    month = Month.parse(month_text, tz.timezone if tz else "Europe/Rome")
    start, end = month.bounds()
    return from_registry(registry, community_id, month_text, read_prices(lake_uri, start, end))


SETTLE_STEPS = 4  # the phases settle_month reports to ``advance`` (a progress bar's total)


def settle_month(settings: Settings, community_id: str, month_text: str, *, registry: Registry | None = None,
                 advance: Callable[..., None] | None = None) -> dict[str, Any]:
    """Run the Spark job and store the result as a new version unless the inputs are unchanged.

    ``advance(1, description)`` is told as each of the SETTLE_STEPS phases ends (a progress bar).
    Returns the summary row plus ``"written": True|False``."""
    from lakehouse.settlement.job import run_hourly
    from lakehouse.spark.sessions import read_delta, spark_session
    from lec.registry import open_registry

    step = advance or (lambda n=1, description=None: None)
    reg = registry or open_registry(settings)
    lake = settings.resolved_lake_uri()
    inputs = load_inputs(reg, lake, community_id, month_text)
    step(1, f"settlement {community_id} {month_text}: hourly shares on Spark")
    work = f"{lake.rstrip('/')}/_settlement_work/{community_id}-{month_text}-{uuid.uuid4().hex[:12]}"
    try:
        with spark_session(settings) as spark:
            hourly, device_hours = run_hourly(spark, read_delta(spark, lake, "readings"), inputs, work)
    finally:
        remove_tree(work)
    step(1, f"settlement {community_id} {month_text}: repartition")
    digest = inputs_digest(inputs, device_hours)
    result = finalise(inputs, hourly)
    step(1, f"settlement {community_id} {month_text}: storing")
    summary = store_result(SettlementStore(lake), inputs, result, digest)
    step(1)
    return summary


def remove_tree(uri: str) -> None:
    """Delete a scratch folder (local path or any filesystem pyarrow knows, e.g. hdfs://)."""
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(uri if "://" in uri else f"file://{uri}")
        filesystem.delete_dir(path)
    except (OSError, ValueError) as exc:  # already gone, or an unreachable filesystem: leave it, say so
        if "does not exist" not in str(exc) and "No such file" not in str(exc):
            log.warning("could not remove the settlement scratch folder %s: %s", uri, exc)


def store_result(store: SettlementStore, inputs: SettlementInputs, result: Settlement, digest: str
                 ) -> dict[str, Any]:
    cid, month = inputs.community_id, inputs.month.label
    latest = store.latest(cid, month)
    if latest is not None and latest["inputs_digest"] == digest:
        log.info("settlement of %s %s unchanged (version %d, digest %s)", cid, month, latest["version"], digest)
        return {**latest, "written": False}
    version = (int(latest["version"]) if latest else 0) + 1
    store.drop_orphans(cid, month, version)
    key = {"community_id": cid, "month": month, "version": version}
    root, leaves = build_tree(inputs.month.code, result.members)
    store.append(HOURLY, hourly_rows(inputs, result, key))
    store.append(MEMBER_DAYS, [{**key, "user_id": u, "local_day": d, "withdrawal_mwh": c[0], "injection_mwh": c[1],
                                "counted_withdrawal_mwh": c[2], "counted_injection_mwh": c[3], "shared_hours": c[4]}
                               for (u, d), c in sorted(result.hourly.member_days.items())])
    store.append(MEMBERS, [{**key, "user_id": u, **m, "tokens": str(leaves[u][0][4]),
                            "leaf_index": i, "proof": json.dumps(leaves[u][1])}
                           for i, (u, m) in enumerate(sorted(result.members.items()))])
    summary = {**key, "timezone": inputs.month.timezone, **{k: v for k, v in result.summary.items()
                                                            if k not in ("community_id", "month")},
               "inputs_digest": digest, "statements_root": hex32(root), "member_count": len(leaves),
               "created_ts": datetime.now(UTC).isoformat()}
    store.append(SUMMARY, [summary])
    log.info("settled %s %s version %d: %d cents (%d incentive, %d ARERA), %d members, root %s", cid, month, version,
             summary["total_cents"], summary["incentive_cents"], summary["valorisation_cents"], len(leaves),
             summary["statements_root"])
    return {**summary, "written": True}


def hourly_rows(inputs: SettlementInputs, result: Settlement, key: dict[str, Any]) -> list[dict[str, Any]]:
    tz = inputs.month.timezone
    h = result.hourly
    out: list[dict[str, Any]] = []
    blank = {"plant_id": None, "zone": None, "pz_micro": None, "tip_micro": None, "valorisation_micro": None,
             "incentivised_mwh": None}

    def when(hour: int) -> dict[str, Any]:
        day, idx = local_hour(hour, tz)
        return {"hour": hour, "local_day": day.isoformat(), "local_hour": idx}

    incentive: dict[tuple[str, int], int] = {}
    for (plant, hour), (sub, zone, inj, att, pz, tip) in sorted(h.plants.items()):
        incentive[(sub, hour)] = incentive.get((sub, hour), 0) + att * tip
        out.append({**key, **blank, "kind": "plant", "perimeter": sub, "plant_id": plant, "zone": zone, **when(hour),
                    "injection_mwh": inj, "withdrawal_mwh": None, "shared_mwh": None, "incentivised_mwh": att,
                    "pz_micro": pz, "tip_micro": tip, "amount_fe": str(att * tip)})
    for (sub, hour), (inj, wd, shared) in sorted(h.substations.items()):
        out.append({**key, **blank, "kind": "substation", "perimeter": sub, **when(hour), "injection_mwh": inj,
                    "withdrawal_mwh": wd, "shared_mwh": shared, "incentivised_mwh": shared,
                    "amount_fe": str(incentive.get((sub, hour), 0))})
    for (zone, hour), (inj, wd, shared) in sorted(h.zones.items()):
        unit = tariff_for(local_hour(hour, tz)[0], inputs.tariffs).valorisation
        out.append({**key, **blank, "kind": "zone", "perimeter": zone, "zone": zone, **when(hour),
                    "injection_mwh": inj, "withdrawal_mwh": wd, "shared_mwh": shared, "valorisation_micro": unit,
                    "amount_fe": str(shared * unit)})
    return out
