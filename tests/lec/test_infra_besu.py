"""infra/besu: every file parses and the network is consistent (chain id 1981, QBFT validators in
extraData = the node keys' addresses, allow-listed enodes = the nodes' keys, hosts and ports),
for the committed example and for a freshly generated network."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import rlp
from coincurve import PrivateKey
from eth_utils import keccak, to_checksum_address

BESU = Path(__file__).resolve().parents[2] / "infra" / "besu"

# From the Besu documentation's QBFT genesis example (4 validators).
DOCS_EXTRA_DATA = ("0xf87aa00000000000000000000000000000000000000000000000000000000000000000f8549464a702e6263b7297a9"
                   "6638cac6ae65e6541f4169943923390ad55e90c237593b3b0e401f3b08a0318594aefdb9a738c9f433e5b6b212a6d6"
                   "2f6370c2f69294c7eeb9a4e00ce683cf93039b212648e01c6c6b78c080c0")
DOCS_VALIDATORS = ["0x64a702e6263b7297a96638cac6ae65e6541f4169", "0x3923390ad55e90c237593b3b0e401f3b08a03185",
                   "0xaefdb9a738c9f433e5b6b212a6d62f6370c2f692", "0xc7eeb9a4e00ce683cf93039b212648e01c6c6b78"]


def _generator():
    spec = importlib.util.spec_from_file_location("besu_generate", BESU / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extra_data_encoding_matches_besu_documentation() -> None:
    assert _generator().qbft_extra_data(DOCS_VALIDATORS) == DOCS_EXTRA_DATA


def check_network(net: Path, *, with_private_keys: bool) -> None:
    genesis = json.loads((net / "genesis.json").read_text())
    cfg = genesis["config"]
    assert cfg["chainId"] == 1981
    assert cfg["cancunTime"] == 0 and cfg["shanghaiTime"] == 0 and cfg["londonBlock"] == 0
    q = cfg["qbft"]
    assert q["blockperiodseconds"] >= 1 and q["epochlength"] > 0 and q["requesttimeoutseconds"] > q["blockperiodseconds"]
    vanity, validators, vote, round_, seals = rlp.decode(bytes.fromhex(genesis["extraData"][2:]))
    assert vanity == b"\x00" * 32 and vote == [] and round_ == b"" and seals == []
    validators = [to_checksum_address(v) for v in validators]

    node_dirs = sorted(p for p in net.glob("node*") if p.is_dir())
    assert len(node_dirs) == len(validators) == 4
    perms = tomllib.loads((net / "permissions_config.toml").read_text())
    expected_enodes = []
    for d in node_dirs:
        pub = bytes.fromhex((d / "key.pub").read_text().strip()[2:])
        assert len(pub) == 64
        address = to_checksum_address(keccak(pub)[12:])
        assert (d / "address").read_text().strip() == address
        if with_private_keys:
            key = PrivateKey(bytes.fromhex((d / "key").read_text().strip()[2:]))
            assert key.public_key.format(compressed=False)[1:] == pub
        conf = tomllib.loads((d / "config.toml").read_text())
        assert conf["genesis-file"] == "genesis.json" and conf["node-private-key-file"] == f"{d.name}/key"
        assert conf["permissions-nodes-config-file-enabled"] and conf["permissions-accounts-config-file-enabled"]
        assert (net / conf["permissions-nodes-config-file"]).exists()
        assert conf["min-gas-price"] == 0 and "QBFT" in conf["rpc-http-api"]
        expected_enodes.append(f"enode://{pub.hex()}@{conf['p2p-host']}:{conf['p2p-port']}")
        for boot in conf["bootnodes"]:
            assert boot in perms["nodes-allowlist"]
    # The validators in extraData are exactly the node keys, in node order.
    assert validators == [(d / "address").read_text().strip() for d in node_dirs]
    assert perms["nodes-allowlist"] == expected_enodes
    ports = [tomllib.loads((d / "config.toml").read_text())["rpc-http-port"] for d in node_dirs]
    assert len(set(ports)) == 4
    accounts = {p.stem: p.read_text().strip() for p in (net / "accounts").glob("*.address")}
    assert set(accounts) == {"operator", "oracle"}
    assert sorted(perms["accounts-allowlist"]) == sorted(a.lower() for a in accounts.values())
    assert {a[2:].lower() for a in accounts.values()} == set(genesis["alloc"])
    summary = json.loads((net / "network.json").read_text())
    assert summary["chainId"] == 1981 and summary["validators"] == validators
    assert [n["enode"] for n in summary["nodes"]] == expected_enodes


def test_committed_network_is_consistent() -> None:
    check_network(BESU / "network", with_private_keys=False)


def test_committed_network_holds_no_private_key() -> None:
    tracked = subprocess.run(["git", "ls-files", str(BESU)], capture_output=True, text=True, check=True,
                             cwd=BESU).stdout.split()
    assert tracked, "infra/besu is not committed"
    assert not [p for p in tracked if p.endswith(("/key", ".key"))]


def test_generated_network_is_consistent_and_new(tmp_path: Path) -> None:
    for out in (tmp_path / "a", tmp_path / "b"):
        subprocess.run([sys.executable, str(BESU / "generate.py"), "--out", str(out), "--host", "127.0.0.1",
                        "--p2p-port", "40303", "--rpc-port", "18545"], check=True, capture_output=True, timeout=60)
        check_network(out, with_private_keys=True)
        assert (out / "node1" / "key").stat().st_mode & 0o077 == 0  # secret files are private
    assert (tmp_path / "a" / "node1" / "key").read_text() != (tmp_path / "b" / "node1" / "key").read_text()


def test_besu_generator_config_matches_the_genesis() -> None:
    cfg = json.loads((BESU / "qbftConfigFile.json").read_text())
    genesis = json.loads((BESU / "network" / "genesis.json").read_text())
    assert cfg["genesis"]["config"] == genesis["config"]
    assert cfg["blockchain"]["nodes"] == {"generate": True, "count": 4}
