"""The contracts on a real anvil: every role check, token rules (members only, fee, service
incentive, sale, deactivation, welcome bonus), parameter versions, anchors and Merkle claims
with proofs from the reference @openzeppelin/merkle-tree library. One deployment per module."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_utils import keccak
from web3.logs import DISCARD

from oracle.chain.client import Deployment, community_key, deploy
from oracle.chain.tx import connect
from tests.support.chain import Actor, actors, contract_at, dev_key, reward_tree

E18 = 10**18
QH0 = 1_704_067_200  # 2024-01-01T00:00:00Z
NAMES = ["admin", "oracle", "alice", "bob", "carol", "dave", "mallory"]
PARAMS = (3, 10**12, 2 * 10**12, 5 * 10**15, 4000, 5000, 5000, 0)


@dataclass
class Chain:
    d: Deployment
    who: dict[str, Actor]
    notary: object
    token: object          # community "alpha"
    other_token: object    # community "beta"
    w3: object


@pytest.fixture(scope="module")
def chain(anvil_rpc: str) -> Chain:
    who = actors(anvil_rpc, NAMES)
    d = deploy(anvil_rpc, dev_key(0), oracle_address=who["oracle"].address, community_ids=["alpha", "beta"])
    w3 = connect(anvil_rpc)
    c = Chain(d, who, contract_at(w3, "Notary", d.notary), contract_at(w3, "CommunityToken", d.tokens["alpha"]),
              contract_at(w3, "CommunityToken", d.tokens["beta"]), w3)
    admin = who["admin"]
    admin.call(c.token, "setWelcomeBonus", 5 * E18)
    for name in ("alice", "bob", "carol"):
        admin.call(c.token, "addMember", who[name].address)
    admin.call(c.notary, "setParams", community_key("alpha"), PARAMS)
    return c


def role(name: str) -> bytes:
    return keccak(text=name)


def bal(c: Chain, address: str, token=None) -> int:
    return (token or c.token).functions.balanceOf(address).call()


def anchor_input(cid: str, qh: int, version: int, rewards_root: bytes, total: int, params_version: int = 1,
                 readings_root: bytes | None = None) -> tuple:
    root = readings_root or keccak(f"{cid}/{qh}/{version}".encode())
    return (community_key(cid), qh, version, root, 7, 9000, 4000, 4000, rewards_root, total, params_version)


# ---- role checks ----------------------------------------------------------------------------

def test_every_admin_function_reverts_for_the_wrong_caller(chain: Chain) -> None:
    m = chain.who["mallory"]
    oracle = chain.who["oracle"]
    unauthorized = "AccessControlUnauthorizedAccount"
    cases = [
        (chain.notary, "registerCommunity", (keccak(text="x"), chain.d.tokens["alpha"])),
        (chain.notary, "setParams", (community_key("alpha"), PARAMS)),
        (chain.notary, "anchor", (anchor_input("alpha", QH0, 1, b"\x00" * 32, 0),)),
        (chain.notary, "anchorBatch", ([anchor_input("alpha", QH0, 1, b"\x00" * 32, 0)],)),
        (chain.notary, "grantRole", (role("ORACLE_ROLE"), m.address)),
        (chain.notary, "grantRole", (role("ORACLE_ADMIN_ROLE"), m.address)),
        (chain.token, "setWelcomeBonus", (1,)),
        (chain.token, "addMember", (m.address,)),
        (chain.token, "removeMember", (chain.who["alice"].address,)),
        (chain.token, "setTransferFeeBps", (10,)),
        (chain.token, "setServiceIncentiveBps", (10,)),
        (chain.token, "setSaleRate", (10,)),
        (chain.token, "fundTreasury", (10,)),
        (chain.token, "withdrawEth", (m.address, 0)),
        (chain.token, "mintReward", (chain.who["alice"].address, 1)),
        (chain.token, "grantRole", (role("MEMBER_ROLE"), m.address)),
    ]
    for contract, fn, args in cases:
        assert m.reverts(contract, fn, *args).startswith(unauthorized), fn
    # The oracle service may anchor but not set parameters nor manage members.
    assert oracle.reverts(chain.notary, "setParams", community_key("alpha"), PARAMS).startswith(unauthorized)
    assert oracle.reverts(chain.token, "addMember", m.address).startswith(unauthorized)
    # Membership is locked to addMember/removeMember: even the Platform Admin cannot grant it directly.
    assert chain.who["admin"].reverts(chain.token, "grantRole", role("MEMBER_ROLE"), m.address).startswith(unauthorized)
    assert "CommunityExists" in chain.who["admin"].reverts(chain.notary, "registerCommunity", community_key("alpha"),
                                                             chain.d.tokens["beta"])
    # A Community Admin of one community is not one of another.
    chain.who["admin"].call(chain.token, "grantRole", role("COMMUNITY_ADMIN_ROLE"), chain.who["dave"].address)
    assert chain.who["dave"].reverts(chain.other_token, "addMember", m.address).startswith(unauthorized)
    chain.who["admin"].call(chain.token, "revokeRole", role("COMMUNITY_ADMIN_ROLE"), chain.who["dave"].address)
    assert not chain.token.functions.isMember(m.address).call()


# ---- token ------------------------------------------------------------------------------

def test_welcome_bonus_once_and_members_only_transfers(chain: Chain) -> None:
    alice, bob, m = chain.who["alice"], chain.who["bob"], chain.who["mallory"]
    assert bal(chain, alice.address) >= 5 * E18
    assert "NotMember" in alice.reverts(chain.token, "transfer", m.address, 1)
    assert "NotMember" in m.reverts(chain.token, "transfer", alice.address, 0)
    # A member of "beta" is not a member of "alpha": tokens are local to their community.
    chain.who["admin"].call(chain.other_token, "addMember", m.address)
    assert "NotMember" in alice.reverts(chain.token, "transfer", m.address, 1)
    assert "AlreadyMember" in chain.who["admin"].reverts(chain.token, "addMember", bob.address)
    before = bal(chain, bob.address)
    alice.call(chain.token, "transfer", bob.address, E18)
    assert bal(chain, bob.address) == before + E18


def test_transfer_fee_goes_to_the_treasury(chain: Chain) -> None:
    admin, alice, bob = chain.who["admin"], chain.who["alice"], chain.who["bob"]
    treasury = chain.token.address
    assert "InvalidBps" in admin.reverts(chain.token, "setTransferFeeBps", 10_001)
    admin.call(chain.token, "setTransferFeeBps", 250)  # 2.5 %
    a0, b0, t0 = bal(chain, alice.address), bal(chain, bob.address), bal(chain, treasury)
    alice.call(chain.token, "transfer", bob.address, 1_000_001)
    fee = 1_000_001 * 250 // 10_000
    assert fee == 25_000
    assert bal(chain, alice.address) == a0 - 1_000_001
    assert bal(chain, bob.address) == b0 + 1_000_001 - fee
    assert bal(chain, treasury) == t0 + fee
    # transferFrom takes the same fee.
    alice.call(chain.token, "approve", bob.address, 400)
    bob.call(chain.token, "transferFrom", alice.address, chain.who["carol"].address, 400)
    assert bal(chain, treasury) == t0 + fee + 10
    admin.call(chain.token, "setTransferFeeBps", 0)


def test_service_incentive_paid_from_the_treasury(chain: Chain) -> None:
    admin, alice, carol = chain.who["admin"], chain.who["alice"], chain.who["carol"]
    treasury = chain.token.address
    admin.call(chain.token, "setTransferFeeBps", 100)        # 1 %
    admin.call(chain.token, "setServiceIncentiveBps", 300)   # 3 % back to the payer
    # A treasury (including this payment's fee) too small for the incentive: refused, not underpaid.
    big = bal(chain, treasury) * 50 + 10_000   # incentive 3 % > treasury + fee 1 %
    assert bal(chain, alice.address) >= big
    assert "TreasuryTooLow" in alice.reverts(chain.token, "payForService", carol.address, big, b"\x01" * 32)
    admin.call(chain.token, "fundTreasury", 100 * E18)
    a0, c0, t0 = bal(chain, alice.address), bal(chain, carol.address), bal(chain, treasury)
    amount = 2 * E18 + 7
    alice.call(chain.token, "payForService", carol.address, amount, keccak(text="ev-charging#42"))
    fee, incentive = amount * 100 // 10_000, amount * 300 // 10_000
    assert bal(chain, carol.address) == c0 + amount - fee
    assert bal(chain, alice.address) == a0 - amount + incentive
    assert bal(chain, treasury) == t0 + fee - incentive
    assert "NotMember" in alice.reverts(chain.token, "payForService", chain.who["mallory"].address, 10, b"\x00" * 32)
    admin.call(chain.token, "setTransferFeeBps", 0)
    admin.call(chain.token, "setServiceIncentiveBps", 0)


def test_purchase_from_the_treasury_at_the_set_rate(chain: Chain) -> None:
    admin, bob, m = chain.who["admin"], chain.who["bob"], chain.who["mallory"]
    assert "SaleClosed" in bob.reverts(chain.token, "buy", value=10**15)
    admin.call(chain.token, "setSaleRate", 1000)  # 1000 base units per wei
    if bal(chain, chain.token.address) < 10**18:
        admin.call(chain.token, "fundTreasury", 10**18)
    b0, t0 = bal(chain, bob.address), bal(chain, chain.token.address)
    eth0 = chain.w3.eth.get_balance(chain.token.address)
    bob.call(chain.token, "buy", value=10**12)
    assert bal(chain, bob.address) == b0 + 10**15
    assert bal(chain, chain.token.address) == t0 - 10**15
    assert chain.w3.eth.get_balance(chain.token.address) == eth0 + 10**12
    assert "NotMember" in m.reverts(chain.token, "buy", value=10**12)
    assert "TreasuryTooLow" in bob.reverts(chain.token, "buy", value=t0)
    admin.call(chain.token, "withdrawEth", admin.address, 10**12)
    assert chain.w3.eth.get_balance(chain.token.address) == eth0
    admin.call(chain.token, "setSaleRate", 0)


# ---- parameters -------------------------------------------------------------------------

def test_params_are_versioned_with_effective_from(chain: Chain) -> None:
    admin = chain.who["admin"]
    cid = community_key("beta")
    n = chain.notary.functions
    assert n.paramsVersionAt(cid, QH0).call() == 0
    admin.call(chain.notary, "setParams", cid, (1, 5, 5, 0, 0, 0, 0, QH0))
    admin.call(chain.notary, "setParams", cid, (2, 0, 0, 7, 100, 0, 0, QH0 + 9000))
    assert n.paramsCount(cid).call() == 2
    assert n.paramsVersionAt(cid, QH0 - 900).call() == 0
    assert n.paramsVersionAt(cid, QH0).call() == 1
    assert n.paramsVersionAt(cid, QH0 + 8100).call() == 1
    assert n.paramsVersionAt(cid, QH0 + 9000).call() == 2
    version, params = n.paramsFor(cid, QH0 + 99_000).call()
    assert version == 2 and tuple(params) == (2, 0, 0, 7, 100, 0, 0, QH0 + 9000)
    assert "InvalidParams" in admin.reverts(chain.notary, "setParams", cid, (1, 0, 0, 0, 0, 0, 0, QH0))  # earlier
    assert "InvalidParams" in admin.reverts(chain.notary, "setParams", cid, (4, 0, 0, 0, 0, 0, 0, QH0 + 9000))
    assert "InvalidParams" in admin.reverts(chain.notary, "setParams", cid, (1, 0, 0, 0, 0, 0, 0, QH0 + 9001))
    assert "InvalidParams" in admin.reverts(chain.notary, "setParams", cid, (3, 0, 0, 0, 0, 6000, 5000, QH0 + 9000))
    assert "UnknownCommunity" in admin.reverts(chain.notary, "setParams", keccak(text="nowhere"), PARAMS)


# ---- anchors and claims -------------------------------------------------------------------

def test_anchor_versions_and_idempotency(chain: Chain) -> None:
    oracle = chain.who["oracle"]
    qh = QH0 + 900 * 100
    a1 = anchor_input("alpha", qh, 1, b"\x00" * 32, 0)
    assert "BadVersion" in oracle.reverts(chain.notary, "anchor", anchor_input("alpha", qh, 2, b"\x00" * 32, 0))
    assert "InvalidQh" in oracle.reverts(chain.notary, "anchor", anchor_input("alpha", qh + 1, 1, b"\x00" * 32, 0))
    assert "WrongParamsVersion" in oracle.reverts(chain.notary, "anchor", anchor_input("alpha", qh, 1, b"\x00" * 32, 0, 2))
    assert "UnknownCommunity" in oracle.reverts(chain.notary, "anchor", anchor_input("gamma", qh, 1, b"\x00" * 32, 0, 0))
    receipt = oracle.call(chain.notary, "anchor", a1)
    assert "BadVersion" in oracle.reverts(chain.notary, "anchor", a1)  # version 1 is taken
    same_content_v2 = (*a1[:2], 2, *a1[3:])
    assert "AnchorUnchanged" in oracle.reverts(chain.notary, "anchor", same_content_v2)
    events = chain.notary.events.Anchored().process_receipt(receipt, errors=DISCARD)
    assert len(events) == 1
    ev = events[0]["args"]
    assert (ev["communityId"], ev["qh"], ev["version"], ev["leafCount"]) == (community_key("alpha"), qh, 1, 7)
    stored = chain.notary.functions.getAnchor(community_key("alpha"), qh, 1).call()
    assert stored[0] == a1[3] and stored[2] == 7 and tuple(stored[4:7]) == (9000, 4000, 4000)
    assert chain.notary.functions.latestVersion(community_key("alpha"), qh).call() == 1


def test_claims_with_reference_proofs(chain: Chain) -> None:
    oracle = chain.who["oracle"]
    alice, bob, carol, m = (chain.who[n] for n in ("alice", "bob", "carol", "mallory"))
    cid = community_key("alpha")
    qh1, qh2 = QH0 + 900 * 200, QH0 + 900 * 201
    rewards1 = [(alice.address, qh1, 3 * E18), (bob.address, qh1, 2 * E18), (carol.address, qh1, 1)]
    root1, proofs1 = reward_tree(rewards1)
    rewards2 = [(alice.address, qh2, 4 * E18), (bob.address, qh2, 7)]
    root2, proofs2 = reward_tree(rewards2)
    oracle.call(chain.notary, "anchorBatch", [anchor_input("alpha", qh1, 1, root1, 5 * E18 + 1),
                                              anchor_input("alpha", qh2, 1, root2, 4 * E18 + 7)])
    a0 = bal(chain, alice.address)
    # Anyone may submit a claim; tokens go to the leaf's wallet.
    m.call(chain.notary, "claim", cid, qh1, alice.address, 3 * E18, proofs1[0])
    assert bal(chain, alice.address) == a0 + 3 * E18
    assert chain.notary.functions.claimed(cid, qh1, alice.address).call() == 3 * E18
    # Double claim refused.
    assert "NothingToClaim" in alice.reverts(chain.notary, "claim", cid, qh1, alice.address, 3 * E18, proofs1[0])
    # A proof of another QH is refused, as is a changed amount or wallet.
    assert "InvalidProof" in alice.reverts(chain.notary, "claim", cid, qh2, alice.address, 3 * E18, proofs1[0])
    assert "InvalidProof" in alice.reverts(chain.notary, "claim", cid, qh1, alice.address, 4 * E18, proofs1[0])
    assert "InvalidProof" in m.reverts(chain.notary, "claim", cid, qh1, m.address, 3 * E18, proofs1[0])
    assert "NotAnchored" in alice.reverts(chain.notary, "claim", cid, QH0 + 900 * 999, alice.address, 1, [])
    # Batch: alice's repeat is skipped, bob and carol and qh2 minted, in one transaction.
    b0, c0, a1 = bal(chain, bob.address), bal(chain, carol.address), bal(chain, alice.address)
    receipt = oracle.call(chain.notary, "claimBatch", cid, [
        (qh1, alice.address, 3 * E18, proofs1[0]), (qh1, bob.address, 2 * E18, proofs1[1]),
        (qh1, carol.address, 1, proofs1[2]), (qh2, alice.address, 4 * E18, proofs2[0])])
    skipped = chain.notary.events.ClaimSkipped().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["wallet"], e["args"]["reason"]) for e in skipped] == [(alice.address, 1)]
    assert bal(chain, bob.address) == b0 + 2 * E18
    assert bal(chain, carol.address) == c0 + 1
    assert bal(chain, alice.address) == a1 + 4 * E18
    # A bad proof reverts the whole batch.
    assert "InvalidProof" in oracle.reverts(chain.notary, "claimBatch", cid, [
        (qh2, bob.address, 7, proofs2[1]), (qh2, bob.address, 8, proofs2[1])])
    # Version 2 of qh1 raises alice's reward: only the difference is minted; v1 proofs are dead.
    rewards1b = [(alice.address, qh1, 5 * E18), (bob.address, qh1, 2 * E18)]
    root1b, proofs1b = reward_tree(rewards1b)
    oracle.call(chain.notary, "anchor", anchor_input("alpha", qh1, 2, root1b, 7 * E18,
                                                     readings_root=keccak(text="late readings")))
    assert "InvalidProof" in carol.reverts(chain.notary, "claim", cid, qh1, carol.address, 1, proofs1[2])
    a2 = bal(chain, alice.address)
    alice.call(chain.notary, "claim", cid, qh1, alice.address, 5 * E18, proofs1b[0])
    assert bal(chain, alice.address) == a2 + 2 * E18
    assert "NothingToClaim" in bob.reverts(chain.notary, "claim", cid, qh1, bob.address, 2 * E18, proofs1b[1])


def test_deactivated_member_refused_everywhere(chain: Chain) -> None:
    admin, oracle, alice, dave = (chain.who[n] for n in ("admin", "oracle", "alice", "dave"))
    cid = community_key("alpha")
    admin.call(chain.token, "addMember", dave.address)
    dave_bonus = bal(chain, dave.address)
    assert dave_bonus == 5 * E18
    qh = QH0 + 900 * 300
    root, proofs = reward_tree([(dave.address, qh, 11), (alice.address, qh, 13)])
    oracle.call(chain.notary, "anchor", anchor_input("alpha", qh, 1, root, 24))
    t0 = bal(chain, chain.token.address)
    admin.call(chain.token, "removeMember", dave.address)
    assert bal(chain, dave.address) == 0
    assert bal(chain, chain.token.address) == t0 + dave_bonus  # balance back to the treasury
    assert "NotMember" in dave.reverts(chain.token, "transfer", alice.address, 0)
    assert "NotMember" in alice.reverts(chain.token, "transfer", dave.address, 1)
    assert "NotMember" in dave.reverts(chain.notary, "claim", cid, qh, dave.address, 11, proofs[0])
    assert "NotMember" in admin.reverts(chain.token, "removeMember", dave.address)
    receipt = oracle.call(chain.notary, "claimBatch", cid, [(qh, dave.address, 11, proofs[0]),
                                                            (qh, alice.address, 13, proofs[1])])
    skipped = chain.notary.events.ClaimSkipped().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["wallet"], e["args"]["reason"]) for e in skipped] == [(dave.address, 2)]
    assert chain.notary.functions.claimed(cid, qh, alice.address).call() == 13
    # Re-admitted: no second welcome bonus.
    admin.call(chain.token, "addMember", dave.address)
    assert bal(chain, dave.address) == 0


def test_reward_leaf_matches_the_reference_library(chain: Chain) -> None:
    wallet, qh, amount = chain.who["bob"].address, QH0, 123456789 * E18
    root, proofs = reward_tree([(wallet, qh, amount)])
    assert proofs == [[]]  # a single leaf is the root
    assert chain.notary.functions.rewardLeaf(wallet, qh, amount).call() == root
