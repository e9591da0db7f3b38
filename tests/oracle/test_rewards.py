"""Aggregates and reward models 1/2/3 against values computed by hand from oracle.md §6-7."""

from __future__ import annotations

import hashlib
import hmac

from eth_abi import encode
from eth_utils import keccak

from oracle.commitment import community_id_hash, device_key, salt
from oracle.rewards import Leaf, aggregates, commit, member_reward, rewards
from oracle.types import RewardParams

A, B, X, Y = ("0x" + c * 40 for c in "abcd")
QH = 1704067200


def leaf(dev: str, account: int, energy: int, wallet: str | None) -> Leaf:
    key = device_key("cer", "sup", dev, "f-" + dev)
    return Leaf("cer", "sup", dev, "f-" + dev, account, key, QH, energy, b"\x01" * 32, wallet)


# A: consumption 4000; B: consumption 1000 and production -3000; a device with no member produces
# -1000; a consumption flow with negative energy and a production flow with positive energy add 0.
LEAVES = [leaf("a1", 1, 4000, A), leaf("b1", 1, 1000, B), leaf("b2", 2, -3000, B), leaf("n1", 2, -1000, None),
          leaf("a2", 1, -700, A), leaf("b3", 2, 250, B)]
P = dict(rateConsumption=3, rateProduction=5, rateNoPeak=100, peakMwh=2000, w1Bps=6000, w2Bps=4000, effectiveFrom=0)


def test_aggregates_by_hand() -> None:
    agg = aggregates(LEAVES)
    assert (agg.C, agg.G, agg.S) == (5000, 4000, 4000)
    assert agg.per_member[A] == (4000, 0, True)
    assert agg.per_member[B] == (1000, 3000, True)


def test_model_1_self_consumption() -> None:
    # r1_A = floor(3*4000*4000/5000) = 9600; r1_B = floor(3*4000*1000/5000) + floor(5*4000*3000/4000) = 2400 + 15000
    assert rewards(RewardParams(modelId=1, **P), aggregates(LEAVES)) == {A: 9600, B: 17400}


def test_model_2_no_peaks() -> None:
    # A consumed 4000 > peak 2000: nothing; B consumed 1000 <= 2000: rateNoPeak
    assert rewards(RewardParams(modelId=2, **P), aggregates(LEAVES)) == {B: 100}


def test_model_3_combined() -> None:
    # A: floor(6000*9600/10000) = 5760; B: floor((6000*17400 + 4000*100)/10000) = 10480
    assert rewards(RewardParams(modelId=3, **P), aggregates(LEAVES)) == {A: 5760, B: 10480}


def test_floors_and_edge_cases() -> None:
    leaves = [leaf("x", 1, 1, X), leaf("y", 1, 2, Y), leaf("p", 2, -2, None)]
    agg = aggregates(leaves)
    assert (agg.C, agg.G, agg.S) == (3, 2, 2)
    p = RewardParams(1, 10, 0, 0, 0, 0, 0, 0)
    assert rewards(p, agg) == {X: 6, Y: 13}          # floor(20/3), floor(40/3)
    # only production, no consumption: C = 0 so no consumption share, and no r2 without a consumption leaf
    only_g = aggregates([leaf("p", 2, -500, X)])
    assert only_g.S == 0
    assert member_reward(RewardParams(2, 1, 1, 7, 10**9, 0, 0, 0), only_g, 0, 500, False) == 0
    # zero consumption leaf still counts for r2 (C_m = 0 <= peak)
    assert rewards(RewardParams(2, 0, 0, 7, 0, 0, 0, 0), aggregates([leaf("z", 1, 0, Y)])) == {Y: 7}
    assert rewards(None, agg) == {}


def test_commitment_totals_and_tree() -> None:
    c = commit("cer", QH, LEAVES, RewardParams(modelId=3, **P), 2)
    assert c.reward_total == 5760 + 10480
    assert len(c.leaves) == 6 and c.params_version == 2
    assert c.wallets == sorted([A, B])
    assert commit("cer", QH, list(reversed(LEAVES)), RewardParams(modelId=3, **P), 2).readings_root == c.readings_root
    none = commit("cer", QH, [leaf("n1", 2, -1000, None)], RewardParams(modelId=1, **P), 1)
    assert none.rewards_root == b"\0" * 32 and none.reward_total == 0


def test_identifiers_and_salt_by_definition() -> None:
    assert community_id_hash("cer-example") == keccak(b"cer-example")
    dk = device_key("c", "s", "d", "f")
    assert dk == keccak(encode(["string"] * 4, ["c", "s", "d", "f"]))
    secret = bytes(range(32))
    expected = hmac.new(secret, dk + (1704067200).to_bytes(8, "big"), hashlib.sha256).digest()
    assert salt(secret, dk, 1704067200) == expected
    assert salt(secret, dk, 1704067200 + 900) != expected
