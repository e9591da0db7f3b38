"""Data-quality suites (great-expectations 1.24) on the lake tables, run as a job (`lec lake quality`).

Suites: ``readings`` (identity present, unique message ids, Table 10 accounts, Table 13 signs:
consumption >= 0 and production <= 0, sane intervals and charge), ``anomalies`` and every
``kpi_<resolution>`` table (self-consumption <= consumption and production, percentages within
0-100, one row per level/member/period). Results are stored as JSON under
``<out>/results/<stamp>.json``; Data Docs (HTML) are built under ``<out>/gx/uncommitted/data_docs``.
GX is imported lazily (4-5 s, ~400 MB) and with ``GX_ANALYTICS_ENABLED=false`` (no network).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lec.errors import LecError

MAX_ROWS = 5_000_000  # bound the pandas batch; a bigger table is checked one community at a time


class QualityError(LecError):
    """A table cannot be checked (missing, or too big without a community filter)."""


def _suite_specs() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Expectation class name and arguments per suite (plain data, so tests and docs can read them)."""
    pandas_if = {"condition_parser": "pandas"}
    readings = [
        ("ExpectColumnValuesToNotBeNull", {"column": c}) for c in
        ("community_id", "device_id", "flow_id", "message_id", "ts", "account", "measurement")
    ] + [
        ("ExpectColumnValuesToBeUnique", {"column": "message_id"}),
        ("ExpectColumnValuesToBeInSet", {"column": "account", "value_set": [0, 1, 2]}),
        ("ExpectColumnValuesToBeInSet", {"column": "measurement",
                                         "value_set": ["load", "production", "grid", "storage"]}),
        ("ExpectColumnValuesToBeBetween", {"column": "interval_s", "min_value": 0, "max_value": 86_400}),
        ("ExpectColumnValuesToBeBetween", {"column": "charge_pct", "min_value": 0, "max_value": 100}),
        ("ExpectColumnValuesToBeBetween", {"column": "energy_mwh", "min_value": 0,
                                           "row_condition": "account==1", **pandas_if}),
        ("ExpectColumnValuesToBeBetween", {"column": "energy_mwh", "max_value": 0,
                                           "row_condition": "account==2", **pandas_if}),
    ]
    anomalies = [
        ("ExpectColumnValuesToNotBeNull", {"column": "anomaly_id"}),
        ("ExpectColumnValuesToBeUnique", {"column": "anomaly_id"}),
        ("ExpectColumnValuesToBeInSet", {"column": "kind", "value_set": [
            "silent_flow", "stuck_meter", "out_of_range", "after_end", "conflict", "counter_reset"]}),
    ]
    kpi = [
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["community_id", "level", "member_id", "period_start"]}),
        ("ExpectColumnPairValuesAToBeGreaterThanB", {"column_A": "consumption_kwh", "column_B": "selfconsumption_kwh",
                                                     "or_equal": True}),
        ("ExpectColumnPairValuesAToBeGreaterThanB", {"column_A": "production_kwh", "column_B": "selfconsumption_kwh",
                                                     "or_equal": True}),
        *[("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0, "max_value": 100}) for c in
          ("selfconsumption_pct", "selfsufficiency_pct", "completeness_pct", "filled_share_pct")],
        *[("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0}) for c in
          ("consumption_kwh", "production_kwh", "withdrawal_kwh", "injection_kwh")],
    ]
    return {"readings": readings, "anomalies": anomalies, "kpi": kpi}


def suite_for(table: str) -> str:
    return "kpi" if table.startswith("kpi_") else table


def load_table(lake_uri: str, table: str, community: str | None) -> Any:
    """The table (or one community's rows) as pandas, bounded by MAX_ROWS."""
    from deltalake import DeltaTable, QueryBuilder

    uri = f"{lake_uri.rstrip('/')}/{table}"
    if not DeltaTable.is_deltatable(uri):
        raise QualityError(f"lake table '{table}' does not exist under {lake_uri}")
    dt = DeltaTable(uri)
    where = f" WHERE community_id = '{community.replace(chr(39), chr(39) * 2)}'" if community else ""
    qb = QueryBuilder().register("t", dt)
    n = qb.execute(f"SELECT count(*) AS n FROM t{where}").read_all().column("n")[0].as_py()
    if n > MAX_ROWS:
        raise QualityError(f"table '{table}' has {n} rows to check (limit {MAX_ROWS}): pass --community")
    cols = [f.name for f in dt.schema().fields if f.name not in ("kafka_partition", "kafka_offset")]
    sel = ", ".join(f'"{c}"' for c in cols)
    import pyarrow as pa

    return pa.table(qb.execute(f"SELECT {sel} FROM t{where}").read_all()).to_pandas()


def _context(project: Path) -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="file", project_root_dir=str(project))
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def run_quality(lake_uri: str, out_dir: Path, tables: list[str] | None = None,
                community: str | None = None) -> dict[str, Any]:
    """Validate tables, store results JSON, build Data Docs; returns the summary."""
    import great_expectations as gx

    from lakehouse.spark.sessions import delta_exists

    if tables is None:
        root = Path(lake_uri)
        tables = [t for t in ("readings", "anomalies") if delta_exists(f"{lake_uri}/{t}")]
        tables += sorted(p.name for p in root.glob("kpi_*") if delta_exists(str(p))) if root.exists() else []
    ctx = _context(out_dir)
    ds = ctx.data_sources.add_or_update_pandas("lake")
    specs = _suite_specs()
    summary: dict[str, Any] = {"success": True, "tables": {}}
    for table in tables:
        df = load_table(lake_uri, table, community)
        asset = ds.add_dataframe_asset(table) if table not in [a.name for a in ds.assets] else ds.get_asset(table)
        batch = (asset.add_batch_definition_whole_dataframe("all") if not asset.batch_definitions
                 else asset.get_batch_definition("all"))
        suite = gx.ExpectationSuite(name=f"lake-{table}")
        for cls_name, kwargs in specs[suite_for(table)]:
            if all(c in df.columns for c in _columns_of(kwargs)):
                suite.add_expectation(getattr(gx.expectations, cls_name)(**kwargs))
        suite = ctx.suites.add_or_update(suite)
        vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=f"lake-{table}", data=batch,
                                                                              suite=suite))
        result = vd.run(batch_parameters={"dataframe": df})
        failed = [{"expectation": r.expectation_config.type, "kwargs": _kwargs(r.expectation_config.kwargs),
                   "unexpected_count": (r.result or {}).get("unexpected_count"),
                   "sample": _plain((r.result or {}).get("partial_unexpected_list", [])[:5])}
                  for r in result.results if not r.success]
        summary["tables"][table] = {"rows": len(df), "success": bool(result.success),
                                    "evaluated": len(result.results), "failed": failed}
        summary["success"] = summary["success"] and bool(result.success)
    ctx.build_data_docs()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    results_dir = out_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    summary["results_file"] = str(results_dir / f"{stamp}.json")
    summary["data_docs"] = str(out_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html")
    Path(summary["results_file"]).write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _columns_of(kwargs: dict[str, Any]) -> list[str]:
    cols = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    return cols + list(kwargs.get("column_list", []))


def _kwargs(kwargs: Any) -> dict[str, Any]:
    """Expectation arguments as plain JSON, the row condition back to its text."""
    out = _plain(kwargs)
    cond = out.get("row_condition")
    if isinstance(cond, dict):
        out["row_condition"] = cond.get("pass_through_filter", cond)
    return out


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
