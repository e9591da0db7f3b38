"""Oracle benchmarks: Merkle leaves hashed per second, QHs anchored per second on anvil, and the
audit verification of one member's year.

    .venv/bin/python bench/oracle.py [--leaves 20000] [--qhs 400] [--days 31]

Baselines measured in the same run:
- hashing: the obvious implementation (eth_abi.encode + eth_utils.keccak per leaf) and the npm
  reference @openzeppelin/merkle-tree building the same tree (node, timed inside node);
- anchoring: the chain alone (submit_anchors of precomputed anchors) against the whole oracle
  path (salts, both trees, rewards, chain, lake records);
- audit: `lec audit verify` logic (oracle.verify) against the OpenZeppelin-only auditor script
  (examples/audit_takeout.js) on the same member take-out. The take-out covers ``--days`` of
  QHs anchored on anvil; the year figure is extrapolated linearly (verification is per QH).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_abi import encode
from eth_utils import keccak as eth_keccak

from oracle.merkle import READINGS_TYPES, StandardMerkleTree, leaf_hash

QH0 = 1_704_067_200


def bench_hashing(n: int) -> dict[str, float]:
    rng = random.Random(1)
    values = [[rng.randbytes(32), QH0 + 900 * (i % 96), rng.randrange(-10**7, 10**7), rng.randbytes(32)]
              for i in range(n)]
    t = time.perf_counter()
    for v in values:
        eth_keccak(eth_keccak(encode(list(READINGS_TYPES), v)))
    base = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for v in values:
        leaf_hash(READINGS_TYPES, v)
    ours = n / (time.perf_counter() - t)
    t = time.perf_counter()
    tree = StandardMerkleTree.of(values, READINGS_TYPES)
    ours_tree = n / (time.perf_counter() - t)
    req = {"op": "build", "types": list(READINGS_TYPES), "noProofs": True,
           "values": [["0x" + v[0].hex(), str(v[1]), str(v[2]), "0x" + v[3].hex()] for v in values]}
    out = json.loads(subprocess.run(["node", str(ROOT / "tests" / "support" / "ozmerkle.js")],
                                    input=json.dumps(req).encode(), capture_output=True, check=True).stdout)
    assert out["root"] == "0x" + tree.root.hex()
    oz_tree = n / (out["buildMs"] / 1000)
    return {"leaves": n, "baseline_eth_abi_leaf_per_s": base, "ours_leaf_per_s": ours,
            "ours_tree_leaves_per_s": ours_tree, "oz_npm_tree_leaves_per_s": oz_tree}


def bench_chain(qhs: int, days: int, tmp: Path) -> dict[str, float]:
    from lec.registry import Registry, SecretStore
    from lec.services import start_anvil
    from oracle.anchoring import Anchorer, AnchorJob
    from oracle.chain.client import community_key
    from oracle.store import OracleLake
    from oracle.takeout import build_takeout
    from oracle.types import AnchorData
    from oracle.verify import verify_takeout
    from tests.conftest import EXAMPLE_COMMUNITY
    from tests.support.oracle_env import ANNA, COMMUNITY, FLOWS, deploy_chain, oracle_client

    proc, rpc = start_anvil(tmp / "anvil")
    try:
        secrets = SecretStore(f"sqlite:///{tmp / 'secrets.db'}")
        reg = Registry(f"sqlite:///{tmp / 'registry.db'}", secrets)
        reg.migrate()
        reg.load_file(EXAMPLE_COMMUNITY)
        dep, _, _ = deploy_chain(rpc, tmp)
        client = oracle_client(rpc, dep)
        rng = random.Random(2)

        def job(k: int) -> AnchorJob:
            sums = {(sup, dev, flow): (acc, rng.randrange(1, 400_000) * (1 if acc == 1 else -1))
                    for flow, (sup, dev, acc) in FLOWS.items()}
            return AnchorJob(COMMUNITY, QH0 + 900 * k, 1, sums)

        # baseline: the chain alone, precomputed anchors (far-away QHs so they do not collide)
        far = QH0 + 900 * 10**6
        pre = [AnchorData(COMMUNITY, community_key(COMMUNITY), far + 900 * i, 1, eth_keccak(text=f"r{i}"), 3,
                          1000, 900, 900, eth_keccak(text=f"w{i}"), 10**18, 1) for i in range(qhs)]
        t = time.perf_counter()
        client.submit_anchors(pre)
        chain_only = qhs / (time.perf_counter() - t)

        lake = OracleLake(str(tmp / "lake"))
        anchorer = Anchorer(client, lake, secrets, reg.snapshot, chain_id=dep.chainId, notary=dep.notary)
        t = time.perf_counter()
        anchorer.run([job(k) for k in range(qhs)])
        oracle_path = qhs / (time.perf_counter() - t)

        # a member's period: anchor `days` of QHs (after the ones above), take out Anna's, verify it
        n_period = 96 * days
        for start in range(qhs, qhs + n_period, 500):
            anchorer.run([job(k) for k in range(start, min(start + 500, qhs + n_period))])
        lo, hi = QH0 + 900 * qhs, QH0 + 900 * (qhs + n_period)
        t = time.perf_counter()
        doc = build_takeout(lake, client, secrets, community_id=COMMUNITY, qh_from=lo, qh_to=hi, member=ANNA)
        takeout_s = time.perf_counter() - t
        path = tmp / "anna.json"
        path.write_text(json.dumps(doc))
        t = time.perf_counter()
        problems = verify_takeout(doc, rpc)
        verify_s = time.perf_counter() - t
        assert problems == [], problems[:3]
        t = time.perf_counter()
        subprocess.run(["node", str(ROOT / "examples" / "audit_takeout.js"), str(path), rpc], check=True,
                       capture_output=True)
        oz_s = time.perf_counter() - t
        year = 35040 / len(doc["anchors"])
        return {"chain_only_anchors_per_s": chain_only, "oracle_qhs_per_s": oracle_path, "period_qhs": len(doc["anchors"]),
                "takeout_s": takeout_s, "verify_s": verify_s, "oz_script_s": oz_s,
                "verify_year_s_extrapolated": verify_s * year, "oz_year_s_extrapolated": oz_s * year}
    finally:
        proc.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leaves", type=int, default=20000)
    ap.add_argument("--qhs", type=int, default=400)
    ap.add_argument("--days", type=int, default=31)
    args = ap.parse_args()
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    h = bench_hashing(args.leaves)
    print(f"leaf hashing ({h['leaves']} readings leaves): eth_abi+eth_utils baseline {h['baseline_eth_abi_leaf_per_s']:,.0f}/s, "
          f"ours {h['ours_leaf_per_s']:,.0f}/s (x{h['ours_leaf_per_s'] / h['baseline_eth_abi_leaf_per_s']:.1f})")
    print(f"tree build incl. leaf hashing: ours {h['ours_tree_leaves_per_s']:,.0f} leaves/s, npm @openzeppelin/merkle-tree "
          f"{h['oz_npm_tree_leaves_per_s']:,.0f} leaves/s (x{h['ours_tree_leaves_per_s'] / h['oz_npm_tree_leaves_per_s']:.2f})")
    with tempfile.TemporaryDirectory() as tmp:
        c = bench_chain(args.qhs, args.days, Path(tmp))
    print(f"anchoring {args.qhs} QHs on anvil: chain alone {c['chain_only_anchors_per_s']:,.0f} anchors/s, "
          f"full oracle path {c['oracle_qhs_per_s']:,.0f} QHs/s (x{c['oracle_qhs_per_s'] / c['chain_only_anchors_per_s']:.2f})")
    print(f"member take-out of {c['period_qhs']} QHs ({args.days} days): built in {c['takeout_s']:.1f} s, verified in "
          f"{c['verify_s']:.1f} s (OpenZeppelin-only script {c['oz_script_s']:.1f} s, x{c['oz_script_s'] / c['verify_s']:.2f})")
    print(f"member-year (35040 QHs), extrapolated: verify {c['verify_year_s_extrapolated']:.0f} s, "
          f"OZ script {c['oz_year_s_extrapolated']:.0f} s")


if __name__ == "__main__":
    main()
