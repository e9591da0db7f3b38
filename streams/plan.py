"""Per-flow precomputed settings for the hot path (built once per registry snapshot).

Looking units, mapping, limits and time windows up per reading costs more than the conversion
itself; a :class:`FlowPlan` holds them ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from lec.records import READING_SCHEMA
from lec.registry.snapshot import Device, Flow
from streams.normalise import DEFAULT_ENERGY_UNIT, ENERGY_TO_MWH, QUANTITIES, dt_epoch
from streams.validate import LIMIT_FIELDS

DEFAULT_MAPPING = {"ts": "ts", "energy": "energy", "power": "power", "reactive": "reactive", "current": "current",
                   "voltage": "voltage", "charge": "charge"}
DEFAULT_STUCK_READINGS = {"cumulative": 96, "interval": 8, "instant": 8}
INF = float("inf")
I64 = 2 ** 63


DEFAULT_MAX_LATENESS_S = 35 * 86400   # Settings.streams_max_lateness_s


@dataclass(frozen=True)
class Bounds:
    """Worker-wide defaults of the physical and lateness bounds (settings ``streams_*``)."""

    default_rated_power_w: float = 1_000_000.0   # a device without a declared rating: the CER 1 MW plant cap
    power_margin: float = 1.5                    # measurement error, short peaks above nameplate
    lateness_margin_s: int = 86400               # outages and retries beyond send frequency + derogation
    # flows that declare no send frequency: a month's settlement + slack (0 = unbounded, historic replays).
    # Unbounded by default let any supplier make the oracle re-anchor every past quarter-hour.
    max_lateness_s: int = DEFAULT_MAX_LATENESS_S


def max_lateness_s(flow: Flow, bounds: Bounds) -> int:
    """How far behind the flow's latest accepted reading a reading may be (its declared value, else
    send frequency + derogation + margin, else the worker default)."""
    if flow.max_lateness_s is not None:
        return flow.max_lateness_s
    if flow.send_frequency_s:
        return flow.send_frequency_s + flow.derogation_s + bounds.lateness_margin_s
    return bounds.max_lateness_s or I64     # nothing declared to derive it from (historic replays)


@dataclass(frozen=True)
class FlowPlan:
    ts_src: str
    energy_src: str | None
    energy_factor: int | None            # mWh per source unit; None = unknown unit (rejected per reading)
    energy_unit: str
    energy_label: str                    # how errors name the energy field
    # (quantity, source field, canonical field, factor to SI, unit, label for errors)
    others: tuple[tuple[str, str, str, float | None, str | None, str], ...]
    power_w_factor: int                  # source power unit -> W, for energy estimation
    message_id_src: str | None
    not_before: float                    # latest of flow and device start (epoch s)
    not_after: float                     # earliest of flow and device end
    limits: tuple[tuple[str, float | None, float | None], ...]
    grace_s: int
    stuck_limit: int
    decimal_comma: bool
    ts_marks_end: bool
    power_cap_w: float                   # rated power x margin: |power| above it is not physical
    max_late_s: int                      # see max_lateness_s
    template: dict          # the reading's fields that only depend on the flow (copied per reading)


    def energy_cap_mwh(self, interval_s: int) -> int:
        """Most energy the device can move in ``interval_s`` (mWh = W x s / 3.6), capped to int64."""
        return min(int(self.power_cap_w * interval_s / 3.6), I64 - 1)


def build_plan(flow: Flow, dev: Device, bounds: Bounds | None = None) -> FlowPlan:
    world = bounds or Bounds()
    m = flow.mapping or DEFAULT_MAPPING
    units = flow.units
    others = []
    for q, (field, default, factors) in QUANTITIES.items():
        if m.get(q):
            unit = units.get(q, default)
            others.append((q, m[q], field, factors.get(unit), unit, f"{q} ('{m[q]}')"))
    eu = units.get("energy", DEFAULT_ENERGY_UNIT)
    starts = [e for e in (dt_epoch(flow.start_ts), dt_epoch(dev.start_ts)) if e is not None]
    ends = [e for e in (dt_epoch(flow.end_ts), dt_epoch(dev.end_ts)) if e is not None]
    limits = []
    for key, pair in flow.limits.items():
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            limits.append((LIMIT_FIELDS.get(key, key), pair[0], pair[1]))
    opts = flow.syntax_options
    return FlowPlan(
        ts_src=m.get("ts", "ts"), energy_src=m.get("energy"), energy_label=f"energy ('{m.get('energy')}')", energy_factor=ENERGY_TO_MWH.get(eu), energy_unit=eu,
        others=tuple(others), power_w_factor=int(QUANTITIES["power"][2].get(units.get("power", "W"), 1)),
        message_id_src=m.get("message_id"), not_before=max([0.0, *starts]),   # never before 1970 (the lake's epoch)
        not_after=min(ends) if ends else INF, limits=tuple(limits),
        grace_s=(flow.send_frequency_s or flow.interval_s) + flow.derogation_s,
        stuck_limit=int(opts.get("stuck_readings", DEFAULT_STUCK_READINGS.get(flow.value_kind, 8))),
        decimal_comma=bool(opts.get("decimal_comma")), ts_marks_end=opts.get("ts_marks") == "end",
        power_cap_w=(dev.rated_power_w or world.default_rated_power_w) * world.power_margin,
        max_late_s=max_lateness_s(flow, world),
        template={
            "schema": READING_SCHEMA, "community_id": flow.community_id, "supplier_id": None,
            "device_id": flow.device_id, "flow_id": flow.id, "channel": None, "message_id": None, "ts": None,
            "interval_s": 0, "ingest_ts": None, "current_a": None, "voltage_v": None, "power_active_w": None,
            "power_reactive_var": None, "energy_mwh": None, "charge_pct": None, "measurement": flow.measurement,
            "account": flow.account, "estimated": False, "interpolated": False, "late": False, "conflict": False})
