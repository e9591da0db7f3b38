"""Take-out files (oracle.md §10): per QH the leaf values with salts, proofs, roots, the anchor's
transaction and the parameters read from the chain.

Built from the oracle's lake tables (``anchors`` and ``oracle_leaves``, which hold leaf hashes
but never salts); salts are derived on demand from the secret store. A leaf whose device has no
secret any more (erased) cannot be disclosed: it is left out and the QH is marked incomplete.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lec.errors import LecError
from oracle.commitment import salt
from oracle.merkle import READINGS_TYPES, StandardMerkleTree, hex32, to_bytes32
from oracle.rewards import ACCOUNT_NAMES, aggregates, rewards, rewards_tree
from oracle.store import LeafRow, OracleLake

SPEC = "lec-oracle/1"


class TakeoutError(LecError):
    """A take-out cannot be produced."""


class TakeoutInconsistentError(TakeoutError):
    """The lake's leaves do not rebuild the root anchored on chain."""


def params_json(p: Any) -> dict[str, Any]:
    d = asdict(p)
    return {k: (str(v) if k in ("rateConsumption", "rateProduction", "rateNoPeak", "peakMwh") else int(v))
            for k, v in d.items()}


def build_takeout(lake: OracleLake, client: Any, secrets: Any, *, community_id: str, qh_from: int, qh_to: int,
                  member: str | None = None, device: str | None = None) -> dict[str, Any]:
    """The take-out of a whole community (``complete``), of one member's wallet or of one device."""
    deployment = client.deployment
    anchors = lake.latest_anchors(community_id, qh_from, qh_to)
    leaves = lake.leaves_range(community_id, qh_from, qh_to)
    out_anchors = []
    secret_cache: dict[str, bytes] = {}
    wanted_wallet = member.lower() if member else None
    for (cid, qh), rec in sorted(anchors.items(), key=lambda kv: kv[0][1]):
        rows = sorted(leaves.get((qh, rec["version"]), []), key=lambda r: r.leaf_hash)
        if not rows:
            continue
        tree = StandardMerkleTree.from_leaf_hashes([to_bytes32(r.leaf_hash) for r in rows], rows, READINGS_TYPES)
        if hex32(tree.root) != rec["readingsRoot"] or len(rows) != rec["leafCount"]:
            raise TakeoutInconsistentError(
                f"{cid} qh {qh} version {rec['version']}: the oracle_leaves table does not rebuild the anchored "
                f"readings root; run `lec audit verify --community {cid}` to compare lake and chain")
        params = client.params_version(cid, rec["paramsVersion"]) if rec["paramsVersion"] else None
        amounts = rewards(params, aggregates(rows))
        rtree, wallets = rewards_tree(qh, amounts)
        if (hex32(rtree.root) if rtree else "0x" + "00" * 32) != rec["rewardsRoot"]:
            raise TakeoutInconsistentError(f"{cid} qh {qh}: rewards do not rebuild the anchored rewards root")
        if device is not None:
            mine = [i for i, r in enumerate(rows) if r.device_id == device]
            owner = {rows[i].wallet.lower() for i in mine if rows[i].wallet}
        elif wanted_wallet is not None:
            mine = [i for i, r in enumerate(rows) if r.wallet and r.wallet.lower() == wanted_wallet]
            owner = {wanted_wallet}
        else:
            mine, owner = list(range(len(rows))), None
        if not mine:
            continue
        # an erased device's leaves carry no device id any more (GDPR): nothing to look up, nothing to disclose
        missing = [rows[i].device_id for i in mine if rows[i].device_id is not None and rows[i].device_id not in secret_cache]
        if missing:
            secret_cache.update(secrets.get_many(sorted(set(missing))))
        readings = []
        for i in mine:
            r = rows[i]
            secret = secret_cache.get(r.device_id)
            if secret is None:
                continue  # erased device: its values can no longer be disclosed
            readings.append({
                "values": [r.device_key, str(qh), str(r.energy_mwh), hex32(salt(secret, to_bytes32(r.device_key), qh))],
                "proof": [hex32(p) for p in tree.proof(i)], "community_id": cid, "supplier_id": r.supplier_id,
                "device_id": r.device_id, "flow_id": r.flow_id, "account": ACCOUNT_NAMES[r.account],
                "wallet": r.wallet})
        reward_items = [{"values": [w, str(qh), str(amounts[w])], "proof": [hex32(p) for p in rtree.proof(j)]}
                        for j, w in enumerate(wallets) if owner is None or w.lower() in owner]
        out_anchors.append({
            "community_id": cid, "communityId": rec["communityId"], "qh": qh, "version": rec["version"],
            "readingsRoot": rec["readingsRoot"], "leafCount": rec["leafCount"],
            "consumptionMwh": rec["consumptionMwh"], "productionMwh": rec["productionMwh"],
            "sharedMwh": rec["sharedMwh"], "rewardsRoot": rec["rewardsRoot"], "rewardTotal": rec["rewardTotal"],
            "paramsVersion": rec["paramsVersion"], "params": params_json(params) if params else None,
            "txHash": rec["txHash"], "blockNumber": rec["blockNumber"],
            "complete": owner is None and len(readings) == rec["leafCount"],
            "readings": readings, "rewards": reward_items})
    return {"spec": SPEC, "chainId": deployment.chainId, "notary": deployment.notary,
            "token": deployment.tokens.get(community_id, ""), "anchors": out_anchors}


def rows_from_takeout(anchor: dict[str, Any]) -> list[LeafRow]:
    """Leaves of a take-out anchor as rows (for recomputing aggregates and rewards)."""
    from oracle.rewards import ACCOUNT_CODES

    return [LeafRow(anchor["community_id"], anchor["qh"], anchor["version"], r["supplier_id"], r["device_id"],
                    r["flow_id"], ACCOUNT_CODES.get(r["account"], 0), r["values"][0], int(r["values"][2]),
                    r.get("wallet"), "") for r in anchor["readings"]]
