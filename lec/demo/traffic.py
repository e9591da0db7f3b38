"""Demo traffic shaped like real suppliers' feeds, faults included.

- smart-home boxes: one JSON reading per MQTT message, local time with offset, Wh; one box
  misconfigured to send kWh where Wh was declared; some messages lost (gaps) or sent twice.
- a Chain 2 box on one household's POD meter: Chain 2 JSON over MQTT at each quarter-hour end,
  the OBIS registers 1-0:1.8.0/2.8.0 (Wh, cumulative) and the profile's last and previous
  quarter-hours (so every quarter-hour is reported twice); one message with time stamp 0 (clock
  not set), and a power cut whose messages arrive later as one catch-up burst, newest first.
- the utility: the distributor's load-curve CSV (``dso-curve-csv``): one file per local day with
  a metadata line, a header and one row per POD (92 values on the spring-forward day, 100 on the
  fall-back day), kWh with a decimal comma; one day's file arrives late (after the next day's) and
  one file is dropped twice.
- the PV monitor: JSON batches over HTTP, one per hour, generation sent as positive numbers
  (the flow declares the generator convention), epoch seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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

    chain2_traffic(out, [s for s in series if s.supplier_id == "sup-chain2box"], rnd)

    sftp_series = [s for s in series if s.supplier_id == "sup-utility"]
    if sftp_series:
        files = curve_files(out, sftp_series)
        if len(files) >= 2:  # the first day's file arrives after the second day's
            files[0], files[1] = files[1], files[0]
            out.count("sftp_late_day")
        if files:
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
    return int((end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() // 3600)


def curve_files(out: DemoTraffic, series: list[DemoSeries]) -> list[SftpFile]:
    """The distributor's daily load-curve CSV of all its PODs (syntax dso-curve-csv), by local day.

    Only complete local days are sent (a curve row is a whole day); a partial first or last day of
    the demo period is counted as ``utility_partial_day`` and not sent.
    """
    rows: dict[str, list[str]] = {}
    for s in series:
        days: dict[str, list[float]] = {}
        for k, wh in enumerate(s.energies_wh):
            days.setdefault((s.start + k * QH).astimezone(ROME).strftime("%Y%m%d"), []).append(wh)
        for day, values in days.items():
            d = datetime.strptime(day, "%Y%m%d")
            if len(values) != expected_dst_day_hours(d) * 4:
                out.count("utility_partial_day")
                continue
            cells = ";".join(f"{wh / 1000:.4f}".replace(".", ",") for wh in values)
            rows.setdefault(day, []).append(f"{s.device_id};{d:%d/%m/%Y};PRELIEVO;{cells}")
    folder = series[0].flow_id      # one upload folder; the rows name their PODs
    header = "POD;DATA;TIPO;" + ";".join(f"Q{i}" for i in range(1, 101))
    return [SftpFile("sup-utility", folder, f"curva_{day}.csv",
                     (f"Distributore Locale SpA;curve di carico quartorarie;giorno {day};kWh\n{header}\n"
                      + "\n".join(lines) + "\n").encode())
            for day, lines in sorted(rows.items())]


CHAIN2_BASE_WH = {"withdrawal": 12_345_678, "injection": 2_345_678}   # the meter's registers at the start


def chain2_traffic(out: DemoTraffic, series: list[DemoSeries], rnd: random.Random) -> None:
    """Chain 2 JSON from the box on a POD meter: one message per quarter-hour end with both registers."""
    by_device: dict[str, dict[str, DemoSeries]] = {}
    for s in series:
        by_device.setdefault(s.device_id, {})[s.measurement] = s
    for pod, pair in by_device.items():
        w, i = pair["withdrawal"], pair["injection"]
        n = len(w.energies_wh)
        # registers at the end of each quarter-hour k (integer Wh, as meters count)
        reg = {"withdrawal": [CHAIN2_BASE_WH["withdrawal"]], "injection": [CHAIN2_BASE_WH["injection"]]}
        for k in range(n):
            reg["withdrawal"].append(reg["withdrawal"][-1] + round(w.energies_wh[k]))
            reg["injection"].append(reg["injection"][-1] + round(-i.energies_wh[k]))   # the series is negative
        topic = mqtt_topic(w.supplier_id, pod, w.flow_id)
        start = int(w.start.timestamp())
        cut = range(n // 2, min(n // 2 + 4, n)) if n >= 8 else range(0)      # a power cut: 4 messages late
        held: list[dict] = []
        for k in range(n + 1):
            end = start + 900 * k
            msg: dict = {"pod": pod, "device_id": f"C2-{pod[-4:]}", "ts": end + 7,
                         "1-0:1.7.0": round(max(w.energies_wh[k - 1], 0) * 4) if k else 0,
                         "1-0:2.7.0": round(-i.energies_wh[k - 1] * 4) if k else 0,
                         "qh": {"last": {"end": end, "1-0:1.8.0": reg["withdrawal"][k],
                                         "1-0:2.8.0": reg["injection"][k]}}}
            if k:
                msg["qh"]["previous"] = {"end": end - 900, "1-0:1.8.0": reg["withdrawal"][k - 1],
                                         "1-0:2.8.0": reg["injection"][k - 1]}
            if k == 3:
                msg["ts"] = 0                  # the box lost its clock: the profile's own slots date it
                out.count("chain2_epoch0")
            if k in cut:
                held.append(msg)
                continue
            if held:
                out.mqtt.append(MqttMessage(topic, orjson.dumps(held[::-1]), w.supplier_id))   # newest first
                out.count("chain2_catch_up_burst")
                held = []
            out.mqtt.append(MqttMessage(topic, orjson.dumps(msg), w.supplier_id))
            out.count("chain2_repeated_qh", 1 if k else 0)
