"""Who may send what, when: identity, ownership, activity windows, time and value checks.

Pure functions over a :class:`RegistrySnapshot`; each failure is a :class:`Reject` whose message
tells the supplier what to fix.
"""

from __future__ import annotations

from typing import Any

from lec.registry.snapshot import Device, Flow, RegistrySnapshot
from streams.errors import Reject
from streams.normalise import dt_epoch, iso_z

# limits may name a quantity or its canonical field; both map to the canonical field
LIMIT_FIELDS = {"energy": "energy_mwh", "power": "power_active_w", "reactive": "power_reactive_var",
                "current": "current_a", "voltage": "voltage_v", "charge": "charge_pct"}
PHYSICAL_LIMITS = {"voltage_v": (0.0, 1e7), "charge_pct": (0.0, 100.0)}


def check_supplier(snapshot: RegistrySnapshot, supplier_id: str, community_id: str) -> None:
    sup = snapshot.suppliers.get(supplier_id)
    if sup is None:
        raise Reject("unknown_supplier", f"supplier '{supplier_id}' is not in the registry")
    if not sup.active:
        raise Reject("supplier_inactive", f"supplier '{supplier_id}' is not active in the registry")
    if community_id not in sup.communities:
        raise Reject("wrong_community", f"supplier '{supplier_id}' does not supply community '{community_id}'")


def check_flow(snapshot: RegistrySnapshot, flow: Flow, supplier_id: str, community_id: str,
               device_id: str | None = None) -> Device:
    """The flow and its device exist, are active and belong to this supplier and community."""
    dev = snapshot.devices.get(flow.device_id)
    if dev is None:
        raise Reject("unknown_device", f"device '{flow.device_id}' of flow '{flow.id}' is not in the registry")
    if device_id is not None and device_id != flow.device_id:
        raise Reject("flow_device_mismatch", f"flow '{flow.id}' belongs to device '{flow.device_id}', "
                     f"not '{device_id}'")
    if not snapshot.supplier_owns(supplier_id, flow.device_id, flow.id):
        raise Reject("not_your_device", f"supplier '{supplier_id}' does not supply device '{flow.device_id}' "
                     f"(flow '{flow.id}'); you may only send data for your own devices")
    if flow.community_id != community_id or dev.community_id != community_id:
        raise Reject("wrong_community", f"flow '{flow.id}' belongs to community '{flow.community_id}', "
                     f"not '{community_id}'")
    if not flow.active:
        raise Reject("flow_inactive", f"flow '{flow.id}' is not active in the registry")
    if dev.status != "active":
        raise Reject("device_inactive", f"device '{dev.id}' is {dev.status} in the registry")
    return dev


def check_time(flow: Flow, dev: Device, epoch: int, received_epoch: float, clock_skew_s: int) -> None:
    """Not in the future beyond the skew, not before the flow/device start, not after their end."""
    if epoch > received_epoch + clock_skew_s:
        raise Reject("ts_future", f"timestamp {iso_z(epoch)} is more than {clock_skew_s} s after the time it was "
                     f"received ({iso_z(int(received_epoch))}); check the device clock and time zone")
    for what, start in (("flow", dt_epoch(flow.start_ts)), ("device", dt_epoch(dev.start_ts))):
        if start is not None and epoch < start:
            raise Reject("ts_before_start", f"timestamp {iso_z(epoch)} is before the {what}'s start "
                         f"{iso_z(int(start))}")
    for what, end in (("flow", dt_epoch(flow.end_ts)), ("device", dt_epoch(dev.end_ts))):
        if end is not None and epoch >= end:
            raise Reject("after_end", f"timestamp {iso_z(epoch)} is after the {what}'s end {iso_z(int(end))}; "
                         "the registry says it no longer sends data", anomaly="after_end")


def check_limits(reading: dict[str, Any], limits: dict[str, list[float]]) -> None:
    """Canonical values (SI units, mWh, Table 13 sign) inside the flow's and physical limits."""
    for name, (lo, hi) in PHYSICAL_LIMITS.items():
        v = reading[name]
        if v is not None and not lo <= v <= hi:
            raise Reject("out_of_range", f"{name} = {v} is outside the physical range [{lo}, {hi}]",
                         anomaly="out_of_range", value=float(v))
    for key, bounds in limits.items():
        name = LIMIT_FIELDS.get(key, key)
        v = reading.get(name)
        if v is None or not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            continue
        lo, hi = bounds
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise Reject("out_of_range", f"{name} = {v} is outside the flow's limits [{lo}, {hi}]",
                         anomaly="out_of_range", value=float(v))
