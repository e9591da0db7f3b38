"""``lec chain deploy|info|members|params|params-set``: the contracts on any JSON-RPC chain.

Keys come only from an environment variable (``--key-env``, default LEC_CHAIN_KEY) or a file
(``--key-file``); ``--dev`` uses anvil's public development account 0 and is refused on any
chain other than anvil's 31337. Keys are never printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

chain_app = typer.Typer(help="Deploy and inspect the notary and community-token contracts.", no_args_is_help=True)

RPC_HELP = "JSON-RPC URL of the chain (default: setting chain_rpc, env LEC_CHAIN_RPC)."
KEY_ENV_HELP = "Environment variable holding the signer's private key."
DEPLOYMENT_HELP = "Deployment record (default: <run_dir>/chain/deployment.json)."


def register_chain(app: typer.Typer) -> None:
    """Adds the `lec chain` group to the `lec` app."""
    app.add_typer(chain_app, name="chain")


def _rpc(rpc: str | None) -> str:
    from lec.config import settings
    from lec.errors import ConfigError

    url = rpc or settings().chain_rpc
    if not url:
        raise ConfigError("no chain RPC URL: pass --rpc or set LEC_CHAIN_RPC (`lec up` exports the embedded anvil's)")
    return url


def _key(key_env: str | None, key_file: Path | None, dev: bool, rpc_url: str) -> str:
    from lec.errors import ConfigError
    from oracle.chain.keys import ANVIL_CHAIN_ID, dev_key, load_key
    from oracle.chain.tx import connect

    if dev:
        if connect(rpc_url).eth.chain_id != ANVIL_CHAIN_ID:
            raise ConfigError("--dev uses anvil's public development key and only works on chain 31337")
        return dev_key(0)
    if key_env and key_file:
        raise ConfigError("give either --key-env or --key-file, not both")
    return load_key(key_env, key_file)


def _deployment_path(path: Path | None) -> Path:
    from oracle.chain.client import default_deployment_path

    return path or default_deployment_path()


# Options shared by the commands that sign (typer reads these as metadata; reuse is safe).
RPC_OPT = typer.Option(None, "--rpc", help=RPC_HELP)
KEY_ENV_OPT = typer.Option(None, "--key-env", help=KEY_ENV_HELP + " Default LEC_CHAIN_KEY.")
KEY_FILE_OPT = typer.Option(None, "--key-file", help="File whose first line is the private key.")
DEV_OPT = typer.Option(False, "--dev", help="Use anvil's public development account 0 (chain 31337 only).")
DEPLOYMENT_OPT = typer.Option(None, "--deployment", help=DEPLOYMENT_HELP)


def _signing_client(rpc: str | None, key_env: str | None, key_file: Path | None, dev: bool,
                    deployment: Path | None):
    from oracle.chain.client import NotaryClient, load_deployment

    url = _rpc(rpc)
    return NotaryClient(url, load_deployment(_deployment_path(deployment)), _key(key_env, key_file, dev, url))


def _echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


@chain_app.command("deploy")
def deploy_cmd(
    rpc: str | None = typer.Option(None, "--rpc", help=RPC_HELP),
    key_env: str | None = typer.Option(None, "--key-env", help=KEY_ENV_HELP + " Default LEC_CHAIN_KEY."),
    key_file: Path | None = typer.Option(None, "--key-file", help="File whose first line is the private key."),
    dev: bool = typer.Option(False, "--dev", help="Use anvil's public development account 0 (chain 31337 only)."),
    oracle: str | None = typer.Option(None, "--oracle", help="Address of the oracle service (default: the deployer)."),
    community: list[str] = typer.Option([], "--community", help="Community id (repeatable; default: every registry community)."),
    welcome_bonus: int = typer.Option(0, "--welcome-bonus", help="Welcome bonus in token base units (18 decimals)."),
    members: bool = typer.Option(True, "--members/--no-members", help="Register the registry's member wallets on chain."),
    out: Path | None = typer.Option(None, "--out", help=DEPLOYMENT_HELP),
    force: bool = typer.Option(False, "--force", help="Deploy again even if the record points at live contracts."),
    if_missing: bool = typer.Option(False, "--if-missing",
                                    help="If the record points at live contracts, print it and succeed (for `lec up`)."),
) -> None:
    """Deploy the notary and one token per community; record the addresses as JSON."""
    from lec.errors import ConfigError
    from oracle.chain.client import NotaryClient, deploy, load_deployment, save_deployment
    from oracle.chain.keys import address_of
    from oracle.chain.tx import connect

    url = _rpc(rpc)
    path = _deployment_path(out)
    if path.exists() and not force:
        existing = load_deployment(path)
        w3 = connect(url)
        if w3.eth.chain_id == existing.chainId and len(w3.eth.get_code(existing.notary)) > 0:
            if if_missing:
                typer.echo(f"live deployment already recorded at {path}", err=True)
                _echo_json(existing.to_json())
                return
            raise ConfigError(f"{path} already records a live deployment (notary {existing.notary}): "
                              f"use it, or pass --force to deploy anew")
    key = _key(key_env, key_file, dev, url)
    registry = None
    communities = list(community)
    if not communities or members:
        from lec.registry import open_registry

        registry = open_registry()
        communities = communities or registry.community_ids()
    if not communities:
        raise ConfigError("no community to deploy: pass --community or load a community into the registry")
    d = deploy(url, key, oracle_address=oracle or address_of(key), community_ids=communities,
               welcome_bonus=welcome_bonus)
    save_deployment(d, path)
    added = 0
    if members and registry is not None:
        snapshot = registry.snapshot()
        client = NotaryClient(url, d, key)
        for cid in communities:
            wallets = [m.wallet for (c, _), m in snapshot.members.items() if c == cid and m.active and m.wallet]
            added += client.add_members(cid, wallets)
    typer.echo(f"deployed to chain {d.chainId}; {added} member wallets registered; record: {path}", err=True)
    _echo_json(d.to_json())


@chain_app.command("info")
def info_cmd(
    deployment: Path | None = typer.Option(None, "--deployment", help=DEPLOYMENT_HELP),
    rpc: str | None = typer.Option(None, "--rpc", help="Also check the contracts on this chain."),
) -> None:
    """Print the recorded deployment as JSON (with --rpc: whether the contracts are live)."""
    from oracle.chain.client import load_deployment
    from oracle.chain.tx import connect

    d = load_deployment(_deployment_path(deployment))
    data: dict[str, object] = d.to_json()
    if rpc:
        w3 = connect(rpc)
        data["live"] = {
            "chainId": w3.eth.chain_id,
            "blockNumber": w3.eth.block_number,
            "notaryHasCode": len(w3.eth.get_code(d.notary)) > 0,
            "tokensHaveCode": {cid: len(w3.eth.get_code(a)) > 0 for cid, a in d.tokens.items()},
        }
    _echo_json(data)


@chain_app.command("members")
def members_cmd(
    community: str = typer.Option(..., "--community", help="Community id."),
    rpc: str | None = RPC_OPT, key_env: str | None = KEY_ENV_OPT, key_file: Path | None = KEY_FILE_OPT,
    dev: bool = DEV_OPT, deployment: Path | None = DEPLOYMENT_OPT,
) -> None:
    """Register the registry's active member wallets of a community on chain (Community Admin)."""
    from lec.registry import open_registry

    client = _signing_client(rpc, key_env, key_file, dev, deployment)
    snapshot = open_registry().snapshot()
    wallets = [m.wallet for (c, _), m in snapshot.members.items() if c == community and m.active and m.wallet]
    added = client.add_members(community, wallets)
    _echo_json({"community_id": community, "members": len(wallets), "added": added})


@chain_app.command("params")
def params_cmd(
    community: str = typer.Option(..., "--community", help="Community id."),
    qh: int | None = typer.Option(None, "--qh", help="Show the version in force at this qh (unix seconds)."),
    rpc: str | None = typer.Option(None, "--rpc", help=RPC_HELP),
    deployment: Path | None = typer.Option(None, "--deployment", help=DEPLOYMENT_HELP),
) -> None:
    """Print a community's reward-parameter versions (read-only: no key needed)."""
    from dataclasses import asdict

    from oracle.chain.client import NotaryClient, load_deployment

    client = NotaryClient(_rpc(rpc), load_deployment(_deployment_path(deployment)), None)
    versions = [{"version": v, **asdict(client.params_version(community, v))}
                for v in range(1, client.params_count(community) + 1)]
    out: dict[str, object] = {"community_id": community, "versions": versions}
    if qh is not None:
        out["inForce"] = {"qh": qh, "version": client.params_version_at(community, qh)}
    _echo_json(out)


@chain_app.command("params-set")
def params_set_cmd(
    community: str = typer.Option(..., "--community", help="Community id."),
    model: int = typer.Option(..., "--model", help="1 self-consumption, 2 no peaks, 3 combined."),
    effective_from: int = typer.Option(..., "--effective-from", help="First qh (unix seconds, multiple of 900)."),
    rate_consumption: int = typer.Option(0, "--rate-consumption", help="Base units per mWh of shared energy (consumption)."),
    rate_production: int = typer.Option(0, "--rate-production", help="Base units per mWh of shared energy (production)."),
    rate_no_peak: int = typer.Option(0, "--rate-no-peak", help="Base units per QH without a peak."),
    peak_mwh: int = typer.Option(0, "--peak-mwh", help="Largest QH consumption that is not a peak (mWh)."),
    w1_bps: int = typer.Option(0, "--w1-bps", help="Weight of model 1 in model 3 (basis points)."),
    w2_bps: int = typer.Option(0, "--w2-bps", help="Weight of model 2 in model 3 (basis points)."),
    rpc: str | None = RPC_OPT, key_env: str | None = KEY_ENV_OPT, key_file: Path | None = KEY_FILE_OPT,
    dev: bool = DEV_OPT, deployment: Path | None = DEPLOYMENT_OPT,
) -> None:
    """Append a reward-parameter version (Oracle Admin); prints the new version number."""
    from oracle.types import RewardParams

    client = _signing_client(rpc, key_env, key_file, dev, deployment)
    params = RewardParams(model, rate_consumption, rate_production, rate_no_peak, peak_mwh, w1_bps, w2_bps,
                          effective_from)
    version = client.set_params(community, params)
    _echo_json({"community_id": community, "version": version})


@chain_app.command("grant")
def grant_cmd(
    role: str = typer.Option(..., "--role", help="ORACLE_ADMIN_ROLE, ORACLE_ROLE (notary) or COMMUNITY_ADMIN_ROLE, "
                                                  "TOKEN_ADMIN_ROLE (with --community); DEFAULT_ADMIN_ROLE on either."),
    account: str = typer.Option(..., "--to", help="Address receiving the role."),
    community: str | None = typer.Option(None, "--community", help="Grant on this community's token."),
    rpc: str | None = RPC_OPT, key_env: str | None = KEY_ENV_OPT, key_file: Path | None = KEY_FILE_OPT,
    dev: bool = DEV_OPT, deployment: Path | None = DEPLOYMENT_OPT,
) -> None:
    """Grant a role (the signer must hold the role's admin role)."""
    tx = _signing_client(rpc, key_env, key_file, dev, deployment).grant_role(role, account, community)
    _echo_json({"role": role, "to": account, "community_id": community, "txHash": tx.txHash})


@chain_app.command("token")
def token_cmd(
    community: str = typer.Option(..., "--community", help="Community id."),
    fee_bps: int | None = typer.Option(None, "--fee-bps", help="Transfer fee to the treasury (Token Admin)."),
    incentive_bps: int | None = typer.Option(None, "--incentive-bps", help="Service-payment incentive (Token Admin)."),
    sale_rate: int | None = typer.Option(None, "--sale-rate", help="Token base units per wei; 0 closes the sale."),
    welcome_bonus: int | None = typer.Option(None, "--welcome-bonus", help="Base units (Community Admin)."),
    fund: int | None = typer.Option(None, "--fund", help="Mint this many base units into the treasury."),
    rpc: str | None = RPC_OPT, key_env: str | None = KEY_ENV_OPT, key_file: Path | None = KEY_FILE_OPT,
    dev: bool = DEV_OPT, deployment: Path | None = DEPLOYMENT_OPT,
) -> None:
    """Show a community token's settings, changing those given first."""
    from oracle.chain.client import NotaryClient, load_deployment

    changes = {"transfer_fee_bps": fee_bps, "service_incentive_bps": incentive_bps, "sale_rate": sale_rate,
               "welcome_bonus": welcome_bonus, "fund_treasury": fund}
    if any(v is not None for v in changes.values()):
        client = _signing_client(rpc, key_env, key_file, dev, deployment)
        client.configure_token(community, **changes)
    else:
        client = NotaryClient(_rpc(rpc), load_deployment(_deployment_path(deployment)), None)
    _echo_json({"community_id": community, **client.token_settings(community)})
