"""Process 3: community and member KPIs from the ``readings`` Delta table (seed §5.2.4, §4.3.9).

Inputs are the accounting flows only (reading.account 1 consumption, 2 production), energy
signed by Table 13: L = sum of energy over consumption flows, P = sum of -energy over
production flows. Per quarter-hour and member: withdrawal = max(L-P, 0), injection =
max(P-L, 0) (a member is one connection point); the community's grid curves are the sums of its
members' curves.

Self-consumption (shared energy) follows the GSE: it is defined HOURLY, min(L_h, P_h); at the
15m resolution it is min(L, P) per quarter-hour; at 1h, 1d and 1mo it is the sum of the hourly
minima inside the period. For the community, L_h and P_h are the community totals (the GSE's
energia condivisa), not the sum of the members' own minima.

Peak and base load are percentiles (default 97.5 and 2.5, linear interpolation as Spark's
``percentile``) of the quarter-hour mean load power in kW inside the period, compared with the
previous period of the same resolution (the query reads one extra period before ``start``).
Base-load share = base load x hours with data / consumption.
Days and months are local (community time zone); ARERA bands use local time and Italian
holidays (``lakehouse.holidays``). Energies are reported in kWh, powers in kW.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from lakehouse.completeness import DEFAULT_MAX_GAP_S, FILLED_SPARK_SCHEMA, regularise
from lakehouse.holidays import holidays_between
from lec.errors import LecError

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

RESOLUTIONS = ("15m", "1h", "1d", "1mo")
QH_S = 900
PERIOD_S = {"15m": 900, "1h": 3600, "1d": 86_400, "1mo": 28 * 86_400}
MAX_PERIODS = 200_000  # bounds one request (~5.7 years of quarter-hours)
COMMUNITY_KEY = "*"  # member key of community rows while joining (NULL never equals NULL); NULL in the output
MWH_PER_KWH = 1_000_000

KPI_COLUMNS = [
    "community_id", "level", "member_id", "resolution", "period_start", "period_end", "period_local",
    "consumption_kwh", "production_kwh", "selfconsumption_kwh", "selfconsumption_pct", "selfsufficiency_pct",
    "withdrawal_kwh", "injection_kwh", "peak_kw", "base_kw", "peak_prev_kw", "base_prev_kw",
    "peak_change_pct", "base_change_pct", "consumption_f1_kwh", "consumption_f2_kwh", "consumption_f3_kwh",
    "baseload_share_pct", "expected_readings", "present_readings", "filled_readings", "completeness_pct",
    "filled_share_pct", "rank_selfsufficiency",
]


class KpiRequestError(LecError):
    """A KPI request has an unknown resolution, an empty period or bad percentiles."""


@dataclass(frozen=True)
class KpiRequest:
    """What to compute: one community, a period [start, end) and a resolution."""

    community_id: str
    start: datetime
    end: datetime
    resolution: str = "1h"
    timezone: str = "Europe/Rome"
    peak_pct: float = 97.5
    base_pct: float = 2.5
    fill_gaps: bool = True
    max_gap_s: int = DEFAULT_MAX_GAP_S
    levels: tuple[str, ...] = field(default=("community", "member"))

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise KpiRequestError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {self.resolution!r}")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise KpiRequestError("start and end must carry a time zone (e.g. 2024-01-01T00:00:00+01:00)")
        if self.end <= self.start:
            raise KpiRequestError(f"end {self.end.isoformat()} must be after start {self.start.isoformat()}")
        if not (0 <= self.base_pct <= 100 and 0 <= self.peak_pct <= 100):
            raise KpiRequestError("percentiles must be between 0 and 100")
        n = (self.end - self.start).total_seconds() / PERIOD_S[self.resolution]
        if n > MAX_PERIODS:
            raise KpiRequestError(f"{n:,.0f} periods of {self.resolution} requested (limit {MAX_PERIODS:,}): "
                                  "choose a coarser resolution or a shorter period")


def parse_day_or_time(text: str, tz: str) -> datetime:
    """'2024-03-01' (local midnight) or an ISO-8601 instant; naive values are local to ``tz``."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise KpiRequestError(f"cannot read {text!r} as a date or ISO-8601 time") from exc
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(tz))


# -- periods ----------------------------------------------------------------------------------

def _bucket_start(instant: datetime, resolution: str, tz: ZoneInfo) -> datetime:
    utc = instant.astimezone(UTC)
    if resolution == "15m":
        return utc.replace(minute=utc.minute - utc.minute % 15, second=0, microsecond=0)
    if resolution == "1h":
        return utc.replace(minute=0, second=0, microsecond=0)
    local = instant.astimezone(tz)
    day = local.date() if resolution == "1d" else local.date().replace(day=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def _next_bucket(start_utc: datetime, resolution: str, tz: ZoneInfo) -> datetime:
    if resolution == "15m":
        return start_utc + timedelta(seconds=QH_S)
    if resolution == "1h":
        return start_utc + timedelta(hours=1)
    local = start_utc.astimezone(tz).date()
    if resolution == "1d":
        nxt = local + timedelta(days=1)
    else:
        nxt = date(local.year + local.month // 12, local.month % 12 + 1, 1)
    return datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)


def _previous_bucket(start_utc: datetime, resolution: str, tz: ZoneInfo) -> datetime:
    return _bucket_start(start_utc - timedelta(seconds=1), resolution, tz)


def periods(req: KpiRequest, with_previous: bool = True) -> list[tuple[datetime, datetime, bool]]:
    """(start, end, is_extra) of every period touching [start, end); the extra one precedes start."""
    tz = ZoneInfo(req.timezone)
    first = _bucket_start(req.start, req.resolution, tz)
    out = []
    if with_previous:
        prev = _previous_bucket(first, req.resolution, tz)
        out.append((prev, first, True))
    cur = first
    while cur < req.end.astimezone(UTC):
        nxt = _next_bucket(cur, req.resolution, tz)
        out.append((cur, nxt, False))
        cur = nxt
    return out


def _periods_frame(spark: SparkSession, req: KpiRequest) -> DataFrame:
    from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType, TimestampType

    tz = ZoneInfo(req.timezone)
    rows = [(s, e, extra, int((e - s).total_seconds()) // QH_S, s.astimezone(tz).isoformat())
            for s, e, extra in periods(req)]
    schema = StructType([StructField("period_start", TimestampType()), StructField("period_end", TimestampType()),
                         StructField("is_extra", BooleanType()), StructField("period_qh", LongType()),
                         StructField("period_local", StringType())])
    return spark.createDataFrame(rows, schema)


# -- the job ----------------------------------------------------------------------------------

def accounting_readings(spark: SparkSession, readings: DataFrame, req: KpiRequest,
                        read_start: datetime) -> DataFrame:
    """Accounting-flow energy per flow and quarter-hour in [read_start, end), gaps filled if asked.

    Readings longer than a quarter-hour (e.g. hourly meters) are spread evenly over their
    quarter-hours (whole mWh, the remainder on the last one, so totals stay exact); shorter ones
    are summed into their quarter-hour. A quarter-hour counts as filled if any part was.
    """
    from pyspark.sql import functions as F

    r = (readings.where((F.col("community_id") == req.community_id)
                        & (F.col("ts") >= F.lit(read_start.astimezone(UTC)))
                        & (F.col("ts") < F.lit(req.end.astimezone(UTC)))
                        & F.col("account").isin(1, 2) & F.col("energy_mwh").isNotNull())
         .select("flow_id", "device_id", "account", "ts", "energy_mwh",
                 F.coalesce(F.col("interpolated"), F.lit(False)).alias("interpolated"), "ingest_ts",
                 F.greatest(F.floor(F.coalesce(F.col("interval_s"), F.lit(QH_S)) / QH_S), F.lit(1))
                 .cast("long").alias("parts")))
    part = F.floor(F.col("energy_mwh") / F.col("parts"))
    spread = (r.withColumn("k", F.explode(F.sequence(F.lit(0).cast("long"), F.col("parts") - 1)))
              .withColumn("ts", (F.col("ts").cast("long") + F.col("k") * QH_S).cast("timestamp"))
              .withColumn("energy_mwh", (part + F.when(F.col("k") == F.col("parts") - 1,
                                                       F.col("energy_mwh") - part * F.col("parts"))
                                         .otherwise(0)).cast("long")))
    per_qh = (spread.withColumn("ts", (F.floor(F.col("ts").cast("long") / QH_S) * QH_S).cast("timestamp"))
              .groupBy("flow_id", "device_id", "account", "ts")
              .agg(F.sum("energy_mwh").alias("energy_mwh"), F.max("interpolated").alias("interpolated"),
                   F.max("ingest_ts").alias("ingest_ts")))
    if not req.fill_gaps:
        return per_qh.select("flow_id", "device_id", "account", "ts", "energy_mwh", "interpolated")
    max_gap = req.max_gap_s

    def fill(pdf: pd.DataFrame) -> pd.DataFrame:
        out = regularise(pdf, QH_S, max_gap)
        out["ts"] = out["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
        return out

    filled = per_qh.groupBy("flow_id").applyInPandas(fill, FILLED_SPARK_SCHEMA)
    return filled.where(~F.col("missing")).select("flow_id", "device_id", "account", "ts", "energy_mwh",
                                                  "interpolated")


def _band_column(req: KpiRequest, local_col: Any) -> Any:
    """ARERA band of a local timestamp column, as Spark expressions (no UDF)."""
    from pyspark.sql import functions as F

    first = req.start.astimezone(ZoneInfo(req.timezone)).date() - timedelta(days=62)
    last = req.end.astimezone(ZoneInfo(req.timezone)).date()
    hols = [d.isoformat() for d in holidays_between(first, last)]
    dow = F.dayofweek(local_col)  # 1 = Sunday, 7 = Saturday
    hour = F.hour(local_col)
    is_f3 = (dow == 1) | F.date_format(local_col, "yyyy-MM-dd").isin(hols) | (hour < 7) | (hour >= 23)
    return (F.when(is_f3, F.lit("F3")).when(dow == 7, F.lit("F2"))
            .when((hour >= 8) & (hour < 19), F.lit("F1")).otherwise(F.lit("F2")))


def _period_col(req: KpiRequest, ts_col: Any) -> Any:
    from pyspark.sql import functions as F

    if req.resolution == "15m":
        return (F.floor(ts_col.cast("long") / QH_S) * QH_S).cast("timestamp")
    if req.resolution == "1h":
        return F.date_trunc("hour", ts_col)
    unit = "day" if req.resolution == "1d" else "month"
    return F.to_utc_timestamp(F.date_trunc(unit, F.from_utc_timestamp(ts_col, req.timezone)), req.timezone)


def compute_kpis(spark: SparkSession, readings: DataFrame, dims: dict[str, DataFrame],
                 req: KpiRequest) -> DataFrame:
    """KPIs per period for the community and each member; one row per (level, member, period)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    plist = periods(req)
    read_start = plist[0][0]
    r = accounting_readings(spark, readings, req, read_start)
    devices = dims["dim_devices"].where(F.col("community_id") == req.community_id).select("device_id", "user_id")
    r = (r.join(F.broadcast(devices), "device_id", "left")
         .withColumn("member_id", F.coalesce(F.col("user_id"), F.concat(F.lit("device:"), F.col("device_id")))))
    e = F.col("energy_mwh")
    qh = (r.withColumn("qh", (F.floor(F.col("ts").cast("long") / QH_S) * QH_S).cast("timestamp"))
          .groupBy("member_id", "qh")
          .agg(F.sum(F.when(F.col("account") == 1, e).otherwise(0)).alias("l"),
               F.sum(F.when(F.col("account") == 2, -e).otherwise(0)).alias("p"),
               F.sum(F.when(~F.col("interpolated"), 1).otherwise(0)).alias("present"),
               F.sum(F.when(F.col("interpolated"), 1).otherwise(0)).alias("filled"),
               F.sum(F.when(F.col("interpolated"), F.abs(e)).otherwise(0)).alias("filled_abs"),
               F.sum(F.abs(e)).alias("all_abs"))
          .withColumn("wd", F.greatest(F.col("l") - F.col("p"), F.lit(0)))
          .withColumn("inj", F.greatest(F.col("p") - F.col("l"), F.lit(0))))
    community_qh = (qh.groupBy("qh").agg(*[F.sum(c).alias(c) for c in
                                            ("l", "p", "present", "filled", "filled_abs", "all_abs", "wd", "inj")])
                    .withColumn("member_id", F.lit(COMMUNITY_KEY)))
    flows = dims["dim_flows"].where((F.col("community_id") == req.community_id) & F.col("account").isin(1, 2)
                                    & F.col("active"))
    flow_members = (flows.join(devices, "device_id", "left")
                    .withColumn("member_id", F.coalesce(F.col("user_id"),
                                                        F.concat(F.lit("device:"), F.col("device_id"))))
                    .groupBy("member_id").agg(F.count("*").alias("n_flows")))
    n_flows_total = flow_members.agg(F.sum("n_flows").alias("n_flows")).withColumn(
        "member_id", F.lit(COMMUNITY_KEY))
    pframe = F.broadcast(_periods_frame(spark, req))
    frames = []
    if "community" in req.levels:
        frames.append(_aggregate(req, community_qh, pframe, n_flows_total, "community"))
    if "member" in req.levels:
        frames.append(_aggregate(req, qh, pframe, flow_members, "member"))
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    rank_w = Window.partitionBy("level", "period_start").orderBy(F.col("selfsufficiency_pct").desc_nulls_last(),
                                                                 F.col("member_id"))
    out = out.withColumn("rank_selfsufficiency",
                         F.when(F.col("level") == "member", F.rank().over(rank_w)).cast("long"))
    return out.select(*KPI_COLUMNS).orderBy("level", "member_id", "period_start")


def _aggregate(req: KpiRequest, qh: DataFrame, pframe: DataFrame, nflows: DataFrame,
               level: str) -> DataFrame:
    """From per-(member, quarter-hour) sums to per-(member, period) KPIs."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    kwh = F.lit(float(MWH_PER_KWH))
    local = F.from_utc_timestamp(F.col("qh"), req.timezone)
    q = (qh.withColumn("period_start", _period_col(req, F.col("qh")))
         .withColumn("band", _band_column(req, local))
         .withColumn("hour", F.date_trunc("hour", F.col("qh")))
         .withColumn("load_kw", F.col("l") / kwh * 4))
    # hourly shared energy (GSE), then summed into the period; per QH at 15m
    if req.resolution == "15m":
        sc = q.groupBy("member_id", "period_start").agg(F.sum(F.least("l", "p")).alias("sc"))
    else:
        hourly = q.groupBy("member_id", "hour", "period_start").agg(F.sum("l").alias("lh"), F.sum("p").alias("ph"))
        sc = hourly.groupBy("member_id", "period_start").agg(F.sum(F.least("lh", "ph")).alias("sc"))
    agg = (q.groupBy("member_id", "period_start")
           .agg(F.sum("l").alias("l"), F.sum("p").alias("p"), F.sum("wd").alias("wd"), F.sum("inj").alias("inj"),
                F.percentile("load_kw", req.peak_pct / 100.0).alias("peak_kw"),
                F.percentile("load_kw", req.base_pct / 100.0).alias("base_kw"),
                *[F.sum(F.when(F.col("band") == b, F.col("l")).otherwise(0)).alias(f"l_{b}") for b in ("F1", "F2", "F3")],
                F.count("qh").alias("n_qh"), F.sum("present").alias("present"), F.sum("filled").alias("filled"),
                F.sum("filled_abs").alias("filled_abs"), F.sum("all_abs").alias("all_abs"))
           .join(sc, ["member_id", "period_start"], "left"))
    members = agg.select("member_id").distinct() if level == "member" else nflows.select("member_id")
    if level == "member":
        members = members.unionByName(nflows.select("member_id")).distinct()
    grid = members.crossJoin(pframe)
    renamed = agg.withColumnRenamed("member_id", "a_member").withColumnRenamed("period_start", "a_period")
    counts = nflows.withColumnRenamed("member_id", "n_member")
    k = (grid.join(renamed, F.col("member_id").eqNullSafe(F.col("a_member"))
                   & (F.col("period_start") == F.col("a_period")), "left")
         .join(counts, F.col("member_id").eqNullSafe(F.col("n_member")), "left"))
    w = Window.partitionBy("member_id").orderBy("period_start")
    zero = F.lit(0)
    l_kwh = F.coalesce(F.col("l"), zero) / kwh
    p_kwh = F.coalesce(F.col("p"), zero) / kwh
    sc_kwh = F.coalesce(F.col("sc"), zero) / kwh
    expected = F.coalesce(F.col("n_flows"), zero) * F.col("period_qh")

    def pct(num: Any, den: Any) -> Any:
        return F.when(den > 0, num / den * 100.0)

    k = (k.withColumn("peak_prev_kw", F.lag("peak_kw").over(w)).withColumn("base_prev_kw", F.lag("base_kw").over(w))
         .where(~F.col("is_extra"))
         .select(
             F.lit(req.community_id).alias("community_id"), F.lit(level).alias("level"),
             F.when(F.col("member_id") != COMMUNITY_KEY, F.col("member_id")).alias("member_id"),
             F.lit(req.resolution).alias("resolution"), "period_start", "period_end", "period_local",
             l_kwh.alias("consumption_kwh"), p_kwh.alias("production_kwh"), sc_kwh.alias("selfconsumption_kwh"),
             pct(sc_kwh, p_kwh).alias("selfconsumption_pct"), pct(sc_kwh, l_kwh).alias("selfsufficiency_pct"),
             (F.coalesce(F.col("wd"), zero) / kwh).alias("withdrawal_kwh"),
             (F.coalesce(F.col("inj"), zero) / kwh).alias("injection_kwh"),
             "peak_kw", "base_kw", "peak_prev_kw", "base_prev_kw",
             pct(F.col("peak_kw") - F.col("peak_prev_kw"), F.col("peak_prev_kw")).alias("peak_change_pct"),
             pct(F.col("base_kw") - F.col("base_prev_kw"), F.col("base_prev_kw")).alias("base_change_pct"),
             *[(F.coalesce(F.col(f"l_{b}"), zero) / kwh).alias(f"consumption_{b.lower()}_kwh")
               for b in ("F1", "F2", "F3")],
             pct(F.col("base_kw") * F.col("n_qh") / 4.0, l_kwh).alias("baseload_share_pct"),
             expected.cast("long").alias("expected_readings"),
             F.coalesce(F.col("present"), zero).cast("long").alias("present_readings"),
             F.coalesce(F.col("filled"), zero).cast("long").alias("filled_readings"),
             pct(F.coalesce(F.col("present"), zero), expected).alias("completeness_pct"),
             pct(F.coalesce(F.col("filled_abs"), zero), F.col("all_abs")).alias("filled_share_pct")))
    return k


# -- serving ----------------------------------------------------------------------------------

EXPORT_FORMATS = ("json", "csv", "parquet", "arrow")


def export(pdf: pd.DataFrame, fmt: str, path: str | None = None) -> bytes:
    """KPI rows as JSON (records), CSV, Parquet or Arrow IPC bytes; written to ``path`` if given."""
    import io

    import pyarrow as pa

    if fmt not in EXPORT_FORMATS:
        raise KpiRequestError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    frame = pdf.copy()
    for c in ("period_start", "period_end"):
        if c in frame:
            frame[c] = frame[c].map(lambda v: None if v is None else _iso_utc(v))
    if fmt == "json":
        data = frame.to_json(orient="records", double_precision=10).encode()
    elif fmt == "csv":
        data = frame.to_csv(index=False).encode()
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        buf = io.BytesIO()
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, buf)
        else:
            with pa.ipc.new_file(buf, table.schema) as writer:
                writer.write_table(table)
        data = buf.getvalue()
    if path:
        with open(path, "wb") as fh:
            fh.write(data)
    return data


def _iso_utc(value: Any) -> str:
    import pandas as pd

    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
