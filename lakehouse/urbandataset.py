"""A community's KPIs as an UrbanDataset (ENEA Smart City Platform Specification, information 2.0).

``lec export urbandataset`` writes one JSON document for a period; ``lec export urbandataset-publish``
sends the same document on a schedule to the ``lec.urbandataset`` Kafka topic (key: community id)
for downstream apps. Both are validated against ``schemas/urbandataset.json``, written from the
SCPS documentation (see the schema's description): specification (the dataset's properties),
context (producer, time zone, timestamp, coordinates) and values (one line per member and period,
plus the community's own lines). Times are UTC (``timeZone: UTC+0``): a community's local offset
changes with DST inside a period, an UTC document never is ambiguous.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from lec import topics
from lec.errors import LecError

if TYPE_CHECKING:
    import pandas as pd

    from lec.registry import Registry

log = logging.getLogger("lec.urbandataset")

TOPIC = topics.URBANDATASET
SCHEMA_NAME = "urbandataset"
SPEC_VERSION = "2.0"
DATASET_ID = {"value": "LocalEnergyCommunityKPI-1.0", "schemeID": "LEC"}
DATASET_NAME = "Local Energy Community KPI"
DATASET_URI = "https://github.com/lec-platform/lec/blob/main/docs/formats.md#urbandataset-export"

# KPI column -> (SCPS property name, description, data type, unit of measure)
PROPERTIES: dict[str, tuple[str, str, str, str]] = {
    "consumption_kwh": ("ElectricConsumption", "Energy consumed (accounting load flows)", "double", "kilowattHour"),
    "production_kwh": ("ElectricProduction", "Energy produced (accounting production flows)", "double",
                       "kilowattHour"),
    "selfconsumption_kwh": ("SharedEnergy", "Energy produced and consumed in the same quarter-hour", "double",
                            "kilowattHour"),
    "selfconsumption_pct": ("SelfConsumptionRate", "Shared energy / production", "double", "percent"),
    "selfsufficiency_pct": ("SelfSufficiencyRate", "Shared energy / consumption", "double", "percent"),
    "withdrawal_kwh": ("GridWithdrawal", "Energy withdrawn from the grid", "double", "kilowattHour"),
    "injection_kwh": ("GridInjection", "Energy injected into the grid", "double", "kilowattHour"),
    "peak_kw": ("PeakPower", "Peak load (percentile of quarter-hour power)", "double", "kilowatt"),
    "base_kw": ("BaseLoad", "Base load (low percentile of quarter-hour power)", "double", "kilowatt"),
    "completeness_pct": ("DataCompleteness", "Readings present / readings expected", "double", "percent"),
}
ID_PROPERTIES = [
    {"propertyName": "CommunityID", "propertyDescription": "Energy community identifier", "dataType": "string",
     "unitOfMeasure": "dimensionless"},
    {"propertyName": "MemberID", "propertyDescription": "Member identifier ('community' for the community's "
     "totals)", "dataType": "string", "unitOfMeasure": "dimensionless"},
]
PERIOD_PROPERTIES = [
    {"propertyName": "period", "propertyDescription": "Period of the line's values",
     "subProperties": {"propertyName": ["start_ts", "end_ts"]}},
    {"propertyName": "start_ts", "propertyDescription": "Start of the period (UTC)", "dataType": "dateTime",
     "unitOfMeasure": "dimensionless"},
    {"propertyName": "end_ts", "propertyDescription": "End of the period (UTC, exclusive)", "dataType": "dateTime",
     "unitOfMeasure": "dimensionless"},
]


@dataclass(frozen=True)
class Context:
    community_id: str
    latitude: float
    longitude: float
    producer: str = "LEC"
    language: str = "IT"
    timezone_name: str = "Europe/Rome"


def _scps_time(value: Any) -> str:
    import pandas as pd

    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def _val(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return f"{round(f, 6):.6f}".rstrip("0").rstrip(".") if f != int(f) else str(int(f))


def document(kpis: pd.DataFrame, ctx: Context, now: datetime | None = None) -> dict[str, Any]:
    """The UrbanDataset of KPI rows (``lakehouse.kpi.jobs.KPI_COLUMNS``): one line per (level, member, period)."""
    now = now or datetime.now(UTC)
    lines = []
    for rec in kpis.sort_values(["period_start", "level", "member_id"], na_position="first").to_dict("records"):
        member = rec.get("member_id") if rec.get("level") == "member" else None
        props = [{"name": "CommunityID", "val": ctx.community_id},
                 {"name": "MemberID", "val": str(member) if member else "community"}]
        for col, (name, *_rest) in PROPERTIES.items():
            v = _val(rec.get(col))
            if v is not None:       # a rate over an empty denominator has no value: left out, not 0
                props.append({"name": name, "val": v})
        lines.append({"id": len(lines) + 1, "period": {"start_ts": _scps_time(rec["period_start"]),
                                                       "end_ts": _scps_time(rec["period_end"])},
                      "property": props})
    definitions = [*ID_PROPERTIES,
                   *({"propertyName": n, "propertyDescription": d, "dataType": t, "unitOfMeasure": u}
                     for n, d, t, u in PROPERTIES.values()),
                   *PERIOD_PROPERTIES]
    return {"UrbanDataset": {
        "specification": {"version": SPEC_VERSION, "id": dict(DATASET_ID), "name": DATASET_NAME, "uri": DATASET_URI,
                          "properties": {"propertyDefinition": definitions}},
        "context": {"producer": {"id": f"{ctx.producer}-{ctx.community_id}", "schemeID": "SCPS"},
                    "timeZone": "UTC+0", "timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "coordinates": {"format": "WGS84-DD", "latitude": ctx.latitude, "longitude": ctx.longitude},
                    "language": ctx.language,
                    "note": f"KPIs of energy community {ctx.community_id} (local time zone {ctx.timezone_name}); "
                            "times in UTC"},
        "values": {"line": lines}}}


def validate(doc: dict[str, Any]) -> None:
    """Raise :class:`UrbanDatasetError` naming every place the document breaks the schema."""
    from lec.schemas import errors

    problems = errors(SCHEMA_NAME, doc)
    if problems:
        raise UrbanDatasetError("the UrbanDataset does not validate against schemas/urbandataset.json: "
                                + "; ".join(problems[:10]))


class UrbanDatasetError(LecError):
    """An UrbanDataset could not be built or does not validate."""


def community_context(registry: Registry, community_id: str, latitude: float | None = None,
                      longitude: float | None = None) -> Context:
    """Producer and coordinates: the community's own, else the centroid of its devices, else the options."""
    from sqlalchemy import func, select

    from lec.registry import schema as t

    with registry.engine.connect() as conn:
        row = conn.execute(select(t.communities.c.latitude, t.communities.c.longitude, t.communities.c.timezone)
                           .where(t.communities.c.id == community_id)).first()
        if row is None:
            raise UrbanDatasetError(f"community '{community_id}' is not in the registry")
        lat, lon, tz = row
        if lat is None or lon is None:
            lat, lon = conn.execute(select(func.avg(t.devices.c.latitude), func.avg(t.devices.c.longitude))
                                    .where(t.devices.c.community_id == community_id)
                                    .where(t.devices.c.latitude.is_not(None))).first()
    lat = latitude if latitude is not None else lat
    lon = longitude if longitude is not None else lon
    if lat is None or lon is None:
        raise UrbanDatasetError(f"community '{community_id}' has no coordinates (nor its devices): give "
                                "--latitude and --longitude, or set them in the community file")
    return Context(community_id, float(lat), float(lon), timezone_name=tz or "Europe/Rome")


def export(community_id: str, start: str, end: str, resolution: str, latitude: float | None = None,
           longitude: float | None = None) -> dict[str, Any]:
    """Compute the period's KPIs (Spark over the lake) and return the validated UrbanDataset."""
    from lakehouse.kpi import jobs as kpi
    from lakehouse.spark.sessions import read_delta, registry_frames, session_for
    from lec.config import settings
    from lec.registry import open_registry

    s = settings()
    registry = open_registry(s)
    ctx = community_context(registry, community_id, latitude, longitude)
    req = kpi.KpiRequest(community_id, kpi.parse_day_or_time(start, ctx.timezone_name),
                         kpi.parse_day_or_time(end, ctx.timezone_name), resolution, timezone=ctx.timezone_name)
    spark = session_for(s.spark_remote)
    pdf = kpi.compute_kpis(spark, read_delta(spark, s.resolved_lake_uri(), "readings"),
                           registry_frames(spark, registry), req).toPandas()
    doc = document(pdf, ctx)
    validate(doc)
    return doc


def window(now: datetime, resolution: str, periods: int) -> tuple[datetime, datetime]:
    """The last ``periods`` complete periods before ``now`` (UTC boundaries; 1d/1mo: UTC days)."""
    step = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "1d": timedelta(days=1)}.get(resolution)
    if step is None:
        raise UrbanDatasetError(f"scheduled exports take 15m, 1h or 1d, not {resolution!r}")
    epoch = int(now.timestamp())
    end = datetime.fromtimestamp(epoch - epoch % int(step.total_seconds()), UTC)
    return end - periods * step, end


def publish(bootstrap: str, doc: dict[str, Any], community_id: str, topic: str = TOPIC) -> None:
    """One validated document to the topic, keyed by community; raises if Kafka does not acknowledge it."""
    import orjson

    from lec.io import DeliveryFailed, Producer

    validate(doc)
    p = Producer(bootstrap, **{"message.max.bytes": 10_000_000})
    p.produce(topic, orjson.dumps(doc), community_id.encode())
    try:
        p.flush_or_raise(60, "UrbanDataset documents")
    except DeliveryFailed as exc:
        raise UrbanDatasetError(f"Kafka did not acknowledge the UrbanDataset on {topic}: "
                                f"{exc.errors[0] if exc.errors else 'timed out'}") from exc


def register_export(app: typer.Typer) -> None:
    """``lec export urbandataset`` and ``lec export urbandataset-publish``."""
    export_app = typer.Typer(help="Standard datasets out of the lake.", no_args_is_help=True)

    @export_app.command("urbandataset")
    def urbandataset_cmd(community: str = typer.Option(..., "--community", help="Community id."),
                         start: str = typer.Option(..., "--from", help="YYYY-MM-DD (local midnight) or ISO time."),
                         end: str = typer.Option(..., "--to", help="End (exclusive), same forms."),
                         resolution: str = typer.Option("1h", "--resolution", help="15m | 1h | 1d | 1mo"),
                         out: str = typer.Option(None, "--out", help="Write here instead of stdout."),
                         latitude: float = typer.Option(None, "--latitude", help="Override the coordinates."),
                         longitude: float = typer.Option(None, "--longitude")) -> None:
        """The community's KPIs as an UrbanDataset JSON document (ENEA SCPS 2.0), schema-validated."""
        import orjson

        doc = export(community, start, end, resolution, latitude, longitude)
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        if out:
            with open(out, "wb") as fh:
                fh.write(data)
            typer.echo(f"{len(doc['UrbanDataset']['values']['line'])} lines written to {out}", err=True)
        else:
            typer.echo(data.decode())

    @export_app.command("urbandataset-publish")
    def publish_cmd(community: str = typer.Option(..., "--community", help="Community id."),
                    resolution: str = typer.Option("1h", "--resolution", help="15m | 1h | 1d"),
                    periods: int = typer.Option(24, "--periods", help="Complete periods per document."),
                    every: float = typer.Option(3600, "--every", help="Seconds between documents."),
                    once: bool = typer.Option(False, "--once", help="Publish one document and exit (cron)."),
                    until: str = typer.Option(None, "--until", help="Export up to this ISO time instead of now "
                                                                    "(replays, tests)."),
                    topic: str = typer.Option(TOPIC, "--topic"),
                    latitude: float = typer.Option(None, "--latitude"),
                    longitude: float = typer.Option(None, "--longitude")) -> None:
        """Every --every seconds: the last --periods complete periods as an UrbanDataset on the topic."""
        from lec.config import settings

        bootstrap = settings().kafka_bootstrap
        if not bootstrap:
            raise UrbanDatasetError("LEC_KAFKA_BOOTSTRAP is not set")
        while True:
            now = datetime.fromisoformat(until) if until else datetime.now(UTC)
            lo, hi = window(now if now.tzinfo else now.replace(tzinfo=UTC), resolution, periods)
            doc = export(community, lo.isoformat(), hi.isoformat(), resolution, latitude, longitude)
            publish(bootstrap, doc, community, topic)
            log.info("UrbanDataset of %s %s..%s (%d lines) published to %s", community, lo, hi,
                     len(doc["UrbanDataset"]["values"]["line"]), topic)
            typer.echo(f"published {community} {lo.isoformat()}..{hi.isoformat()} to {topic}", err=True)
            if once:
                return
            time.sleep(every)

    app.add_typer(export_app, name="export")
