"""The Python chain client (oracle/chain/client.py) and `lec chain` on a real anvil: deployment records,
parameters, pipelined restart-safe anchoring, claims, typed errors, key handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from eth_utils import keccak
from typer.testing import CliRunner

from lec.config import Settings, settings
from lec.errors import ConfigError, LecError
from oracle.chain.cli import register_chain
from oracle.chain.client import (
    AnchorConflictError,
    AnchorUnchangedError,
    AnchorVersionError,
    ChainConnectionError,
    ChainError,
    Deployment,
    NoParamsError,
    NotAnchoredError,
    NotaryClient,
    TxFailedError,
    UnknownCommunityError,
    community_key,
    deploy,
    load_deployment,
    save_deployment,
)
from oracle.chain.keys import address_of, dev_key, load_key
from oracle.types import AnchorData, RewardParams
from tests.support.chain import reward_tree

QH0 = 1_704_067_200
PARAMS = RewardParams(3, 10**12, 10**12, 10**15, 4000, 5000, 5000, QH0)
ADMIN, ORACLE = dev_key(0), dev_key(1)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "community.yaml"


@pytest.fixture(scope="module")
def deployed(anvil_rpc: str) -> Deployment:
    return deploy(anvil_rpc, ADMIN, oracle_address=address_of(ORACLE), community_ids=["c-one", "c-two"],
                  welcome_bonus=7, params=PARAMS)


@pytest.fixture(scope="module")
def oracle_client(anvil_rpc: str, deployed: Deployment) -> NotaryClient:
    return NotaryClient(anvil_rpc, deployed, ORACLE, max_anchors_per_tx=8)


@pytest.fixture(scope="module")
def admin_client(anvil_rpc: str, deployed: Deployment) -> NotaryClient:
    return NotaryClient(anvil_rpc, deployed, ADMIN)


def anchor(cid: str, qh: int, version: int = 1, *, leaves: int = 3, rewards_root: bytes = b"\x00" * 32,
           total: int = 0, salt: str = "") -> AnchorData:
    return AnchorData(community_id=cid, communityId=community_key(cid), qh=qh, version=version,
                      readingsRoot=keccak(text=f"{cid}/{qh}/{version}{salt}"), leafCount=leaves,
                      consumptionMwh=1200, productionMwh=800, sharedMwh=800, rewardsRoot=rewards_root,
                      rewardTotal=total, paramsVersion=1)


def test_deployment_record_round_trip(tmp_path: Path, deployed: Deployment) -> None:
    path = tmp_path / "chain" / "deployment.json"
    save_deployment(deployed, path)
    assert load_deployment(path) == deployed
    assert set(deployed.tokens) == {"c-one", "c-two"} and deployed.chainId == 31337
    assert deployed.oracle == address_of(ORACLE)
    with pytest.raises(UnknownCommunityError, match="c-three"):
        deployed.token_for("c-three")
    with pytest.raises(ChainError, match="no deployment record"):
        load_deployment(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"chainId": 1}')
    with pytest.raises(ChainError, match="malformed"):
        load_deployment(tmp_path / "bad.json")


def test_params_read_back_and_typed_errors(admin_client: NotaryClient, oracle_client: NotaryClient) -> None:
    assert oracle_client.params_for("c-one", QH0 + 900) == (1, PARAMS)
    assert oracle_client.params_version("c-two", 1) == PARAMS
    with pytest.raises(NoParamsError, match="no reward parameters in force"):
        oracle_client.params_for("c-one", QH0 - 900)
    later = RewardParams(1, 5, 6, 0, 0, 0, 0, QH0 + 900 * 96)
    assert admin_client.set_params("c-two", later) == 2
    assert oracle_client.params_for("c-two", QH0 + 900 * 96) == (2, later)
    assert oracle_client.params_for("c-two", QH0 + 900 * 95)[0] == 1
    with pytest.raises(TxFailedError, match="AccessControlUnauthorizedAccount"):
        oracle_client.set_params("c-one", later)  # the oracle service is not Oracle Admin
    with pytest.raises(NoParamsError):
        oracle_client.params_version("c-one", 9)
    with pytest.raises(UnknownCommunityError):
        oracle_client.latest_version("nowhere", QH0)


def test_submit_anchors_is_pipelined_and_restart_safe(oracle_client: NotaryClient) -> None:
    anchors = [anchor("c-one", QH0 + 900 * i) for i in range(30)] + [anchor("c-two", QH0 + 900 * i) for i in range(5)]
    results = oracle_client.submit_anchors(anchors)
    assert len(results) == 35
    assert len({r.txHash for r in results}) == 5  # 35 anchors in batches of 8
    for a, r in zip(anchors, results):
        assert oracle_client.anchor_tx(a.community_id, a.qh, 1) == r
        assert oracle_client.get_anchor(a.community_id, a.qh, 1) == a
        assert oracle_client.latest_version(a.community_id, a.qh) == 1
    # A restart re-submits: nothing is sent again, the original transactions come back.
    block_before = oracle_client.w3.eth.block_number
    assert oracle_client.submit_anchors(anchors[:10]) == results[:10]
    assert oracle_client.w3.eth.block_number == block_before
    # Late readings: version 2 in the same call as a new version 1 and a re-submitted one.
    v2 = anchor("c-one", QH0, 2, leaves=4, salt="late")
    fresh = anchor("c-one", QH0 + 900 * 40)
    out = oracle_client.submit_anchors([anchors[0], v2, fresh])
    assert out[0] == results[0] and out[1] == out[2] != results[0]
    assert oracle_client.latest_version("c-one", QH0) == 2
    assert oracle_client.get_anchor("c-one", QH0, 2).leafCount == 4


def test_submit_anchors_refuses_conflicts_gaps_and_repeats(oracle_client: NotaryClient) -> None:
    qh = QH0 + 900 * 50
    oracle_client.submit_anchors([anchor("c-one", qh)])
    with pytest.raises(AnchorConflictError, match="version 2 instead"):
        oracle_client.submit_anchors([anchor("c-one", qh, salt="different")])
    with pytest.raises(AnchorVersionError, match="next version is 2"):
        oracle_client.submit_anchors([anchor("c-one", qh, 3, salt="x")])
    same = anchor("c-one", qh)
    with pytest.raises(AnchorUnchangedError):
        oracle_client.submit_anchors([AnchorData(**{**same.__dict__, "version": 2})])
    with pytest.raises(ChainError, match="multiple of 900"):
        oracle_client.submit_anchors([anchor("c-one", qh + 5)])
    with pytest.raises(ChainError, match="rewardTotal=.* uint160"):
        oracle_client.submit_anchors([anchor("c-one", qh + 900, total=2**160)])
    with pytest.raises(NotAnchoredError):
        oracle_client.get_anchor("c-one", qh, 2)
    with pytest.raises(NotAnchoredError):
        oracle_client.anchor_tx("c-one", qh, 2)


def test_members_claims_and_balances(admin_client: NotaryClient, oracle_client: NotaryClient) -> None:
    alice, bob = address_of(dev_key(5)), address_of(dev_key(6))
    assert admin_client.add_members("c-one", [alice, bob, alice]) == 2
    assert admin_client.add_members("c-one", [alice]) == 0
    assert oracle_client.balance_of("c-one", alice) == 7  # welcome bonus
    qh = QH0 + 900 * 60
    root, proofs = reward_tree([(alice, qh, 1000), (bob, qh, 2000)])
    oracle_client.submit_anchors([anchor("c-one", qh, rewards_root=root, total=3000)])
    tx = oracle_client.claim_batch("c-one", [(qh, alice, 1000, proofs[0]), (qh, bob, 2000, proofs[1])])
    assert tx.blockNumber > 0
    assert oracle_client.claimed("c-one", qh, alice) == 1000
    assert oracle_client.balance_of("c-one", bob) == 2007
    oracle_client.claim_batch("c-one", [(qh, alice, 1000, proofs[0])])  # a retried batch mints nothing
    assert oracle_client.balance_of("c-one", alice) == 1007
    with pytest.raises(TxFailedError, match="NothingToClaim"):
        oracle_client.claim("c-one", qh, alice, 1000, proofs[0])
    other = QH0 + 900 * 61   # anchored here, with another rewards root: the proof of `qh` does not fit it
    oracle_client.submit_anchors([anchor("c-one", other, rewards_root=b"\x01" * 32, total=1000)])
    with pytest.raises(TxFailedError, match="InvalidProof"):
        oracle_client.claim_batch("c-one", [(other, alice, 1000, proofs[0])])
    admin_client.remove_member("c-one", bob)
    assert not oracle_client.is_member("c-one", bob) and oracle_client.balance_of("c-one", bob) == 0


def test_two_signers_sharing_a_key_resynchronise_nonces(anvil_rpc: str, deployed: Deployment,
                                                        oracle_client: NotaryClient) -> None:
    twin = NotaryClient(anvil_rpc, deployed, ORACLE)
    qh = QH0 + 900 * 80
    oracle_client.submit_anchors([anchor("c-two", qh)])
    twin.submit_anchors([anchor("c-two", qh + 900), anchor("c-two", qh + 1800)])
    # oracle_client's local nonce is now stale: the node says "nonce too low", it resyncs and sends.
    oracle_client.submit_anchors([anchor("c-two", qh + 2700)])
    assert [oracle_client.latest_version("c-two", qh + 900 * i) for i in range(4)] == [1, 1, 1, 1]


def test_a_mined_revert_is_reported_with_its_reason(admin_client: NotaryClient) -> None:
    # Anchors are sent without a gas estimate (pipelining): the admin lacks ORACLE_ROLE, the
    # transaction is mined as reverted and the reason is recovered by replaying it.
    with pytest.raises(TxFailedError, match="AccessControlUnauthorizedAccount") as err:
        admin_client.submit_anchors([anchor("c-two", QH0 + 900 * 70)])
    assert err.value.tx_hash.startswith("0x")
    receipt = admin_client.w3.eth.get_transaction_receipt(err.value.tx_hash)
    assert receipt["status"] == 0
    assert admin_client.latest_version("c-two", QH0 + 900 * 70) == 0


def test_read_only_client_and_connection_errors(anvil_rpc: str, deployed: Deployment) -> None:
    reader = NotaryClient(anvil_rpc, deployed, None)
    assert reader.params_count("c-one") == 1
    with pytest.raises(ChainError, match="read-only"):
        reader.add_member("c-one", address_of(dev_key(7)))
    with pytest.raises(ChainConnectionError, match="no JSON-RPC answer"):
        NotaryClient("http://127.0.0.1:9", deployed, None)
    other_chain = Deployment(chainId=1981, notary=deployed.notary, tokens=deployed.tokens, deployer="", block=0)
    with pytest.raises(ChainError, match="chain 31337 but the deployment is on chain 1981"):
        NotaryClient(anvil_rpc, other_chain, None)


def test_keys_come_from_env_or_file_and_never_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   oracle_client: NotaryClient) -> None:
    secret = dev_key(3)
    monkeypatch.setenv("MY_CHAIN_KEY", secret[2:].upper())
    assert load_key("MY_CHAIN_KEY") == secret
    key_file = tmp_path / "key"
    key_file.write_text(secret + "\n")
    assert load_key(file=key_file) == secret
    monkeypatch.setenv("BAD_KEY", "0x1234")
    for bad in (lambda: load_key("BAD_KEY"), lambda: load_key("UNSET_KEY_VAR_X"), lambda: load_key(file=tmp_path / "no")):
        with pytest.raises(ConfigError) as err:
            bad()
        assert "1234" not in str(err.value)
    assert secret[2:] not in repr(oracle_client) + repr(oracle_client._sender)


def _cli() -> typer.Typer:
    app = typer.Typer()
    register_chain(app)

    @app.callback()
    def _root() -> None:  # a group, as under `lec`
        pass
    return app


def test_cli_deploy_and_info(tmp_path: Path, anvil_rpc: str) -> None:
    runner = CliRunner()
    env = {"LEC_RUN_DIR": str(tmp_path / "run"), "LEC_CHAIN_RPC": anvil_rpc, "DEPLOYER_KEY": dev_key(2)}
    settings.cache_clear()
    try:
        from lec.registry import open_registry

        open_registry(Settings(run_dir=tmp_path / "run")).load_file(EXAMPLE)
        settings.cache_clear()  # the CLI reads LEC_* from the runner's env
        result = runner.invoke(_cli(), ["chain", "deploy", "--key-env", "DEPLOYER_KEY", "--welcome-bonus", "5"], env=env)
        assert result.exit_code == 0, result.output
        assert dev_key(2)[2:] not in result.output
        record = tmp_path / "run" / "chain" / "deployment.json"
        d = load_deployment(record)
        assert d.deployer == address_of(dev_key(2)) and d.oracle == d.deployer
        printed = json.loads(result.stdout[result.stdout.index("{"):])
        assert printed == d.to_json()
        # Registry member wallets are members on chain, with the welcome bonus.
        reader = NotaryClient(anvil_rpc, d, None)
        assert reader.balance_of("cer-example", "0x1000000000000000000000000000000000000001") == 5

        again = runner.invoke(_cli(), ["chain", "deploy", "--key-env", "DEPLOYER_KEY"], env=env)
        assert again.exit_code != 0 and isinstance(again.exception, LecError)
        assert "already records a live deployment" in str(again.exception)

        kept = runner.invoke(_cli(), ["chain", "deploy", "--if-missing", "--dev"], env=env)
        assert kept.exit_code == 0, kept.output
        assert json.loads(kept.stdout) == d.to_json() and load_deployment(record) == d

        info = runner.invoke(_cli(), ["chain", "info", "--rpc", anvil_rpc], env=env)
        assert info.exit_code == 0, info.output
        data = json.loads(info.stdout)
        assert data["notary"] == d.notary and data["live"]["notaryHasCode"] is True
        assert all(data["live"]["tokensHaveCode"].values())

        set_p = runner.invoke(_cli(), ["chain", "params-set", "--community", "cer-example", "--model", "2",
                                       "--effective-from", str(QH0), "--rate-no-peak", "9", "--peak-mwh", "100",
                                       "--dev"], env=env)
        assert set_p.exit_code != 0 and "AccessControlUnauthorizedAccount" in str(set_p.exception)
        set_p = runner.invoke(_cli(), ["chain", "params-set", "--community", "cer-example", "--model", "2",
                                       "--effective-from", str(QH0), "--rate-no-peak", "9", "--peak-mwh", "100",
                                       "--key-env", "DEPLOYER_KEY"], env=env)
        assert set_p.exit_code == 0, set_p.output
        shown = json.loads(runner.invoke(_cli(), ["chain", "params", "--community", "cer-example", "--qh",
                                                  str(QH0 + 900)], env=env).stdout)
        assert shown["inForce"]["version"] == 1 and shown["versions"][0]["rateNoPeak"] == 9
        newcomer = address_of(dev_key(8))
        granted = runner.invoke(_cli(), ["chain", "grant", "--role", "TOKEN_ADMIN_ROLE", "--to", newcomer,
                                         "--community", "cer-example", "--key-env", "DEPLOYER_KEY"], env=env)
        assert granted.exit_code == 0, granted.output
        env8 = {**env, "NEW_ADMIN_KEY": dev_key(8)}
        tok = runner.invoke(_cli(), ["chain", "token", "--community", "cer-example", "--fee-bps", "125",
                                     "--fund", "1000", "--key-env", "NEW_ADMIN_KEY"], env=env8)
        assert tok.exit_code == 0, tok.output
        shown_token = json.loads(tok.stdout)
        assert shown_token["transferFeeBps"] == 125 and shown_token["treasury"] == 1000
        bad_role = runner.invoke(_cli(), ["chain", "grant", "--role", "MINTER_ROLE", "--to", newcomer,
                                          "--community", "cer-example", "--key-env", "DEPLOYER_KEY"], env=env)
        assert isinstance(bad_role.exception, ChainError) and "cannot be granted" in str(bad_role.exception)
        no_key = runner.invoke(_cli(), ["chain", "deploy", "--force", "--key-env", "UNSET_VAR_Q"], env=env)
        assert isinstance(no_key.exception, ConfigError) and "UNSET_VAR_Q" in str(no_key.exception)
    finally:
        settings.cache_clear()
