"""Chain benchmark: gas per anchor vs storing one hash per reading, and anchors per second on anvil.

    .venv/bin/python bench/chain_gas.py [--leaves 100] [--anchors 1000] [--batch 20]

Starts its own anvil (lec.services.start_anvil). Baselines measured in the same run:
- gas: NaiveReadingStore.storeAll(N hashes) for one QH of N leaves (one stored hash per reading)
  against one Notary anchor (Merkle roots + aggregates) for the same QH;
- throughput: plain ETH transfers through the same signer/pipeline (the chain's ceiling) against
  anchors sent one per transaction and in anchorBatch transactions.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_utils import keccak

from lec.services import start_anvil
from oracle.chain.client import NotaryClient, community_key, deploy
from oracle.chain.keys import address_of, dev_key
from oracle.chain.tx import TxSender, artifact, connect
from oracle.types import AnchorData, RewardParams

QH0 = 1_704_067_200
CID = "bench"


def anchors_for(start: int, count: int, leaves: int, salt: str = "") -> list[AnchorData]:
    return [AnchorData(CID, community_key(CID), QH0 + 900 * (start + i), 1,
                       keccak(text=f"r{start + i}{salt}"), leaves, 123_456, 98_765, 98_765,
                       keccak(text=f"w{start + i}{salt}"), 10**18 + i, 1) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=100, help="leaves of a typical QH: (device, flow) pairs")
    parser.add_argument("--anchors", type=int, default=1000, help="anchors per throughput run")
    parser.add_argument("--batch", type=int, default=20, help="anchors per anchorBatch transaction")
    args = parser.parse_args()

    proc, url = start_anvil(Path(tempfile.mkdtemp(prefix="lec-bench-chain-")))
    try:
        key = dev_key(0)
        d = deploy(url, key, oracle_address=address_of(key), community_ids=[CID],
                   params=RewardParams(3, 1, 1, 1, 1000, 5000, 5000, 0))
        w3 = connect(url)
        sender = TxSender(w3, key)

        # ---- gas ------------------------------------------------------------------------
        naive_receipt = sender.transact(None, artifact("NaiveReadingStore")["bytecode"], label="deploy naive")
        naive = w3.eth.contract(address=naive_receipt["contractAddress"], abi=artifact("NaiveReadingStore")["abi"])
        hashes = [keccak(text=f"reading {i}") for i in range(args.leaves)]
        naive_gas = sender.transact(naive.address, naive.encode_abi("storeAll", [hashes]), label="storeAll")["gasUsed"]

        one = NotaryClient(url, d, key, max_anchors_per_tx=1)
        tx = one.submit_anchors(anchors_for(0, 1, args.leaves))[0]
        single_gas = w3.eth.get_transaction_receipt(tx.txHash)["gasUsed"]
        batched = NotaryClient(url, d, key, max_anchors_per_tx=args.batch)
        tx = batched.submit_anchors(anchors_for(1, args.batch, args.leaves))[0]
        batch_gas = w3.eth.get_transaction_receipt(tx.txHash)["gasUsed"] / args.batch

        # ---- throughput -----------------------------------------------------------------
        n = args.anchors
        target = address_of(dev_key(9))
        fees = sender.fee_fields()
        t = time.perf_counter()
        pend = [sender.send(target, "0x", gas=21_000, value=1, fees=fees, label="transfer") for _ in range(n)]
        sender.wait_many(pend)
        transfers_s = n / (time.perf_counter() - t)

        t = time.perf_counter()
        one.submit_anchors(anchors_for(10_000, n, args.leaves))
        single_s = n / (time.perf_counter() - t)

        t = time.perf_counter()
        batched.submit_anchors(anchors_for(100_000, n, args.leaves))
        batch_s = n / (time.perf_counter() - t)

        print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}, anvil")
        print(f"gas, one QH of {args.leaves} leaves:")
        print(f"  naive, one stored hash per reading : {naive_gas:>10,} gas")
        print(f"  anchor, one per transaction        : {single_gas:>10,} gas  ratio naive/anchor {naive_gas / single_gas:6.1f}x")
        print(f"  anchor, {args.batch} per anchorBatch       : {batch_gas:>10,.0f} gas  ratio naive/anchor {naive_gas / batch_gas:6.1f}x")
        print(f"throughput, {n} each, pipelined:")
        print(f"  ETH transfers (baseline)           : {transfers_s:8.0f} tx/s")
        print(f"  anchors, one per transaction       : {single_s:8.0f} anchors/s  ratio {single_s / transfers_s:5.2f}x")
        print(f"  anchors, {args.batch} per anchorBatch       : {batch_s:8.0f} anchors/s  ratio {batch_s / transfers_s:5.2f}x")
    finally:
        proc.stop()


if __name__ == "__main__":
    main()
