"""KPIs stored as the seed's derived time series (registry tables 18-21) with values in Delta.

Each (community or member, KPI type, resolution) is one ``derivedtimeseries`` row whose values
live in the Delta table ``kpi_<resolution>`` (column per KPI, one row per member and period),
its source flows in ``derivedtimeseries_sources`` and its refresh schedule (CRON, last and next
refresh) in ``derivedtimeseries_schedules``; daily and monthly values are also copied into
``derivedtimeseries_values`` (Table 21) for relational readers. ``refresh_due`` recomputes the series whose next
refresh has come, over a look-back window that also picks up late readings.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakehouse.kpi.jobs import KpiRequest, compute_kpis

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

    from lec.registry import Registry

log = logging.getLogger(__name__)

# derivedtimeseriestype code (registry decode table) -> column of kpi_<resolution>
SERIES_COLUMNS: dict[str, str] = {
    "consumption": "consumption_kwh", "production": "production_kwh", "selfconsumption": "selfconsumption_kwh",
    "selfconsumption_pct": "selfconsumption_pct", "selfsufficiency_pct": "selfsufficiency_pct",
    "withdrawal": "withdrawal_kwh", "injection": "injection_kwh", "peak": "peak_kw", "baseload": "base_kw",
    "completeness": "completeness_pct",
}
REFRESH_CRON = {"15m": "*/15 * * * *", "1h": "5 * * * *", "1d": "15 0 * * *", "1mo": "30 0 1 * *"}
REGISTRY_VALUE_RESOLUTIONS = ("1d", "1mo")
LOOKBACK = {"15m": timedelta(hours=2), "1h": timedelta(days=1), "1d": timedelta(days=3), "1mo": timedelta(days=35)}


def kpi_table(resolution: str) -> str:
    return f"kpi_{resolution}"


def store_kpis(pdf: pd.DataFrame, lake_uri: str, req: KpiRequest) -> int:
    """Replace the request's periods of ``kpi_<resolution>`` with ``pdf`` (idempotent re-runs)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    uri = f"{lake_uri.rstrip('/')}/{kpi_table(req.resolution)}"
    frame = pdf.copy()
    for c in ("period_start", "period_end"):
        frame[c] = frame[c].map(lambda v: v.tz_localize("UTC") if v.tzinfo is None else v.tz_convert("UTC"))
    frame["rank_selfsufficiency"] = frame["rank_selfsufficiency"].astype("Int64")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if not DeltaTable.is_deltatable(uri):
        write_deltalake(uri, table, mode="append", partition_by=["community_id"])
        return len(frame)
    lo, hi = frame["period_start"].min(), frame["period_start"].max()
    cid = req.community_id.replace("'", "''")
    predicate = (f"community_id = '{cid}' AND period_start >= '{lo.isoformat()}' "
                 f"AND period_start <= '{hi.isoformat()}'")
    write_deltalake(uri, table, mode="overwrite", predicate=predicate)
    return len(frame)


def store_series_values(registry: Registry, pdf: pd.DataFrame) -> int:
    """Copy coarse KPI rows into ``derivedtimeseries_values`` (Table 21) for registered series.

    Only daily and monthly values go to the registry (bounded volume for relational readers);
    the Delta tables keep every resolution. A re-run replaces the values of its periods.
    """
    from sqlalchemy import delete, select

    from lec.registry import schema as t

    with registry.engine.begin() as conn:
        known = set(conn.execute(select(t.derivedtimeseries.c.id)).scalars())
        written = 0
        for rec in pdf.to_dict(orient="records"):
            ts = rec["period_start"]
            ts = (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()
            share = rec.get("filled_share_pct")  # percent in Delta, fraction in Table 21
            for kind, column in SERIES_COLUMNS.items():
                sid = series_id(rec["community_id"], rec["member_id"], kind, rec["resolution"])
                if sid not in known:
                    continue
                value = _number(rec[column])
                conn.execute(delete(t.derivedtimeseries_values).where(
                    (t.derivedtimeseries_values.c.derivedtimeseries_id == sid)
                    & (t.derivedtimeseries_values.c.ts == ts)))
                conn.execute(t.derivedtimeseries_values.insert().values(
                    derivedtimeseries_id=sid, ts=ts, value=value,
                    filled_share=(_number(share) or 0.0) / 100.0))
                written += 1
    return written


def _number(value: Any) -> float | None:
    """A float, or None for NULL/NaN."""
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def series_id(community_id: str, member_id: str | None, kind: str, resolution: str) -> str:
    return f"{community_id}/{member_id or '*'}/{kind}/{resolution}"


def register_series(registry: Registry, community_id: str, resolution: str,
                    now: datetime | None = None) -> int:
    """Create (or keep) the derived time series of a community and its members for one resolution."""
    from sqlalchemy import select

    from lec.registry import schema as t

    now = now or datetime.now(UTC)
    snap = registry.snapshot()
    users = [None] + sorted({m.user_id for (c, m_id), m in snap.members.items() if c == community_id})
    flows = [f for f in snap.flows.values() if f.community_id == community_id and f.account in (1, 2)]
    owner = {d.id: d.user_id for d in snap.devices.values()}
    created = 0
    with registry.engine.begin() as conn:
        known = {r[0] for r in conn.execute(select(t.derivedtimeseries.c.id)
                                            .where(t.derivedtimeseries.c.community_id == community_id))}
        for user in users:
            sources = [f.id for f in flows if user is None or owner.get(f.device_id) == user]
            for kind, column in SERIES_COLUMNS.items():
                sid = series_id(community_id, user, kind, resolution)
                if sid in known:
                    continue
                conn.execute(t.derivedtimeseries.insert().values(
                    id=sid, community_id=community_id, user_id=user, derivedtimeseriestype=kind,
                    periodtype=resolution, lake_table=kpi_table(resolution),
                    description=f"{column} of {'the community' if user is None else user}"))
                for fid in sources:
                    conn.execute(t.derivedtimeseries_sources.insert().values(derivedtimeseries_id=sid, flow_id=fid))
                conn.execute(t.derivedtimeseries_schedules.insert().values(
                    derivedtimeseries_id=sid, refresh_cron=REFRESH_CRON[resolution], last_refresh=None,
                    next_refresh=None))  # never refreshed: due at once
                created += 1
    return created


def due(registry: Registry, now: datetime) -> list[tuple[str, str]]:
    """(community, resolution) pairs with at least one series whose next refresh has come."""
    from sqlalchemy import or_, select

    from lec.registry import schema as t

    d, s = t.derivedtimeseries, t.derivedtimeseries_schedules
    q = (select(d.c.community_id, d.c.periodtype).join(s, s.c.derivedtimeseries_id == d.c.id)
         .where(or_(s.c.next_refresh.is_(None), s.c.next_refresh <= now)).distinct())
    with registry.engine.connect() as conn:
        return sorted((r[0], r[1]) for r in conn.execute(q))


def mark_refreshed(registry: Registry, community_id: str, resolution: str, now: datetime) -> None:
    from croniter import croniter
    from sqlalchemy import select, update

    from lec.registry import schema as t

    d, s = t.derivedtimeseries, t.derivedtimeseries_schedules
    ids = select(d.c.id).where((d.c.community_id == community_id) & (d.c.periodtype == resolution))
    nxt = croniter(REFRESH_CRON[resolution], now).get_next(datetime)
    with registry.engine.begin() as conn:
        conn.execute(update(s).where(s.c.derivedtimeseries_id.in_(ids)).values(last_refresh=now, next_refresh=nxt))


def refresh_due(spark: SparkSession, registry: Registry, lake_uri: str, now: datetime,
                readings: Any = None, dims: Any = None) -> list[dict[str, Any]]:
    """Recompute and store every due (community, resolution) over its look-back window."""
    from lakehouse.spark.sessions import read_delta, registry_frames

    done = []
    pairs = due(registry, now)
    if not pairs:
        return done
    readings = readings if readings is not None else read_delta(spark, lake_uri, "readings")
    dims = dims if dims is not None else registry_frames(spark, registry)
    tz_of = {c.id: c.timezone for c in registry.snapshot().communities.values()}
    for community_id, resolution in pairs:
        req = KpiRequest(community_id, now - LOOKBACK[resolution], now, resolution,
                         timezone=tz_of.get(community_id, "Europe/Rome"))
        pdf = compute_kpis(spark, readings, dims, req).toPandas()
        rows = store_kpis(pdf, lake_uri, req)
        if resolution in REGISTRY_VALUE_RESOLUTIONS:
            store_series_values(registry, pdf)
        mark_refreshed(registry, community_id, resolution, now)
        log.info("refreshed kpi_%s of %s: %d rows", resolution, community_id, rows)
        done.append({"community_id": community_id, "resolution": resolution, "rows": rows})
    return done
