"""Finding 3: a registry change reaches every running component within a second or two.

`lec registry load` of a new community (new supplier, devices, flows) while the MQTT broker and
bridge, the HTTP ingest, the SFTP watcher and a streams worker run: the new supplier's MQTT login,
its HTTP batch and its SFTP upload are accepted, and streams normalises its readings, without
restarting anything. Before, each component re-read the registry on its own 30 s timer.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from connectors.http.tokens import issue_token
from connectors.mqtt.topics import reading_topic
from connectors.sftp.area import SftpArea
from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.procs import ManagedProcess, free_port, port_open
from lec.records import decode
from lec.registry import Registry, SecretStore, parse_community_text
from lec.registry.view import publish_registry
from tests.conftest import EXAMPLE_COMMUNITY
from tests.support.mosquitto import PROJECT_ROOT, mqtt_client, read_topic, start_worker, worker_env

LIVE = {
    "community": {"id": "cer-live", "name": "CER Live"},
    "users": [{"id": "u-live", "name": "Live", "wallet": "0x3000000000000000000000000000000000000001"}],
    "suppliers": [{"id": "sup-live", "name": "Live Srl", "password": "live-secret-1"}],
    "devices": [{"id": d, "user": "u-live", "supplier": "sup-live", "name": d} for d in ("LIVE-M", "LIVE-H", "LIVE-S")],
    "flows": [
        {"id": "f-live-mqtt", "device": "LIVE-M", "supplier": "sup-live", "channel": "mqtt", "syntax": "json",
         "measurement": "load", "account": "consumption", "units": {"energy": "Wh"},
         "mapping": {"ts": "ts", "energy": "e"}, "timezone": "UTC"},
        {"id": "f-live-http", "device": "LIVE-H", "supplier": "sup-live", "channel": "http", "syntax": "json",
         "measurement": "load", "account": "consumption", "units": {"energy": "Wh"},
         "mapping": {"ts": "ts", "energy": "e"}, "timezone": "UTC"},
        {"id": "f-live-sftp", "device": "LIVE-S", "supplier": "sup-live", "channel": "sftp", "syntax": "csv",
         "measurement": "load", "account": "consumption", "units": {"energy": "kWh"},
         "mapping": {"ts": "datetime", "energy": "kwh"}, "ts_format": "%d/%m/%Y %H:%M", "timezone": "Europe/Rome"},
    ],
}


def _lec(*args: str, env: dict[str, str]) -> ManagedProcess:
    name = args[-1]
    return ManagedProcess(name, [sys.executable, "-m", "lec.cli", *args],
                          Path(env["LEC_RUN_DIR"]) / f"{name}.log", env=env, cwd=PROJECT_ROOT)


def _until(check, timeout: float = 60.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    return None


@pytest.mark.slow
def test_new_supplier_is_accepted_everywhere_without_restart(tmp_path: Path, fresh_kafka) -> None:
    _proc, bootstrap = fresh_kafka          # its own Kafka: lec.registry is shared by everything on a broker
    mqtt_port, http_port = free_port(), free_port()
    settings = Settings(run_dir=tmp_path / "run", kafka_bootstrap=bootstrap, mqtt_port=mqtt_port, http_port=http_port)
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    ensure_topics(bootstrap)
    publish_registry(settings, reg)
    env = worker_env(settings, bootstrap, mqtt_port, LEC_HTTP_PORT=str(http_port))
    procs = [start_worker("mqtt-broker", ["mqtt-broker"], env, tmp_path)]
    procs[0].wait_ready(lambda: port_open(mqtt_port), timeout=60)
    bridge = start_worker("mqtt-bridge", ["mqtt-bridge"], env, tmp_path)
    procs += [bridge, start_worker("http", ["http-serve"], env, tmp_path),
              _lec("connectors", "sftp-watch", env=env), _lec("streams", "worker", env=env)]
    try:
        bridge.wait_ready(lambda: "subscribed to lec/#" in bridge.log.read_text(errors="replace"), timeout=90)
        procs[2].wait_ready(lambda: port_open(http_port), timeout=90)
        community = tmp_path / "live.yaml"
        community.write_text(yaml.safe_dump(LIVE))
        loaded = subprocess.run([sys.executable, "-m", "lec.cli", "registry", "load", str(community)], env=env,
                                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)
        assert loaded.returncode == 0, loaded.stderr
        assert "published registry snapshot" in loaded.stdout
        t0 = time.monotonic()
        took: dict[str, float] = {}

        # MQTT: the broker takes the new login, the bridge forwards (not dead-lettered as unknown_supplier)
        def mqtt_login():
            c = mqtt_client(mqtt_port, "sup-live", "live-secret-1", protocol=4)
            if c.connect_reason is not None and not c.connect_reason.is_failure:
                return c
            c.loop_stop()
            return None

        client = _until(mqtt_login, timeout=10, every=0.2)
        assert client is not None, "the new supplier's MQTT login was refused"
        took["mqtt login"] = time.monotonic() - t0
        client.publish(reading_topic("cer-live", "sup-live", "LIVE-M", "f-live-mqtt"),
                       b'{"ts":"2024-03-01T00:15:00Z","e":120}', qos=1).wait_for_publish(30)
        client.disconnect()
        client.loop_stop()

        # HTTP: the new supplier's batch for its new flow is accepted (not 403 not_owner)
        token = issue_token(settings, "sup-live")

        def http_post():
            r = httpx.post(f"http://127.0.0.1:{http_port}/v1/readings", params={"flow_id": "f-live-http"},
                           json=[{"ts": "2024-03-01T00:15:00Z", "e": 80}],
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
            return r if r.status_code == 202 else None

        assert _until(http_post, timeout=10, every=0.2) is not None, "the new flow's HTTP batch was refused"
        took["http batch"] = time.monotonic() - t0

        # SFTP: the watcher creates the new flow's inbox and ingests an upload
        inbox = SftpArea(settings.resolved_sftp_root()).folder("sup-live", "inbox", "f-live-sftp")
        assert _until(inbox.exists, timeout=10), "the new flow's SFTP inbox was never created"
        took["sftp inbox"] = time.monotonic() - t0
        (inbox / "day.csv").write_bytes(b"datetime,kwh\n01/03/2024 01:15,0.5\n")

        # streams: every channel's reading of the new flows normalised onto lec.readings
        want = {"f-live-mqtt", "f-live-http", "f-live-sftp"}
        found = read_topic(bootstrap, topics.READINGS, lambda f: want <= {decode(m.value())["flow_id"] for m in f},
                           timeout=90, match=lambda m: decode(m.value()).get("flow_id") in want)
        assert want <= {decode(m.value())["flow_id"] for m in found}
        dead = read_topic(bootstrap, topics.DEADLETTER, lambda f: False, timeout=2,
                          match=lambda m: b"sup-live" in m.value())
        assert not dead, [decode(m.value()).get("reason_code") for m in dead]
        print("registry change reached:", {k: f"{v:.2f} s" for k, v in took.items()})
    finally:
        for p in reversed(procs):
            p.stop()


def test_mosquitto_files_follow_the_registry(tmp_path: Path, fresh_kafka) -> None:
    import os
    import threading

    from connectors.mqtt.config import follow_registry
    from lec.services import MOSQUITTO

    _proc, bootstrap = fresh_kafka
    port = free_port()
    settings = Settings(run_dir=tmp_path / "run", kafka_bootstrap=bootstrap, mqtt_port=port)
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    publish_registry(settings, reg)
    out = tmp_path / "mosquitto"
    stop = threading.Event()
    follower = threading.Thread(target=follow_registry, args=(settings, out, stop), daemon=True)
    follower.start()
    assert _until(lambda: (out / "mosquitto.conf").exists(), timeout=60)
    conf = out / "mosquitto.conf"
    if os.geteuid() == 0:   # pytest's temp folders are private to root: keep the broker as root
        conf.write_text(conf.read_text() + "user root\n")
    stop.set()
    follower.join(10)
    broker = ManagedProcess("mosquitto", [MOSQUITTO, "-c", str(conf)], out / "mosquitto.log")
    stop = threading.Event()
    try:
        broker.wait_ready(lambda: port_open(port), timeout=15)
        follower = threading.Thread(target=follow_registry, args=(settings, out, stop),
                                    kwargs={"mosquitto_pid": broker.pid, "port": port}, daemon=True)
        follower.start()
        refused = mqtt_client(port, "sup-live", "live-secret-1", protocol=4)
        assert refused.connect_reason is None or refused.connect_reason.is_failure
        refused.loop_stop()
        reg.load(parse_community_text(yaml.safe_dump(LIVE)))
        publish_registry(settings, reg)

        def login():
            c = mqtt_client(port, "sup-live", "live-secret-1", protocol=4)
            ok = c.connect_reason is not None and not c.connect_reason.is_failure
            if ok:
                c.disconnect()
            c.loop_stop()
            return ok

        assert _until(login, timeout=10, every=0.2), "Mosquitto did not learn the new supplier's password"
    finally:
        stop.set()
        broker.stop()
