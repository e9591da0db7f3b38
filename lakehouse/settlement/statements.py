"""The month's statements tree (docs/oracle-spec.md §11): one leaf per member of the community.

Leaf values ``[wallet, period, amountCents, sharedMwh, tokens]`` with types
``["address", "uint32", "uint256", "uint256", "uint256"]``: ``period`` = YYYYMM of the local
month, ``amountCents`` the member's euro-cents, ``sharedMwh`` its energy counted in shared hours
(withdrawal + injection, mWh), ``tokens`` its token equivalent in base units (1 token = 1 €,
18 decimals: cents × 10^16). The tree is OpenZeppelin's StandardMerkleTree, like the rewards tree.
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address

from oracle.merkle import ZERO32, StandardMerkleTree, hex32

STATEMENT_TYPES: tuple[str, ...] = ("address", "uint32", "uint256", "uint256", "uint256")
TOKEN_UNITS_PER_CENT = 10 ** 16


def leaf_values(wallet: str, period: int, member: dict[str, Any]) -> list[Any]:
    amount = int(member["amount_cents"])
    shared = int(member["counted_withdrawal_mwh"]) + int(member["counted_injection_mwh"])
    return [to_checksum_address(wallet), period, amount, shared, amount * TOKEN_UNITS_PER_CENT]


def build_tree(period: int, members: dict[str, dict[str, Any]]) -> tuple[bytes, dict[str, tuple[list[Any], list[str]]]]:
    """(root, user -> (leaf values, proof)) of the members' month amounts; ZERO32 with no member."""
    users = sorted(members)
    if not users:
        return ZERO32, {}
    values = [leaf_values(str(members[u]["wallet"]), period, members[u]) for u in users]
    tree = StandardMerkleTree.of(values, STATEMENT_TYPES)
    return tree.root, {u: (values[i], [hex32(p) for p in tree.proof(i)]) for i, u in enumerate(users)}
