"""A real embedded stack for the adversarial suite: the demo community's suppliers on every channel.

The servers and the chosen workers run as `lec up` runs them (``Stack``: supervised child processes
on free loopback ports); the suppliers' clients are real (paho, paramiko, httpx), kept open across
the many inputs a fuzzer or a chaos run sends.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lec.config import Settings, load_settings
from lec.demo.community import COMMUNITY_ID, DEMO_PASSWORDS, build_demo
from lec.demo.run import default_start, demo_settings, lec_cli, prepare_workers
from lec.demo.traffic import mqtt_topic
from lec.stack.supervisor import Stack

FUZZ_WORKERS = ["mqtt-bridge", "feedback-relay", "sftp-watch", "http", "streams"]
ALL_WORKERS = [*FUZZ_WORKERS, "lake-sink", "oracle"]


@dataclass
class LiveStack:
    stack: Stack
    settings: Settings
    doc: dict[str, Any]
    series: list[Any]
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)  # channel -> one flow of that channel

    def flow(self, channel: str) -> dict[str, Any]:
        return next(f for f in self.doc["flows"] if f["channel"] == channel)

    def unhealthy(self) -> list[str]:
        """Services that are dead or were restarted (the supervisor restarts crashed workers)."""
        return [f"{s.spec.name} (alive={s.proc.alive()}, restarts={s.restarts})" for s in self.stack.services
                if not s.proc.alive() or s.restarts]


@contextmanager
def live_stack(run_dir: Path, workers: list[str], *, chain: bool = False) -> Iterator[LiveStack]:
    """The demo community (1 day, 2 households, 1 PV plant) on a fresh stack; stopped on exit."""
    saved = dict(os.environ)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = default_start()
    doc, series = build_demo(start, 1, households=2, pv_plants=1)
    community = run_dir / "community.yaml"
    community.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.environ["LEC_SFTP_SCHEDULE"] = "immediate"
    settings = demo_settings(run_dir)
    stack = Stack(settings)
    try:
        from lec.registry import open_registry

        open_registry(settings).load_file(community)
        stack.start_servers()
        settings = load_settings()
        if chain:
            prepare_workers(settings, start, lambda _m: None)
        else:
            lec_cli("streams", "publish-registry")
        stack.start_workers(workers)
        yield LiveStack(stack, settings, doc, series)
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


class MqttSupplier:
    """One connected supplier (QoS 1; a publish returns once the broker acknowledged it)."""

    def __init__(self, settings: Settings, supplier_id: str) -> None:
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{supplier_id}-fuzz",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(supplier_id, DEMO_PASSWORDS[supplier_id])
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        deadline = time.monotonic() + 30
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.client.is_connected(), f"MQTT broker did not accept {supplier_id}"

    def publish(self, topic: str, payload: bytes) -> bool:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=30)
        return info.is_published()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class SftpSupplier:
    """One SFTP session; uploads as name.part then renames, as the convention asks."""

    def __init__(self, settings: Settings, supplier_id: str) -> None:
        import paramiko

        self.transport = paramiko.Transport(("127.0.0.1", settings.sftp_port))
        self.transport.connect(username=supplier_id, password=DEMO_PASSWORDS[supplier_id])
        self.sftp = paramiko.SFTPClient.from_transport(self.transport)

    def upload(self, flow_id: str, name: str, content: bytes) -> None:
        part = f"inbox/{flow_id}/{name}.part"
        self.sftp.putfo(io.BytesIO(content), part)
        self.sftp.posix_rename(part, f"inbox/{flow_id}/{name}")

    def close(self) -> None:
        self.sftp.close()
        self.transport.close()


__all__ = ["COMMUNITY_ID", "FUZZ_WORKERS", "LiveStack", "MqttSupplier", "SftpSupplier", "live_stack", "mqtt_topic"]
