"""Auditor checks (oracle.md §10): a take-out file against the chain, or the lake against the chain.

Every problem found is one line of text in the returned list (empty = everything verified).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lec.errors import LecError
from oracle.commitment import community_id_hash, device_key
from oracle.merkle import READINGS_TYPES, REWARDS_TYPES, hex32, verify
from oracle.rewards import aggregates, rewards, rewards_tree
from oracle.takeout import SPEC, params_json, rows_from_takeout
from oracle.types import AnchorData


class VerifyError(LecError):
    """The take-out file or the chain cannot be read at all."""


def read_only_client(rpc_url: str, chain_id: int, notary: str, communities: dict[str, str]) -> Any:
    """A NotaryClient for calls only (a throwaway key: it never signs anything)."""
    from eth_account import Account

    from oracle.chain import Deployment, NotaryClient

    dep = Deployment(chainId=chain_id, notary=notary, tokens=communities, deployer="", block=0)
    return NotaryClient(rpc_url, dep, "0x" + bytes(Account.create().key).hex())


def _anchor_fields(a: dict[str, Any]) -> dict[str, Any]:
    return {"readingsRoot": a["readingsRoot"], "leafCount": int(a["leafCount"]),
            "consumptionMwh": int(a["consumptionMwh"]), "productionMwh": int(a["productionMwh"]),
            "sharedMwh": int(a["sharedMwh"]), "rewardsRoot": a["rewardsRoot"], "rewardTotal": int(a["rewardTotal"]),
            "paramsVersion": int(a["paramsVersion"])}


def _chain_fields(c: AnchorData) -> dict[str, Any]:
    return {"readingsRoot": hex32(c.readingsRoot), "leafCount": c.leafCount, "consumptionMwh": c.consumptionMwh,
            "productionMwh": c.productionMwh, "sharedMwh": c.sharedMwh, "rewardsRoot": hex32(c.rewardsRoot),
            "rewardTotal": c.rewardTotal, "paramsVersion": c.paramsVersion}


def verify_takeout(doc: dict[str, Any], rpc_url: str, *, warn: Callable[[str], None] | None = None) -> list[str]:
    """Check every proof against the roots on chain; for complete QHs recompute C, G, S and rewards."""
    if not isinstance(doc, dict) or doc.get("spec") != SPEC:
        raise VerifyError(f"not a take-out file of spec {SPEC}")
    communities = {a["community_id"]: doc.get("token") or "0x" + "00" * 20 for a in doc.get("anchors", [])}
    client = read_only_client(rpc_url, int(doc["chainId"]), doc["notary"], communities)
    problems: list[str] = []
    for a in doc.get("anchors", []):
        try:
            problems += _verify_anchor(client, a, warn)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            problems.append(f"{a.get('community_id')} qh {a.get('qh')}: malformed entry ({type(exc).__name__}: {exc})")
    return problems


def _verify_anchor(client: Any, a: dict[str, Any], warn: Callable[[str], None] | None) -> list[str]:
    cid, qh, version = a["community_id"], int(a["qh"]), int(a["version"])
    where = f"{cid} qh {qh} v{version}"
    out: list[str] = []
    if a["communityId"] != hex32(community_id_hash(cid)):
        out.append(f"{where}: communityId is not keccak256(community_id)")
    try:
        chain = client.get_anchor(cid, qh, version)
    except LecError as exc:
        return [f"{where}: not anchored on chain ({exc})"]
    latest = client.latest_version(cid, qh)
    if latest != version and warn is not None:
        warn(f"{where}: chain has a newer version {latest} (claims use the latest)")
    on_chain = _chain_fields(chain)
    for name, value in _anchor_fields(a).items():
        if value != on_chain[name]:
            out.append(f"{where}: {name} is {value} in the file but {on_chain[name]} on chain")
    params = client.params_version(cid, chain.paramsVersion) if chain.paramsVersion else None
    if (params_json(params) if params else None) != a.get("params"):
        out.append(f"{where}: params differ from parameter version {chain.paramsVersion} on chain")
    out += _check_tx(client, a, where)
    root, rroot = chain.readingsRoot, chain.rewardsRoot
    for i, r in enumerate(a["readings"]):
        vals = r["values"]
        if int(vals[1]) != qh:
            out.append(f"{where}: reading {i} is for qh {vals[1]}")
        if vals[0] != hex32(device_key(cid, r["supplier_id"], r["device_id"], r["flow_id"])):
            out.append(f"{where}: reading {i} deviceKey does not match its community/supplier/device/flow ids")
        if not verify(root, READINGS_TYPES, vals, r["proof"]):
            out.append(f"{where}: reading {i} ({r['device_id']}/{r['flow_id']}, {vals[2]} mWh) does not prove "
                       f"against the readings root on chain")
    for i, r in enumerate(a["rewards"]):
        if int(r["values"][1]) != qh:
            out.append(f"{where}: reward {i} is for qh {r['values'][1]}")
        if not verify(rroot, REWARDS_TYPES, r["values"], r["proof"]):
            out.append(f"{where}: reward {i} ({r['values'][0]}: {r['values'][2]}) does not prove against the "
                       f"rewards root on chain")
    if a.get("complete"):
        out += _recompute(a, chain, params, where)
    return out


def _check_tx(client: Any, a: dict[str, Any], where: str) -> list[str]:
    try:
        receipt = client.w3.eth.get_transaction_receipt(a["txHash"])
    except Exception:  # noqa: BLE001 - unknown hash or bad format: same finding
        return [f"{where}: transaction {a['txHash']} is not on chain"]
    out = []
    if int(receipt["blockNumber"]) != int(a["blockNumber"]):
        out.append(f"{where}: transaction is in block {receipt['blockNumber']}, not {a['blockNumber']}")
    events = client.notary.events.Anchored().process_receipt(receipt, errors=_discard())
    if not any(bytes(e["args"]["communityId"]) == community_id_hash(a["community_id"]) and int(e["args"]["qh"]) == int(a["qh"])
               and int(e["args"]["version"]) == int(a["version"]) for e in events):
        out.append(f"{where}: transaction {a['txHash']} did not anchor this QH and version")
    return out


def _discard() -> Any:
    from web3.logs import DISCARD

    return DISCARD


def _recompute(a: dict[str, Any], chain: AnchorData, params: Any, where: str) -> list[str]:
    out = []
    if len(a["readings"]) != chain.leafCount:
        out.append(f"{where}: complete take-out holds {len(a['readings'])} leaves, chain says {chain.leafCount}")
    rows = rows_from_takeout(a)
    agg = aggregates(rows)
    for name, mine, theirs in (("C", agg.C, chain.consumptionMwh), ("G", agg.G, chain.productionMwh),
                               ("S", agg.S, chain.sharedMwh)):
        if mine != theirs:
            out.append(f"{where}: recomputed {name} = {mine} mWh, chain says {theirs}")
    amounts = rewards(params, agg)
    stated = {r["values"][0].lower(): int(r["values"][2]) for r in a["rewards"]}
    for wallet, amount in sorted(amounts.items()):
        if stated.get(wallet.lower()) != amount:
            out.append(f"{where}: recomputed reward of {wallet} = {amount}, file says {stated.get(wallet.lower())}")
    for wallet in sorted(set(stated) - {w.lower() for w in amounts}):
        out.append(f"{where}: file rewards {wallet} {stated[wallet]}, recomputation gives nothing")
    tree, _ = rewards_tree(int(a["qh"]), amounts)
    if (tree.root if tree else b"\0" * 32) != chain.rewardsRoot or sum(amounts.values()) != chain.rewardTotal:
        out.append(f"{where}: recomputed rewards root/total differ from the chain")
    return out


def verify_lake(lake_root: str, client: Any, secrets: Any, snapshot: Any, community_id: str, qh_from: int,
                qh_to: int) -> tuple[list[str], int]:
    """Recompute every QH of the range from the lake's ``readings`` table and compare with the chain.

    Returns (problems, QHs checked). Wallet attribution uses today's registry: a membership change
    since anchoring shows up as a rewards difference.
    """
    from lakehouse.tables import open_table, query
    from oracle.anchoring import AnchorJob, LeafBuilder, anchor_data, content_of
    from oracle.qh import QhWindows

    windows = QhWindows()
    dt = open_table(f"{lake_root.rstrip('/')}/readings")
    if dt is not None:
        sql = (f"SELECT community_id, supplier_id, device_id, flow_id, message_id, ts, interval_s, energy_mwh, "
               f"account FROM t WHERE community_id = '{community_id.replace(chr(39), chr(39) * 2)}'")
        for row in query(sql, {"t": dt}).to_pylist():
            ts = int(row["ts"].timestamp())
            if qh_from <= ts < qh_to:
                row["ts"] = ts
                windows.add(row)
    builder = LeafBuilder(client, secrets, lambda: snapshot)
    problems: list[str] = []
    seen: set[int] = set()
    for (cid, qh), bucket in sorted(windows.buckets.items()):
        seen.add(qh)
        c = builder.build(AnchorJob(cid, qh, bucket.revision, bucket.sums()))
        latest = client.latest_version(cid, qh)
        if c is None:
            continue
        if latest == 0:
            problems.append(f"{cid} qh {qh}: {len(c.leaves)} leaves in the lake but nothing anchored on chain")
            continue
        mine, chain = content_of(anchor_data(c, latest)), client.get_anchor(cid, qh, latest)
        if mine != content_of(chain):
            diff = [n for n, x, y in zip(("readingsRoot", "leafCount", "C", "G", "S", "rewardsRoot", "rewardTotal",
                                          "paramsVersion"), mine, content_of(chain)) if x != y]
            problems.append(f"{cid} qh {qh}: lake recomputation differs from chain version {latest} in "
                            f"{', '.join(diff)}")
    for qh in _anchored_qhs(client, community_id, qh_from, qh_to) - seen:
        problems.append(f"{community_id} qh {qh}: anchored on chain but no readings in the lake")
    return problems, len(seen)


def _anchored_qhs(client: Any, community_id: str, qh_from: int, qh_to: int) -> set[int]:
    logs = client.notary.events.Anchored().get_logs(argument_filters={"communityId": community_id_hash(community_id)},
                                                    from_block=client.deployment.block, to_block="latest")
    return {int(e["args"]["qh"]) for e in logs if qh_from <= int(e["args"]["qh"]) < qh_to}
