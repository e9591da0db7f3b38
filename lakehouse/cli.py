"""Commands of the `lakehouse` package, added to `lec` by `register`.

`lec lake sink|maintain|tables` and `lec gdpr erase`; the analytics commands come from
`lakehouse.analytics_cli.register_analytics(app)`.
"""

from __future__ import annotations

import json

import typer

from lec.io import configure_logging


def _logging() -> None:
    from lec.config import settings

    configure_logging(level=settings().log_level)


def register(app: typer.Typer) -> None:
    """Add this package's commands to the `lec` app (keep heavy imports inside commands)."""
    lake = typer.Typer(help="The Delta lake: sink from Kafka, maintenance, tables.", no_args_is_help=True)

    @lake.command("sink")
    def sink() -> None:
        """Consume lec.readings, lec.deadletter, lec.anomalies into Delta tables, exactly once (foreground).

        Reads LEC_KAFKA_BOOTSTRAP, LEC_LAKE_URI (default run_dir/lake), LEC_LAKE_COMMIT_INTERVAL_S (5),
        LEC_LAKE_COMMIT_ROWS (100000), LEC_LAKE_MAINTAIN_INTERVAL_S (3600, 0 = off),
        LEC_LAKE_VACUUM_RETENTION_H (168). SIGTERM/SIGINT: final commit, then exit 0.
        """
        from lakehouse.sink.worker import run_sink

        _logging()
        run_sink()

    @lake.command("maintain")
    def maintain(table: list[str] = typer.Option(None, "--table", help="Table name(s); default every table."),
                 retention_hours: int = typer.Option(None, "--retention-hours",
                                                     help="VACUUM retention; default LEC_LAKE_VACUUM_RETENTION_H (168).")) -> None:
        """Compact small files, write a checkpoint and VACUUM every table under the lake root."""
        from lakehouse.maintenance import maintain_lake
        from lakehouse.sink.config import SinkConfig
        from lakehouse.tables import lake_root

        _logging()
        hours = SinkConfig.from_env().vacuum_retention_h if retention_hours is None else retention_hours
        typer.echo(json.dumps(maintain_lake(lake_root(), retention_hours=hours, names=table or None), indent=2))

    @lake.command("tables")
    def tables() -> None:
        """Sink tables with topic, partitioning and columns, plus each table's version and row count."""
        from lakehouse.tables import describe, lake_root, list_tables, open_table, table_uri

        root = lake_root()
        info = describe()
        for name in list_tables(root):
            dt = open_table(table_uri(name, root=root))
            if dt is not None:
                info.setdefault(name, {}).update(version=dt.version(), rows=dt.count())
        typer.echo(json.dumps({"root": root, "tables": info}, indent=2))

    app.add_typer(lake, name="lake")

    gdpr = typer.Typer(help="Personal data: erasure (art. 17), access and portability (art. 15, 20).",
                       no_args_is_help=True)

    @gdpr.command("erase")
    def erase(user: str = typer.Option(None, "--user", help="User id: the user and all their devices."),
              device: str = typer.Option(None, "--device", help="One device id.")) -> None:
        """Erase a user/device from every store of docs/gdpr.md; prints the receipt (also kept, without
        personal data, in run_dir/gdpr/erasure-log.jsonl)."""
        from lakehouse.gdpr.erase import erase as do_erase

        _logging()
        typer.echo(json.dumps(do_erase(user=user, device=device), indent=2))

    @gdpr.command("export")
    def export(user: str = typer.Option(None, "--user", help="User id: the user and all their devices."),
               device: str = typer.Option(None, "--device", help="One device id."),
               out: str = typer.Option(None, "--out", help="Zip archive to write (default gdpr-export-<id>.zip).")
               ) -> None:
        """Everything the platform holds about a user/device, machine-readable (zip: JSON, CSV, Parquet)."""
        from pathlib import Path

        from lakehouse.gdpr.export import export as do_export

        _logging()
        path = Path(out or f"gdpr-export-{user or device}.zip")
        manifest = do_export(user=user, device=device, out=path)
        rows = sum(f.get("rows", 0) for n, f in manifest["files"].items() if n.endswith(".parquet"))
        typer.echo(f"wrote {path}: {len(manifest['files'])} files, {rows} table rows")

    @gdpr.command("pseudonym")
    def pseudonym_cmd(value: str = typer.Argument(..., help="A device, flow or user id, or a file name.")) -> None:
        """The pseudonym that log lines use for an id (to find its lines in the logs)."""
        from lec.pseudonym import pseudonym

        typer.echo(pseudonym(value))

    app.add_typer(gdpr, name="gdpr")

    from lakehouse.urbandataset import register_export  # `lec export urbandataset[-publish]`

    register_export(app)

    from lakehouse.analytics_cli import register_analytics

    register_analytics(app)


# The package's one Typer app, which `lec/cli.py` mounts (its commands join `lec`'s own).
app = typer.Typer(no_args_is_help=True)
register(app)


def main() -> None:
    """`python -m lakehouse.cli ...`: the lakehouse commands alone (same functions as `lec lake ...`)."""
    from lec.io.runner import run_standalone

    run_standalone(register)


if __name__ == "__main__":
    main()
