"""A real Mosquitto broker on a free loopback port, with the password_file and acl_file
that ``lec connectors mqtt-config`` generates from the registry; plus helpers of the connector
tests: publish with paho, read Kafka topics back, run connector workers as child processes."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lec.config import Settings
from lec.procs import ManagedProcess
from lec.records import decode

PROJECT_ROOT = Path(__file__).resolve().parents[2]

@contextmanager
def mosquitto_broker(settings: Settings, supplier_hashes: dict[str, str], folder: Path) -> Iterator[int]:
    """Start Mosquitto as `lec up` does (generated config, persistence on); yields its port."""
    from lec.services import start_mosquitto

    proc, port = start_mosquitto(settings, supplier_hashes, folder)
    try:
        yield port
    finally:
        proc.stop()


def mqtt_client(port: int, username: str, password: str, *, protocol: int = 5, client_id: str | None = None):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"{username}-t-{uuid.uuid4().hex[:10]}",
                         protocol=mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311)
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(200)
    connected = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result["reason"] = reason
        connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    connected.wait(10)
    client.connect_reason = result.get("reason")  # type: ignore[attr-defined]
    return client


def publish_all(client: Any, messages: list[tuple[str, bytes]], qos: int = 1) -> list[Any]:
    """Publish and wait for every PUBACK; returns paho's MQTTMessageInfo per message."""
    infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(30)
    return infos


def read_topic(bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 60.0,
               match: Callable[[Any], bool] = lambda _m: True) -> list[Any]:
    """Kafka messages of a topic from the start until ``until(messages)`` holds (lec.io's reader)."""
    from lec.io import read_topic as kernel_read

    return kernel_read(bootstrap, topic, until, timeout, decode="message", match=match)


def raw_items(messages: list[Any]) -> list[dict[str, Any]]:
    return [item for m in messages for item in decode(m.value())["items"]]


def worker_env(settings: Settings, bootstrap: str, mqtt_port: int, **extra: str) -> dict[str, str]:
    env = {
        "LEC_RUN_DIR": str(settings.resolved_run_dir()),
        "LEC_REGISTRY_URL": settings.resolved_registry_url(),
        "LEC_SECRETS_URL": settings.resolved_secrets_url(),
        "LEC_KAFKA_BOOTSTRAP": bootstrap,
        "LEC_MQTT_PORT": str(mqtt_port),
        "LEC_MAX_PAYLOAD_BYTES": str(settings.max_payload_bytes),
        "PYTHONPATH": str(PROJECT_ROOT),
        **extra,
    }
    return env


def start_worker(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """A connector command as a child process (``python -m connectors ...``)."""
    return ManagedProcess(name, [sys.executable, "-m", "connectors", *args],
                          log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log", env=env, cwd=PROJECT_ROOT)


def log_contains(proc: ManagedProcess, text: str) -> bool:
    return proc.log.exists() and text in proc.log.read_text(errors="replace")

