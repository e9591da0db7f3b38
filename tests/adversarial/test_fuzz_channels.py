"""Fuzzing the three channels of a real running stack (issue 9, "a suite that stays").

Hypothesis draws inputs for MQTT (paho), SFTP (paramiko) and HTTP (httpx) against the embedded
stack's real servers and workers (broker, bridge, SFTP server and watcher, HTTP API, streams). Each
input is sent as a supplier would; the last test then checks, for every input drawn:

- the stack stayed healthy: no worker died or was restarted, no HTTP 5xx;
- every input got exactly one feedback: one ``lec.feedback`` record per raw item (MQTT message, SFTP
  chunk, HTTP item), or one synchronous refusal (HTTP 4xx, SFTP ``failed/`` report);
- every rejected byte sequence is in ``lec.deadletter`` with a reason (and its bytes);
- no reading is both accepted and rejected, and the counts add up: readings on ``lec.readings`` of an
  item = its feedback's ``accepted``; the indexes of its errors = its ``rejected``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.http.tokens import issue_token
from lec import topics
from lec.io import read_topic
from lec.records import message_id_for
from tests.adversarial.live_stack import FUZZ_WORKERS, MqttSupplier, SftpSupplier, live_stack, mqtt_topic
from tests.streams.test_fuzz import json_values

pytestmark = pytest.mark.slow

T0 = datetime(2016, 3, 26, tzinfo=UTC)
FIGURES: dict[str, Any] = {}


@dataclass
class Sent:
    channel: str
    payload: bytes
    where: str                       # MQTT topic, SFTP shown path, HTTP flow
    status: int | None = None        # HTTP status
    answer: dict[str, Any] | None = None


SENT: list[Sent] = []


def iso(k: int) -> str:
    return (T0 + timedelta(minutes=15 * k)).isoformat()


# -- strategies: plausible readings mixed with hostile shapes ---------------------------------------
qh = st.integers(min_value=-5, max_value=200)
numbers = st.one_of(st.integers(min_value=-10**20, max_value=10**20), st.floats(allow_nan=True),
                    st.text(max_size=8), st.none(), st.booleans())
deep = st.integers(min_value=1, max_value=400).map(lambda n: b"[" * n + b"]" * n)
mqtt_reading = st.builds(lambda k, wh, extra: {"ts": iso(k), "wh": wh, **extra}, qh,
                         st.one_of(st.integers(min_value=1, max_value=5000), numbers),
                         st.dictionaries(st.sampled_from(["w", "x", "ts"]), json_values, max_size=2))
mqtt_payloads = st.one_of(
    mqtt_reading.map(lambda r: json.dumps(r).encode()),
    st.lists(mqtt_reading, min_size=1, max_size=5).map(lambda rs: json.dumps(rs).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300), deep)
http_reading = st.builds(lambda k, wh: {"t": int((T0 + timedelta(minutes=15 * k)).timestamp()), "wh": wh}, qh,
                         st.one_of(st.integers(min_value=0, max_value=5000), numbers))
http_bodies = st.one_of(
    st.lists(http_reading, min_size=1, max_size=30).map(lambda rs: json.dumps(rs).encode()),
    st.lists(st.one_of(http_reading, json_values), max_size=5).map(lambda rs: json.dumps(rs).encode()),
    st.binary(max_size=300), deep.map(lambda d: b'[{"t": 1, "wh": ' + d + b"}]"))
csv_line = st.builds(lambda k, kwh: f"{(T0 + timedelta(minutes=15 * k)):%d/%m/%Y %H:%M};{kwh}", qh,
                     st.one_of(st.floats(min_value=0, max_value=5, allow_nan=False).map(lambda x: f"{x:.4f}"),
                               st.text(max_size=6)))
sftp_contents = st.one_of(
    st.lists(csv_line, min_size=0, max_size=40).map(lambda ls: ("pod;data_ora;kwh\n" + "\n".join(ls) + "\n").encode()),
    st.binary(max_size=400),
    st.text(max_size=200).map(str.encode))

FUZZ = settings(max_examples=15, deadline=None, database=None, derandomize=False,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    with live_stack(tmp_path_factory.mktemp("fuzz") / "run", FUZZ_WORKERS) as ls:
        clients = {"mqtt": MqttSupplier(ls.settings, "sup-smarthome"),
                   "sftp": SftpSupplier(ls.settings, "sup-utility")}
        try:
            yield ls, clients
        finally:
            clients["mqtt"].close()
            clients["sftp"].close()


@FUZZ
@given(payload=mqtt_payloads)
def test_fuzz_mqtt(live, payload: bytes) -> None:
    ls, clients = live
    flow = ls.flow("mqtt")
    topic = mqtt_topic(flow["supplier"], flow["device"], flow["id"])
    assert clients["mqtt"].publish(topic, payload), "the broker did not acknowledge a publish"
    SENT.append(Sent("mqtt", payload, topic))


@FUZZ
@given(body=http_bodies, ctype=st.sampled_from(["application/json", "text/csv", "text/plain"]))
def test_fuzz_http(live, body: bytes, ctype: str) -> None:
    ls, _ = live
    flow = ls.flow("http")
    token = issue_token(ls.settings, flow["supplier"])
    r = httpx.post(f"http://127.0.0.1:{ls.settings.http_port}/v1/readings", params={"flow_id": flow["id"]},
                   content=body, headers={"Authorization": f"Bearer {token}", "Content-Type": ctype}, timeout=60)
    assert r.status_code < 500, f"HTTP {r.status_code} for {body[:200]!r}: {r.text[:500]}"
    SENT.append(Sent("http", body, flow["id"], r.status_code, r.json()))


@FUZZ
@given(content=sftp_contents)
def test_fuzz_sftp(live, content: bytes) -> None:
    ls, clients = live
    flow = ls.flow("sftp")
    name = f"fz-{uuid.uuid4().hex[:12]}.csv"
    clients["sftp"].upload(flow["id"], name, content)
    SENT.append(Sent("sftp", content, f"inbox/{flow['id']}/{name}"))


def _sftp_outcome(ls, s: Sent) -> str | None:
    supplier = ls.flow("sftp")["supplier"]
    root = ls.settings.resolved_sftp_root() / supplier
    rel = Path(s.where)
    name, flow = rel.name, rel.parent.name
    if (root / "failed" / flow / name).exists():
        return "failed"
    if (root / "processed" / flow / name).exists():
        return "duplicate" if (root / "processed" / flow / f"{name}.duplicate.txt").exists() else "processed"
    return None


def test_every_input_is_answered_once_and_accounted_for(live) -> None:
    ls, _ = live
    assert SENT, "the fuzz tests sent nothing"
    bootstrap = ls.settings.kafka_bootstrap
    # every SFTP file leaves the inbox (settle time + processing)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and any(_sftp_outcome(ls, s) is None for s in SENT if s.channel == "sftp"):
        time.sleep(1)
    raw_items = [i for env in read_topic(bootstrap, topics.RAW, idle_s=3, timeout=120) for i in env["items"]]
    expected = {i["message_id"] for i in raw_items}
    mqtt_mids = {message_id_for("mqtt", ls.flow("mqtt")["supplier"], s.where, s.payload)
                 for s in SENT if s.channel == "mqtt"}
    feedback: dict[str, list[dict]] = defaultdict(list)
    deadline = time.monotonic() + 240
    while True:  # the streams answer every item; wait for them all
        feedback.clear()
        for f in read_topic(bootstrap, topics.FEEDBACK, idle_s=3, timeout=120):
            feedback[f["message_id"]].append(f)
        if (expected | mqtt_mids) <= set(feedback) or time.monotonic() > deadline:
            break
        time.sleep(3)
    accepted_at: dict[str, list[int]] = defaultdict(list)   # item message id -> indexes of its readings
    for r in read_topic(bootstrap, topics.READINGS, idle_s=3):
        if not r.get("interpolated"):
            mid, _, index = r["message_id"].rpartition(":")   # a reading's id is "<item id>:<index>"
            accepted_at[mid].append(int(index))
    dead = read_topic(bootstrap, topics.DEADLETTER, idle_s=3)
    dead_by_mid: dict[str, list[dict]] = defaultdict(list)
    for d in dead:
        assert d["reason_code"] and d["message"], f"a dead letter without a reason: {d}"
        dead_by_mid[d["message_id"]].append(d)
    dead_payloads = {(d["channel"], base64.b64decode(d["payload_b64"])) for d in dead}

    def check_item(mid: str, sends: int, what: str) -> None:
        fbs = feedback.get(mid, [])
        assert len(fbs) == sends, f"{what}: {len(fbs)} feedback records for {sends} inputs ({mid})"
        got = accepted_at.get(mid, [])
        assert sum(f["accepted"] for f in fbs) == len(got), \
            f"{what}: accepted != {len(got)} readings on lec.readings: {fbs} {payload_of.get(mid)!r}"
        for f in fbs:
            errors = {e["index"] for e in f.get("errors") or [] if e["reason_code"] != "duplicate"}
            assert not errors & set(got), f"{what}: readings {errors & set(got)} both accepted and rejected"
            assert len(errors) == f["rejected"] or len(f["errors"]) == 100, f"{what}: error indexes != rejected: {f}"
            if f["rejected"]:
                assert dead_by_mid.get(mid), f"{what}: rejected but no dead letter with its message id"
                assert {d["reason_code"] for d in dead_by_mid[mid]} & {e["reason_code"] for e in f["errors"]}

    payload_of = {message_id_for("mqtt", ls.flow("mqtt")["supplier"], s.where, s.payload): s.payload
                  for s in SENT if s.channel == "mqtt"}
    figures: Counter = Counter()
    mqtt_sends = Counter(message_id_for("mqtt", ls.flow("mqtt")["supplier"], s.where, s.payload)
                         for s in SENT if s.channel == "mqtt")
    for mid, n in mqtt_sends.items():
        check_item(mid, n, f"MQTT message {mid}")
    figures["mqtt inputs"] = sum(mqtt_sends.values())
    token = issue_token(ls.settings, ls.flow("http")["supplier"])
    for s in (s for s in SENT if s.channel == "http"):
        figures["http inputs"] += 1
        if s.status == 202:
            report = httpx.get(f"http://127.0.0.1:{ls.settings.http_port}/v1/batches/{s.answer['batch_id']}",
                               headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
            assert report["status"] == "complete", f"HTTP batch never fully answered: {report}"
            for item in report["items"]:
                check_item(item["message_id"], 1, f"HTTP item {item['message_id']}")
            figures["http batches accepted (202)"] += 1
        else:
            assert s.answer and s.answer.get("reason_code"), f"an HTTP refusal without a reason: {s}"
            assert ("http", s.payload[:64 * 1024]) in dead_payloads, f"HTTP {s.status} body not dead-lettered: {s}"
            figures[f"http refused ({s.status})"] += 1
    for s in (s for s in SENT if s.channel == "sftp"):
        figures["sftp inputs"] += 1
        outcome = _sftp_outcome(ls, s)
        figures[f"sftp {outcome}"] += 1
        sha = hashlib.sha256(s.payload).hexdigest()
        if outcome == "failed":
            assert any(d["channel"] == "sftp" and d["source"].get("file") == s.where for d in dead), \
                f"{s.where} failed without a dead letter"
        elif outcome == "processed":
            mids = {i["message_id"] for i in raw_items
                    if i["source"].get("file") == s.where and i["source"].get("file_sha256") == sha}
            assert mids, f"{s.where} processed but no chunk on lec.raw"
            for mid in mids:
                check_item(mid, 1, f"SFTP chunk of {s.where}")
        else:
            assert outcome == "duplicate", f"{s.where} never left the inbox"
    figures["readings accepted"] = sum(len(v) for v in accepted_at.values())
    figures["dead letters"] = len(dead)
    FIGURES.update(figures)
    print("fuzz figures:", dict(figures))
    assert not ls.unhealthy(), f"workers died or restarted: {ls.unhealthy()}"
