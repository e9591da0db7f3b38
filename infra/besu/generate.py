#!/usr/bin/env python3
"""Generate a Hyperledger Besu QBFT network for the LEC contracts (chain id 1981, the seed's).

    python infra/besu/generate.py --out infra/besu/network [--validators 4] [--host 127.0.0.1]

Writes, under --out:
  genesis.json               QBFT genesis; extraData = RLP([32-byte vanity, [validators], [], 0, []])
  permissions_config.toml    nodes-allowlist (every node's enode URL), accounts-allowlist
  network.json               summary: chain id, validators, enodes, RPC URLs, accounts
  nodeN/config.toml          per-node Besu configuration (run from --out: besu --config-file=nodeN/config.toml)
  nodeN/key                  node private key (0x-hex, as Besu writes it)  -- SECRET, git-ignored
  nodeN/key.pub              node public key (0x + 128 hex); the enode id
  nodeN/address              validator address = keccak256(public key)[12:]
  accounts/<name>.key        operator (deployer, Platform Admin) and oracle account keys -- SECRET, git-ignored
  accounts/<name>.address    their addresses (allow-listed, funded in the genesis alloc)

Needs only coincurve (or eth-keys), eth-utils and rlp, which the platform's venv has. Run it again
to make a fresh network: every key is new (os.urandom through coincurve).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

CHAIN_ID = 1981
ACCOUNT_NAMES = ("operator", "oracle")
QBFT = {"blockperiodseconds": 2, "epochlength": 30000, "requesttimeoutseconds": 4}
# Free-gas private network: no base fee; accounts are funded anyway so payable calls (token purchase) work.
ACCOUNT_BALANCE_WEI = 10**24
GAS_LIMIT = "0x1fffffffffffff"
MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"  # "tical byzantine fault tolerance"


def new_private_key() -> bytes:
    from coincurve import PrivateKey

    return PrivateKey(os.urandom(32)).secret


def public_key(private_key: bytes) -> bytes:
    """64-byte uncompressed public key without the 0x04 prefix (the enode id)."""
    from coincurve import PrivateKey

    return PrivateKey(private_key).public_key.format(compressed=False)[1:]


def address_of_public(pub: bytes) -> str:
    from eth_utils import keccak, to_checksum_address

    return to_checksum_address(keccak(pub)[12:])


def qbft_extra_data(validators: list[str]) -> str:
    """QBFT genesis extraData: RLP([vanity 32 zero bytes, [validator addresses], no vote, round 0, no seals])."""
    import rlp

    addrs = [bytes.fromhex(v.removeprefix("0x")) for v in validators]
    return "0x" + rlp.encode([b"\x00" * 32, addrs, [], 0, []]).hex()


def enode(pub: bytes, host: str, port: int) -> str:
    return f"enode://{pub.hex()}@{host}:{port}"


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def genesis(validators: list[str], funded: list[str], chain_id: int = CHAIN_ID) -> dict:
    return {
        "config": {
            "chainId": chain_id,
            "berlinBlock": 0,
            "londonBlock": 0,
            "shanghaiTime": 0,   # the contracts are compiled for cancun (PUSH0, MCOPY)
            "cancunTime": 0,
            "zeroBaseFee": True,
            "qbft": dict(QBFT),
        },
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": qbft_extra_data(validators),
        "gasLimit": GAS_LIMIT,
        "difficulty": "0x1",
        "mixHash": MIX_HASH,
        "coinbase": "0x0000000000000000000000000000000000000000",
        "alloc": {a[2:].lower(): {"balance": hex(ACCOUNT_BALANCE_WEI)} for a in funded},
    }


def node_config(i: int, host: str, p2p_port: int, rpc_port: int, bootnodes: list[str]) -> str:
    name = f"node{i}"
    lines = [
        f"# Besu node {i} of the LEC QBFT network (chain {CHAIN_ID}). Run from the network folder:",
        f"#   besu --config-file={name}/config.toml",
        f'data-path="{name}/data"',
        'genesis-file="genesis.json"',
        f'node-private-key-file="{name}/key"',
        'sync-mode="FULL"',
        "min-gas-price=0",
        f'p2p-host="{host}"',
        f"p2p-port={p2p_port}",
        f"bootnodes={_toml_list(bootnodes)}",
        "rpc-http-enabled=true",
        f'rpc-http-host="{host}"',
        f"rpc-http-port={rpc_port}",
        'rpc-http-api=["ETH", "NET", "WEB3", "QBFT", "TXPOOL", "PERM"]',
        'host-allowlist=["localhost", "127.0.0.1"]',
        "revert-reason-enabled=true",
        "permissions-nodes-config-file-enabled=true",
        'permissions-nodes-config-file="permissions_config.toml"',
        "permissions-accounts-config-file-enabled=true",
        'permissions-accounts-config-file="permissions_config.toml"',
        "metrics-enabled=false",
        "",
    ]
    return "\n".join(lines)


def generate(out: Path, validators: int = 4, host: str = "127.0.0.1", p2p_base: int = 30303,
             rpc_base: int = 8545) -> dict:
    """Writes a fresh network to ``out`` and returns its summary (network.json)."""
    if validators < 1:
        raise SystemExit("at least one validator is needed (4 tolerate one faulty node)")
    out.mkdir(parents=True, exist_ok=True)
    nodes = []
    for i in range(1, validators + 1):
        key = new_private_key()
        pub = public_key(key)
        d = out / f"node{i}"
        d.mkdir(exist_ok=True)
        _write_secret(d / "key", "0x" + key.hex())
        (d / "key.pub").write_text("0x" + pub.hex() + "\n")
        (d / "address").write_text(address_of_public(pub) + "\n")
        nodes.append({"name": f"node{i}", "address": address_of_public(pub),
                      "enode": enode(pub, host, p2p_base + i - 1), "rpc": f"http://{host}:{rpc_base + i - 1}",
                      "p2pPort": p2p_base + i - 1, "rpcPort": rpc_base + i - 1})
    accounts = {}
    acc_dir = out / "accounts"
    acc_dir.mkdir(exist_ok=True)
    for name in ACCOUNT_NAMES:
        key = new_private_key()
        accounts[name] = address_of_public(public_key(key))
        _write_secret(acc_dir / f"{name}.key", "0x" + key.hex())
        (acc_dir / f"{name}.address").write_text(accounts[name] + "\n")
    validator_addrs = [n["address"] for n in nodes]
    (out / "genesis.json").write_text(json.dumps(genesis(validator_addrs, list(accounts.values())), indent=2) + "\n")
    enodes = [n["enode"] for n in nodes]
    (out / "permissions_config.toml").write_text(
        "# Local permissioning of the LEC QBFT network: only these nodes may connect and only these\n"
        "# accounts may send transactions (operator = deployer/Platform Admin, oracle = oracle service).\n"
        f"nodes-allowlist={_toml_list(enodes)}\n"
        f"accounts-allowlist={_toml_list([a.lower() for a in accounts.values()])}\n")
    for i, n in enumerate(nodes, start=1):
        boot = [enodes[0]] if i > 1 else []
        (out / n["name"] / "config.toml").write_text(node_config(i, host, n["p2pPort"], n["rpcPort"], boot))
    summary = {"chainId": CHAIN_ID, "consensus": "qbft", "qbft": QBFT, "validators": validator_addrs,
               "nodes": nodes, "accounts": accounts}
    (out / "network.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "network")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--host", default="127.0.0.1", help="host of every node (p2p and RPC)")
    parser.add_argument("--p2p-port", type=int, default=30303, help="p2p port of node1; node i uses +i-1")
    parser.add_argument("--rpc-port", type=int, default=8545, help="RPC port of node1; node i uses +i-1")
    args = parser.parse_args()
    summary = generate(args.out, args.validators, args.host, args.p2p_port, args.rpc_port)
    print(f"QBFT network for chain {summary['chainId']} with {len(summary['validators'])} validators in {args.out}")


if __name__ == "__main__":
    main()
