"""The demo's settlement: perimeters, plants and a statute for the demo community, a synthetic GME
price file, and the end of `lec demo` (settle, anchor, write and verify a member's statement)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lakehouse.settlement.model import Month
from lakehouse.settlement.prices import hours_in_day

DEMO_ZONE, DEMO_REGION = "NORD", "Emilia-Romagna"   # the SimBench grid is placed near Bologna
STATUTE = {"version": 1, "from": "2016-01-01", "producers": 40, "consumers": 45, "fund": 10, "costs": 3, "social": 2}


def add_settlement_terms(doc: dict[str, Any]) -> dict[str, Any]:
    """Every device in one of two primary substations (the last two households in the second);
    the PV devices become plants (6 kW, commissioned a year apart, the newest with a grant)."""
    meters = [d for d in doc["devices"] if d["id"].startswith("IT001E")]
    second = {d["id"] for d in meters[-2:]}
    for d in doc["devices"]:
        sub = "AC001E00002" if d["id"] in second else "AC001E00001"
        d["perimeters"] = [{"from": "2016-01-01", "substation": sub, "zone": DEMO_ZONE, "region": DEMO_REGION}]
    plants = [d for d in doc["devices"] if d["id"].startswith("PV-")]
    for j, d in enumerate(plants):
        d["plant"] = {"power_kw": 6.0, "type": "pv", "commissioned": f"{2013 + j}-06-01", "grant": j == len(plants) - 1}
    doc["statute"] = [dict(STATUTE)]
    return doc


def price_xml(month: Month, zones: tuple[str, ...] = ("NORD",)) -> bytes:
    """A GME MGP-style hourly price file for the month (synthetic daily shape, comma decimals)."""
    rows = []
    day = date(month.year, month.month, 1)
    while day.month == month.month:
        for h in range(1, hours_in_day(day) + 1):
            pun = 38 + 14 * math.sin((h - 7) / 24 * 2 * math.pi) + (day.day % 5)
            cells = "".join(f"<{z}>{pun - 1.5 * k:.6f}</{z}>".replace(".", ",") for k, z in enumerate(zones))
            rows.append(f"<Prezzi><Data>{day:%Y%m%d}</Data><Mercato>MGP</Mercato><Ora>{h}</Ora>"
                        f"<PUN>{pun:.6f}</PUN>".replace(".", ",") + cells + "</Prezzi>")
        day += timedelta(days=1)
    return ("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<NewDataSet>" + "\n".join(rows) + "</NewDataSet>\n").encode()


def settle_demo(run_dir: Path, community_id: str, month: Month, member: str, rpc: str,
                lec_cli: Callable[..., str], echo: Callable[[str], Any]) -> dict[str, Any]:
    """Load prices, settle the month, anchor it, write the member's statement and verify it."""
    prices = run_dir / f"MGP_Prezzi_{month.year}{month.month:02d}.xml"
    prices.write_bytes(price_xml(month))
    lec_cli("settlement", "prices", "load", str(prices))
    summary = json.loads(lec_cli("settlement", "run", "--community", community_id, "--month", month.label))
    anchor = json.loads(lec_cli("settlement", "anchor", "--community", community_id, "--month", month.label, "--dev"))
    out = json.loads(lec_cli("settlement", "statement", "--member", member, "--month", month.label,
                             "--community", community_id, "--rpc", rpc, "--out", str(run_dir / "statements")))
    check = json.loads(lec_cli("settlement", "verify", out["json"], "--rpc", rpc))
    echo(f"settlement {month.label}: shared {summary['shared_mwh'] / 1e6:.1f} kWh in the primary substations "
         f"({summary['zone_shared_mwh'] / 1e6:.1f} kWh in the market zone), incentive {summary['incentive_cents'] / 100:.2f} € "
         f"+ ARERA {summary['valorisation_cents'] / 100:.2f} € = {summary['total_cents'] / 100:.2f} €; "
         f"anchored (chain version {anchor['chain_version']}, tx {anchor['txHash'][:12]}…)")
    if summary.get("threshold_warning"):
        echo(f"settlement warning: {summary['threshold_warning']}")
    echo(f"statement of {member}: {int(check['amount_cents']) / 100:.2f} €, "
         f"{'verified' if check['verified'] else 'NOT verified'} against the root on chain; open {out['html']}")
    return {"settlement": {k: summary[k] for k in ("version", "shared_mwh", "total_cents", "statements_root")},
            "statement": {"member": member, "html": out["html"], "verified": check["verified"],
                          "amount_cents": check["amount_cents"]}}
