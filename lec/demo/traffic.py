"""Demo traffic shaped like real suppliers' feeds, faults included.

- smart-home boxes: one JSON reading per MQTT message, local time with offset, Wh; one box
  misconfigured to send kWh where Wh was declared; some messages lost (gaps) or sent twice.
- the utility: one CSV file per meter and day over SFTP, Italian local time (the DST day has 23 hours),
  kWh; one day's file arrives late (after the next day's) and one file is dropped twice.
- the PV monitor: JSON batches over HTTP, one per hour, generation sent as positive numbers
  (the flow declares the generator convention), epoch seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson

from lec.demo.community import COMMUNITY_ID, DemoSeries

ROME = ZoneInfo("Europe/Rome")
QH = timedelta(minutes=15)


@dataclass
class MqttMessage:
    topic: str
    payload: bytes
    supplier_id: str


@dataclass
class SftpFile:
    supplier_id: str
    flow_folder: str
    name: str
    content: bytes


@dataclass
class HttpBatch:
    supplier_id: str
    body: bytes


@dataclass
class DemoTraffic:
    mqtt: list[MqttMessage] = field(default_factory=list)
    sftp: list[SftpFile] = field(default_factory=list)
    http: list[HttpBatch] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.faults[name] = self.faults.get(name, 0) + n


def mqtt_topic(supplier_id: str, device_id: str, flow_id: str, community_id: str = COMMUNITY_ID) -> str:
    return f"lec/{community_id}/{supplier_id}/{device_id}/{flow_id}"


def build_traffic(series: list[DemoSeries], seed: int = 7, gap_rate: float = 0.01, dup_rate: float = 0.01) -> DemoTraffic:
    rnd = random.Random(seed)
    out = DemoTraffic()
    mqtt_series = [s for s in series if s.supplier_id == "sup-smarthome"]
    kwh_box = mqtt_series[1].device_id if len(mqtt_series) > 1 else None
    for s in mqtt_series:
        topic = mqtt_topic(s.supplier_id, s.device_id, s.flow_id)
        for k, wh in enumerate(s.energies_wh):
            if rnd.random() < gap_rate:
                out.count("mqtt_gap")
                continue
            ts = (s.start + k * QH).astimezone(ROME).isoformat()
            value = round(wh / 1000, 4) if s.device_id == kwh_box else round(wh, 1)
            if s.device_id == kwh_box:
                out.count("mqtt_kwh_as_wh")
            payload = orjson.dumps({"ts": ts, "wh": value, "w": round(wh * 4, 1)})
            out.mqtt.append(MqttMessage(topic, payload, s.supplier_id))
            if rnd.random() < dup_rate:
                out.mqtt.append(MqttMessage(topic, payload, s.supplier_id))
                out.count("mqtt_duplicate")

    sftp_series = [s for s in series if s.supplier_id == "sup-utility"]
    if sftp_series:
        by_day: dict[str, list[SftpFile]] = {}
        for s in sftp_series:  # one file per POD and local day, into that POD's flow folder
            days: dict[str, list[str]] = {}
            for k, wh in enumerate(s.energies_wh):
                local = (s.start + k * QH).astimezone(ROME)
                days.setdefault(local.strftime("%Y%m%d"), []).append(f"{s.device_id};{local:%d/%m/%Y %H:%M};{wh / 1000:.4f}")
            for day, lines in days.items():
                by_day.setdefault(day, []).append(SftpFile(
                    "sup-utility", s.flow_id, f"consumi_{s.device_id}_{day}.csv",
                    ("pod;data_ora;kwh\n" + "\n".join(lines) + "\n").encode()))
        order = sorted(by_day)
        if len(order) >= 2:  # the first day's files arrive after the second day's
            order[0], order[1] = order[1], order[0]
            out.count("sftp_late_day")
        files = [f for day in order for f in by_day[day]]
        files.append(files[-1])  # the same file dropped twice
        out.count("sftp_duplicate_file")
        out.sftp = files

    http_series = [s for s in series if s.supplier_id == "sup-pvmonitor"]
    if http_series:
        n = len(http_series[0].energies_wh)
        for hour in range(0, n, 4):  # one batch per flow and hour: the HTTP API takes one flow per request
            for s in http_series:
                # the vendor reports generation and battery discharge as positive numbers
                rows = [{"t": int((s.start + k * QH).timestamp()), "wh": round(-s.energies_wh[k], 1)}
                        for k in range(hour, min(hour + 4, n))]
                body = {"flow_id": s.flow_id, "device_id": s.device_id, "readings": rows}
                out.http.append(HttpBatch("sup-pvmonitor", orjson.dumps(body)))
        out.count("http_positive_generation", sum(len(s.energies_wh) for s in http_series if s.measurement == "production"))
    return out


def expected_dst_day_hours(day: datetime) -> int:
    """Hours in a local day (23 on the spring-forward day, 25 on fall-back)."""
    start = datetime(day.year, day.month, day.day, tzinfo=ROME)
    end = start + timedelta(days=1)
    return int((end.astimezone(timezone.utc) - start.astimezone(timezone.utc)).total_seconds() // 3600)
