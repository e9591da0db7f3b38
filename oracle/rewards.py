"""Leaves, aggregates and rewards of one (community, QH): oracle.md §5-8, exact integer arithmetic."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from oracle.merkle import READINGS_TYPES, REWARDS_TYPES, ZERO32, StandardMerkleTree, leaf_hash
from oracle.types import RewardParams

CONSUMPTION, PRODUCTION = 1, 2
ACCOUNT_NAMES = {CONSUMPTION: "consumption", PRODUCTION: "production"}
ACCOUNT_CODES = {v: k for k, v in ACCOUNT_NAMES.items()}


@dataclass(frozen=True)
class Leaf:
    """One (device, flow) in one QH, with what the rewards need (account, owning wallet)."""

    community_id: str
    supplier_id: str
    device_id: str
    flow_id: str
    account: int               # 1 consumption, 2 production
    device_key: bytes
    qh: int
    energy_mwh: int
    salt: bytes
    wallet: str | None = None  # member owning the device's user, None when no member

    @property
    def values(self) -> list[object]:
        return [self.device_key, self.qh, self.energy_mwh, self.salt]


@dataclass(frozen=True)
class Aggregates:
    C: int
    G: int
    S: int
    per_member: dict[str, tuple[int, int, bool]] = field(default_factory=dict)  # wallet -> (C_m, G_m, has consumption leaf)


def aggregates(leaves: Iterable[Leaf]) -> Aggregates:
    """§6: C, G over all leaves; C_m, G_m over each member's leaves; S = min(C, G)."""
    C = G = 0
    per: dict[str, list] = {}
    for leaf in leaves:
        c = max(leaf.energy_mwh, 0) if leaf.account == CONSUMPTION else 0
        g = max(-leaf.energy_mwh, 0) if leaf.account == PRODUCTION else 0
        C += c
        G += g
        if leaf.wallet is not None:
            m = per.setdefault(leaf.wallet, [0, 0, False])
            m[0] += c
            m[1] += g
            m[2] = m[2] or leaf.account == CONSUMPTION
    return Aggregates(C, G, min(C, G), {w: (v[0], v[1], v[2]) for w, v in per.items()})


def member_reward(p: RewardParams, agg: Aggregates, c_m: int, g_m: int, has_consumption: bool) -> int:
    """§7: r_m for models 1, 2, 3 (floor of non-negative integers)."""
    r1 = (p.rateConsumption * agg.S * c_m // agg.C if agg.C > 0 else 0) + \
         (p.rateProduction * agg.S * g_m // agg.G if agg.G > 0 else 0)
    r2 = p.rateNoPeak if has_consumption and c_m <= p.peakMwh else 0
    if p.modelId == 1:
        return r1
    if p.modelId == 2:
        return r2
    if p.modelId == 3:
        return (p.w1Bps * r1 + p.w2Bps * r2) // 10000
    raise ValueError(f"unknown reward model {p.modelId}")


def rewards(p: RewardParams | None, agg: Aggregates) -> dict[str, int]:
    """wallet -> r_m for every member with r_m > 0 (none without parameters)."""
    if p is None:
        return {}
    out = {}
    for wallet, (c_m, g_m, has_c) in agg.per_member.items():
        r = member_reward(p, agg, c_m, g_m, has_c)
        if r > 0:
            out[wallet] = r
    return out


@dataclass
class QhCommitment:
    """Everything anchored for one (community, QH), with both trees for proofs."""

    community_id: str
    qh: int
    leaves: list[Leaf]
    readings_tree: StandardMerkleTree
    agg: Aggregates
    rewards: dict[str, int]
    rewards_tree: StandardMerkleTree | None
    wallets: list[str]           # value order of rewards_tree
    params_version: int

    @property
    def readings_root(self) -> bytes:
        return self.readings_tree.root

    @property
    def rewards_root(self) -> bytes:
        return self.rewards_tree.root if self.rewards_tree else ZERO32

    @property
    def reward_total(self) -> int:
        return sum(self.rewards.values())


def rewards_tree(qh: int, amounts: dict[str, int]) -> tuple[StandardMerkleTree | None, list[str]]:
    wallets = sorted(amounts)
    if not wallets:
        return None, []
    values = [[w, qh, amounts[w]] for w in wallets]
    return StandardMerkleTree.of(values, REWARDS_TYPES), wallets


def commit(community_id: str, qh: int, leaves: Sequence[Leaf], params: RewardParams | None,
           params_version: int, leaf_hashes: Sequence[bytes] | None = None) -> QhCommitment:
    """Build both trees and the aggregates of one QH (``leaves`` must be non-empty).

    ``leaf_hashes`` (aligned with ``leaves``) lets a caller reuse stored hashes, e.g. for a device
    whose secret was erased, whose salt can no longer be derived."""
    idx = sorted(range(len(leaves)), key=lambda i: (leaves[i].device_key, leaves[i].flow_id))
    ordered = [leaves[i] for i in idx]
    hashes = ([leaf_hashes[i] for i in idx] if leaf_hashes is not None
              else [leaf_hash(READINGS_TYPES, lf.values) for lf in ordered])
    tree = StandardMerkleTree.from_leaf_hashes(hashes, [lf.values for lf in ordered], READINGS_TYPES)
    agg = aggregates(ordered)
    amounts = rewards(params, agg)
    rtree, wallets = rewards_tree(qh, amounts)
    return QhCommitment(community_id, qh, list(ordered), tree, agg, amounts, rtree, wallets, params_version)
