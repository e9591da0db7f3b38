"""A demo community from SimBench's low-voltage grid 1-LV-rural1--2-sw: households, PV plants, a battery.

SimBench ships a year (2016) of 15-minute profiles; each household's load, each PV plant's output
and the battery's power come from the grid's own profile assignment and rated power. SimBench's
time column is Italian/Central European *local* time with DST (27 March 2016 has no 02:00-02:45,
30 October 2016 has them twice): ``simbench_utc`` turns it into true UTC instants.

Suppliers and formats: smart-home boxes send generic JSON over MQTT; one household's POD meter is
read by a Chain 2 in-home device (``syntax: chain2``: withdrawal and injection registers); the
utility sends the distributor's load-curve CSV files (``syntax: dso-curve-csv``) over SFTP; the PV
monitor sends JSON batches over HTTP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from lec.errors import LecError

GRID = "1-LV-rural1--2-sw"
COMMUNITY_ID = "cer-demo"
SUPPLIERS = {
    "sup-smarthome": ("SmartHome Box Srl", "vendor", "mqtt"),     # one JSON reading per MQTT message
    "sup-chain2box": ("Chain2 Box Srl", "vendor", "mqtt"),        # Chain 2 JSON: OBIS registers per QH
    "sup-utility": ("Distributore Locale SpA", "utility", "sftp"),  # daily load-curve CSV of all its PODs
    "sup-pvmonitor": ("PV Monitor Srl", "vendor", "http"),          # JSON batches, generation positive
}
ROME = "Europe/Rome"
CHAIN2_COUNTER_MAX_MWH = 10**12     # the registers wrap at 10^9 Wh
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


@lru_cache(maxsize=1)
def _load_net() -> Any:
    """SimBench's grid with its profiles (read-only here; loading takes seconds, so once per process)."""
    import simbench

    return simbench.get_simbench_net(GRID)


def simbench_utc(times: Sequence[str]) -> list[int]:
    """UTC epoch seconds of SimBench's raw time column ('dd.mm.yyyy HH:MM', Italian local time with DST).

    The fall-back hour appears twice in the column (first CEST, then CET) and is told apart by
    order; the spring-forward hour is absent. The result must advance by exactly 15 minutes a row:
    anything else (a wall time in the DST gap, a hole, a reordering) is refused.
    """
    import pandas as pd

    naive = pd.to_datetime(pd.Series(list(times)), format="%d.%m.%Y %H:%M")
    try:
        local = naive.dt.tz_localize(ROME, ambiguous="infer", nonexistent="raise")
    except (ValueError, TypeError) as exc:   # pytz/pandas errors for nonexistent/ambiguous-uninferable times
        raise LecError(f"SimBench time column is not {ROME} local time with DST: {exc}") from exc
    epochs = [int(t.timestamp()) for t in local]
    bad = next((i for i in range(1, len(epochs)) if epochs[i] - epochs[i - 1] != 900), None)
    if bad is not None:
        raise LecError(f"SimBench time column does not advance by 15 minutes at row {bad} "
                       f"({times[bad - 1]!r} -> {times[bad]!r})")
    return epochs


def build_demo(start: datetime, days: int, households: int = 8, pv_plants: int = 3) -> tuple[dict, list[DemoSeries]]:
    """The community file (as a dict for ``lec registry load``) and its true QH series."""
    net = _load_net()
    prof = net.profiles
    epochs = simbench_utc(prof["load"]["time"].tolist())
    t0 = int(start.timestamp())
    if not epochs[0] <= t0 <= epochs[-1] or t0 % 900:
        raise LecError(f"demo start {start.isoformat()} is not a quarter-hour of SimBench's year "
                       f"({datetime.fromtimestamp(epochs[0], UTC):%Y-%m-%d} to "
                       f"{datetime.fromtimestamp(epochs[-1], UTC):%Y-%m-%d})")
    idx = epochs.index(t0)
    n = days * 96
    if idx + n > len(epochs):
        raise LecError(f"demo period of {days} days from {start.isoformat()} runs past SimBench's year")
    rows = slice(idx, idx + n)

    users, devices, flows, series = [], [], [], []
    loads = net.load.head(households)
    half = (households + 1) // 2
    chain2_household = half + 1 if households >= 3 else None   # its POD meter read over Chain 2
    true_load: dict[str, list[float]] = {}                     # user -> Wh per QH (also behind Chain 2)
    for i, (_, load) in enumerate(loads.iterrows(), 1):
        uid = f"u-{i:02d}"
        users.append({"id": uid, "name": f"Household {i}", "wallet": wallet_for(uid),
                      **({"roles": ["community_admin"]} if i == 1 else {})})
        pod = f"IT001E{i:08d}"
        sup = "sup-smarthome" if i <= half else "sup-chain2box" if i == chain2_household else "sup-utility"
        p_mw = load.p_mw * prof["load"][f"{load.profile}_pload"].to_numpy()[rows]
        wh = [float(p * 1e6 * 0.25) for p in p_mw]
        true_load[uid] = wh
        devices.append({"id": pod, "user": uid, "supplier": sup, "name": f"meter of household {i}",
                        "latitude": 44.5 + i / 1000, "longitude": 11.3 + i / 1000})
        fid = f"f-{pod}-load"
        if sup == "sup-chain2box":
            continue          # its grid flows follow the PV plants (withdrawal and injection need both)
        if sup == "sup-smarthome":
            # at least 1 Wh per QH: a household never draws less (fridge, standby), so a box
            # sending kWh where Wh was declared is caught as out of range
            flows.append({"id": fid, "device": pod, "supplier": sup, "channel": "mqtt", "syntax": "json",
                          "measurement": "load", "account": "consumption", "units": {"energy": "Wh", "power": "W"},
                          "mapping": {"ts": "ts", "energy": "wh", "power": "w"}, "ts_format": "iso",
                          "send_frequency": "15m", "measure_frequency": "15m", "derogation_s": 3600,
                          "limits": {"energy_mwh": [1000, 50_000_000]}})
        else:
            # the distributor's load curve of the POD (withdrawal only: these households have no PV)
            flows.append({"id": fid, "device": pod, "supplier": sup, "channel": "sftp", "syntax": "dso-curve-csv",
                          "measurement": "load", "account": "consumption",
                          "syntax_options": {"directions": ["withdrawal"]},
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

    if chain2_household is not None:
        series += _chain2_point(chain2_household, users, devices, flows, series, true_load, start)

    st = net.storage.iloc[0]
    bat = "BAT-0001"
    cap_wh, max_qh_wh = float(st.max_e_mwh) * 1e6, abs(float(st.p_mw)) * 1e6 * 0.25
    load_wh = [sum(w[k] for w in true_load.values()) for k in range(n)]
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


def _chain2_point(i: int, users: list[dict], devices: list[dict], flows: list[dict], series: list[DemoSeries],
                  true_load: dict[str, list[float]], start: datetime) -> list[DemoSeries]:
    """Household ``i``'s POD meter read by a Chain 2 box: withdrawal and injection flows (Table 13).

    The point's accounting quantities are then what its meter counts: withdrawal (consumption) and
    injection (production). Its PV plant, if any, stays as monitoring only (account none), so the
    production behind the meter is not counted twice.
    """
    uid = users[i - 1]["id"]
    pod = f"IT001E{i:08d}"
    pv_devices = {d["id"] for d in devices if d.get("user") == uid and d["id"].startswith("PV-")}
    pv = [0.0] * len(true_load[uid])
    for s in series:
        if s.device_id in pv_devices:
            pv = [a - b for a, b in zip(pv, s.energies_wh)]       # production is negative in the series
    for f in flows:
        if f["device"] in pv_devices:
            f["account"] = "none"
    net = [load - gen for load, gen in zip(true_load[uid], pv)]
    common = {"device": pod, "supplier": "sup-chain2box", "channel": "mqtt", "syntax": "chain2",
              "measurement": "grid", "counter_max_mwh": CHAIN2_COUNTER_MAX_MWH, "send_frequency": "15m",
              "measure_frequency": "15m", "derogation_s": 3600}
    flows.append({"id": f"f-{pod}-withdrawal", **common, "account": "consumption"})
    flows.append({"id": f"f-{pod}-injection", **common, "account": "production", "sign_convention": "generator"})
    return [DemoSeries(f"f-{pod}-withdrawal", pod, "sup-chain2box", "withdrawal", start, [max(e, 0.0) for e in net]),
            DemoSeries(f"f-{pod}-injection", pod, "sup-chain2box", "injection", start, [min(e, 0.0) for e in net])]
