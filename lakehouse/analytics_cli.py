"""Analytics commands: `lec kpi`, `lec cluster`, `lec lake quality|index|refresh|ingest-files`.

Called by ``lakehouse.cli.register`` (which owns the `lec lake` group). Heavy imports (Spark,
GX, matplotlib) stay inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from lec.io import configure_logging


def _logging() -> None:
    from lec.config import settings

    configure_logging(level=settings().log_level)


def _lake_group(app: typer.Typer) -> typer.Typer:
    for group in app.registered_groups:
        if group.name == "lake" and group.typer_instance is not None:
            return group.typer_instance
    lake = typer.Typer(help="The Delta lake.", no_args_is_help=True)
    app.add_typer(lake, name="lake")
    return lake


def _community_tz(registry, community_id: str) -> str:
    from lec.errors import LecError

    snap = registry.snapshot()
    if community_id not in snap.communities:
        from lec.registry.store import unknown_community

        raise LecError(unknown_community(community_id, snap.communities))
    return snap.communities[community_id].timezone


def register_analytics(app: typer.Typer) -> None:
    """Add the analytics commands to `lec` and to its `lec lake` group."""
    lake = _lake_group(app)
    register_raw(lake)

    @app.command("kpi")
    def kpi_cmd(community: str = typer.Option(..., "--community", help="Community id."),
                start: str = typer.Option(..., "--from", help="Start: YYYY-MM-DD (local midnight) or ISO time."),
                end: str = typer.Option(..., "--to", help="End (exclusive), same forms."),
                resolution: str = typer.Option("1h", "--resolution", help="15m | 1h | 1d | 1mo"),
                fmt: str = typer.Option("json", "--format", help="json | csv | parquet | arrow"),
                out: Path = typer.Option(None, "--out", help="Write here instead of stdout (needed for "
                                                             "parquet/arrow)."),
                plot: Path = typer.Option(None, "--plot", help="Also draw load/production/self-consumption PNG."),
                level: str = typer.Option("all", "--level", help="community | member | all"),
                peak: float = typer.Option(97.5, "--peak-pct", help="Percentile of the peak load."),
                base: float = typer.Option(2.5, "--base-pct", help="Percentile of the base load."),
                no_fill: bool = typer.Option(False, "--no-fill", help="Do not spline-fill short gaps."),
                store: bool = typer.Option(False, "--store", help="Also store into the lake table kpi_<resolution>.")
                ) -> None:
        """Compute a community's KPIs for a period (Spark: LEC_SPARK_REMOTE, else LEC_SPARK_ENGINE sail|jvm)."""
        from lakehouse.kpi import jobs as kpi
        from lakehouse.spark.sessions import read_delta, registry_frames, settings_session
        from lec.config import settings
        from lec.errors import LecError
        from lec.progress import progress
        from lec.registry import open_registry

        _logging()
        if fmt in ("parquet", "arrow") and out is None:
            raise LecError(f"--format {fmt} is binary: give --out FILE")
        if level not in ("community", "member", "all"):
            raise LecError("--level must be community, member or all")
        s = settings()
        # One Spark job whatever the period (gap filling spans it: no chunking), so the bar counts phases;
        # its elapsed time tells a person watching a long period that the work goes on.
        with progress(f"kpi {community}: reading the registry", total=4 + store + (plot is not None)) as step:
            registry = open_registry(s)
            tz = _community_tz(registry, community)
            req = kpi.KpiRequest(community, kpi.parse_day_or_time(start, tz), kpi.parse_day_or_time(end, tz),
                                 resolution, timezone=tz, peak_pct=peak, base_pct=base, fill_gaps=not no_fill,
                                 levels=("community", "member") if level == "all" else (level,))
            step(1, f"kpi {community}: starting Spark")
            spark = settings_session(s)
            step(1, f"kpi {community}: computing {start}..{end} at {resolution}")
            pdf = kpi.compute_kpis(spark, read_delta(spark, s.resolved_lake_uri(), "readings"),
                                   registry_frames(spark, registry), req).toPandas()
            if store:
                from lakehouse.kpi.store import store_kpis

                step(1, f"kpi {community}: storing kpi_{resolution}")
                store_kpis(pdf, s.resolved_lake_uri(), req)
            from lakehouse.settlement.kpi import add_settlement_columns

            step(1, f"kpi {community}: settlement columns")
            pdf = add_settlement_columns(pdf, s.resolved_lake_uri(), community, resolution)  # settled months (1mo)
            data = kpi.export(pdf, fmt, str(out) if out else None)
            if plot is not None:
                from lakehouse.kpi.plot import plot_kpis

                step(1, f"kpi {community}: plotting")
                plot_kpis(pdf, str(plot), f"{community}: load, production and self-consumption ({resolution})", tz)
            step(1)
        if out is None:
            sys.stdout.write(data.decode() + ("\n" if fmt == "json" else ""))
        if plot is not None:
            typer.echo(f"plot written to {plot}", err=True)

    @app.command("cluster")
    def cluster_cmd(community: str = typer.Option(..., "--community"),
                    start: str = typer.Option(..., "--from"), end: str = typer.Option(..., "--to"),
                    k: int = typer.Option(..., "--clusters", "-k", help="Number of clusters (chosen by the admin)."),
                    by: str = typer.Option("daytype", "--by", help="daytype | member"),
                    member: str = typer.Option(None, "--member", help="With --by daytype: one member's days "
                                                                       "(default: the whole community).")) -> None:
        """Cluster daily quarter-hour load curves (k-means, percentile seeds) into the registry tables."""
        from lakehouse.clustering import cluster_and_store
        from lakehouse.kpi.jobs import parse_day_or_time
        from lakehouse.spark.sessions import read_delta, registry_frames, settings_session
        from lec.config import settings
        from lec.registry import open_registry

        _logging()
        s = settings()
        registry = open_registry(s)
        tz = _community_tz(registry, community)
        spark = settings_session(s)
        result = cluster_and_store(spark, read_delta(spark, s.resolved_lake_uri(), "readings"),
                                   registry_frames(spark, registry), registry, community,
                                   parse_day_or_time(start, tz), parse_day_or_time(end, tz), k, by, member, tz)
        typer.echo(json.dumps(result, indent=2, default=str))

    @lake.command("quality")
    def quality_cmd(table: list[str] = typer.Option(None, "--table", help="Table(s); default readings and every "
                                                                          "kpi_* table present."),
                    community: str = typer.Option(None, "--community", help="Only this community's rows.")) -> None:
        """Run the great-expectations suites on lake tables; results + Data Docs under run_dir/quality/."""
        from lakehouse.quality import run_quality
        from lec.config import settings

        _logging()
        s = settings()
        report = run_quality(s.resolved_lake_uri(), s.resolved_run_dir() / "quality", table or None, community)
        typer.echo(json.dumps(report, indent=2, default=str))
        if not report["success"]:
            raise typer.Exit(1)

    @lake.command("index")
    def index_cmd(community: str = typer.Option(..., "--community"),
                  start: str = typer.Option(..., "--from"), end: str = typer.Option(..., "--to"),
                  resolution: str = typer.Option("1h", "--resolution")) -> None:
        """Index a period's KPIs and the community's anomalies into Elasticsearch (LEC_SEARCH_URL)."""
        from lakehouse import search
        from lakehouse.kpi import jobs as kpi
        from lakehouse.spark.sessions import read_delta, registry_frames, settings_session
        from lec.config import settings
        from lec.errors import ConfigError
        from lec.registry import open_registry

        _logging()
        s = settings()
        if not s.search_url:
            raise ConfigError("LEC_SEARCH_URL is empty: set it to the Elasticsearch/OpenSearch URL")
        registry = open_registry(s)
        tz = _community_tz(registry, community)
        req = kpi.KpiRequest(community, kpi.parse_day_or_time(start, tz), kpi.parse_day_or_time(end, tz),
                             resolution, timezone=tz)
        spark = settings_session(s)
        pdf = kpi.compute_kpis(spark, read_delta(spark, s.resolved_lake_uri(), "readings"),
                               registry_frames(spark, registry), req).toPandas()
        client = search.client(s.search_url)
        search.ensure_templates(client)
        counts = {"kpis": search.index_kpis(client, pdf),
                  "anomalies": search.index_anomalies_from_lake(client, s.resolved_lake_uri(), community)}
        typer.echo(json.dumps(counts))

    @lake.command("refresh")
    def refresh_cmd(interval: float = typer.Option(60.0, "--interval", help="Seconds between passes."),
                    once: bool = typer.Option(False, "--once", help="One pass, then exit.")) -> None:
        """Periodic worker (foreground): process 1 (registry -> dim_* tables), process 2 (inbox files
        run_dir/lake-inbox/<table>/*.json|csv -> Delta) and due KPI series (kpi_<resolution>).

        Reads LEC_REGISTRY_URL, LEC_LAKE_URI, LEC_SPARK_REMOTE, LEC_RUN_DIR. SIGTERM/SIGINT: finish the
        pass, exit 0.
        """
        from lakehouse.spark.refresh import run_refresh
        from lec.config import settings

        _logging()
        run_refresh(settings(), interval=interval, once=once)


def register_raw(lake: typer.Typer) -> None:
    """`lec lake raw ls|get`: the original files the SFTP area accepted (lakehouse.rawzone)."""
    raw = typer.Typer(help="The raw zone: original SFTP files, byte for byte, with checksums.",
                      no_args_is_help=True)
    lake.add_typer(raw, name="raw")

    @raw.command("ls")
    def raw_ls(prefix: str = typer.Argument("", help="supplier[/flow[/yyyy[/mm[/dd]]]]")) -> None:
        """List archived originals (path, size, sha256)."""
        from lakehouse.rawzone import RawZone
        from lec.config import settings

        for entry in RawZone.from_settings(settings()).ls(prefix):
            typer.echo(f"{entry.path}\t{entry.size}\t{entry.sha256}")

    @raw.command("get")
    def raw_get(path: str = typer.Argument(..., help="A path as `lec lake raw ls` prints it."),
                out: Path = typer.Option(None, "--out", help="Where to write it (default: its file name here).")
                ) -> None:
        """Fetch one original, checksum verified."""
        from lakehouse.rawzone import RawZone
        from lec.config import settings

        dest = out or Path(path.rstrip("/").rsplit("/", 1)[-1])
        sha = RawZone.from_settings(settings()).get(path, dest)
        typer.echo(f"{dest}\t{sha}")
