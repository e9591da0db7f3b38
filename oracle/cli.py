"""Commands of the `oracle` package: `lec oracle run` (the worker) and `lec audit takeout|verify`."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import typer

oracle_app = typer.Typer(help="Quarter-hour commitments and rewards anchored on chain (docs/oracle.md).",
                         no_args_is_help=True)
audit_app = typer.Typer(help="Take-out files and independent verification against the chain (docs/auditor.md).",
                        no_args_is_help=True)


def parse_time(value: str) -> int:
    """Unix seconds, or ISO-8601 date/time (UTC when no offset is given)."""
    from datetime import datetime

    from lec.errors import ConfigError

    if value.lstrip("-").isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"'{value}' is neither unix seconds nor an ISO-8601 date/time") from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


def _setup_logging(level: str) -> None:
    from lec.io import configure_logging

    configure_logging(level=level)


@oracle_app.command("run")
def run(deployment: Path | None = typer.Option(None, help="Deployment record (default RUN_DIR/chain/deployment.json)."),
        key_file: Path | None = typer.Option(None, help="File holding the oracle's private key "
                                                           "(default: env LEC_ORACLE_KEY or LEC_CHAIN_KEY).")) -> None:
    """Stream lec.readings, anchor every closed quarter-hour, claim rewards for members (foreground)."""
    from lec.config import settings
    from oracle.agent import run_oracle

    s = settings()
    _setup_logging(s.log_level)
    run_oracle(s, deployment, key_file)


def _chain_client(rpc: str | None, deployment: Path | None):
    from lec.config import settings
    from oracle.agent import default_deployment_path
    from oracle.chain.client import load_deployment
    from oracle.verify import read_only_client

    s = settings()
    dep = load_deployment(deployment or default_deployment_path(s))
    url = rpc or s.chain_rpc
    if not url:
        from lec.errors import ConfigError

        raise ConfigError("no chain: pass --rpc or set LEC_CHAIN_RPC")
    return s, read_only_client(url, dep.chainId, dep.notary, dict(dep.tokens)), dep


@audit_app.command("takeout")
def takeout(community: str | None = typer.Option(None, help="Whole community (complete take-out)."),
            member: str | None = typer.Option(None, help="One member's wallet (0x...)."),
            device: str | None = typer.Option(None, help="One device id."),
            from_: str = typer.Option(..., "--from", help="Start (unix seconds or ISO-8601, UTC), inclusive."),
            to: str = typer.Option(..., "--to", help="End (unix seconds or ISO-8601, UTC), exclusive."),
            out: Path = typer.Option(..., "--out", help="JSON file to write."),
            rpc: str | None = typer.Option(None, help="JSON-RPC URL (default LEC_CHAIN_RPC)."),
            deployment: Path | None = typer.Option(None, help="Deployment record.")) -> None:
    """Write the take-out file of oracle.md §10 for a community, a member or a device."""
    import orjson

    from lec.errors import ConfigError
    from lec.registry import SecretStore, open_registry
    from oracle.store import OracleLake
    from oracle.takeout import build_takeout

    if sum(x is not None for x in (member, device)) > 1 or (community is None and member is None and device is None):
        raise ConfigError("choose one of --community, --member or --device (with --community to disambiguate)")
    s, client, _ = _chain_client(rpc, deployment)
    cid = community or _community_of(open_registry(s).snapshot(), member, device)
    doc = build_takeout(OracleLake(s.resolved_lake_uri()), client, SecretStore(s.resolved_secrets_url()),
                        community_id=cid, qh_from=parse_time(from_), qh_to=parse_time(to), member=member,
                        device=device)
    out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    n = sum(len(a["readings"]) for a in doc["anchors"])
    typer.echo(f"wrote {out}: {len(doc['anchors'])} quarter-hours, {n} leaves, "
               f"{sum(len(a['rewards']) for a in doc['anchors'])} rewards")


def _community_of(snap, member: str | None, device: str | None) -> str:
    from lec.errors import ConfigError

    if device is not None:
        dev = snap.devices.get(device)
        if dev is None:
            raise ConfigError(f"device '{device}' is not in the registry: pass --community")
        return dev.community_id
    found = sorted({m.community_id for m in snap.members.values() if m.wallet.lower() == str(member).lower()})
    if len(found) != 1:
        raise ConfigError(f"wallet {member} is a member of {len(found)} communities ({', '.join(found) or 'none'}): "
                          "pass --community")
    return found[0]


@audit_app.command("verify")
def verify_cmd(file: Path | None = typer.Argument(None, help="Take-out file to verify."),
               rpc: str | None = typer.Option(None, help="JSON-RPC URL of the chain to verify against (an auditor's "
                                                         "own node; default LEC_CHAIN_RPC or the running stack's)."),
               community: str | None = typer.Option(None, help="Recompute this community from the lake instead."),
               from_: str | None = typer.Option(None, "--from", help="Start for --community (inclusive)."),
               to: str | None = typer.Option(None, "--to", help="End for --community (exclusive)."),
               deployment: Path | None = typer.Option(None, help="Deployment record (for --community).")) -> None:
    """Check a take-out's proofs and recompute complete QHs against the chain (or the lake, --community)."""
    import orjson

    from lec.errors import ConfigError

    if (file is None) == (community is None):
        raise ConfigError("give either a take-out FILE or --community C --from T1 --to T2")
    if rpc is None:
        from lec.config import settings

        rpc = settings().chain_rpc
        if not rpc:
            raise ConfigError("no chain to verify against: pass --rpc URL (your own node), set LEC_CHAIN_RPC, "
                              "or start the stack with `lec up`")
    if file is not None:
        from oracle.verify import verify_takeout

        try:
            doc = orjson.loads(file.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read take-out {file}: {exc}") from None
        problems = verify_takeout(doc, rpc, warn=lambda m: typer.echo(f"warning: {m}", err=True))
        checked = f"{len(doc.get('anchors', []))} quarter-hours, " \
                  f"{sum(len(a.get('readings', [])) for a in doc.get('anchors', []))} leaves"
    else:
        if from_ is None or to is None:
            raise ConfigError("--community needs --from and --to")
        from lec.registry import SecretStore, open_registry
        from oracle.verify import verify_lake

        s, client, _ = _chain_client(rpc, deployment)
        problems, n = verify_lake(s.resolved_lake_uri(), client, SecretStore(s.resolved_secrets_url()),
                                  open_registry(s).snapshot(), community, parse_time(from_), parse_time(to))
        checked = f"{n} quarter-hours of {community} recomputed from the lake"
    for p in problems:
        typer.echo(f"MISMATCH {p}")
    if problems:
        typer.echo(f"{len(problems)} mismatches ({checked})", err=True)
        raise typer.Exit(1)
    typer.echo(f"OK: {checked} verified against the chain")


def register(app: typer.Typer) -> None:
    """Add `lec oracle`, `lec audit` and `lec chain`."""
    app.add_typer(oracle_app, name="oracle")
    app.add_typer(audit_app, name="audit")
    from oracle.chain.cli import register_chain

    register_chain(app)


# The package's one Typer app, which `lec/cli.py` mounts (its commands join `lec`'s own).
app = typer.Typer(no_args_is_help=True)
register(app)


def main() -> None:
    """`python -m oracle.cli ...`: only this package's commands (same code as `lec oracle|audit`)."""
    from lec.io.runner import run_standalone

    run_standalone(register)


if __name__ == "__main__":
    main()
