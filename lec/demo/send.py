"""Send demo traffic the way real suppliers do: paho over MQTT, paramiko over SFTP, httpx over HTTP."""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from typing import Any

from lec.config import Settings
from lec.demo.community import DEMO_PASSWORDS
from lec.demo.traffic import HttpBatch, MqttMessage, SftpFile
from lec.errors import LecError
from lec.progress import progress

log = logging.getLogger("lec.demo")


def send_mqtt(settings: Settings, messages: list[MqttMessage]) -> int:
    """Publish with QoS 1, one client per supplier, waiting for every PUBACK."""
    import paho.mqtt.client as mqtt

    sent = 0
    by_supplier: dict[str, list[MqttMessage]] = {}
    for m in messages:
        by_supplier.setdefault(m.supplier_id, []).append(m)
    for supplier, msgs in by_supplier.items():
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{supplier}-demo",  # a supplier's ids start with its id
                             protocol=mqtt.MQTTv311)
        client.username_pw_set(supplier, DEMO_PASSWORDS[supplier])
        client.max_inflight_messages_set(100)
        connected: dict[str, object] = {}
        client.on_connect = lambda c, u, flags, reason, props, seen=connected: seen.setdefault("reason", reason)
        client.connect(settings.mqtt_host, settings.mqtt_port)
        client.loop_start()
        deadline = time.monotonic() + 30
        while "reason" not in connected and time.monotonic() < deadline:
            time.sleep(0.05)
        if connected.get("reason") is None or connected["reason"].is_failure:
            client.loop_stop()
            raise LecError(f"MQTT broker refused supplier {supplier}: {connected.get('reason', 'no answer')}")
        infos = [client.publish(m.topic, m.payload, qos=1) for m in msgs]
        with progress(f"MQTT: {supplier} publishing", total=len(infos)) as advance:
            for info in infos:
                info.wait_for_publish(timeout=60)
                sent += info.is_published()
                advance()
        client.loop_stop()
        client.disconnect()
    return sent


def send_sftp(settings: Settings, files: list[SftpFile]) -> int:
    """Upload as ``name.part`` then rename: the watcher takes only completed uploads."""
    import paramiko

    sent = 0
    by_supplier: dict[str, list[SftpFile]] = {}
    for f in files:
        by_supplier.setdefault(f.supplier_id, []).append(f)
    for supplier, items in by_supplier.items():
        transport = paramiko.Transport(("127.0.0.1", settings.sftp_port))
        transport.connect(username=supplier, password=DEMO_PASSWORDS[supplier])
        sftp = paramiko.SFTPClient.from_transport(transport)
        try:
            with progress(f"SFTP: {supplier} uploading", total=len(items)) as advance:
                sent += _upload(sftp, items, advance)
        finally:
            sftp.close()
            transport.close()
    return sent


def _upload(sftp: Any, items: list[SftpFile], advance: Any) -> int:
    sent = 0
    for f in items:
        folder = f"inbox/{f.flow_folder}"
        part = f"{folder}/{f.name}.part"
        sftp.putfo(io.BytesIO(f.content), part)
        try:
            sftp.posix_rename(part, f"{folder}/{f.name}")
        except OSError:
            sftp.rename(part, f"{folder}/{f.name}")
        sent += 1
        # the next upload of a same-named file must wait for the watcher to take this one
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and f.name in sftp.listdir(folder):
            time.sleep(0.2)
        advance()
    return sent


def send_http(settings: Settings, batches: list[HttpBatch]) -> Counter:
    """POST each batch with the supplier's bearer token; returns status codes seen."""
    import httpx

    from connectors.http.tokens import issue_token

    codes: Counter = Counter()
    tokens: dict[str, str] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=30) as client, \
            progress("HTTP: posting batches", total=len(batches)) as advance:
        for b in batches:
            advance()
            token = tokens.setdefault(b.supplier_id, issue_token(settings, b.supplier_id))
            r = client.post("/v1/readings", content=b.body,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            codes[r.status_code] += 1
    return codes
