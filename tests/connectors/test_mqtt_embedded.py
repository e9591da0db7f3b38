"""MQTT channel against the embedded broker of `lec up` (amqtt, MQTT 3.1.1) started by its real command."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator

import pytest

from connectors.mqtt.topics import reading_topic
from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.procs import free_port, port_open
from lec.records import decode, message_id_for
from lec.registry import Registry, SecretStore
from tests.conftest import EXAMPLE_COMMUNITY
from tests.support.mosquitto import mqtt_client, publish_all, raw_items, read_topic, start_worker, worker_env

ANNA = reading_topic("cer-example", "sup-home", "IT001E00000001", "f-anna-load")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("amqtt")
    settings = Settings(run_dir=root / "run")
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    ensure_topics(kafka_bootstrap)
    port = free_port()
    wenv = worker_env(settings, kafka_bootstrap, port)
    broker = start_worker("mqtt-broker", ["mqtt-broker"], wenv, root)
    broker.wait_ready(lambda: port_open(port), timeout=60)
    bridge = start_worker("mqtt-bridge", ["mqtt-bridge"], wenv, root)   # protocol auto -> 3.1.1 here
    try:
        bridge.wait_ready(lambda: "subscribed to lec/#" in bridge.log.read_text(errors="replace"), timeout=60)
        from connectors.mqtt.config import bridge_password

        yield {"port": port, "bootstrap": kafka_bootstrap, "bridge": bridge,
               "bridge_password": bridge_password(settings)}
    finally:
        bridge.stop()
        broker.stop()


def test_bridge_detects_mqtt311_and_forwards_to_raw(embedded: dict) -> None:
    assert "broker speaks MQTT 3.1.1" in embedded["bridge"].log.read_text()
    payloads = [b'{"ts":"2024-01-01T00:00:00Z","e":%d,"tag":"%s"}' % (i, uuid.uuid4().hex.encode())
                for i in range(100)]
    client = mqtt_client(embedded["port"], "sup-home", "home-box-secret", protocol=4)
    assert client.connect_reason is not None and not client.connect_reason.is_failure
    publish_all(client, [(ANNA, p) for p in payloads])
    client.disconnect()
    want = {message_id_for("mqtt", "sup-home", ANNA, p) for p in payloads}
    msgs = read_topic(embedded["bootstrap"], topics.RAW, lambda f: want <= {i["message_id"] for i in raw_items(f)},
                      match=lambda m: decode(m.value())["items"][0]["message_id"] in want)
    items = raw_items(msgs)
    assert {i["message_id"] for i in items} == want
    assert sorted(base64.b64decode(i["payload_b64"]) for i in items) == sorted(payloads)


def test_embedded_broker_checks_registry_passwords_and_acl(embedded: dict) -> None:
    bad = mqtt_client(embedded["port"], "sup-home", "not-the-password", protocol=4)
    assert bad.connect_reason is None or bad.connect_reason.is_failure
    bad.loop_stop()
    # sup-home publishing under sup-utility's prefix: refused by the broker, never forwarded
    foreign = reading_topic("cer-example", "sup-utility", "PV-0001", "f-bruno-pv")
    tag = uuid.uuid4().hex.encode()
    spy = mqtt_client(embedded["port"], "lec-bridge", embedded["bridge_password"], protocol=4,
                      client_id=f"lec-bridge-spy-{uuid.uuid4().hex[:6]}")
    seen: list[str] = []
    spy.on_message = lambda _c, _u, m: seen.append(m.topic)
    spy.subscribe("lec/#", qos=0)
    home = mqtt_client(embedded["port"], "sup-home", "home-box-secret", protocol=4)
    publish_all(home, [(foreign, b'{"tag":"%s"}' % tag), (ANNA, b'{"tag":"%s"}' % tag)])
    deadline = time.monotonic() + 5
    while ANNA not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ANNA in seen and foreign not in seen
    # a supplier cannot subscribe to the reading topics of others
    got: list[str] = []
    home.on_message = lambda _c, _u, m: got.append(m.topic)
    home.subscribe("lec/#", qos=0)
    time.sleep(0.3)
    publish_all(home, [(ANNA, b"{}")])
    time.sleep(0.5)
    assert got == []
    home.disconnect()
    spy.disconnect()
