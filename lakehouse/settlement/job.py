"""The settlement's Spark job: readings -> device hours -> perimeters -> plants and members.

Runs on any Spark Connect session (Sail locally, JVM Spark in production) through the lake's
session factory. Only standard DataFrame functions (no UDF, no time-zone functions: the month's
hours with their local day and tariff version come from Python as a small frame), so every
engine computes the same integers as ``compute.hourly`` (cross-checked by a hypothesis test).
The small per-plant, per-zone and per-member rows come back to Python for ``compute.finalise``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakehouse.settlement.compute import Hourly, MissingPriceError
from lakehouse.settlement.model import HOUR_S, SettlementInputs, local_hour
from lakehouse.settlement.rules import PHOTOVOLTAIC, tariff_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _frame(spark: SparkSession, rows: list[tuple], fields: list[tuple[str, str]]) -> DataFrame:
    from pyspark.sql.types import (
        BooleanType,
        DoubleType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    types = {"string": StringType(), "long": LongType(), "double": DoubleType(), "bool": BooleanType()}
    return spark.createDataFrame(rows, StructType([StructField(n, types[t], True) for n, t in fields]))


def device_hours_frame(readings: DataFrame, inputs: SettlementInputs) -> DataFrame:
    """(device_id, hour, w, i): withdrawal and injection per device and UTC hour of the month."""
    from pyspark.sql import functions as F

    start, end = inputs.month.bounds()
    e = F.col("energy_mwh")
    grid = F.col("measurement") == "grid"
    w = F.when(grid | (F.col("account") == 1), F.greatest(e, F.lit(0))).otherwise(F.lit(0))
    i = F.when(grid | (F.col("account") == 2), F.greatest(-e, F.lit(0))).otherwise(F.lit(0))
    ts = F.col("ts").cast("long")
    r = (readings.where((F.col("community_id") == inputs.community_id) & e.isNotNull()
                        & (grid | F.col("account").isin(1, 2))
                        & (ts >= F.lit(start)) & (ts < F.lit(end)))
         .select("device_id", (ts - ts % HOUR_S).alias("hour"), w.cast("long").alias("w"), i.cast("long").alias("i")))
    return r.groupBy("device_id", "hour").agg(F.sum("w").alias("w"), F.sum("i").alias("i"))


def _materialize(spark: SparkSession, df: DataFrame, work_uri: str | None, name: str) -> DataFrame:
    """Write ``df`` as Parquet under ``work_uri`` and read it back, so that the several outputs
    below do not each re-scan the readings (Spark Connect's cache is a no-op on some engines)."""
    if not work_uri:
        return df
    path = f"{work_uri.rstrip('/')}/{name}"
    df.write.mode("overwrite").parquet(path)
    return spark.read.parquet(path)


def run_hourly(spark: SparkSession, readings: DataFrame, inputs: SettlementInputs, work_uri: str | None = None
               ) -> tuple[Hourly, list[tuple[str, int, int, int]]]:
    """The Spark half of the settlement: an ``Hourly`` equal to ``compute.hourly`` and the device
    hours (for the inputs' digest). ``work_uri``: a scratch folder the engine can write (the
    intermediate device hours and contributions are materialised there)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    tz = inputs.month.timezone
    hours = inputs.month.hours()
    versions = list(inputs.tariffs)
    hour_rows = []
    for h in hours:
        day = local_hour(h, tz)[0]
        hour_rows.append((h, day.isoformat(), versions.index(tariff_for(day, versions))))
    hours_df = F.broadcast(_frame(spark, hour_rows, [("hour", "long"), ("day", "string"), ("tv", "long")]))
    dh = _materialize(spark, device_hours_frame(readings, inputs), work_uri, "device_hours")
    assign = _frame(spark, [(a.device_id, a.valid_from, a.valid_to, a.substation, a.zone, a.region)
                            for a in inputs.assignments],
                    [("a_device", "string"), ("vf", "long"), ("vt", "long"), ("substation", "string"),
                     ("zone", "string"), ("region", "string")])
    members = _frame(spark, [(d, u) for d, u in inputs.owners.items() if u in inputs.wallets],
                     [("m_device", "string"), ("member", "string")])
    plants = _frame(spark, [(p.device_id, p.commissioned.isoformat(), p.power_kw, p.plant_type, p.grant,
                             -1 if p.grant_reduction_pct is None else p.grant_reduction_pct)
                            for p in inputs.plants.values()],
                    [("p_device", "string"), ("commissioned", "string"), ("power_kw", "double"),
                     ("plant_type", "string"), ("grant", "bool"), ("reduction", "long")])
    c = (dh.join(F.broadcast(assign), (dh.device_id == assign.a_device)
                 & (assign.vf.isNull() | (assign.vf <= dh.hour)) & (assign.vt.isNull() | (dh.hour < assign.vt)))
         .join(F.broadcast(members), F.col("device_id") == F.col("m_device"), "left")
         .join(F.broadcast(plants), F.col("device_id") == F.col("p_device"), "left")
         .select("device_id", "hour", "substation", "zone", "region", "member", "commissioned", "power_kw",
                 "plant_type", "grant", "reduction",
                 F.when(F.col("member").isNotNull(), F.col("w")).otherwise(F.lit(0)).alias("wm"),
                 F.when(F.col("p_device").isNotNull(), F.col("i")).otherwise(F.lit(0)).alias("ip"))
         .where((F.col("wm") > 0) | (F.col("ip") > 0)))
    c = _materialize(spark, c, work_uri, "contributions")   # every output below starts from them
    sub = c.groupBy("substation", "hour").agg(F.sum("ip").alias("inj"), F.sum("wm").alias("wd"))
    sub = sub.withColumn("shared", F.least("inj", "wd"))
    zone = c.groupBy("zone", "hour").agg(F.sum("ip").alias("inj"), F.sum("wm").alias("wd"))
    zone = zone.withColumn("shared", F.least("inj", "wd"))

    # plants: shared energy of the substation attributed oldest first, up to each plant's injection
    order = Window.partitionBy("substation", "hour").orderBy("commissioned", "device_id")
    before = F.coalesce(F.sum("ip").over(order.rowsBetween(Window.unboundedPreceding, -1)), F.lit(0))
    p = (c.where(F.col("ip") > 0)
         .join(sub.select("substation", "hour", "shared"), ["substation", "hour"])
         .withColumn("att", F.greatest(F.lit(0), F.least(F.col("ip"), F.col("shared") - before)).cast("long")))
    prices = _frame(spark, [(z, h, v) for (z, h), v in inputs.prices.items() if hours[0] <= h <= hours[-1]],
                    [("pz_zone", "string"), ("pz_hour", "long"), ("pz", "long")])
    p = (p.join(F.broadcast(prices), (F.col("zone") == F.col("pz_zone")) & (F.col("hour") == F.col("pz_hour")),
                "left")
         .join(hours_df.select("hour", "tv"), "hour"))
    missing = p.where(F.col("pz").isNull()).select("zone", "hour").orderBy("hour", "zone").limit(1).collect()
    if missing:
        zone_name, hour = missing[0]["zone"], int(missing[0]["hour"])
        day, idx = local_hour(hour, tz)
        raise MissingPriceError(
            f"no zonal price for zone {zone_name} on {day.isoformat()} hour {idx} (UTC {hour}): load the market "
            "operator's MGP file for that day with `lec settlement prices load FILE`")
    p = p.withColumn("tip", _tip_column(spark, inputs))
    plant_rows = p.select("device_id", "hour", "substation", "zone", "ip", "att", "pz", "tip").toPandas()

    # members: energy counted in their substation's shared hours, per local day
    m = (c.where(F.col("member").isNotNull())
         .join(sub.select("substation", "hour", (F.col("shared") > 0).alias("counted")), ["substation", "hour"])
         .join(hours_df.select("hour", "day"), "hour"))
    md = (m.groupBy("member", "day")
          .agg(F.sum("wm").alias("w"), F.sum("ip").alias("i"),
               F.sum(F.when(F.col("counted"), F.col("wm")).otherwise(0)).alias("cw"),
               F.sum(F.when(F.col("counted"), F.col("ip")).otherwise(0)).alias("ci"),
               F.countDistinct(F.when(F.col("counted"), F.col("hour"))).alias("sh")))
    out = Hourly()
    for r in sub.toPandas().itertuples(index=False):
        out.substations[(r.substation, int(r.hour))] = [int(r.inj), int(r.wd), int(r.shared)]
    for r in zone.toPandas().itertuples(index=False):
        out.zones[(r.zone, int(r.hour))] = [int(r.inj), int(r.wd), int(r.shared)]
    for r in plant_rows.itertuples(index=False):
        out.plants[(r.device_id, int(r.hour))] = (r.substation, r.zone, int(r.ip), int(r.att), int(r.pz), int(r.tip))
    for r in md.toPandas().itertuples(index=False):
        out.member_days[(r.member, r.day)] = [int(r.w), int(r.i), int(r.cw), int(r.ci), int(r.sh)]
    dhp = dh.toPandas()
    device_hours = list(zip(dhp["device_id"].tolist(), (int(v) for v in dhp["hour"]),
                            (int(v) for v in dhp["w"]), (int(v) for v in dhp["i"])))
    return out, device_hours


def _tip_column(spark: SparkSession, inputs: SettlementInputs) -> Any:
    """``rules.tip`` as a Spark expression over columns pz, power_kw, plant_type, region, grant,
    reduction and the tariff version ``tv`` (integers throughout)."""
    from pyspark.sql import functions as F

    expr = None
    for tv, params in enumerate(inputs.tariffs):
        band = None
        for b in reversed(params.bands):
            formula = F.least(F.lit(b.cap), F.lit(b.base) + F.greatest(F.lit(0), F.lit(params.price_ref) - F.col("pz")))
            band = formula if band is None else F.when(F.col("power_kw") <= F.lit(b.max_kw), formula).otherwise(band)
        regional = F.lit(0)
        for region, corr in sorted(params.regional.items()):
            regional = F.when(F.col("region") == F.lit(region), F.lit(corr)).otherwise(regional)
        value = band + F.when(F.col("plant_type") == F.lit(PHOTOVOLTAIC), regional).otherwise(F.lit(0))
        pct = F.when(F.col("reduction") >= 0, F.col("reduction")).otherwise(F.lit(params.grant_reduction_pct))
        scaled = value * (F.lit(100) - pct)
        reduced = ((scaled - scaled % 100) / 100).cast("long")   # exact floor: values are non-negative
        one = F.when(F.col("grant"), reduced).otherwise(value).cast("long")
        expr = one if expr is None else F.when(F.col("tv") == F.lit(tv), one).otherwise(expr)
    return expr
