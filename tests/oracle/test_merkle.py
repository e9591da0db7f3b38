"""Our StandardMerkleTree against the reference npm @openzeppelin/merkle-tree (oracle.md §5, §8)."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from eth_abi import encode
from eth_utils import to_checksum_address

from oracle.merkle import (
    READINGS_TYPES,
    REWARDS_TYPES,
    MerkleError,
    StandardMerkleTree,
    abi_encode,
    hex32,
    leaf_hash,
    verify,
)

OZ = Path(__file__).resolve().parents[1] / "support" / "ozmerkle.js"


def oz(request: dict) -> dict:
    out = subprocess.run(["node", str(OZ)], input=json.dumps(request).encode(), capture_output=True, check=True,
                         timeout=120)
    return json.loads(out.stdout)


def reading_values(rng: random.Random, n: int) -> list[list]:
    return [["0x" + rng.randbytes(32).hex(), str(rng.choice([0, 1704067200, 2**64 - 900 * 1001]) + 900 * rng.randrange(1000)),
             str(rng.choice([-1, 1]) * rng.randrange(0, 10**rng.randrange(1, 30))), "0x" + rng.randbytes(32).hex()]
            for _ in range(n)]


def reward_values(rng: random.Random, n: int) -> list[list]:
    return [[to_checksum_address(rng.randbytes(20)), str(900 * rng.randrange(2_000_000)),
             str(rng.randrange(1, 10**rng.randrange(1, 40)))] for _ in range(n)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1000])
@pytest.mark.parametrize("kind", ["readings", "rewards"])
def test_root_and_every_proof_match_openzeppelin(size: int, kind: str) -> None:
    rng = random.Random(size * 7 + len(kind))
    types, values = ((READINGS_TYPES, reading_values(rng, size)) if kind == "readings"
                     else (REWARDS_TYPES, reward_values(rng, size)))
    if kind == "readings":
        values[0][2] = "-1250"  # negative energies (injection) are int256 two's complement
    ref = oz({"op": "build", "types": list(types), "values": values})
    tree = StandardMerkleTree.of(values, types)
    assert hex32(tree.root) == ref["root"]
    assert [[hex32(p) for p in tree.proof(i)] for i in range(size)] == ref["proofs"]
    assert [hex32(tree.leaf(i)) for i in range(size)] == ref["leafHashes"]
    # and the library accepts our proofs
    items = [{"values": v, "proof": [hex32(p) for p in tree.proof(i)]} for i, v in enumerate(values)]
    assert all(oz({"op": "verify", "types": list(types), "root": hex32(tree.root), "items": items})["ok"])


def test_tampered_proof_or_value_fails_both_implementations() -> None:
    rng = random.Random(5)
    values = reading_values(rng, 5)
    tree = StandardMerkleTree.of(values, READINGS_TYPES)
    proof = [hex32(p) for p in tree.proof(2)]
    assert verify(tree.root, READINGS_TYPES, values[2], proof)
    bad_value = [values[2][0], values[2][1], str(int(values[2][2]) + 1), values[2][3]]
    bad_proof = proof[:-1] + ["0x" + "00" * 32]
    assert not verify(tree.root, READINGS_TYPES, bad_value, proof)
    assert not verify(tree.root, READINGS_TYPES, values[2], bad_proof)
    ok = oz({"op": "verify", "types": list(READINGS_TYPES), "root": hex32(tree.root),
             "items": [{"values": bad_value, "proof": proof}, {"values": values[2], "proof": bad_proof}]})["ok"]
    assert ok == [False, False]


def test_fast_abi_encoding_equals_eth_abi() -> None:
    rng = random.Random(1)
    for _ in range(200):
        dk, s = rng.randbytes(32), rng.randbytes(32)
        qh, e = rng.randrange(2**64), rng.randrange(-2**255, 2**255)
        assert abi_encode(READINGS_TYPES, [dk, qh, e, s]) == encode(list(READINGS_TYPES), [dk, qh, e, s])
        w, amount = to_checksum_address(rng.randbytes(20)), rng.randrange(2**256)
        assert abi_encode(REWARDS_TYPES, [w, qh, amount]) == encode(list(REWARDS_TYPES), [w, qh, amount])
    assert leaf_hash(["string", "uint256"], ["x", 1]) != leaf_hash(["string", "uint256"], ["y", 1])


def test_out_of_range_and_empty_are_refused() -> None:
    with pytest.raises(MerkleError):
        abi_encode(READINGS_TYPES, [b"\0" * 32, 2**64, 0, b"\0" * 32])
    with pytest.raises(MerkleError):
        abi_encode(REWARDS_TYPES, ["0x" + "11" * 20, 0, -1])
    with pytest.raises(MerkleError):
        StandardMerkleTree.of([], READINGS_TYPES)
