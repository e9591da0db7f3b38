"""Types shared by the oracle's computation (oracle.md) and its chain client (oracle/chain/client.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RewardParams:
    """Reward-model parameters of oracle.md §7, as stored on chain (all unsigned integers)."""

    modelId: int            # 1 self-consumption, 2 no peaks, 3 combined
    rateConsumption: int    # base units per mWh of shared energy attributed to consumption
    rateProduction: int     # base units per mWh of shared energy attributed to production
    rateNoPeak: int         # base units per QH without a peak
    peakMwh: int            # largest QH consumption that is not a peak
    w1Bps: int
    w2Bps: int
    effectiveFrom: int      # a qh (unix seconds, multiple of 900)


@dataclass(frozen=True)
class AnchorData:
    """One anchor of oracle.md §9, before or after it is on chain."""

    community_id: str
    communityId: bytes      # keccak256(utf8(community_id))
    qh: int
    version: int
    readingsRoot: bytes
    leafCount: int
    consumptionMwh: int     # C
    productionMwh: int      # G
    sharedMwh: int          # S
    rewardsRoot: bytes      # bytes32(0) when no member earns anything
    rewardTotal: int
    paramsVersion: int


@dataclass(frozen=True)
class TxResult:
    txHash: str             # 0x-hex
    blockNumber: int
