"""Sending transactions: one signer, local nonces, EIP-1559 or legacy fees, pipelined sends,
receipts, retries and revert reasons decoded from the contracts' custom errors.

Private keys stay inside the ``eth_account`` object: never printed, logged or put in an error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from lec.errors import LecError

log = logging.getLogger("lec.chain")

ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "contracts" / "artifacts"


class ChainError(LecError):
    """The chain or a contract refused or failed an operation."""


class ChainConnectionError(ChainError):
    """The JSON-RPC endpoint did not answer."""


class TxFailedError(ChainError):
    """A transaction (or its dry run) reverted; ``reason`` is the decoded custom error."""

    def __init__(self, message: str, *, reason: str = "", tx_hash: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.tx_hash = tx_hash


@cache
def artifact(name: str) -> dict[str, Any]:
    """A compiled contract (contracts/artifacts/<name>.json: abi, bytecode, metadata)."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.exists():
        raise ChainError(f"contract artifact {path} is missing: run `node contracts/compile.js`")
    return json.loads(path.read_text())


@lru_cache(maxsize=1)
def _error_decoders() -> dict[str, tuple[str, list[str]]]:
    """4-byte selector -> (error name, input types) for every custom error of our contracts."""
    from eth_utils import keccak

    out: dict[str, tuple[str, list[str]]] = {}
    for name in ("Notary", "CommunityToken"):
        for item in artifact(name)["abi"]:
            if item["type"] != "error":
                continue
            types = [i["type"] for i in item["inputs"]]
            selector = "0x" + keccak(text=f"{item['name']}({','.join(types)})")[:4].hex()
            out[selector] = (item["name"], types)
    return out


def decode_revert(data: str | bytes | None) -> str:
    """A readable reason from revert data: `Name(arg, ...)`, an Error(string) text or a panic."""
    from eth_abi import decode

    if data is None:
        return "reverted without data"
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    if len(raw) < 4:
        return "reverted without data"
    selector, body = "0x" + raw[:4].hex(), raw[4:]
    if selector == "0x08c379a0":
        return decode(["string"], body)[0]
    if selector == "0x4e487b71":
        return f"panic 0x{decode(['uint256'], body)[0]:02x}"
    known = _error_decoders().get(selector)
    if known is None:
        return f"custom error {selector}"
    name, types = known
    args = decode(types, body)
    shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)
    return f"{name}({shown})"


def revert_reason(exc: Exception) -> str | None:
    """The decoded reason if ``exc`` is a revert raised by web3, else None."""
    from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

    if isinstance(exc, (ContractCustomError, ContractPanicError)):
        data = exc.data if isinstance(exc.data, str) else (exc.data or {}).get("data") if exc.data else None
        return decode_revert(data)
    if isinstance(exc, ContractLogicError):
        data = exc.data if isinstance(exc.data, str) else None
        return decode_revert(data) if data and len(data) > 10 else (exc.message or str(exc))
    return None


def call_encoder(contract: str, function: str) -> Callable[..., str]:
    """A fast calldata encoder for one function (eth_abi directly: ~10x cheaper than web3's encode_abi,
    which matters when hundreds of anchor transactions are pipelined)."""
    from eth_abi import encode
    from eth_utils.abi import collapse_if_tuple, function_abi_to_4byte_selector

    items = [i for i in artifact(contract)["abi"] if i.get("type") == "function" and i["name"] == function]
    if len(items) != 1:
        raise ChainError(f"{contract}.{function} is missing or overloaded in the artifact")
    types = [collapse_if_tuple(i) for i in items[0]["inputs"]]
    selector = function_abi_to_4byte_selector(items[0])

    def encoder(*args: Any) -> str:
        return "0x" + (selector + encode(types, list(args))).hex()
    return encoder


def _receipt_from_json(raw: dict[str, Any]) -> dict[str, Any]:
    """The receipt fields we use, from a raw JSON-RPC receipt (hex quantities)."""
    from eth_utils import to_checksum_address
    from hexbytes import HexBytes

    contract = raw.get("contractAddress")
    return {"status": int(raw["status"], 16), "blockNumber": int(raw["blockNumber"], 16),
            "transactionHash": HexBytes(raw["transactionHash"]), "gasUsed": int(raw["gasUsed"], 16),
            "contractAddress": to_checksum_address(contract) if contract else None, "logs": raw.get("logs", [])}


@dataclass
class PendingTx:
    tx_hash: str
    tx: dict[str, Any]
    label: str


def connect(rpc_url: str, timeout_s: float = 30.0):
    """A web3 connection that answers, or ChainConnectionError."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
    try:
        _ = w3.eth.chain_id  # a first request: fails fast if nothing answers
    except Exception as exc:  # noqa: BLE001 - any transport failure means the same to the user
        raise ChainConnectionError(f"no JSON-RPC answer from {rpc_url}: {exc.__class__.__name__}") from None
    return w3


class TxSender:
    """Signs and sends transactions from one account, keeping the nonce locally so that many
    transactions can be in flight at once (the chain mines them in nonce order)."""

    RECEIPT_TIMEOUT_S = 120.0
    SEND_RETRIES = 3

    def __init__(self, w3, private_key: str) -> None:
        from eth_account import Account

        try:
            self._account = Account.from_key(private_key)
        except Exception:  # noqa: BLE001 - never echo the key material
            raise ChainError("the private key is not a valid 32-byte hex secp256k1 key") from None
        self.w3 = w3
        self.address: str = self._account.address
        self.chain_id: int = w3.eth.chain_id
        self._nonce: int | None = None

    def __repr__(self) -> str:  # never show the key
        return f"TxSender(address={self.address}, chain_id={self.chain_id})"

    # ---- fees and nonces -------------------------------------------------------------

    def fee_fields(self) -> dict[str, int]:
        latest = self.w3.eth.get_block("latest")
        base = latest.get("baseFeePerGas")
        if base is None:
            return {"gasPrice": self.w3.eth.gas_price}
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except Exception:  # noqa: BLE001 - some nodes lack eth_maxPriorityFeePerGas
            tip = 0
        return {"maxFeePerGas": 2 * int(base) + tip, "maxPriorityFeePerGas": tip}

    def _next_nonce(self) -> int:
        if self._nonce is None:
            self._nonce = self.w3.eth.get_transaction_count(self.address, "pending")
        nonce = self._nonce
        self._nonce += 1
        return nonce

    def resync_nonce(self) -> None:
        self._nonce = None

    # ---- sending ---------------------------------------------------------------------

    def estimate(self, to: str | None, data: str, value: int = 0) -> int:
        """Gas estimate with a 25% margin; a revert in the dry run becomes TxFailedError."""
        tx: dict[str, Any] = {"from": self.address, "data": data, "value": value}
        if to is not None:
            tx["to"] = to
        try:
            gas = self.w3.eth.estimate_gas(tx)
        except Exception as exc:  # noqa: BLE001
            reason = revert_reason(exc)
            if reason is None:
                raise ChainError(f"gas estimation failed: {exc}") from None
            raise TxFailedError(f"transaction would revert: {reason}", reason=reason) from None
        return int(gas * 1.25) + 10_000

    def send(self, to: str | None, data: str, *, gas: int | None = None, value: int = 0,
             label: str = "tx", fees: dict[str, int] | None = None) -> PendingTx:
        """Signs and sends one transaction without waiting for it (gas estimated if not given)."""
        if gas is None:
            gas = self.estimate(to, data, value)
        tx: dict[str, Any] = {"chainId": self.chain_id, "from": self.address, "data": data, "value": value,
                              "gas": gas, **(fees or self.fee_fields())}
        if to is not None:
            tx["to"] = to
        signed = None
        for attempt in range(self.SEND_RETRIES):
            if signed is None:
                tx["nonce"] = self._next_nonce()
                signed = self._account.sign_transaction(tx)
            tx_hash = "0x" + bytes(signed.hash).hex()
            try:
                self.w3.eth.send_raw_transaction(signed.raw_transaction)
                return PendingTx(tx_hash, tx, label)
            except Exception as exc:  # noqa: BLE001
                message = str(exc).lower()
                last = attempt + 1 == self.SEND_RETRIES
                if "already known" in message or "known transaction" in message:
                    return PendingTx(tx_hash, tx, label)  # an earlier attempt reached the node
                if "nonce" in message and not last:
                    if self._known(tx_hash):
                        return PendingTx(tx_hash, tx, label)
                    log.warning("nonce out of step for %s (%s): resynchronising", label, exc)
                    self.resync_nonce()
                    signed = None  # another signer used that nonce: sign again with a fresh one
                    continue
                if ("connection" in message or "timed out" in message) and not last:
                    time.sleep(0.5 * (attempt + 1))
                    continue  # resend the same signed transaction: never two with one intent
                self.resync_nonce()
                reason = revert_reason(exc)
                if reason is not None:
                    raise TxFailedError(f"{label} refused: {reason}", reason=reason) from None
                raise ChainError(f"{label} could not be sent: {exc}") from None
        raise ChainError(f"{label} could not be sent after {self.SEND_RETRIES} attempts")

    def _known(self, tx_hash: str) -> bool:
        try:
            return self.w3.eth.get_transaction(tx_hash) is not None
        except Exception:  # noqa: BLE001 - TransactionNotFound or a transport error: not known
            return False

    def wait(self, pending: PendingTx) -> dict[str, Any]:
        """The receipt of a sent transaction; a revert becomes TxFailedError with its reason."""
        return self.wait_many([pending])[0]

    def wait_many(self, pending: list[PendingTx]) -> list[dict[str, Any]]:
        """Receipts of many sent transactions, polled with JSON-RPC batch requests; the first
        revert (in nonce order) raises TxFailedError after every receipt is in."""
        receipts: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.RECEIPT_TIMEOUT_S
        delay = 0.005
        while True:
            missing = [p.tx_hash for p in pending if p.tx_hash not in receipts]
            for start in range(0, len(missing), 200):
                chunk = missing[start:start + 200]
                answers = self.w3.provider.make_batch_request([("eth_getTransactionReceipt", [h]) for h in chunk])
                if isinstance(answers, dict):  # the node refused the batch as a whole
                    raise ChainError(f"receipt query failed: {answers.get('error')}")
                for h, answer in zip(chunk, answers):
                    if answer.get("error"):
                        raise ChainError(f"receipt query for {h} failed: {answer['error']}")
                    if answer.get("result"):
                        receipts[h] = _receipt_from_json(answer["result"])
            if len(receipts) == len(pending):
                break
            if time.monotonic() > deadline:
                raise ChainError(f"{len(pending) - len(receipts)} transactions not mined after "
                                 f"{self.RECEIPT_TIMEOUT_S:.0f} s: is the chain producing blocks?")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        out = [receipts[p.tx_hash] for p in pending]
        for p, receipt in zip(pending, out):
            if receipt["status"] != 1:
                reason = self._replay_reason(p, receipt["blockNumber"])
                raise TxFailedError(f"{p.label} {p.tx_hash} reverted: {reason}", reason=reason, tx_hash=p.tx_hash)
        return out

    def _replay_reason(self, pending: PendingTx, block: int) -> str:
        call = {k: pending.tx[k] for k in ("from", "to", "data", "value") if k in pending.tx}
        call["gas"] = pending.tx["gas"]
        for at in (block - 1, block):
            try:
                self.w3.eth.call(call, at)
            except Exception as exc:  # noqa: BLE001
                reason = revert_reason(exc)
                if reason:
                    return reason
        return "out of gas or reverted without data"

    def transact(self, to: str | None, data: str, *, gas: int | None = None, value: int = 0,
                 label: str = "tx") -> dict[str, Any]:
        """Send and wait."""
        return self.wait(self.send(to, data, gas=gas, value=value, label=label))
