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
    template: dict          # the reading's fields that only depend on the flow (copied per reading)


def build_plan(flow: Flow, dev: Device) -> FlowPlan:
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
    for key, bounds in flow.limits.items():
        if isinstance(bounds, (list, tuple)) and len(bounds) == 2:
            limits.append((LIMIT_FIELDS.get(key, key), bounds[0], bounds[1]))
    opts = flow.syntax_options
    return FlowPlan(
        ts_src=m.get("ts", "ts"), energy_src=m.get("energy"), energy_label=f"energy ('{m.get('energy')}')", energy_factor=ENERGY_TO_MWH.get(eu), energy_unit=eu,
        others=tuple(others), power_w_factor=int(QUANTITIES["power"][2].get(units.get("power", "W"), 1)),
        message_id_src=m.get("message_id"), not_before=max(starts) if starts else -INF,
        not_after=min(ends) if ends else INF, limits=tuple(limits),
        grace_s=(flow.send_frequency_s or flow.interval_s) + flow.derogation_s,
        stuck_limit=int(opts.get("stuck_readings", DEFAULT_STUCK_READINGS.get(flow.value_kind, 8))),
        decimal_comma=bool(opts.get("decimal_comma")), ts_marks_end=opts.get("ts_marks") == "end",
        template={
            "schema": READING_SCHEMA, "community_id": flow.community_id, "supplier_id": None,
            "device_id": flow.device_id, "flow_id": flow.id, "channel": None, "message_id": None, "ts": None,
            "interval_s": 0, "ingest_ts": None, "current_a": None, "voltage_v": None, "power_active_w": None,
            "power_reactive_var": None, "energy_mwh": None, "charge_pct": None, "measurement": flow.measurement,
            "account": flow.account, "estimated": False, "interpolated": False, "late": False, "conflict": False})
