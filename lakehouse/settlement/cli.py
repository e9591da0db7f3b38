"""`lec settlement ...`: prices, the monthly run and members' statements (docs/settlement.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from lec.io import configure_logging


def _logging() -> None:
    from lec.config import settings

    configure_logging(level=settings().log_level)


def _community_of(member: str) -> str:
    from lec.errors import ConfigError
    from lec.registry import open_registry

    found = sorted({cid for (cid, uid), m in open_registry().snapshot().members.items()
                    if member in (uid, m.wallet, m.wallet.lower())})
    if len(found) != 1:
        raise ConfigError(f"member '{member}' is in {len(found)} communities ({', '.join(found) or 'none'}): "
                          "pass --community")
    return found[0]


def register(app: typer.Typer) -> None:
    settlement = typer.Typer(help="CER monthly settlement: prices, run, members' statements.",
                             no_args_is_help=True)
    prices = typer.Typer(help="Hourly zonal prices (GME MGP XML or CSV) in the lake.", no_args_is_help=True)

    @prices.command("load")
    def prices_load(file: Path = typer.Argument(..., help="GME MGP price file (.xml, hourly or 15-minute) "
                                                          "or CSV date,hour,zone,price.")) -> None:
        """Load a price file into the Delta table settlement_prices (upsert by zone and hour)."""
        from lakehouse.settlement.prices import load_prices, parse_file
        from lakehouse.tables import lake_root

        _logging()
        parsed = parse_file(file)
        n = load_prices(lake_root(), parsed, source=file.name)
        days = sorted({p.day.isoformat() for p in parsed})
        typer.echo(json.dumps({"rows": n, "zones": sorted({p.zone for p in parsed}), "first_day": days[0],
                               "last_day": days[-1]}))

    @settlement.command("run")
    def run(community: str = typer.Option(..., "--community", help="Community id."),
            month: str = typer.Option(..., "--month", help="Local calendar month, YYYY-MM.")) -> None:
        """Settle a community-month on Spark (LEC_SPARK_REMOTE or in-process Sail): new version unless
        the inputs are unchanged. Prints the month's summary."""
        from lakehouse.settlement.run import SETTLE_STEPS, settle_month
        from lec.config import settings
        from lec.io.runner import verbose_requested
        from lec.progress import progress

        _logging()
        if not verbose_requested():  # its "settled ..." INFO line repeats the summary printed below
            logging.getLogger("lec.settlement").setLevel(logging.WARNING)
        with progress(f"settlement {community} {month}: reading inputs", total=SETTLE_STEPS) as advance:
            summary = settle_month(settings(), community, month, advance=advance)
        typer.echo(json.dumps(summary, indent=2, default=str))

    from oracle.chain.cli import DEPLOYMENT_OPT, DEV_OPT, KEY_ENV_OPT, KEY_FILE_OPT, RPC_OPT

    @settlement.command("anchor")
    def anchor(community: str = typer.Option(..., "--community", help="Community id."),
               month: str = typer.Option(..., "--month", help="Local calendar month, YYYY-MM."),
               rpc: str = RPC_OPT, key_env: str = KEY_ENV_OPT, key_file: Path = KEY_FILE_OPT, dev: bool = DEV_OPT,
               deployment: Path = DEPLOYMENT_OPT) -> None:
        """Anchor the month's latest settlement (statements root + inputs digest) on the notary; the
        key needs the oracle role. Idempotent."""
        from lakehouse.settlement.anchor import anchor_month
        from lakehouse.settlement.store import SettlementStore
        from lec.config import settings
        from oracle.chain.cli import _signing_client

        _logging()
        client = _signing_client(rpc, key_env, key_file, dev, deployment)
        typer.echo(json.dumps(anchor_month(SettlementStore(settings().resolved_lake_uri()), client, community, month),
                              indent=2))

    @settlement.command("statement")
    def statement_cmd(member: str = typer.Option(..., "--member", help="Member: user id or wallet."),
                      month: str = typer.Option(..., "--month", help="Local calendar month, YYYY-MM."),
                      community: str = typer.Option(None, "--community", help="Community id (default: the "
                                                                              "member's only community)."),
                      out: Path = typer.Option(None, "--out", help="Folder; default <run_dir>/statements."),
                      rpc: str = typer.Option(None, "--rpc", help="JSON-RPC URL the page reads the root from "
                                                                 "(default LEC_CHAIN_RPC).")) -> None:
        """Write the member's statement: JSON with its Merkle proof, and an HTML page that verifies the
        proof in the browser against the root on chain."""
        from lakehouse.settlement.anchor import statement, write_statement
        from lakehouse.settlement.store import SettlementStore
        from lec.config import settings
        from lec.errors import ConfigError

        s = settings()
        url = rpc or s.chain_rpc
        if not url:
            raise ConfigError("no chain RPC URL for the page: pass --rpc or set LEC_CHAIN_RPC")
        cid = community or _community_of(member)
        doc = statement(SettlementStore(s.resolved_lake_uri()), cid, month, member, url)
        paths = write_statement(doc, out or s.resolved_run_dir() / "statements")
        typer.echo(json.dumps({"json": str(paths[0]), "html": str(paths[1]), "amount_cents": doc["leaf"]["values"][2],
                               "statementsRoot": doc["statementsRoot"]}, indent=2))

    @settlement.command("verify")
    def verify_cmd(file: Path = typer.Argument(..., help="A statement JSON written by `lec settlement statement`."),
                   rpc: str = typer.Option(None, "--rpc", help="JSON-RPC URL (default: the statement's).")) -> None:
        """Verify a statement's proof against the root anchored on chain (what its HTML page does)."""
        from lakehouse.settlement.anchor import verify_statement

        typer.echo(json.dumps(verify_statement(json.loads(file.read_text()), rpc), indent=2))

    settlement.add_typer(prices, name="prices")
    app.add_typer(settlement, name="settlement")


# The package's one Typer app, which `lec/cli.py` mounts (its commands join `lec`'s own).
app = typer.Typer(no_args_is_help=True)
register(app)
