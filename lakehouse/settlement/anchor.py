"""Anchoring a settled month on the notary, and members' statements (JSON + a self-verifying page).

``anchor_month`` sends the latest stored version's statements root and inputs' digest with
``Notary.anchorSettlement`` (oracle role), as chain version latest+1, unless the chain's latest
version already holds that content (then it only records it): re-running is harmless.

``write_statement`` writes ``<out>/<community>-<month>-<user>.json`` (leaf values, proof, the
anchor's coordinates, the member's figures and days) and the same name ``.html``: a page that
recomputes the leaf, reads the root from the chain over JSON-RPC (``getSettlement``) and verifies
the proof with OpenZeppelin's merkle-tree library bundled into the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lakehouse.settlement.rules import SettlementRuleError
from lakehouse.settlement.statements import STATEMENT_TYPES
from lakehouse.settlement.store import ANCHORS, MEMBER_DAYS, MEMBERS, SettlementStore, sql_quote
from oracle.merkle import hex32

WEB = Path(__file__).parent / "web"


class NotSettledError(SettlementRuleError):
    """The month has no stored settlement (or no anchor) yet."""


def _period(month: str) -> int:
    y, m = month.split("-")
    return int(y) * 100 + int(m)


def anchor_month(store: SettlementStore, client: Any, community_id: str, month: str) -> dict[str, Any]:
    """Anchor the latest version of the month; returns the anchor record (see module doc)."""
    latest = store.latest(community_id, month)
    if latest is None:
        raise NotSettledError(f"{community_id} {month} is not settled yet: run `lec settlement run` first")
    done = store.rows(ANCHORS, community_id, month, version=int(latest["version"]))
    if done:
        return {**done[-1], "sent": False}
    period = _period(month)
    content = {"statementsRoot": bytes.fromhex(latest["statements_root"][2:]),
               "inputsDigest": bytes.fromhex(latest["inputs_digest"][2:]),
               "totalCents": int(latest["total_cents"]), "memberCount": int(latest["member_count"])}
    on_chain = client.latest_settlement_version(community_id, period)
    sent = True
    if on_chain and client.get_settlement(community_id, period, on_chain) == content:
        chain_version, sent = on_chain, False
        tx_hash, block = _anchor_event(client, community_id, period, on_chain)
    else:
        chain_version = on_chain + 1
        tx = client.anchor_settlement(community_id, period, chain_version, content["statementsRoot"],
                                      content["inputsDigest"], content["totalCents"], content["memberCount"])
        tx_hash, block = tx.txHash, tx.blockNumber
    record = {"community_id": community_id, "month": month, "version": int(latest["version"]),
              "chain_version": chain_version, "statements_root": latest["statements_root"],
              "inputs_digest": latest["inputs_digest"], "total_cents": int(latest["total_cents"]),
              "member_count": int(latest["member_count"]), "chainId": int(client.deployment.chainId),
              "notary": client.deployment.notary, "txHash": tx_hash, "blockNumber": int(block)}
    store.append(ANCHORS, [record])
    return {**record, "sent": sent}


def _anchor_event(client: Any, community_id: str, period: int, version: int) -> tuple[str, int]:
    from oracle.chain.client import community_key

    logs = list(client.notary.events.SettlementAnchored().get_logs(
        argument_filters={"communityId": community_key(community_id), "period": period, "version": version},
        from_block=client.deployment.block, to_block="latest"))
    if not logs:
        return "", 0
    return "0x" + bytes(logs[-1]["transactionHash"]).hex(), int(logs[-1]["blockNumber"])


def statement(store: SettlementStore, community_id: str, month: str, member: str, rpc_url: str) -> dict[str, Any]:
    """The member's statement of the latest anchored version (``member``: user id or wallet)."""
    from oracle.commitment import community_id_hash

    latest = store.latest(community_id, month)
    if latest is None:
        raise NotSettledError(f"{community_id} {month} is not settled yet: run `lec settlement run` first")
    version = int(latest["version"])
    anchors = store.rows(ANCHORS, community_id, month, version=version)
    if not anchors:
        raise NotSettledError(f"{community_id} {month} version {version} is not anchored yet: run "
                              "`lec settlement anchor` first")
    rows = store.rows(MEMBERS, community_id, month, version=version)
    row = next((r for r in rows if member in (r["user_id"], r["wallet"], str(r["wallet"]).lower())), None)
    if row is None:
        raise NotSettledError(f"'{member}' is not a member in the {community_id} {month} settlement "
                              f"(members: {', '.join(sorted(r['user_id'] for r in rows))})")
    from lakehouse.settlement.statements import leaf_values

    values = leaf_values(row["wallet"], _period(month), row)
    days = [{k: d[k] for k in ("local_day", "withdrawal_mwh", "injection_mwh", "counted_withdrawal_mwh",
                               "counted_injection_mwh", "shared_hours")}
            for d in sorted(store.rows(MEMBER_DAYS, community_id, month, version=version,
                                       where=f"user_id = {sql_quote(row['user_id'])}"),
                            key=lambda d: d["local_day"])]
    a = anchors[-1]
    return {
        "spec": "lec-settlement/1", "community_id": community_id, "communityId": hex32(community_id_hash(community_id)),
        "month": month, "period": _period(month), "version": version, "chainVersion": int(a["chain_version"]),
        "chainId": int(a["chainId"]), "notary": a["notary"], "rpc": rpc_url, "txHash": a["txHash"],
        "blockNumber": int(a["blockNumber"]), "statementsRoot": a["statements_root"],
        "inputsDigest": a["inputs_digest"], "user_id": row["user_id"],
        "leaf": {"types": list(STATEMENT_TYPES), "values": [str(v) for v in values]},
        "proof": json.loads(row["proof"]),
        "figures": {"producer_cents": row["producer_cents"], "consumer_cents": row["consumer_cents"],
                    "withdrawal_mwh": row["withdrawal_mwh"], "injection_mwh": row["injection_mwh"],
                    "shared_hours": row["shared_hours"]},
        "days": days,
    }


def render_html(doc: dict[str, Any]) -> str:
    """The statement page: the statement, the bundled verifier and the page script inline."""
    template = (WEB / "statement.html").read_text(encoding="utf-8")
    data = json.dumps(doc, indent=1).replace("</", "<\\/")
    bundle = (WEB / "verify.bundle.js").read_text(encoding="utf-8").replace("</script", "<\\/script")
    return template.replace("/*STATEMENT*/null", data).replace("/*BUNDLE*/", bundle)


def write_statement(doc: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"{doc['community_id']}-{doc['month']}-{doc['user_id']}"
    json_path, html_path = base.with_suffix(".json"), base.with_suffix(".html")
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    html_path.write_text(render_html(doc), encoding="utf-8")
    return json_path, html_path


class StatementNotVerifiedError(SettlementRuleError):
    """A statement's proof does not lead to the root anchored on chain."""


def verify_statement(doc: dict[str, Any], rpc_url: str | None = None) -> dict[str, Any]:
    """The page's check in Python: the statement's leaf and proof against ``getSettlement`` on chain."""
    from oracle.chain.token import contract_at
    from oracle.chain.tx import connect
    from oracle.commitment import community_id_hash
    from oracle.merkle import verify

    w3 = connect(rpc_url or doc["rpc"])
    notary = contract_at(w3, "Notary", w3.to_checksum_address(doc["notary"]))
    cid = community_id_hash(doc["community_id"])
    if hex32(cid) != str(doc["communityId"]).lower() or str(doc["leaf"]["values"][1]) != str(doc["period"]):
        raise StatementNotVerifiedError("the statement's community or month does not match its leaf")
    root = bytes(notary.functions.getSettlement(cid, int(doc["period"]), int(doc["chainVersion"])).call()[0])
    latest = int(notary.functions.latestSettlementVersion(cid, int(doc["period"])).call())
    if not verify(root, doc["leaf"]["types"], doc["leaf"]["values"], doc["proof"]):
        raise StatementNotVerifiedError(f"the proof does not lead to the root anchored on chain ({hex32(root)})")
    return {"verified": True, "root": hex32(root), "chainVersion": int(doc["chainVersion"]), "latestChainVersion": latest,
            "amount_cents": int(doc["leaf"]["values"][2])}
