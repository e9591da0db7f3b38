"""Mosquitto as `lec up` runs it: files from the registry reloaded with SIGHUP when suppliers change,
and persistence that keeps QoS 1 messages queued for a stopped bridge across a kill -9 of the broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.mqtt.topics import reading_topic
from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.records import decode, message_id_for
from lec.registry import Registry, SecretStore
from lec.services import MOSQUITTO_AUTOSAVE_S, start_mosquitto
from lec.stack.supervisor import ServiceSpec, Stack
from tests.conftest import EXAMPLE_COMMUNITY
from tests.support.mosquitto import mqtt_client, publish_all, raw_items, read_topic, start_worker, worker_env

TOPIC = reading_topic("cer-example", "sup-home", "IT001E00000001", "f-anna-load")


def _registry(settings: Settings) -> Registry:
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    return reg


@pytest.fixture()
def stack_mqtt(tmp_path: Path) -> Iterator[tuple[Stack, Registry]]:
    """The stack's own Mosquitto service (only it: no Kafka or chain needed here)."""
    from lec.services import mosquitto_argv

    settings = Settings(run_dir=tmp_path / "run")
    reg = _registry(settings)
    stack = Stack(settings, with_workers=False)
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    stack._assign_ports()
    stack._start(ServiceSpec("mqtt", mosquitto_argv(stack._mosquitto_config()), port=stack.ports["mqtt"]))
    try:
        yield stack, reg
    finally:
        stack.stop()


def _connects(port: int, user: str, password: str) -> bool:
    c = mqtt_client(port, user, password)
    ok = c.connect_reason is not None and not c.connect_reason.is_failure
    c.loop_stop()
    c.disconnect()
    return ok


def test_registry_change_regenerates_files_and_sighup_reloads(stack_mqtt: tuple[Stack, Registry],
                                                              tmp_path: Path) -> None:
    stack, reg = stack_mqtt
    port = stack.ports["mqtt"]
    pid = stack.services[0].proc.pid
    assert _connects(port, "sup-home", "home-box-secret")
    assert not stack.reload_mqtt_if_registry_changed()  # nothing changed: no reload
    changed = tmp_path / "community.yaml"
    changed.write_text(EXAMPLE_COMMUNITY.read_text().replace('"home-box-secret"', '"rotated-secret"'))
    reg.load_file(changed)
    assert stack.reload_mqtt_if_registry_changed()
    time.sleep(0.5)
    assert stack.services[0].proc.pid == pid  # reloaded in place, not restarted
    assert _connects(port, "sup-home", "rotated-secret")
    assert not _connects(port, "sup-home", "home-box-secret")
    assert "rotated" not in (stack.run_dir / "mqtt" / "password_file").read_text()  # hashes only


def test_broker_kill9_keeps_qos1_messages_queued_for_stopped_bridge(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path / "run")
    reg = _registry(settings)
    ensure_topics(kafka_bootstrap)
    folder = tmp_path / "mqtt"
    broker, port = start_mosquitto(settings, reg.supplier_password_hashes(), folder)
    wenv = worker_env(settings, kafka_bootstrap, port)
    args = ["mqtt-bridge", "--protocol", "5"]  # persistent session, shared subscription
    bridge = start_worker("bridge", args, wenv, tmp_path)
    bridge2 = None
    try:
        bridge.wait_ready(lambda: "subscribed to" in bridge.log.read_text(errors="replace"), timeout=60)
        bridge.stop()  # the bridge is away: the broker queues for its session
        payloads = [b'{"ts":"2024-01-01T00:%02d:00Z","e":%d,"tag":"%s"}' % (i % 60, i, uuid.uuid4().hex.encode())
                    for i in range(300)]
        client = mqtt_client(port, "sup-home", "home-box-secret", protocol=5)
        assert all(i.rc == 0 for i in publish_all(client, [(TOPIC, p) for p in payloads]))  # all PUBACKed
        client.disconnect()
        time.sleep(MOSQUITTO_AUTOSAVE_S + 1.5)  # one autosave
        broker.kill()  # kill -9: no clean save
        broker, port2 = start_mosquitto(settings, reg.supplier_password_hashes(), folder, port)
        bridge2 = start_worker("bridge", args, worker_env(settings, kafka_bootstrap, port2), tmp_path)
        want = {message_id_for("mqtt", "sup-home", TOPIC, p) for p in payloads}
        msgs = read_topic(kafka_bootstrap, topics.RAW, lambda f: want <= {i["message_id"] for i in raw_items(f)},
                          timeout=120, match=lambda m: decode(m.value())["items"][0]["message_id"] in want)
        assert {i["message_id"] for i in raw_items(msgs)} == want  # nothing lost
    finally:
        if bridge2 is not None:
            bridge2.stop()
        broker.stop()
