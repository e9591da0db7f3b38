"""The registry's relational schema: seed tables 6-26 plus the decode tables.

Names follow the seed (ENEA LEC report, §4.3.6). Columns the seed gives in Italian are in
English here; per-flow normalisation settings (what streams need to read a supplier's format)
are extra columns of ``flows``. Device secrets are NOT here: see ``secrets.py``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

ID = 128  # longest identifier (POD codes, flow ids, user ids)


def _decode_table(name: str) -> Table:
    return Table(
        name, metadata,
        Column("id", Integer, primary_key=True),
        Column("code", String(64), nullable=False, unique=True),
        Column("description", Text, nullable=False, default=""),
    )


# Decode tables (seed: "tabelle di decodifica")
t_frequence = Table(
    "t_frequence", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("seconds", Integer),                 # null for irregular / on-event
    Column("cron", String(64)),                 # CRON form of the frequency
)
t_datasyntax = _decode_table("t_datasyntax")
t_measurementtype = _decode_table("t_measurementtype")
t_gdprclassification = _decode_table("t_gdprclassification")
t_devicestatus = _decode_table("t_devicestatus")
t_usetype = _decode_table("t_usetype")
t_identificationmethod = _decode_table("t_identificationmethod")
t_periodtype = _decode_table("t_periodtype")
t_derivedtimeseriestype = _decode_table("t_derivedtimeseriestype")

# Table 6: users
users = Table(
    "users", metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("email", String(256)),
    Column("fiscal_code", String(32)),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True)),
)

# Table 7: roles (platform roles of seed §4.2.3.4)
roles = Table(
    "roles", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
)

users_roles = Table(
    "users_roles", metadata,
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", Integer, ForeignKey("roles.id"), primary_key=True),
    Column("community_id", String(ID), ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True),
)

# Table 8: communities
communities = Table(
    "communities", metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("kind", String(16), nullable=False, default="CER"),   # CER (renewable) | CEC (citizen)
    Column("description", Text, default=""),
    Column("timezone", String(64), nullable=False, default="Europe/Rome"),
    Column("primary_substation", String(64)),                    # cabina primaria
    Column("latitude", Float),
    Column("longitude", Float),
    Column("active", Boolean, nullable=False, default=True),
)

# Table 9: memberships, one wallet per user per community
users_communities = Table(
    "users_communities", metadata,
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("community_id", String(ID), ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True),
    Column("wallet", String(42), nullable=False),
    Column("member_role", String(32), nullable=False, default="member"),  # member | admin | stakeholder
    Column("joined_at", DateTime(timezone=True)),
    Column("left_at", DateTime(timezone=True)),
    Column("active", Boolean, nullable=False, default=True),
    UniqueConstraint("community_id", "wallet", name="uq_wallet_per_community"),
)

# Table 11: suppliers (data providers)
suppliers = Table(
    "suppliers", metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("kind", String(32), default="vendor"),           # vendor | utility | dso | external
    Column("contact_email", String(256)),
    Column("password_hash", String(256)),                   # PBKDF2-SHA512, Mosquitto $7$ format
    Column("ssh_public_keys", Text, default=""),            # OpenSSH authorized_keys lines
    Column("active", Boolean, nullable=False, default=True),
)

suppliers_communities = Table(
    "suppliers_communities", metadata,
    Column("supplier_id", String(ID), ForeignKey("suppliers.id", ondelete="CASCADE"), primary_key=True),
    Column("community_id", String(ID), ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True),
)

# Table 15: devices (POD, meters, inverters, batteries), georeferenced
devices = Table(
    "devices", metadata,
    Column("id", String(ID), primary_key=True),              # POD or serial
    Column("community_id", String(ID), ForeignKey("communities.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="SET NULL")),
    Column("supplier_id", String(ID), ForeignKey("suppliers.id"), nullable=False),
    Column("name", String(256), default=""),
    Column("devicestatus", String(64), nullable=False, default="active"),
    Column("usetype", String(64), default="residential"),
    Column("identificationmethod", String(64), default="pod"),
    Column("manufacturer", String(128)),
    Column("model", String(128)),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("altitude", Float),
    Column("address", String(512)),
    Column("start_ts", DateTime(timezone=True)),
    Column("end_ts", DateTime(timezone=True)),
    Column("rated_power_w", Float),                           # nameplate/contract power: bounds energy per interval
)

# Table 14: flows (one data stream of one device from one supplier)
flows = Table(
    "flows", metadata,
    Column("id", String(ID), primary_key=True),
    Column("device_id", String(ID), ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("supplier_id", String(ID), ForeignKey("suppliers.id"), nullable=False),
    Column("name", String(256), default=""),
    Column("channel", String(16), nullable=False),            # mqtt | sftp | http | camel
    Column("datasyntax", String(16), nullable=False),          # json | csv | xml
    Column("format_reference", Text, default=""),              # URL or document of the supplier format
    Column("send_frequency", String(64)),                      # t_frequence code
    Column("send_cron", String(64)),
    Column("measure_frequency", String(64)),
    Column("measure_cron", String(64)),
    Column("derogation_s", Integer, nullable=False, default=0),  # tolerated delay beyond send frequency
    Column("measurementtype", String(32), nullable=False),     # load | production | grid | storage
    Column("gdprclass", String(32), nullable=False, default="personal"),
    Column("use_rights", Text, default=""),                    # statement of use rights
    Column("on_error", String(32), nullable=False, default="deadletter"),  # deadletter | reject_batch
    Column("start_ts", DateTime(timezone=True)),
    Column("end_ts", DateTime(timezone=True)),
    Column("active", Boolean, nullable=False, default=True),
    # normalisation: what streams need to read this supplier's format
    Column("interval_s", Integer, nullable=False, default=900),
    Column("value_kind", String(16), nullable=False, default="interval"),  # interval | cumulative | instant
    Column("sign_convention", String(16), nullable=False, default="consumer"),  # consumer | generator
    Column("units", JSON, nullable=False, default=dict),       # quantity -> unit, e.g. {"energy": "kWh"}
    Column("mapping", JSON, nullable=False, default=dict),     # canonical field -> source field/path
    Column("ts_format", String(64), nullable=False, default="iso"),  # iso | epoch_s | epoch_ms | strftime
    Column("timezone", String(64), nullable=False, default="UTC"),
    Column("limits", JSON, nullable=False, default=dict),      # canonical field -> [min, max]
    Column("syntax_options", JSON, nullable=False, default=dict),  # e.g. CSV delimiter, XML record path
    Column("counter_max_mwh", Integer),                        # cumulative register rollover point
    Column("max_lateness_s", Integer),                         # how far behind the flow's latest reading data may arrive
)

# Table 10: flows of a community and how they count
flows_communities = Table(
    "flows_communities", metadata,
    Column("flow_id", String(ID), ForeignKey("flows.id", ondelete="CASCADE"), primary_key=True),
    Column("community_id", String(ID), ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True),
    Column("accountconsumption", Integer, nullable=False, default=0),  # 1 consumption, 2 production, 0 none
)

# Table 12: where a flow's measurements are stored
measurementstables = Table(
    "measurementstables", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_id", String(ID), ForeignKey("flows.id", ondelete="CASCADE"), nullable=False),
    Column("table_name", String(128), nullable=False, default="readings"),
    Column("description", Text, default=""),
)

# Table 16: signal labels (source field names and the quantity they carry)
signallabels = Table(
    "signallabels", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow_id", String(ID), ForeignKey("flows.id", ondelete="CASCADE"), nullable=False),
    Column("label", String(128), nullable=False),
    Column("quantity", String(64), nullable=False),
    Column("unit", String(16), nullable=False),
    Column("description", Text, default=""),
)

# Table 17: anomalies
anomalies = Table(
    "anomalies", metadata,
    Column("id", String(64), primary_key=True),
    Column("community_id", String(ID)),
    Column("device_id", String(ID)),
    Column("flow_id", String(ID)),
    Column("kind", String(32), nullable=False),   # silent_flow | stuck_meter | out_of_range | after_end | conflict
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("ts", DateTime(timezone=True)),
    Column("detail", Text, default=""),
    Column("status", String(16), nullable=False, default="open"),
)

# Tables 18-21: derived time series (KPIs) and their refresh schedules
derivedtimeseries = Table(
    "derivedtimeseries", metadata,
    Column("id", String(ID), primary_key=True),
    Column("community_id", String(ID), ForeignKey("communities.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE")),  # null = whole community
    Column("derivedtimeseriestype", String(64), nullable=False),  # t_derivedtimeseriestype code
    Column("periodtype", String(16), nullable=False),              # 15m | 1h | 1d | 1mo
    Column("lake_table", String(128), nullable=False),
    Column("description", Text, default=""),
)
derivedtimeseries_sources = Table(
    "derivedtimeseries_sources", metadata,
    Column("derivedtimeseries_id", String(ID), ForeignKey("derivedtimeseries.id", ondelete="CASCADE"),
           primary_key=True),
    Column("flow_id", String(ID), ForeignKey("flows.id", ondelete="CASCADE"), primary_key=True),
)
derivedtimeseries_schedules = Table(
    "derivedtimeseries_schedules", metadata,
    Column("derivedtimeseries_id", String(ID), ForeignKey("derivedtimeseries.id", ondelete="CASCADE"),
           primary_key=True),
    Column("refresh_cron", String(64), nullable=False),
    Column("last_refresh", DateTime(timezone=True)),
    Column("next_refresh", DateTime(timezone=True)),
)
derivedtimeseries_values = Table(
    "derivedtimeseries_values", metadata,
    Column("derivedtimeseries_id", String(ID), ForeignKey("derivedtimeseries.id", ondelete="CASCADE"),
           primary_key=True),
    Column("ts", DateTime(timezone=True), primary_key=True),
    Column("value", Float),
    Column("filled_share", Float, default=0.0),   # share of the value coming from filled (interpolated) data
)

# Tables 22-26: clustering of load curves
clustergroups = Table(
    "clustergroups", metadata,
    Column("id", String(ID), primary_key=True),
    Column("community_id", String(ID), ForeignKey("communities.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE")),
    Column("kind", String(16), nullable=False),          # daytype | member
    Column("n_clusters", Integer, nullable=False),
    Column("period_start", DateTime(timezone=True)),
    Column("period_end", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True)),
    Column("params", JSON, default=dict),
)
clusters = Table(
    "clusters", metadata,
    Column("id", String(ID), primary_key=True),
    Column("clustergroup_id", String(ID), ForeignKey("clustergroups.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("mean_curve", JSON, nullable=False),
    Column("std_curve", JSON, nullable=False),
    Column("cv", Float),
    Column("size", Integer, nullable=False),
)
clusters_days = Table(
    "clusters_days", metadata,
    Column("cluster_id", String(ID), ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True),
    Column("day", String(10), primary_key=True),
)
clusters_users = Table(
    "clusters_users", metadata,
    Column("cluster_id", String(ID), ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)
clustergroups_idx = Table(
    "clustergroups_idx", metadata,
    Column("clustergroup_id", String(ID), ForeignKey("clustergroups.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("item", String(ID), nullable=False),          # day (YYYY-MM-DD) or user id
    Column("cluster_idx", Integer, nullable=False),
)

DECODE_TABLES = (
    t_frequence, t_datasyntax, t_measurementtype, t_gdprclassification, t_devicestatus, t_usetype,
    t_identificationmethod, t_periodtype, t_derivedtimeseriestype,
)

DECODE_VALUES: dict[str, list[tuple[str, str]]] = {
    "t_datasyntax": [("json", "JSON"), ("csv", "CSV"), ("xml", "XML")],
    "t_measurementtype": [("load", "consumption of a load"), ("production", "PV/wind production"),
                          ("grid", "exchange with the grid at the POD"), ("storage", "battery")],
    "t_gdprclassification": [("personal", "personal data (GDPR art. 4)"), ("anonymous", "anonymous"),
                             ("aggregate", "aggregated, not personal")],
    "t_devicestatus": [("active", "active"), ("inactive", "inactive"), ("erased", "erased (art. 17)")],
    "t_usetype": [("residential", "residential"), ("commercial", "commercial"), ("public", "public"),
                  ("industrial", "industrial")],
    "t_identificationmethod": [("pod", "POD code"), ("serial", "serial number"), ("mac", "MAC address")],
    "t_periodtype": [("15m", "quarter-hour"), ("1h", "hour"), ("1d", "day"), ("1mo", "month")],
    "t_derivedtimeseriestype": [
        ("consumption", "L"), ("production", "P"), ("selfconsumption", "min(L,P)"),
        ("selfconsumption_pct", "min(L,P)/P"), ("selfsufficiency_pct", "min(L,P)/L"),
        ("withdrawal", "grid withdrawal"), ("injection", "grid injection"), ("peak", "peak load"),
        ("baseload", "base load"), ("completeness", "share of expected readings present")],
}
FREQUENCIES: list[tuple[str, str, int | None, str | None]] = [
    ("1m", "one minute", 60, "* * * * *"), ("15m", "quarter-hour", 900, "*/15 * * * *"),
    ("1h", "hour", 3600, "0 * * * *"), ("1d", "day", 86400, "0 0 * * *"),
    ("event", "on event", None, None),
]
ROLES: list[tuple[str, str]] = [
    ("platform_admin", "Platform Admin"), ("community_admin", "Community Admin"),
    ("oracle_admin", "Oracle Admin"), ("token_admin", "Token Admin"), ("member", "Member"),
    ("stakeholder", "Stakeholder"),
]

# Settlement (CER, DM 414/2023): dated perimeters of points and plants, plants, statute rules.
# Created by migration 0002 on databases made before it (0001 creates whatever the metadata holds).
device_perimeters = Table(
    "device_perimeters", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(ID), ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("valid_from", DateTime(timezone=True)),               # null: since ever
    Column("valid_to", DateTime(timezone=True)),                 # null: still valid (exclusive end)
    Column("primary_substation", String(64), nullable=False),    # cabina primaria code
    Column("market_zone", String(16), nullable=False),           # NORD, CNOR, CSUD, SUD, CALA, SICI, SARD
    Column("region", String(64), nullable=False),
)
plants = Table(
    "plants", metadata,
    Column("device_id", String(ID), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("power_kw", Float, nullable=False),
    Column("plant_type", String(16), nullable=False, default="pv"),   # pv | wind | hydro | biomass | other
    Column("commissioned", DateTime(timezone=True), nullable=False),  # commissioning date (UTC midnight)
    Column("capital_grant", Boolean, nullable=False, default=False),
    Column("grant_reduction_pct", Integer),                           # null: the tariff's default (50)
)
statute_rules = Table(
    "statute_rules", metadata,
    Column("community_id", String(ID), ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("producers_bps", Integer, nullable=False),
    Column("consumers_bps", Integer, nullable=False),
    Column("fund_bps", Integer, nullable=False),
    Column("costs_bps", Integer, nullable=False),
    Column("social_bps", Integer, nullable=False),
)
SETTLEMENT_TABLES = (device_perimeters, plants, statute_rules)

# One row: the registry's revision, +1 in every transaction that changes what a snapshot holds, so a
# process following lec.registry can tell an older snapshot from a newer one (content digests cannot).
registry_revision = Table(
    "registry_revision", metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", Integer, nullable=False),
)
