"""A demo community from SimBench's low-voltage grid 1-LV-rural1--2-sw: households, PV plants, a battery.

SimBench ships a year (2016) of 15-minute profiles; each household's load, each PV plant's output
and the battery's power come from the grid's own profile assignment and rated power.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

GRID = "1-LV-rural1--2-sw"
COMMUNITY_ID = "cer-demo"
SUPPLIERS = {
    "sup-smarthome": ("SmartHome Box Srl", "vendor", "mqtt"),     # one JSON reading per MQTT message
    "sup-utility": ("Distributore Locale SpA", "utility", "sftp"),  # daily CSV drop, local time, kWh
    "sup-pvmonitor": ("PV Monitor Srl", "vendor", "http"),          # JSON batches, generation positive
}
DEMO_PASSWORDS = {sid: f"demo-{sid}-pw" for sid in SUPPLIERS}     # demo only; real suppliers set their own


@dataclass(frozen=True)
class DemoSeries:
    """One flow's quarter-hour energies (Wh, Table 13 sign) for the demo period."""

    flow_id: str
    device_id: str
    supplier_id: str
    measurement: str
    start: datetime                 # UTC
    energies_wh: list[float]        # one per QH, Table 13 sign (production negative)


def wallet_for(user_id: str) -> str:
    return "0x" + hashlib.sha256(f"lec-demo-wallet:{user_id}".encode()).hexdigest()[:40]


def _load_net() -> Any:
    import simbench

    return simbench.get_simbench_net(GRID)


def build_demo(start: datetime, days: int, households: int = 8, pv_plants: int = 3) -> tuple[dict, list[DemoSeries]]:
    """The community file (as a dict for ``lec registry load``) and its true QH series."""
    import pandas as pd

    net = _load_net()
    prof = net.profiles
    times = pd.to_datetime(prof["load"]["time"], format="%d.%m.%Y %H:%M")
    # SimBench time stamps are in local standard time (no DST); treat them as UTC+1 fixed.
    t0 = (start.astimezone(timezone.utc) + timedelta(hours=1)).replace(tzinfo=None)
    idx = int(((times - t0).abs()).idxmin())
    n = days * 96
    rows = slice(idx, idx + n)

    users, devices, flows, series = [], [], [], []
    loads = net.load.head(households)
    half = (households + 1) // 2
    for i, (_, load) in enumerate(loads.iterrows(), 1):
        uid = f"u-{i:02d}"
        users.append({"id": uid, "name": f"Household {i}", "wallet": wallet_for(uid),
                      **({"roles": ["community_admin"]} if i == 1 else {})})
        pod = f"IT001E{i:08d}"
        sup = "sup-smarthome" if i <= half else "sup-utility"
        p_mw = load.p_mw * prof["load"][f"{load.profile}_pload"].to_numpy()[rows]
        wh = [float(p * 1e6 * 0.25) for p in p_mw]
        devices.append({"id": pod, "user": uid, "supplier": sup, "name": f"meter of household {i}",
                        "latitude": 44.5 + i / 1000, "longitude": 11.3 + i / 1000})
        fid = f"f-{pod}-load"
        if sup == "sup-smarthome":
            # at least 1 Wh per QH: a household never draws less (fridge, standby), so a box
            # sending kWh where Wh was declared is caught as out of range
            flows.append({"id": fid, "device": pod, "supplier": sup, "channel": "mqtt", "syntax": "json",
                          "measurement": "load", "account": "consumption", "units": {"energy": "Wh", "power": "W"},
                          "mapping": {"ts": "ts", "energy": "wh", "power": "w"}, "ts_format": "iso",
                          "send_frequency": "15m", "measure_frequency": "15m", "derogation_s": 3600,
                          "limits": {"energy_mwh": [1000, 50_000_000]}})
        else:
            flows.append({"id": fid, "device": pod, "supplier": sup, "channel": "sftp", "syntax": "csv",
                          "measurement": "load", "account": "consumption", "units": {"energy": "kWh"},
                          "mapping": {"ts": "data_ora", "energy": "kwh"},
                          "ts_format": "%d/%m/%Y %H:%M", "timezone": "Europe/Rome",
                          "syntax_options": {"delimiter": ";"},
                          "send_frequency": "1d", "measure_frequency": "15m", "derogation_s": 86400,
                          "limits": {"energy_mwh": [0, 50_000_000]}})
        series.append(DemoSeries(fid, pod, sup, "load", start, wh))

    pv_plants = min(pv_plants, households)  # each PV plant belongs to a household
    prosumers = [u["id"] for u in users[:pv_plants]]
    renew = prof["renewables"]
    for j, (_, gen) in enumerate(net.sgen.head(pv_plants).iterrows(), 1):
        dev = f"PV-{j:04d}"
        p_mw = gen.p_mw * renew[gen.profile].to_numpy()[rows]
        devices.append({"id": dev, "user": prosumers[j - 1], "supplier": "sup-pvmonitor",
                        "name": f"PV plant {j}", "usetype": "residential", "identificationmethod": "serial"})
        fid = f"f-{dev}-prod"
        flows.append({"id": fid, "device": dev, "supplier": "sup-pvmonitor", "channel": "http", "syntax": "json",
                      "measurement": "production", "account": "production", "sign_convention": "generator",
                      "units": {"energy": "Wh"}, "mapping": {"ts": "t", "energy": "wh"}, "ts_format": "epoch_s",
                      "send_frequency": "1h", "measure_frequency": "15m", "derogation_s": 7200,
                      "limits": {"energy_mwh": [-100_000_000, 0]}})
        series.append(DemoSeries(fid, dev, "sup-pvmonitor", "production", start,
                                 [-float(p * 1e6 * 0.25) for p in p_mw]))

    st = net.storage.iloc[0]
    bat = "BAT-0001"
    cap_wh, max_qh_wh = float(st.max_e_mwh) * 1e6, abs(float(st.p_mw)) * 1e6 * 0.25
    load_wh = [sum(s.energies_wh[k] for s in series if s.measurement == "load") for k in range(n)]
    pv_wh = [-sum(s.energies_wh[k] for s in series if s.measurement == "production") for k in range(n)]
    # The battery charges from the community's PV surplus and discharges into its deficit
    # (Table 13: + charging, - discharging); rated power and capacity from SimBench.
    soc, battery = cap_wh / 2, []
    for k in range(n):
        surplus = pv_wh[k] - load_wh[k]
        e = min(surplus, max_qh_wh, cap_wh - soc) if surplus > 0 else -min(-surplus, max_qh_wh, soc)
        soc += e
        battery.append(e)
    devices.append({"id": bat, "user": prosumers[0], "supplier": "sup-pvmonitor", "name": "community battery",
                    "identificationmethod": "serial"})
    flows.append({"id": f"f-{bat}-storage", "device": bat, "supplier": "sup-pvmonitor", "channel": "http",
                  "syntax": "json", "measurement": "storage", "account": "none", "sign_convention": "generator",
                  "units": {"energy": "Wh"}, "mapping": {"ts": "t", "energy": "wh"}, "ts_format": "epoch_s",
                  "send_frequency": "1h", "measure_frequency": "15m", "derogation_s": 7200})
    series.append(DemoSeries(f"f-{bat}-storage", bat, "sup-pvmonitor", "storage", start, battery))

    doc = {
        "community": {"id": COMMUNITY_ID, "name": "CER Demo (SimBench 1-LV-rural1)", "kind": "CER",
                      "timezone": "Europe/Rome", "description": f"Built from SimBench {GRID}"},
        "users": users,
        "suppliers": [{"id": sid, "name": name, "kind": kind, "password": DEMO_PASSWORDS[sid]}
                      for sid, (name, kind, _) in SUPPLIERS.items()],
        "devices": devices,
        "flows": flows,
    }
    return doc, series
