"""MQTT channel against a real Mosquitto (generated password_file + acl_file) and real Kafka (Tansu)."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.mqtt.bridge import MqttBridge
from connectors.mqtt.config import acl_text, bridge_password
from connectors.mqtt.topics import feedback_topic, reading_topic
from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.records import decode, message_id_for
from lec.registry import Registry, SecretStore
from tests.conftest import EXAMPLE_COMMUNITY
from tests.support.mosquitto import (
    mosquitto_broker,
    mqtt_client,
    publish_all,
    raw_items,
    read_topic,
    start_worker,
    worker_env,
)

COMMUNITY = "cer-example"
ANNA = reading_topic(COMMUNITY, "sup-home", "IT001E00000001", "f-anna-load")
PASSWORDS = {"sup-home": "home-box-secret", "sup-utility": "utility-secret"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("mqtt")
    settings = Settings(run_dir=root / "run", max_payload_bytes=4096)
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    ensure_topics(kafka_bootstrap)
    with mosquitto_broker(settings, reg.supplier_password_hashes(), root / "mosquitto") as port:
        yield {"settings": settings.model_copy(update={"mqtt_port": port}), "port": port, "root": root,
               "bootstrap": kafka_bootstrap, "bridge_password": bridge_password(settings)}


@pytest.fixture(scope="module")
def bridge(env: dict) -> Iterator[MqttBridge]:
    """One in-process bridge (MQTT 5, shared subscription) for the module."""
    b = MqttBridge(env["settings"], bootstrap=env["bootstrap"], client_id=f"lec-bridge-t{uuid.uuid4().hex[:6]}")
    t = threading.Thread(target=b.run, daemon=True)
    t.start()
    assert b.connected.wait(15)
    time.sleep(0.3)  # SUBACK
    yield b
    b.stop()
    t.join(30)


def _payloads(n: int, tag: str) -> list[bytes]:
    return [b'{"ts":"2024-01-01T00:%02d:00Z","e":%d,"tag":"%s"}' % (i % 60, i, tag.encode()) for i in range(n)]


def _ids(supplier: str, topic: str, payloads: list[bytes]) -> set[str]:
    return {message_id_for("mqtt", supplier, topic, p) for p in payloads}


def test_generated_acl_confines_each_supplier_to_its_prefix() -> None:
    text = acl_text(["sup-home", "sup-utility"], "lec-bridge")
    assert "user sup-home\ntopic write lec/+/sup-home/#\ntopic read lec-feedback/sup-home\n" in text
    assert "user lec-bridge\ntopic read lec/#\ntopic write lec-feedback/#\n" in text
    assert "lec/+/sup-utility/#" not in text.split("user sup-utility")[0].split("user sup-home")[1]


def test_messages_reach_raw_packed_keyed_by_device(env: dict, bridge: MqttBridge) -> None:
    payloads = _payloads(300, uuid.uuid4().hex)
    client = mqtt_client(env["port"], "sup-home", PASSWORDS["sup-home"])
    infos = publish_all(client, [(ANNA, p) for p in payloads])
    client.disconnect()
    assert all(i.rc == 0 for i in infos)
    want = _ids("sup-home", ANNA, payloads)
    msgs = read_topic(env["bootstrap"], topics.RAW, lambda f: want <= {i["message_id"] for i in raw_items(f)},
                      match=lambda m: decode(m.value())["items"][0]["message_id"] in want)
    items = raw_items(msgs)
    assert {i["message_id"] for i in items} == want
    assert sorted(base64.b64decode(i["payload_b64"]) for i in items) == sorted(payloads)
    env0 = decode(msgs[0].value())
    assert env0["schema"] == "lec.raw/1" and env0["channel"] == "mqtt"
    assert env0["supplier_id"] == "sup-home" and env0["community_id"] == COMMUNITY
    assert all(m.key() == b"IT001E00000001" for m in msgs)
    assert items[0]["source"] == {"mqtt_topic": ANNA} and items[0]["flow_id"] == "f-anna-load"
    assert len(msgs) < len(payloads)  # several messages packed per envelope


def test_foreign_prefix_denied_by_broker_acl_mqtt311_and_mqtt5(env: dict, bridge: MqttBridge) -> None:
    import paho.mqtt.client as mqtt

    foreign = reading_topic(COMMUNITY, "sup-utility", "PV-0001", "f-bruno-pv")
    tag = uuid.uuid4().hex
    # MQTT 3.1.1: PUBACK says success, the broker drops the message
    c3 = mqtt_client(env["port"], "sup-home", PASSWORDS["sup-home"], protocol=4)
    info = publish_all(c3, [(foreign, b'{"tag":"%s"}' % tag.encode())])[0]
    assert info.rc == mqtt.MQTT_ERR_SUCCESS
    c3.disconnect()
    # MQTT 5: PUBACK carries reason code 135 (not authorized)
    c5 = mqtt_client(env["port"], "sup-home", PASSWORDS["sup-home"], protocol=5)
    codes: list[int] = []
    c5.on_publish = lambda _c, _u, _mid, reason, _p: codes.append(reason.value)
    publish_all(c5, [(foreign, b'{"tag":"%s"}' % tag.encode())])
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert codes == [135]
    # another supplier's feedback never reaches sup-home (Mosquitto 2.0 grants the SUBSCRIBE, then
    # filters delivery by the read ACL); its owner does get it
    spy: list[bytes] = []
    c5.on_message = lambda _c, _u, m: spy.append(m.payload)
    c5.subscribe(feedback_topic("sup-utility"), qos=1)
    owner = mqtt_client(env["port"], "sup-utility", PASSWORDS["sup-utility"], protocol=5)
    mine: list[bytes] = []
    owner.on_message = lambda _c, _u, m: mine.append(m.payload)
    owner.subscribe(feedback_topic("sup-utility"), qos=1)
    time.sleep(0.5)
    relay = mqtt_client(env["port"], "lec-bridge", env["bridge_password"], protocol=5)
    publish_all(relay, [(feedback_topic("sup-utility"), b"for sup-utility only")])
    deadline = time.monotonic() + 5
    while not mine and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert mine == [b"for sup-utility only"] and spy == []
    relay.disconnect()
    owner.disconnect()
    c5.disconnect()
    # a wrong password cannot connect
    bad = mqtt_client(env["port"], "sup-home", "wrong", protocol=5)
    assert bad.connect_reason is not None and bad.connect_reason.is_failure
    bad.loop_stop()
    # nothing of it reached Kafka
    time.sleep(1.0)
    seen = read_topic(env["bootstrap"], topics.RAW, lambda f: False, timeout=3,
                      match=lambda m: tag.encode() in m.value() or base64.b64encode(tag.encode()[:30]) in m.value())
    assert not [i for i in raw_items(seen) if tag.encode() in base64.b64decode(i["payload_b64"])]


def test_not_owner_and_too_large_go_to_deadletter_with_feedback_relayed(env: dict, bridge: MqttBridge) -> None:
    # sup-home may publish under its own prefix, but PV-0001 belongs to sup-utility
    wrong = reading_topic(COMMUNITY, "sup-home", "PV-0001", "f-bruno-pv")
    bad_shape = f"lec/{COMMUNITY}/sup-home/IT001E00000001"
    tag = uuid.uuid4().hex.encode()
    big = b'{"tag":"%s","pad":"%s"}' % (tag, b"x" * 70_000)   # > max_payload_bytes (4096), > 64 KiB
    small = b'{"tag":"%s"}' % tag
    relay = start_worker("feedback-relay", ["feedback-relay"],
                         worker_env(env["settings"], env["bootstrap"], env["port"]), env["root"])
    home = mqtt_client(env["port"], "sup-home", PASSWORDS["sup-home"], protocol=5)
    received: list[bytes] = []
    home.on_message = lambda _c, _u, m: received.append(m.payload)
    home.subscribe(feedback_topic("sup-home"), qos=1)
    time.sleep(0.5)
    try:
        publish_all(home, [(wrong, small), (ANNA, big), (bad_shape, small)])
        ids = {message_id_for("mqtt", "sup-home", wrong, small), message_id_for("mqtt", "sup-home", ANNA, big),
               message_id_for("mqtt", "sup-home", bad_shape, small)}
        dead = read_topic(env["bootstrap"], topics.DEADLETTER, lambda f: len(f) >= 3,
                          match=lambda m: decode(m.value())["message_id"] in ids)
        by_reason = {decode(m.value())["reason_code"]: decode(m.value()) for m in dead}
        assert set(by_reason) == {"not_owner", "too_large", "bad_topic"}
        assert base64.b64decode(by_reason["not_owner"]["payload_b64"]) == small
        assert by_reason["not_owner"]["device_id"] == "PV-0001" and "PV-0001" in by_reason["not_owner"]["message"]
        large = by_reason["too_large"]
        assert large["payload_truncated"] is True and len(base64.b64decode(large["payload_b64"])) == 64 * 1024
        assert large["payload_sha256"] and all(m.key() == b"sup-home" for m in dead)
        # feedback: on Kafka, then relayed to the supplier's own topic
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len({decode(p)["message_id"] for p in received} & ids) < 3:
            time.sleep(0.1)
        answers = {decode(p)["message_id"]: decode(p) for p in received}
        assert ids <= set(answers)
        assert all(answers[i]["status"] == "rejected" for i in ids)
        assert {answers[i]["errors"][0]["reason_code"] for i in ids} == {"not_owner", "too_large", "bad_topic"}
    finally:
        home.disconnect()
        relay.stop()


def test_bridge_sigkill_mid_stream_loses_nothing(env: dict, tmp_path: Path) -> None:
    """QoS 1 messages published while the bridge is killed and restarted all reach lec.raw."""
    settings = env["settings"]
    reg = Registry(settings.resolved_registry_url())
    with mosquitto_broker(settings, reg.supplier_password_hashes(), tmp_path / "mosquitto") as port:
        wenv = worker_env(settings, env["bootstrap"], port)
        args = ["mqtt-bridge", "--protocol", "5"]          # shared subscription, persistent session
        proc = start_worker("bridge", args, wenv, tmp_path)
        proc.wait_ready(lambda: "subscribed to" in proc.log.read_text(errors="replace"), timeout=60)
        tag = uuid.uuid4().hex
        payloads = _payloads(3000, tag)
        topic = reading_topic(COMMUNITY, "sup-utility", "PV-0001", "f-bruno-pv")
        client = mqtt_client(port, "sup-utility", PASSWORDS["sup-utility"], protocol=4)
        infos = [client.publish(topic, p, qos=1) for p in payloads[:1500]]
        for info in infos[:700]:
            info.wait_for_publish(30)
        proc.kill()                               # crash mid-stream: SIGKILL
        infos += [client.publish(topic, p, qos=1) for p in payloads[1500:]]
        for info in infos:
            info.wait_for_publish(30)
        client.disconnect()
        want = _ids("sup-utility", topic, payloads)
        before = read_topic(env["bootstrap"], topics.RAW, lambda f: False, timeout=3,
                            match=lambda m: decode(m.value())["items"][0]["message_id"] in want)
        assert len({i["message_id"] for i in raw_items(before)}) < len(want)   # the kill did interrupt it
        proc2 = start_worker("bridge", args, wenv, tmp_path)
        try:
            msgs = read_topic(env["bootstrap"], topics.RAW,
                              lambda f: want <= {i["message_id"] for i in raw_items(f)}, timeout=120,
                              match=lambda m: decode(m.value())["items"][0]["message_id"] in want)
            got = [i["message_id"] for i in raw_items(msgs)]
            assert set(got) == want                 # no loss (duplicates allowed: at least once)
        finally:
            proc2.stop()


def test_bridge_withholds_acks_while_kafka_is_unreachable(env: dict, tmp_path: Path) -> None:
    """With Kafka down the bridge acknowledges nothing; a bridge with Kafka back gets every message."""
    from lec.procs import free_port

    settings = env["settings"]
    reg = Registry(settings.resolved_registry_url())
    with mosquitto_broker(settings, reg.supplier_password_hashes(), tmp_path / "mosquitto") as port:
        args = ["mqtt-bridge", "--protocol", "5"]
        down = start_worker("bridge", args, worker_env(settings, f"localhost:{free_port()}", port), tmp_path)
        down.wait_ready(lambda: "subscribed to" in down.log.read_text(errors="replace"), timeout=60)
        payloads = _payloads(200, uuid.uuid4().hex)
        client = mqtt_client(port, "sup-home", PASSWORDS["sup-home"], protocol=5)
        publish_all(client, [(ANNA, p) for p in payloads])
        client.disconnect()
        time.sleep(3.0)
        down.kill()
        up = start_worker("bridge", args, worker_env(settings, env["bootstrap"], port), tmp_path)
        try:
            want = _ids("sup-home", ANNA, payloads)
            msgs = read_topic(env["bootstrap"], topics.RAW,
                              lambda f: want <= {i["message_id"] for i in raw_items(f)}, timeout=90,
                              match=lambda m: decode(m.value())["items"][0]["message_id"] in want)
            assert {i["message_id"] for i in raw_items(msgs)} == want
        finally:
            up.stop()


def test_mqtt_config_command_writes_broker_files_from_registry(env: dict, tmp_path: Path) -> None:
    import subprocess
    import sys

    from lec.registry.passwords import verify_password
    from tests.support.mosquitto import PROJECT_ROOT

    out = tmp_path / "conf"
    run = subprocess.run([sys.executable, "-m", "connectors", "mqtt-config", "--out", str(out),
                          "--port", "18830", "--persistence-dir", str(tmp_path / "data")],
                         env=worker_env(env["settings"], env["bootstrap"], env["port"]), cwd=PROJECT_ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    users = dict(line.split(":", 1) for line in (out / "password_file").read_text().splitlines())
    assert set(users) == {"lec-bridge", "sup-home", "sup-utility"}
    assert verify_password("home-box-secret", users["sup-home"]) and users["sup-home"].startswith("$7$")
    assert verify_password(env["bridge_password"], users["lec-bridge"])
    assert "topic write lec/+/sup-utility/#" in (out / "acl_file").read_text()
    conf = (out / "mosquitto.conf").read_text()
    assert "listener 18830 127.0.0.1" in conf and "max_queued_messages 0" in conf and "persistence true" in conf
    assert "home-box-secret" not in run.stdout + run.stderr


def test_processes_share_the_subscription_and_lose_nothing(env: dict, tmp_path: Path) -> None:
    """`--processes 2`: both clients of $share/lec-bridge/lec/# forward part of the stream, all of it arrives."""
    import re

    settings = env["settings"]
    reg = Registry(settings.resolved_registry_url())
    with mosquitto_broker(settings, reg.supplier_password_hashes(), tmp_path / "mosquitto") as port:
        proc = start_worker("bridge", ["mqtt-bridge", "--processes", "2"], worker_env(settings, env["bootstrap"], port),
                            tmp_path)
        proc.wait_ready(lambda: proc.log.read_text(errors="replace").count("subscribed to $share") == 2, timeout=90)
        payloads = _payloads(1000, uuid.uuid4().hex)
        client = mqtt_client(port, "sup-home", PASSWORDS["sup-home"], protocol=5)
        publish_all(client, [(ANNA, p) for p in payloads])
        client.disconnect()
        want = _ids("sup-home", ANNA, payloads)
        msgs = read_topic(env["bootstrap"], topics.RAW, lambda f: want <= {i["message_id"] for i in raw_items(f)},
                          match=lambda m: decode(m.value())["items"][0]["message_id"] in want)
        assert {i["message_id"] for i in raw_items(msgs)} == want
        proc.stop(40)
        forwarded = {int(n) for n in re.findall(r"bridge-[01] INFO bridge stopped: (\d+) forwarded", proc.log.read_text())}
        text = proc.log.read_text()
        assert "bridge-0 INFO bridge stopped" in text and "bridge-1 INFO bridge stopped" in text
        assert forwarded and min(forwarded) > 0
