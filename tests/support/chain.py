"""Helpers for the contract and chain-client tests: callers by anvil dev account, expected reverts,
and reward trees built by the reference npm library @openzeppelin/merkle-tree."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracle.chain.keys import address_of, dev_key
from oracle.chain.tx import TxFailedError, TxSender, artifact, connect

ROOT = Path(__file__).resolve().parents[2]

_OZ_TREE_JS = """
const path = require('path');
const { StandardMerkleTree } = require(path.join(process.argv[1], 'node_modules', '@openzeppelin', 'merkle-tree'));
const req = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const tree = StandardMerkleTree.of(req.values, ['address', 'uint64', 'uint256']);
process.stdout.write(JSON.stringify({ root: tree.root, proofs: req.values.map((_, i) => tree.getProof(i)) }));
"""


def reward_tree(rewards: list[tuple[str, int, int]]) -> tuple[bytes, list[list[bytes]]]:
    """Root and proofs of [wallet, qh, amount] leaves, from @openzeppelin/merkle-tree itself."""
    values = [[w, str(qh), str(amount)] for w, qh, amount in rewards]
    out = subprocess.run(["node", "-e", _OZ_TREE_JS, str(ROOT)], input=json.dumps({"values": values}),
                         capture_output=True, text=True, check=True, timeout=60)
    data = json.loads(out.stdout)
    return bytes.fromhex(data["root"][2:]), [[bytes.fromhex(p[2:]) for p in proof] for proof in data["proofs"]]


@dataclass
class Actor:
    """A dev account able to call any function of our contracts."""

    name: str
    sender: TxSender

    @property
    def address(self) -> str:
        return self.sender.address

    def call(self, contract, fn: str, *args: Any, value: int = 0) -> dict[str, Any]:
        return self.sender.transact(contract.address, contract.encode_abi(fn, list(args)), value=value, label=fn)

    def reverts(self, contract, fn: str, *args: Any, value: int = 0) -> str:
        """Asserts the call reverts; returns the decoded error, e.g. 'NotMember(0x…)'."""
        try:
            self.call(contract, fn, *args, value=value)
        except TxFailedError as exc:
            return exc.reason
        raise AssertionError(f"{self.name}: {fn}{args} did not revert")


def actors(rpc_url: str, names: list[str]) -> dict[str, Actor]:
    w3 = connect(rpc_url)
    return {name: Actor(name, TxSender(w3, dev_key(i))) for i, name in enumerate(names)}


def contract_at(w3, name: str, address: str):
    return w3.eth.contract(address=w3.to_checksum_address(address), abi=artifact(name)["abi"])


__all__ = ["Actor", "actors", "address_of", "contract_at", "dev_key", "reward_tree"]
