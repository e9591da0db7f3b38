"""Findings 1 and 12 on the embedded broker (amqtt) and on a real Mosquitto with the generated config:
no session takeover before (or without) authentication, client ids bound to their account, an
end-to-end liveness probe for `lec status`, and a packet size limit."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from connectors.mqtt.bridge import probe_liveness
from connectors.mqtt.broker import client_id_allowed, client_id_owner
from connectors.mqtt.config import bridge_client_id, bridge_password
from connectors.mqtt.topics import max_packet_bytes, reading_topic
from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.procs import free_port, port_open
from lec.records import decode
from lec.registry import Registry, SecretStore
from lec.registry.passwords import hash_password, needs_rehash, verify_password
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

ANNA = reading_topic("cer-example", "sup-home", "IT001E00000001", "f-anna-load")
MAX_PAYLOAD = 64 * 1024


def _settings(root, port: int = 0) -> Settings:
    return Settings(run_dir=root / "run", max_payload_bytes=MAX_PAYLOAD, mqtt_port=port)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("amqtt-hostile")
    port = free_port()
    settings = _settings(root, port)
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    # sup-utility keeps a hash of an older registry (mosquitto_passwd's 101 iterations): upgraded at login
    legacy = hash_password("utility-secret", iterations=101)
    assert reg.replace_password_hash("sup-utility", reg.supplier_password_hashes()["sup-utility"], legacy)
    ensure_topics(kafka_bootstrap)
    wenv = worker_env(settings, kafka_bootstrap, port)
    broker = start_worker("mqtt-broker", ["mqtt-broker"], wenv, root)
    broker.wait_ready(lambda: port_open(port), timeout=60)
    bridge = start_worker("mqtt-bridge", ["mqtt-bridge"], wenv, root)
    try:
        bridge.wait_ready(lambda: "subscribed to lec/#" in bridge.log.read_text(errors="replace"), timeout=60)
        yield {"port": port, "bootstrap": kafka_bootstrap, "settings": settings, "bridge": bridge,
               "broker": broker, "env": wenv, "root": root, "registry": reg, "legacy": legacy}
    finally:
        bridge.stop()
        broker.stop()


def _refused(client) -> bool:
    reason = client.connect_reason
    client.loop_stop()
    return reason is None or reason.is_failure


def _reaches_raw(env: dict, client_id: str | None = None) -> None:
    tag = uuid.uuid4().hex.encode()
    home = mqtt_client(env["port"], "sup-home", "home-box-secret", protocol=4, client_id=client_id)
    assert not home.connect_reason.is_failure
    publish_all(home, [(ANNA, b'{"tag":"%s"}' % tag)])
    home.disconnect()
    msgs = read_topic(env["bootstrap"], topics.RAW, lambda f: bool(f), timeout=30,
                      match=lambda m: any(tag in base64.b64decode(i["payload_b64"]) for i in decode(m.value())["items"]))
    assert len(raw_items(msgs)) == 1, "a supplier's reading must still reach lec.raw"


def test_no_session_takeover_and_ids_bound_to_accounts(embedded: dict) -> None:
    s, port = embedded["settings"], embedded["port"]
    bridge_ids = [bridge_client_id(s, 0), f"{s.mqtt_username}-0"]
    for cid in bridge_ids:
        # unauthenticated clean-session CONNECT with the bridge's id: refused, the bridge's session untouched
        assert _refused(mqtt_client(port, "sup-home", "wrong-password", protocol=4, client_id=cid))
        assert _refused(mqtt_client(port, "nobody", "x" * 12, protocol=4, client_id=cid))
    _reaches_raw(embedded, client_id="sup-home-box-1")
    for cid in bridge_ids:
        # an authenticated supplier may not use the bridge's id either
        assert _refused(mqtt_client(port, "sup-home", "home-box-secret", protocol=4, client_id=cid))
    # a supplier's ids start with its own supplier id: another supplier's ids are refused
    assert _refused(mqtt_client(port, "sup-home", "home-box-secret", protocol=4, client_id="sup-utility-1"))
    assert _refused(mqtt_client(port, "sup-home", "home-box-secret", protocol=4, client_id="box-1"))
    # the same rule as Mosquitto's plugin: the account's name, or its name and '-' (a bare prefix is not enough)
    assert _refused(mqtt_client(port, "sup-home", "home-box-secret", protocol=4, client_id="sup-homeX"))
    _reaches_raw(embedded, client_id="sup-home-box-1")
    _reaches_raw(embedded, client_id="sup-home")
    ok, detail = probe_liveness(s, embedded["bootstrap"], timeout_s=20)
    assert ok, detail


def test_client_id_owner_is_the_longest_account_it_names() -> None:
    # sup-home2's gateway id names sup-home2 (the longer account), so sup-home cannot take its session
    accounts = ["lec-bridge", "sup-home", "sup-home2", "sup-utility"]
    assert client_id_owner("sup-home2-gw", accounts) == "sup-home2"
    assert client_id_owner("sup-home-gw", accounts) == "sup-home"
    assert client_id_owner("sup-home", accounts) == "sup-home"
    assert client_id_owner("sup-homeX", accounts) is None
    assert client_id_owner("lec-bridge-0-abc", accounts) == "lec-bridge"
    assert not client_id_allowed("sup-home", "sup-home2-gw", accounts)
    assert client_id_allowed("sup-home2", "sup-home2-gw", accounts)
    assert not client_id_allowed("lec-bridge", "spy-1", accounts)      # the bridge is bound like anyone
    assert not client_id_allowed("sup-home", None, accounts) and not client_id_allowed(None, "sup-home", accounts)


def test_an_existing_session_is_never_taken_over_by_another_account(embedded: dict) -> None:
    # sup-home holds a persistent session; another authenticated account (the bridge) naming its id must
    # not take it over (refused at the id check, before any session is looked at)
    port = embedded["port"]
    cid = f"sup-home-{uuid.uuid4().hex[:6]}"
    owner = mqtt_client(port, "sup-home", "home-box-secret", protocol=4, client_id=cid)
    assert not owner.connect_reason.is_failure
    other = mqtt_client(port, embedded["settings"].mqtt_username, bridge_password(embedded["settings"]),
                        protocol=4, client_id=cid)
    assert _refused(other)
    assert owner.is_connected()
    owner.disconnect()


def test_a_legacy_password_hash_is_upgraded_at_login(embedded: dict) -> None:
    reg = embedded["registry"]
    assert reg.supplier_password_hashes()["sup-utility"] == embedded["legacy"]
    client = mqtt_client(embedded["port"], "sup-utility", "utility-secret", protocol=4)
    assert not client.connect_reason.is_failure
    client.disconnect()
    client.loop_stop()
    upgraded = reg.supplier_password_hashes()["sup-utility"]
    assert upgraded != embedded["legacy"] and not needs_rehash(upgraded)
    assert verify_password("utility-secret", upgraded)
    again = mqtt_client(embedded["port"], "sup-utility", "utility-secret", protocol=4)   # still logs in
    assert not again.connect_reason.is_failure
    again.disconnect()
    again.loop_stop()


def test_oversize_publish_disconnects_without_buffering(embedded: dict) -> None:
    import paho.mqtt.client as mqtt

    port = embedded["port"]
    client = mqtt_client(port, "sup-home", "home-box-secret", protocol=4)
    gone = threading.Event()
    client.on_disconnect = lambda *_a: gone.set()
    info = client.publish(ANNA, b"x" * (max_packet_bytes(MAX_PAYLOAD) + 1024 * 1024), qos=1)
    assert gone.wait(30), "the broker must close a connection that sends a packet over the limit"
    assert not info.is_published() or info.rc != mqtt.MQTT_ERR_SUCCESS
    client.loop_stop()
    log = embedded["broker"].log.read_text(errors="replace")
    assert "over the limit" in log
    _reaches_raw(embedded)       # the broker goes on serving everybody else


def test_liveness_probe_sees_a_bridge_that_receives_nothing(embedded: dict) -> None:
    # last in this module: stops the bridge
    embedded["bridge"].stop()
    ok, detail = probe_liveness(embedded["settings"], embedded["bootstrap"], timeout_s=3)
    assert not ok and "bridge" in detail


def test_mosquitto_config_limits_packets_and_keeps_bridge_ids_secret(tmp_path, kafka_bootstrap: str) -> None:
    import paho.mqtt.client as mqtt

    settings = _settings(tmp_path)
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    with mosquitto_broker(settings, reg.supplier_password_hashes(), tmp_path / "mosquitto") as port:
        conf = (tmp_path / "mosquitto" / "mosquitto.conf").read_text()
        assert f"max_packet_size {max_packet_bytes(MAX_PAYLOAD)}" in conf
        client = mqtt_client(port, "sup-home", "home-box-secret", protocol=4)
        gone = threading.Event()
        client.on_disconnect = lambda *_a: gone.set()
        info = client.publish(ANNA, b"x" * (max_packet_bytes(MAX_PAYLOAD) + 1024 * 1024), qos=1)
        assert gone.wait(30)
        time.sleep(0.2)
        assert not info.is_published() or info.rc != mqtt.MQTT_ERR_SUCCESS
        client.loop_stop()
        # the bridge's client ids are not guessable from its account name
        cid = bridge_client_id(settings, 0)
        assert cid.startswith(f"{settings.mqtt_username}-0-") and len(cid) > len(settings.mqtt_username) + 12
        assert cid != bridge_client_id(Settings(run_dir=tmp_path / "other", mqtt_password="another"), 0)


def test_mosquitto_binds_client_ids_to_accounts(tmp_path) -> None:
    """Issue 9 finding 1 on Mosquitto: the clientid_prefix plugin refuses ids of other accounts
    (before it, sup-home with sup-utility's id disconnected sup-utility and took its session)."""
    settings = _settings(tmp_path)
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    bridge_user, bridge_pw = settings.mqtt_username, bridge_password(settings, create=True)
    with mosquitto_broker(settings, reg.supplier_password_hashes(), tmp_path / "mosquitto") as port:
        victim = mqtt_client(port, "sup-utility", "utility-secret", protocol=4, client_id="sup-utility-gw1")
        assert not victim.connect_reason.is_failure
        dropped = threading.Event()
        victim.on_disconnect = lambda *_a: dropped.set()
        bridge = mqtt_client(port, bridge_user, bridge_pw, client_id=bridge_client_id(settings, 0))
        assert not bridge.connect_reason.is_failure       # the bridge works as before
        bridge.on_disconnect = lambda *_a: dropped.set()
        for cid in ["sup-utility-gw1", "sup-utility", bridge_client_id(settings, 0), f"{bridge_user}-0",
                    "sup-homeX", "box-1"]:
            assert _refused(mqtt_client(port, "sup-home", "home-box-secret", protocol=4, client_id=cid)), cid
        assert _refused(mqtt_client(port, bridge_user, bridge_pw, protocol=4, client_id="sup-utility-gw1"))
        # the plugin defers to password_file: a right id with a wrong password is still refused
        assert _refused(mqtt_client(port, "sup-home", "wrong-password", protocol=4, client_id="sup-home-1"))
        for cid in ["sup-home", "sup-home-gw-7"]:       # its own ids: exactly the account, or "<account>-..."
            own = mqtt_client(port, "sup-home", "home-box-secret", protocol=4, client_id=cid)
            assert not own.connect_reason.is_failure, cid
            own.disconnect()
            own.loop_stop()
        time.sleep(0.3)
        assert not dropped.is_set() and victim.is_connected() and bridge.is_connected()
        assert publish_all(victim, [(reading_topic("cer-example", "sup-utility", "IT001E00000002", "x"), b"{}")])
        log = (tmp_path / "mosquitto" / "mosquitto.log").read_text(errors="replace")
        assert "refused client id 'sup-utility-gw1' for user 'sup-home'" in log
        for c in (victim, bridge):
            c.disconnect()
            c.loop_stop()
