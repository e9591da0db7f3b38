"""From closed QHs to anchors on chain, idempotently (oracle.md §9).

For each closed QH whose content changed, the anchorer builds the leaves (deviceKey, salt from
the device secret, wallet of the owning member), both trees and the aggregates, then compares
with what is already anchored: first the local ``anchors`` table, else the chain
(``latest_version`` + ``get_anchor``). Equal content is never anchored again; different content
becomes version latest+1. The chain is the authority: after a crash between the transaction and
the lake write, the restart finds the content on chain and only back-fills the records.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from eth_utils import to_checksum_address

from oracle.commitment import community_id_hash, device_key, salt
from oracle.qh import LeafId
from oracle.rewards import Leaf, QhCommitment, commit
from oracle.store import LeafRow, OracleLake, anchor_record
from oracle.types import AnchorData, RewardParams

log = logging.getLogger("lec.oracle")

Content = tuple[bytes, int, int, int, int, bytes, int, int]


@dataclass(frozen=True)
class AnchorJob:
    """A copy of one closed QH's content, taken on the event loop, safe to process in a thread."""

    community_id: str
    qh: int
    revision: int
    sums: dict[LeafId, tuple[int, int]]  # leaf id -> (account, mWh)


def content_of(a: AnchorData) -> Content:
    return (a.readingsRoot, a.leafCount, a.consumptionMwh, a.productionMwh, a.sharedMwh, a.rewardsRoot,
            a.rewardTotal, a.paramsVersion)


def content_of_record(r: dict[str, Any]) -> Content:
    return (bytes.fromhex(r["readingsRoot"][2:]), int(r["leafCount"]), int(r["consumptionMwh"]),
            int(r["productionMwh"]), int(r["sharedMwh"]), bytes.fromhex(r["rewardsRoot"][2:]),
            int(r["rewardTotal"]), int(r["paramsVersion"]))


def anchor_data(c: QhCommitment, version: int) -> AnchorData:
    return AnchorData(
        community_id=c.community_id, communityId=community_id_hash(c.community_id), qh=c.qh, version=version,
        readingsRoot=c.readings_root, leafCount=len(c.leaves), consumptionMwh=c.agg.C, productionMwh=c.agg.G,
        sharedMwh=c.agg.S, rewardsRoot=c.rewards_root, rewardTotal=c.reward_total, paramsVersion=c.params_version)


def leaf_rows(c: QhCommitment, version: int) -> list[LeafRow]:
    return [LeafRow(lf.community_id, lf.qh, version, lf.supplier_id, lf.device_id, lf.flow_id, lf.account,
                    "0x" + lf.device_key.hex(), lf.energy_mwh, lf.wallet, "0x" + c.readings_tree.leaf(i).hex())
            for i, lf in enumerate(c.leaves)]


def params_in_force(client: Any, community_id: str, qh: int) -> tuple[int, RewardParams | None]:
    """(version, params) in force for the QH as read from the chain; (0, None) when none applies."""
    version = client.params_version_at(community_id, qh)
    return (version, client.params_version(community_id, version)) if version else (0, None)


class ParamsBook:
    """Every parameter version of each community, read from the chain once and then only probed
    for a newer version (one call per community and anchoring round instead of one per QH).
    The notary keeps ``effectiveFrom`` non-decreasing, so the version in force for a qh is the
    number of versions with ``effectiveFrom <= qh``, exactly as ``paramsVersionAt`` computes it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.versions: dict[str, list[RewardParams]] = {}

    def refresh(self, community_id: str) -> None:
        from oracle.chain.client import NoParamsError

        known = self.versions.setdefault(community_id, [])
        while True:
            try:
                known.append(self.client.params_version(community_id, len(known) + 1))
            except NoParamsError:
                return

    def in_force(self, community_id: str, qh: int) -> tuple[int, RewardParams | None]:
        if community_id not in self.versions:
            self.refresh(community_id)
        version = bisect.bisect_right([p.effectiveFrom for p in self.versions[community_id]], qh)
        return (version, self.versions[community_id][version - 1]) if version else (0, None)


class LeafBuilder:
    """Builds one QH's commitment: leaves with salts and owning wallets, params from the chain."""

    def __init__(self, client: Any, secrets: Any, snapshot: Callable[[], Any]) -> None:
        self.client = client
        self.secrets = secrets
        self.snapshot = snapshot
        self._secret_cache: dict[str, bytes] = {}  # in memory only, never logged
        self.params = ParamsBook(client)

    def _secrets_for(self, device_ids: set[str]) -> dict[str, bytes]:
        missing = [d for d in device_ids if d not in self._secret_cache]
        if missing:
            self._secret_cache.update(self.secrets.get_many(missing))
        return {d: self._secret_cache[d] for d in device_ids if d in self._secret_cache}

    def build(self, job: AnchorJob) -> QhCommitment | None:
        """Leaves, trees, aggregates and rewards of one QH; None if no leaf can be committed."""
        snap = self.snapshot()
        secrets = self._secrets_for({dev for (_, dev, _) in job.sums})
        leaves = []
        for (supplier_id, device_id, flow_id), (account, energy) in job.sums.items():
            secret = secrets.get(device_id)
            if secret is None:
                log.warning("device %s has no secret (erased or unknown): its leaf is left out of %s qh %d",
                            device_id, job.community_id, job.qh)
                continue
            key = device_key(job.community_id, supplier_id, device_id, flow_id)
            member = snap.member_of_device(device_id) if snap is not None else None
            wallet = to_checksum_address(member.wallet) if member is not None and member.active else None
            leaves.append(Leaf(job.community_id, supplier_id, device_id, flow_id, account, key, job.qh, energy,
                               salt(secret, key, job.qh), wallet))
        if not leaves:
            return None
        version, params = self.params.in_force(job.community_id, job.qh)
        return commit(job.community_id, job.qh, leaves, params, version)


class Anchorer:
    """Turns AnchorJobs into anchors; every dependency is passed in (chain client, lake, secrets)."""

    def __init__(self, client: Any, lake: OracleLake, secrets: Any, snapshot: Callable[[], Any], *,
                 chain_id: int, notary: str, publish: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.client = client
        self.lake = lake
        self.builder = LeafBuilder(client, secrets, snapshot)
        self.chain_id = chain_id
        self.notary = notary
        self.publish = publish
        self.known: dict[tuple[str, int], tuple[int, Content]] = {
            key: (int(r["version"]), content_of_record(r)) for key, r in lake.latest_anchors().items()}
        self.anchored = 0
        self.unchanged = 0

    def _latest_versions(self, jobs: list[AnchorJob]) -> list[int]:
        """Latest anchored version of each job's QH (one batched call per 500 when the client has it)."""
        if not jobs:
            return []
        batched = getattr(self.client, "_latest_versions", None)  # Notary.latestVersions: one eth_call
        if batched is not None:
            return batched([SimpleNamespace(community_id=j.community_id, qh=j.qh) for j in jobs])
        return [self.client.latest_version(j.community_id, j.qh) for j in jobs]

    def run(self, jobs: list[AnchorJob]) -> tuple[list[tuple[AnchorJob, QhCommitment | None, int]], int]:
        """Anchor what changed. Returns (settled jobs with their commitment and version, anchors sent)."""
        settled: list[tuple[AnchorJob, QhCommitment | None, int]] = []
        to_send: list[tuple[AnchorJob, QhCommitment, AnchorData]] = []
        backfill: list[tuple[QhCommitment, int]] = []
        old_versions: list[tuple[str, int, int]] = []
        for cid in {j.community_id for j in jobs}:
            self.builder.params.refresh(cid)
        changed: list[tuple[AnchorJob, QhCommitment, Content]] = []
        for job in jobs:
            c = self.builder.build(job)
            if c is None:
                settled.append((job, None, 0))
                continue
            mine = content_of(anchor_data(c, 0))
            known = self.known.get((job.community_id, job.qh))
            if known is not None and known[1] == mine:
                self.unchanged += 1
                settled.append((job, c, known[0]))
            else:
                changed.append((job, c, mine))
        for (job, c, mine), latest in zip(changed, self._latest_versions([j for j, _, _ in changed])):
            known = self.known.get((job.community_id, job.qh))
            # versions on chain that our records lack (a crash after their transaction): their
            # anchor records are back-filled from the chain; leaves only for content we hold
            unrecorded = list(range((known[0] if known else 0) + 1, latest + 1))
            if latest and content_of(self.client.get_anchor(job.community_id, job.qh, latest)) == mine:
                self.unchanged += 1
                backfill.append((c, latest))
                settled.append((job, c, latest))
                unrecorded.remove(latest)
            else:
                to_send.append((job, c, anchor_data(c, latest + 1)))
            old_versions.extend((job.community_id, job.qh, v) for v in unrecorded)
        records: list[dict[str, Any]] = []
        rows: list[LeafRow] = []
        for cid, qh, version in old_versions:
            tx = self.client.anchor_tx(cid, qh, version)
            records.append(anchor_record(self.client.get_anchor(cid, qh, version), tx.txHash, tx.blockNumber,
                                         self.chain_id, self.notary))
        for c, version in backfill:
            tx = self.client.anchor_tx(c.community_id, c.qh, version)
            records.append(anchor_record(anchor_data(c, version), tx.txHash, tx.blockNumber, self.chain_id, self.notary))
            rows.extend(leaf_rows(c, version))
        if to_send:
            results = self.client.submit_anchors([d for _, _, d in to_send])
            for (job, c, data), tx in zip(to_send, results):
                records.append(anchor_record(data, tx.txHash, tx.blockNumber, self.chain_id, self.notary))
                rows.extend(leaf_rows(c, data.version))
                settled.append((job, c, data.version))
                self.anchored += 1
                log.info("anchored %s qh %d version %d: %d leaves, C=%d G=%d S=%d, rewards %d (tx %s)",
                         c.community_id, c.qh, data.version, data.leafCount, data.consumptionMwh,
                         data.productionMwh, data.sharedMwh, data.rewardTotal, tx.txHash)
        if records:
            # Kafka first (at-least-once: a crash before the lake write republishes after the
            # restart), then the lake, whose anchors table is what "already recorded" means.
            if self.publish is not None:
                self.publish(records)
            self.lake.append_leaves(rows)
            self.lake.append_anchors(records)
            for r in records:
                self.known[(r["community_id"], r["qh"])] = (r["version"], content_of_record(r))
        return settled, len(to_send)
