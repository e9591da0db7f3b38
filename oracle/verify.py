"""Auditor checks (oracle.md §10): a take-out file against the chain, or the lake against the chain.

Every problem found is one line of text in the returned list (empty = everything verified).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_abi import decode, encode

from lec.errors import LecError
from oracle.commitment import community_id_hash, device_key
from oracle.merkle import READINGS_TYPES, REWARDS_TYPES, hex32, keccak, verify
from oracle.rewards import aggregates, rewards, rewards_tree
from oracle.takeout import SPEC, params_json, rows_from_takeout
from oracle.types import AnchorData


class VerifyError(LecError):
    """The take-out file or the chain cannot be read at all."""


def read_only_client(rpc_url: str, chain_id: int, notary: str, communities: dict[str, str]) -> Any:
    """A NotaryClient for calls only (a throwaway key: it never signs anything)."""
    from eth_account import Account

    from oracle.chain.client import Deployment, NotaryClient

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


class ChainReader:
    """Batched JSON-RPC reads of the notary (one HTTP request per 500 calls): web3's per-call
    overhead (three round trips per eth_call) made a member-year take even minutes."""

    ANCHORED_TOPIC = "0x" + keccak(b"Anchored(bytes32,uint64,uint32,bytes32,uint32,uint96,uint96,uint96,bytes32,"
                                   b"uint160,uint32)").hex()

    def __init__(self, rpc_url: str, notary: str) -> None:
        import requests

        self.url, self.notary, self.http = rpc_url, notary, requests.Session()

    def _batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(calls), 500):
            chunk = calls[start:start + 500]
            body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(chunk)]
            try:
                answers = self.http.post(self.url, json=body, timeout=60).json()
            except Exception as exc:  # noqa: BLE001 - transport errors all mean the same to the user
                raise VerifyError(f"no JSON-RPC answer from {self.url}: {type(exc).__name__}") from None
            if not isinstance(answers, list):
                raise VerifyError(f"{self.url} does not answer JSON-RPC batches: {answers}")
            by_id = {a.get("id"): a for a in answers}
            out += [by_id.get(i, {}).get("result") for i in range(len(chunk))]
        return out

    def _eth_calls(self, datas: list[bytes]) -> list[bytes | None]:
        res = self._batch([("eth_call", [{"to": self.notary, "data": "0x" + d.hex()}, "latest"]) for d in datas])
        return [bytes.fromhex(r[2:]) if isinstance(r, str) else None for r in res]

    def anchors(self, keys: list[tuple[str, int, int]]) -> list[AnchorData | None]:
        sel = keccak(b"getAnchor(bytes32,uint64,uint32)")[:4]
        raw = self._eth_calls([sel + encode(["bytes32", "uint64", "uint32"], [community_id_hash(c), q, v])
                               for c, q, v in keys])
        out: list[AnchorData | None] = []
        for (cid, qh, version), r in zip(keys, raw):
            if not r:
                out.append(None)
                continue
            rr, wr, n, pv, c, g, sh, total = decode(["bytes32", "bytes32", "uint32", "uint32", "uint96", "uint96",
                                                     "uint96", "uint160"], r)
            out.append(AnchorData(cid, community_id_hash(cid), qh, version, rr, n, c, g, sh, wr, total, pv))
        return out

    def latest_versions(self, keys: list[tuple[str, int]]) -> list[int]:
        sel = keccak(b"latestVersions(bytes32[],uint64[])")[:4]
        out: list[int] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            data = sel + encode(["bytes32[]", "uint64[]"], [[community_id_hash(c) for c, _ in chunk],
                                                            [q for _, q in chunk]])
            r = self._eth_calls([data])[0]
            out += list(decode(["uint32[]"], r)[0]) if r else [0] * len(chunk)
        return out

    def anchored_by_tx(self, hashes: list[str]) -> dict[str, tuple[int, set[tuple[bytes, int, int]]] | None]:
        """tx hash -> (block, {(communityId, qh, version)} it anchored), None if unknown."""
        unique = sorted(set(hashes))
        receipts = self._batch([("eth_getTransactionReceipt", [h]) for h in unique])
        out: dict[str, tuple[int, set[tuple[bytes, int, int]]] | None] = {}
        for h, rec in zip(unique, receipts):
            if not isinstance(rec, dict):
                out[h] = None
                continue
            anchored = {(bytes.fromhex(lg["topics"][1][2:]), int(lg["topics"][2], 16), int(lg["topics"][3], 16))
                        for lg in rec.get("logs", []) if lg["address"].lower() == self.notary.lower()
                        and lg["topics"] and lg["topics"][0] == self.ANCHORED_TOPIC}
            out[h] = (int(rec["blockNumber"], 16), anchored)
        return out


def verify_takeout(doc: dict[str, Any], rpc_url: str, *, warn: Callable[[str], None] | None = None) -> list[str]:
    """Check every proof against the roots on chain; for complete QHs recompute C, G, S and rewards."""
    if not isinstance(doc, dict) or doc.get("spec") != SPEC:
        raise VerifyError(f"not a take-out file of spec {SPEC}")
    communities = {a["community_id"]: doc.get("token") or "0x" + "00" * 20 for a in doc.get("anchors", [])}
    client = read_only_client(rpc_url, int(doc["chainId"]), doc["notary"], communities)
    anchors = doc.get("anchors", [])
    reader = ChainReader(rpc_url, doc["notary"])
    try:
        keys = [(a["community_id"], int(a["qh"]), int(a["version"])) for a in anchors]
        chain = dict(zip(keys, reader.anchors(keys)))
        latest = dict(zip([k[:2] for k in keys], reader.latest_versions([k[:2] for k in keys])))
        txs = reader.anchored_by_tx([str(a["txHash"]) for a in anchors])
    except (KeyError, TypeError, ValueError) as exc:
        raise VerifyError(f"take-out anchors are malformed: {type(exc).__name__}: {exc}") from None
    from lec.progress import progress

    problems: list[str] = []
    with progress("verifying quarter-hours", total=len(anchors)) as advance:  # a bar on a terminal only
        for a, key in zip(anchors, keys):
            try:
                problems += _verify_anchor(client, a, chain[key], latest[key[:2]], txs.get(str(a["txHash"])), warn)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                problems.append(f"{a.get('community_id')} qh {a.get('qh')}: malformed entry "
                                f"({type(exc).__name__}: {exc})")
            advance()
    return problems


def _verify_anchor(client: Any, a: dict[str, Any], chain: AnchorData | None, latest: int,
                   tx: tuple[int, set[tuple[bytes, int, int]]] | None,
                   warn: Callable[[str], None] | None) -> list[str]:
    cid, qh, version = a["community_id"], int(a["qh"]), int(a["version"])
    where = f"{cid} qh {qh} v{version}"
    out: list[str] = []
    if a["communityId"] != hex32(community_id_hash(cid)):
        out.append(f"{where}: communityId is not keccak256(community_id)")
    if chain is None:
        return [*out, f"{where}: not anchored on chain"]
    if latest != version and warn is not None:
        warn(f"{where}: chain has a newer version {latest} (claims use the latest)")
    on_chain = _chain_fields(chain)
    for name, value in _anchor_fields(a).items():
        if value != on_chain[name]:
            out.append(f"{where}: {name} is {value} in the file but {on_chain[name]} on chain")
    params = client.params_version(cid, chain.paramsVersion) if chain.paramsVersion else None
    if (params_json(params) if params else None) != a.get("params"):
        out.append(f"{where}: params differ from parameter version {chain.paramsVersion} on chain")
    out += _check_tx(tx, a, where)
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


def _check_tx(found: tuple[int, set[tuple[bytes, int, int]]] | None, a: dict[str, Any], where: str) -> list[str]:
    if found is None:
        return [f"{where}: transaction {a['txHash']} is not on chain"]
    block, anchored = found
    out = []
    if block != int(a["blockNumber"]):
        out.append(f"{where}: transaction is in block {block}, not {a['blockNumber']}")
    if (community_id_hash(a["community_id"]), int(a["qh"]), int(a["version"])) not in anchored:
        out.append(f"{where}: transaction {a['txHash']} did not anchor this QH and version")
    return out


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
    reader = ChainReader(client.w3.provider.endpoint_uri, client.deployment.notary)
    problems: list[str] = []
    seen: set[int] = set()
    built = []
    for (cid, qh), bucket in sorted(windows.buckets.items()):
        seen.add(qh)
        c = builder.build(AnchorJob(cid, qh, bucket.revision, bucket.sums()))
        if c is not None:
            built.append(c)
    latest = reader.latest_versions([(c.community_id, c.qh) for c in built])
    on_chain = reader.anchors([(c.community_id, c.qh, v) for c, v in zip(built, latest) if v])
    chain_by_qh = {a.qh: a for a in on_chain if a is not None}
    names = ("readingsRoot", "leafCount", "C", "G", "S", "rewardsRoot", "rewardTotal", "paramsVersion")
    for c, v in zip(built, latest):
        if v == 0:
            problems.append(f"{c.community_id} qh {c.qh}: {len(c.leaves)} leaves in the lake but nothing anchored on chain")
            continue
        mine, theirs = content_of(anchor_data(c, v)), content_of(chain_by_qh[c.qh])
        if mine != theirs:
            diff = [n for n, x, y in zip(names, mine, theirs) if x != y]
            problems.append(f"{c.community_id} qh {c.qh}: lake recomputation differs from chain version {v} in "
                            f"{', '.join(diff)}")
    for qh in _anchored_qhs(client, community_id, qh_from, qh_to) - seen:
        problems.append(f"{community_id} qh {qh}: anchored on chain but no readings in the lake")
    return problems, len(seen)


def _anchored_qhs(client: Any, community_id: str, qh_from: int, qh_to: int) -> set[int]:
    logs = client.notary.events.Anchored().get_logs(argument_filters={"communityId": community_id_hash(community_id)},
                                                    from_block=client.deployment.block, to_block="latest")
    return {int(e["args"]["qh"]) for e in logs if qh_from <= int(e["args"]["qh"]) < qh_to}
