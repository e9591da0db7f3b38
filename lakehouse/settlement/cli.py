"""`lec settlement ...`: prices, the monthly run and members' statements (docs/settlement.md)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer


def _logging() -> None:
    from lec.config import settings

    logging.basicConfig(level=settings().log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
        from lakehouse.settlement.run import settle_month
        from lec.config import settings

        _logging()
        typer.echo(json.dumps(settle_month(settings(), community, month), indent=2, default=str))

    settlement.add_typer(prices, name="prices")
    app.add_typer(settlement, name="settlement")
