"""Claims on members' behalf (oracle.md §9): members see tokens without acting.

Every anchored QH with rewards joins the pending list (its latest version, each member's amount
and proof). On a schedule the claimer sends ``claimBatch`` transactions per community; the
contract mints only ``amount`` minus what the wallet already claimed for the QH, so a repeated
claim (after a crash) mints nothing. Claimed versions go to the ``oracle_claims`` table so a
restart does not claim them again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from oracle.rewards import QhCommitment, aggregates, rewards, rewards_tree

log = logging.getLogger("lec.oracle")

ClaimItem = tuple[int, str, int, list[bytes]]  # qh, wallet, amount, proof


def claim_items(c: QhCommitment) -> list[ClaimItem]:
    if c.rewards_tree is None:
        return []
    return [(c.qh, w, c.rewards[w], c.rewards_tree.proof(i)) for i, w in enumerate(c.wallets)]


class Claimer:
    def __init__(self, client: Any, lake: Any, batch_size: int = 100) -> None:
        self.client = client
        self.lake = lake
        self.batch_size = batch_size
        self.pending: dict[tuple[str, int], tuple[int, list[ClaimItem]]] = {}
        self.claimed_count = 0

    def add(self, c: QhCommitment, version: int) -> None:
        items = claim_items(c)
        if items:
            self.pending[(c.community_id, c.qh)] = (version, items)
        else:
            self.pending.pop((c.community_id, c.qh), None)

    def load_unclaimed(self) -> int:
        """At start: every latest anchor with rewards not yet recorded as claimed."""
        done = self.lake.claimed()
        by_community: dict[str, list[dict[str, Any]]] = {}
        for (cid, qh), rec in self.lake.latest_anchors().items():
            if int(rec["rewardTotal"]) > 0 and (cid, qh, rec["version"]) not in done:
                by_community.setdefault(cid, []).append(rec)
        for cid, recs in by_community.items():
            lo, hi = min(r["qh"] for r in recs), max(r["qh"] for r in recs) + 900
            leaves = self.lake.leaves_range(cid, lo, hi)
            for rec in recs:
                rows = leaves.get((rec["qh"], rec["version"]))
                if not rows:
                    continue
                params = self.client.params_version(cid, rec["paramsVersion"]) if rec["paramsVersion"] else None
                amounts = rewards(params, aggregates(rows))
                tree, wallets = rewards_tree(rec["qh"], amounts)
                if tree is None or "0x" + tree.root.hex() != rec["rewardsRoot"]:
                    log.warning("rewards of %s qh %d do not rebuild from the lake; not claimed", cid, rec["qh"])
                    continue
                self.pending[(cid, rec["qh"])] = (
                    rec["version"], [(rec["qh"], w, amounts[w], tree.proof(i)) for i, w in enumerate(wallets)])
        return len(self.pending)

    def run_once(self) -> int:
        """Claim everything pending, one transaction per community and batch. Returns claims sent."""
        by_community: dict[str, list[tuple[int, int, list[ClaimItem]]]] = {}
        for (cid, qh), (version, items) in sorted(self.pending.items()):
            if self.client.latest_version(cid, qh) != version:
                # a newer version exists (its own entry comes with it): claims prove against the latest
                log.info("%s qh %d version %d superseded on chain; not claimed", cid, qh, version)
                del self.pending[(cid, qh)]
                continue
            by_community.setdefault(cid, []).append((qh, version, items))
        sent = 0
        for cid, entries in by_community.items():
            for chunk in _chunks(entries, self.batch_size):
                claims = [item for _, _, items in chunk for item in items]
                tx = self.client.claim_batch(cid, claims)
                self.lake.append_claims([{"community_id": cid, "qh": qh, "version": v, "txHash": tx.txHash,
                                          "blockNumber": tx.blockNumber} for qh, v, _ in chunk])
                for qh, v, _ in chunk:
                    if self.pending.get((cid, qh), (None,))[0] == v:
                        del self.pending[(cid, qh)]
                sent += len(claims)
                log.info("claimed %d rewards of %d QHs for members of %s (tx %s)", len(claims), len(chunk), cid,
                         tx.txHash)
        self.claimed_count += sent
        return sent


def _chunks(entries: Sequence[Any], size: int) -> list[Sequence[Any]]:
    # a chunk holds whole QHs, about `size` claims each
    out, cur, n = [], [], 0
    for e in entries:
        cur.append(e)
        n += len(e[2])
        if n >= size:
            out.append(cur)
            cur, n = [], 0
    if cur:
        out.append(cur)
    return out
