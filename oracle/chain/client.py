"""Python client of the platform's contracts (contracts/src: Notary + one CommunityToken per community).

Interface (stable; the oracle package uses it):

    @dataclass(frozen=True)
    class Deployment:
        chainId: int; notary: str; tokens: dict[str, str]  # community_id -> CommunityToken address
        deployer: str; block: int; oracle: str = ""
        def token_for(self, community_id: str) -> str   # UnknownCommunityError if not deployed
        def to_json(self) -> dict;  @classmethod from_json(d) -> Deployment

    deploy(rpc_url, deployer_key, *, oracle_address, community_ids, welcome_bonus=0,
           params: RewardParams | None = None) -> Deployment
        Deployer becomes Platform, Oracle, Community and Token Admin; oracle_address gets
        ORACLE_ROLE; the notary is each token's minter; `params` (if given) is set as version 1
        of every community.
    save_deployment(d, path) / load_deployment(path) -> Deployment
    community_key(community_id) -> bytes   # keccak256(utf8(community_id)), oracle.md §2

    class NotaryClient(rpc_url, deployment, private_key: str | None):   # None = read-only
        address: str                                   # the signer ("" if read-only)
        set_params(community_id, params) -> int        # new paramsVersion (1-based); Oracle Admin
        params_for(community_id, qh) -> (version, RewardParams)   # NoParamsError if none in force
        params_version(community_id, version) -> RewardParams
        params_version_at(community_id, qh) -> int     # 0 if none in force
        params_count(community_id) -> int
        latest_version(community_id, qh) -> int        # 0 if never anchored
        get_anchor(community_id, qh, version) -> AnchorData   # NotAnchoredError
        submit_anchors(anchors) -> list[TxResult]      # one per anchor, same order; oracle role
        anchor_tx(community_id, qh, version) -> TxResult      # from the Anchored event
        claim_batch(community_id, claims: [(qh, wallet, amount, proof: list[bytes])]) -> TxResult
        claim(community_id, qh, wallet, amount, proof) -> TxResult
        claimed(community_id, qh, wallet) -> int
        balance_of(community_id, wallet) -> int
        is_member(community_id, wallet) -> bool
        add_member(community_id, wallet) -> TxResult   # Community Admin; mints the welcome bonus
        remove_member(community_id, wallet) -> TxResult
        add_members(community_id, wallets) -> int     # pipelined; skips current members; count added
        set_welcome_bonus(community_id, amount) -> TxResult
        grant_role(role, account, community_id=None) -> TxResult   # role names in NOTARY_ROLES / TOKEN_ROLES
        configure_token(community_id, *, transfer_fee_bps=None, service_incentive_bps=None, sale_rate=None,
                        welcome_bonus=None, fund_treasury=None) -> list[TxResult]   # Token/Community Admin
        token_settings(community_id) -> dict           # fee, incentive, sale rate, bonus, treasury, supply
        w3, notary (web3 contract), deployment         # for event queries and receipts

    default_deployment_path(settings=None) -> Path   # <run_dir>/chain/deployment.json (`lec chain deploy`)

    Errors (all lec.errors.LecError): ChainError, ChainConnectionError, TxFailedError (.reason),
    UnknownCommunityError, NoParamsError, NotAnchoredError, AnchorConflictError (a version is
    on chain with other content), AnchorUnchangedError (same content as the latest version),
    AnchorVersionError (a version gap).

submit_anchors is restart-safe: an anchor whose (community, qh, version) is already on chain
with the same content is not sent again; its original transaction is returned. Anchors go in
`anchorBatch` transactions of up to ``max_anchors_per_tx`` each, all sent before any receipt is
awaited (pipelined, local nonces).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oracle.chain.token import NOTARY_ROLES, TOKEN_ROLES, TokenMixin, contract_at, role_id
from oracle.chain.tx import (
    ChainConnectionError,
    ChainError,
    PendingTx,
    TxFailedError,
    TxSender,
    call_encoder,
    connect,
    revert_reason,
)
from oracle.types import AnchorData, RewardParams, TxResult

__all__ = [
    "NOTARY_ROLES",
    "TOKEN_ROLES",
    "AnchorConflictError",
    "AnchorUnchangedError",
    "AnchorVersionError",
    "ChainConnectionError",
    "ChainError",
    "Deployment",
    "NoParamsError",
    "NotAnchoredError",
    "NotaryClient",
    "TxFailedError",
    "UnknownCommunityError",
    "community_key",
    "default_deployment_path",
    "deploy",
    "load_deployment",
    "save_deployment",
]

ZERO32 = b"\x00" * 32
# Gas limits for anchors are computed, not estimated: a pipelined version n+1 cannot be
# estimated before version n is mined. Measured ~120k per new anchor (bench/chain_gas.py).
ANCHOR_TX_BASE_GAS = 60_000
ANCHOR_GAS_EACH = 200_000
# Widths of the notary's packed anchor fields (Notary.AnchorInput).
_ANCHOR_FIELD_BITS = {"version": 32, "leafCount": 32, "consumptionMwh": 96, "productionMwh": 96, "sharedMwh": 96,
                      "rewardTotal": 160, "paramsVersion": 32}


class UnknownCommunityError(ChainError):
    """The community has no token in this deployment."""


class NoParamsError(ChainError):
    """No reward-parameter version is in force for that quarter-hour."""


class NotAnchoredError(ChainError):
    """No anchor exists for that (community, qh, version)."""


class AnchorConflictError(ChainError):
    """That (community, qh, version) is already anchored with different content."""


class AnchorUnchangedError(ChainError):
    """The anchor has the same content as the latest version: anchoring is idempotent."""


class AnchorVersionError(ChainError):
    """The anchor's version is not the next one of its quarter-hour."""


def community_key(community_id: str) -> bytes:
    """communityId of oracle.md §2: keccak256(utf8(community_id))."""
    from eth_utils import keccak

    return keccak(text=community_id)


@dataclass(frozen=True)
class Deployment:
    chainId: int
    notary: str
    tokens: dict[str, str] = field(hash=False)   # community_id -> CommunityToken address
    deployer: str
    block: int
    oracle: str = ""

    def token_for(self, community_id: str) -> str:
        try:
            return self.tokens[community_id]
        except KeyError:
            raise UnknownCommunityError(
                f"community '{community_id}' has no token in this deployment (deployed: "
                f"{', '.join(sorted(self.tokens)) or 'none'}): redeploy with it") from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        try:
            return cls(chainId=int(data["chainId"]), notary=str(data["notary"]),
                       tokens={str(k): str(v) for k, v in dict(data["tokens"]).items()},
                       deployer=str(data["deployer"]), block=int(data["block"]), oracle=str(data.get("oracle", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(f"deployment record is incomplete or malformed: {exc}") from None


def default_deployment_path(settings: Any = None) -> Path:
    """Where `lec chain deploy` records the deployment: <run_dir>/chain/deployment.json."""
    from lec.config import settings as current

    return (settings or current()).resolved_run_dir() / "chain" / "deployment.json"


def save_deployment(d: Deployment, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(d.to_json(), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def load_deployment(path: Path) -> Deployment:
    if not path.exists():
        raise ChainError(f"no deployment record at {path}: run `lec chain deploy` first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ChainError(f"deployment record {path} is not valid JSON: {exc}") from None
    return Deployment.from_json(data)


def _params_tuple(p: RewardParams) -> tuple[int, ...]:
    return (p.modelId, p.rateConsumption, p.rateProduction, p.rateNoPeak, p.peakMwh, p.w1Bps, p.w2Bps,
            p.effectiveFrom)


def _params_from(raw: Sequence[int]) -> RewardParams:
    return RewardParams(*(int(v) for v in raw))


def deploy(rpc_url: str, deployer_key: str, *, oracle_address: str, community_ids: list[str],
           welcome_bonus: int = 0, params: RewardParams | None = None,
           token_symbol: str = "LEC") -> Deployment:
    """Deploys the notary and one token per community, wires the roles; see the module doc."""
    if not community_ids:
        raise ChainError("deploy needs at least one community id")
    if len(set(community_ids)) != len(community_ids):
        raise ChainError("community ids must be unique")
    w3 = connect(rpc_url)
    sender = TxSender(w3, deployer_key)
    me = sender.address
    oracle = w3.to_checksum_address(oracle_address)

    notary_factory = contract_at(w3, "Notary")
    token_factory = contract_at(w3, "CommunityToken")
    pend_notary = sender.send(None, notary_factory.constructor(me).data_in_transaction, label="deploy Notary")
    pend_tokens = [
        sender.send(None, token_factory.constructor(f"LEC {cid}", token_symbol, community_key(cid), me)
                    .data_in_transaction, label=f"deploy CommunityToken {cid}")
        for cid in community_ids
    ]
    notary_receipt = sender.wait(pend_notary)
    notary_addr = notary_receipt["contractAddress"]
    tokens = {cid: sender.wait(p)["contractAddress"] for cid, p in zip(community_ids, pend_tokens)}

    notary = contract_at(w3, "Notary", notary_addr)
    steps: list[PendingTx] = []
    steps.append(sender.send(notary_addr, notary.encode_abi("grantRole", [role_id("ORACLE_ADMIN_ROLE"), me]),
                             gas=120_000, label="grant ORACLE_ADMIN_ROLE"))
    steps.append(sender.send(notary_addr, notary.encode_abi("grantRole", [role_id("ORACLE_ROLE"), oracle]),
                             gas=120_000, label="grant ORACLE_ROLE"))
    for cid, token_addr in tokens.items():
        token = contract_at(w3, "CommunityToken", token_addr)
        for role, who in (("COMMUNITY_ADMIN_ROLE", me), ("TOKEN_ADMIN_ROLE", me), ("MINTER_ROLE", notary_addr)):
            steps.append(sender.send(token_addr, token.encode_abi("grantRole", [role_id(role), who]),
                                     gas=120_000, label=f"grant {role} on {cid}"))
        steps.append(sender.send(notary_addr, notary.encode_abi("registerCommunity", [community_key(cid), token_addr]),
                                 gas=120_000, label=f"register community {cid}"))
    sender.wait_many(steps)
    deployment = Deployment(chainId=sender.chain_id, notary=notary_addr, tokens=tokens, deployer=me,
                            block=int(notary_receipt["blockNumber"]), oracle=oracle)
    if welcome_bonus or params is not None:
        client = NotaryClient(rpc_url, deployment, deployer_key)
        for cid in community_ids:
            if welcome_bonus:
                client.set_welcome_bonus(cid, welcome_bonus)
            if params is not None:
                client.set_params(cid, params)
    return deployment


class NotaryClient(TokenMixin):
    """Reads and writes the notary and the community tokens as the holder of ``private_key``."""

    def __init__(self, rpc_url: str, deployment: Deployment, private_key: str | None, *,
                 max_anchors_per_tx: int = 20) -> None:
        self.w3 = connect(rpc_url)
        self.deployment = deployment
        chain_id = self.w3.eth.chain_id
        if chain_id != deployment.chainId:
            raise ChainError(f"{rpc_url} is chain {chain_id} but the deployment is on chain "
                             f"{deployment.chainId}: wrong --rpc or deployment record")
        # private_key None: a read-only client (every read works, every write raises ChainError).
        self._signer = TxSender(self.w3, private_key) if private_key else None
        self.address = self._signer.address if self._signer else ""
        self.notary = contract_at(self.w3, "Notary", deployment.notary)
        self.max_anchors_per_tx = max(1, max_anchors_per_tx)
        self._params_cache: dict[tuple[str, int], RewardParams] = {}
        self._encode_anchor_batch = call_encoder("Notary", "anchorBatch")

    def __repr__(self) -> str:
        return f"NotaryClient(notary={self.deployment.notary}, signer={self.address})"

    # ---- helpers ---------------------------------------------------------------------

    @property
    def _sender(self) -> TxSender:
        if self._signer is None:
            raise ChainError("this chain client is read-only: give it a private key to send transactions")
        return self._signer

    def params_count(self, community_id: str) -> int:
        return int(self._call(self.notary.functions.paramsCount(self._cid(community_id))))

    def _call(self, fn) -> Any:
        try:
            return fn.call()
        except Exception as exc:  # noqa: BLE001
            reason = revert_reason(exc)
            if reason is None:
                raise ChainError(f"chain call failed: {exc}") from None
            raise TxFailedError(f"call reverted: {reason}", reason=reason) from None

    def _transact(self, to: str, data: str, label: str) -> TxResult:
        receipt = self._sender.transact(to, data, label=label)
        return TxResult(txHash="0x" + bytes(receipt["transactionHash"]).hex(), blockNumber=int(receipt["blockNumber"]))

    def _cid(self, community_id: str) -> bytes:
        self.deployment.token_for(community_id)  # typed error for an unknown community
        return community_key(community_id)

    # ---- parameters ------------------------------------------------------------------

    def set_params(self, community_id: str, params: RewardParams) -> int:
        cid = self._cid(community_id)
        data = self.notary.encode_abi("setParams", [cid, _params_tuple(params)])
        self._transact(self.deployment.notary, data, f"setParams {community_id}")
        return int(self._call(self.notary.functions.paramsCount(cid)))

    def params_version_at(self, community_id: str, qh: int) -> int:
        return int(self._call(self.notary.functions.paramsVersionAt(self._cid(community_id), qh)))

    def params_version(self, community_id: str, version: int) -> RewardParams:
        key = (community_id, version)
        if key not in self._params_cache:  # versions are append-only: safe to cache
            try:
                raw = self._call(self.notary.functions.paramsVersion(self._cid(community_id), version))
            except TxFailedError:
                raise NoParamsError(f"community '{community_id}' has no parameter version {version}") from None
            self._params_cache[key] = _params_from(raw)
        return self._params_cache[key]

    def params_for(self, community_id: str, qh: int) -> tuple[int, RewardParams]:
        version = self.params_version_at(community_id, qh)
        if version == 0:
            raise NoParamsError(f"community '{community_id}' has no reward parameters in force at qh {qh}: "
                                f"an Oracle Admin must set them (`setParams`) with effectiveFrom <= {qh}")
        return version, self.params_version(community_id, version)

    # ---- anchors ---------------------------------------------------------------------

    def latest_version(self, community_id: str, qh: int) -> int:
        return int(self._call(self.notary.functions.latestVersion(self._cid(community_id), qh)))

    def get_anchor(self, community_id: str, qh: int, version: int) -> AnchorData:
        cid = self._cid(community_id)
        try:
            raw = self._call(self.notary.functions.getAnchor(cid, qh, version))
        except TxFailedError:
            raise NotAnchoredError(f"community '{community_id}' qh {qh} has no anchor version {version}") from None
        readings_root, rewards_root, leaf_count, params_version, c, g, s, total = raw
        return AnchorData(community_id=community_id, communityId=cid, qh=qh, version=version,
                          readingsRoot=bytes(readings_root), leafCount=int(leaf_count), consumptionMwh=int(c),
                          productionMwh=int(g), sharedMwh=int(s), rewardsRoot=bytes(rewards_root),
                          rewardTotal=int(total), paramsVersion=int(params_version))

    @staticmethod
    def _anchor_tuple(a: AnchorData) -> tuple[Any, ...]:
        return (community_key(a.community_id), a.qh, a.version, a.readingsRoot, a.leafCount, a.consumptionMwh,
                a.productionMwh, a.sharedMwh, a.rewardsRoot or ZERO32, a.rewardTotal, a.paramsVersion)

    @staticmethod
    def _same_content(x: AnchorData, y: AnchorData) -> bool:
        fields = ("readingsRoot", "leafCount", "consumptionMwh", "productionMwh", "sharedMwh", "rewardsRoot",
                  "rewardTotal", "paramsVersion")
        return all(getattr(x, f) == getattr(y, f) for f in fields)

    def _check_anchor(self, a: AnchorData) -> None:
        if a.communityId and bytes(a.communityId) != community_key(a.community_id):
            raise ChainError(f"anchor of '{a.community_id}' qh {a.qh}: communityId is not keccak256(community_id)")
        self._cid(a.community_id)
        if a.qh % 900 or not 0 <= a.qh < 2**64:
            raise ChainError(f"anchor qh {a.qh} is not a multiple of 900 within uint64")
        for name, bits in _ANCHOR_FIELD_BITS.items():
            value = getattr(a, name)
            if not 0 <= value < 2**bits:
                raise ChainError(f"anchor of '{a.community_id}' qh {a.qh}: {name}={value} does not fit the "
                                 f"notary's uint{bits} field")
        for name in ("readingsRoot", "rewardsRoot"):
            if len(getattr(a, name) or ZERO32) != 32:
                raise ChainError(f"anchor of '{a.community_id}' qh {a.qh}: {name} must be 32 bytes")

    def _latest_versions(self, anchors: Sequence[AnchorData]) -> list[int]:
        out: list[int] = []
        for i in range(0, len(anchors), 500):
            chunk = anchors[i:i + 500]
            out += [int(v) for v in self._call(self.notary.functions.latestVersions(
                [community_key(a.community_id) for a in chunk], [a.qh for a in chunk]))]
        return out

    def submit_anchors(self, anchors: list[AnchorData]) -> list[TxResult]:
        """Anchors each item (see module doc); returns one TxResult per anchor, in order."""
        for a in anchors:
            self._check_anchor(a)
        results: list[TxResult | None] = [None] * len(anchors)
        latest: dict[tuple[str, int], int] = {}
        for a, v in zip(anchors, self._latest_versions(anchors)):
            latest.setdefault((a.community_id, a.qh), v)
        to_send: list[int] = []
        planned: dict[tuple[str, int], AnchorData] = {}
        for i, a in enumerate(anchors):
            key = (a.community_id, a.qh)
            on_chain = latest[key]
            if a.version <= on_chain:
                stored = self.get_anchor(a.community_id, a.qh, a.version)
                if not self._same_content(stored, a):
                    raise AnchorConflictError(
                        f"'{a.community_id}' qh {a.qh} version {a.version} is already anchored with other "
                        f"content: submit version {on_chain + 1} instead")
                results[i] = self.anchor_tx(a.community_id, a.qh, a.version)
                continue
            previous = planned.get(key)
            expected = (previous.version if previous else on_chain) + 1
            if a.version != expected:
                raise AnchorVersionError(f"'{a.community_id}' qh {a.qh}: version {a.version} submitted but the "
                                         f"next version is {expected}")
            if previous is None and on_chain > 0:
                previous = self.get_anchor(a.community_id, a.qh, on_chain)
            if previous is not None and self._same_content(previous, a):
                raise AnchorUnchangedError(f"'{a.community_id}' qh {a.qh} version {a.version} has the same content "
                                           f"as version {previous.version}: nothing to anchor")
            planned[key] = a
            to_send.append(i)
        pending: list[tuple[list[int], PendingTx]] = []
        fees = self._sender.fee_fields() if to_send else {}
        for start in range(0, len(to_send), self.max_anchors_per_tx):
            idx = to_send[start:start + self.max_anchors_per_tx]
            data = self._encode_anchor_batch([self._anchor_tuple(anchors[i]) for i in idx])
            gas = ANCHOR_TX_BASE_GAS + ANCHOR_GAS_EACH * len(idx)
            pending.append((idx, self._sender.send(self.deployment.notary, data, gas=gas, fees=fees,
                                                   label=f"anchorBatch of {len(idx)}")))
        receipts = self._sender.wait_many([p for _, p in pending])  # raises on the first revert
        for (idx, p), receipt in zip(pending, receipts):
            tx = TxResult(txHash=p.tx_hash, blockNumber=int(receipt["blockNumber"]))
            for i in idx:
                results[i] = tx
        return [r for r in results if r is not None]

    def anchor_tx(self, community_id: str, qh: int, version: int) -> TxResult:
        cid = self._cid(community_id)
        event = self.notary.events.Anchored()
        logs = list(event.get_logs(argument_filters={"communityId": cid, "qh": qh, "version": version},
                                   from_block=self.deployment.block, to_block="latest"))
        if not logs:
            raise NotAnchoredError(f"no Anchored event for '{community_id}' qh {qh} version {version}")
        entry = logs[-1]
        return TxResult(txHash="0x" + bytes(entry["transactionHash"]).hex(), blockNumber=int(entry["blockNumber"]))

    # ---- claims ----------------------------------------------------------------------

    def claim(self, community_id: str, qh: int, wallet: str, amount: int, proof: list[bytes]) -> TxResult:
        data = self.notary.encode_abi("claim", [self._cid(community_id), qh, self.w3.to_checksum_address(wallet),
                                                amount, [bytes(p) for p in proof]])
        return self._transact(self.deployment.notary, data, f"claim {community_id} qh {qh}")

    def claim_batch(self, community_id: str, claims: list[tuple[int, str, int, list[bytes]]]) -> TxResult:
        """Claims many rewards in one transaction; already-claimed ones are skipped on chain."""
        items = [(qh, self.w3.to_checksum_address(wallet), amount, [bytes(p) for p in proof])
                 for qh, wallet, amount, proof in claims]
        data = self.notary.encode_abi("claimBatch", [self._cid(community_id), items])
        return self._transact(self.deployment.notary, data, f"claimBatch of {len(items)} for {community_id}")

    def claimed(self, community_id: str, qh: int, wallet: str) -> int:
        return int(self._call(self.notary.functions.claimed(self._cid(community_id), qh,
                                                            self.w3.to_checksum_address(wallet))))

    # ---- monthly settlement statements (oracle.md §11) -------------------------------------

    def anchor_settlement(self, community_id: str, period: int, version: int, statements_root: bytes,
                          inputs_digest: bytes, total_cents: int, member_count: int) -> TxResult:
        """Anchors version ``version`` of a community-month's statements tree (oracle role)."""
        data = self.notary.encode_abi("anchorSettlement", [self._cid(community_id), period, version,
                                                           statements_root, inputs_digest, total_cents, member_count])
        return self._transact(self.deployment.notary, data, f"anchorSettlement {community_id} {period} v{version}")

    def latest_settlement_version(self, community_id: str, period: int) -> int:
        return int(self._call(self.notary.functions.latestSettlementVersion(self._cid(community_id), period)))

    def get_settlement(self, community_id: str, period: int, version: int) -> dict[str, Any]:
        """{statementsRoot, inputsDigest, totalCents, memberCount} of one anchored version."""
        try:
            raw = self._call(self.notary.functions.getSettlement(self._cid(community_id), period, version))
        except TxFailedError:
            raise NotAnchoredError(f"community '{community_id}' month {period} has no settlement version "
                                   f"{version}") from None
        root, digest, cents, count = raw
        return {"statementsRoot": bytes(root), "inputsDigest": bytes(digest), "totalCents": int(cents),
                "memberCount": int(count)}
