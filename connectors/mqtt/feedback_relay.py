"""Feedback relay: ``lec.feedback`` → each supplier's own MQTT topic ``lec-feedback/{supplier}``.

The seed's "sistema di feedback all'utente": every answer (accepted, rejected with reasons,
partial, duplicate) of every channel is published, QoS 1, where only that supplier may read it
(ACL). Kafka offsets are committed only after the broker acknowledged the publishes, so a
crash repeats feedback rather than losing it.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from connectors.mqtt.topics import feedback_topic
from lec import topics
from lec.config import Settings
from lec.io import configure_logging
from lec.records import decode

log = logging.getLogger("lec.connectors.feedback_relay")

GROUP = "lec-feedback-relay"


class FeedbackRelay:
    def __init__(self, settings: Settings, *, bootstrap: str, protocol: int = 4, password: str | None = None,
                 group: str = GROUP, client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt
        from confluent_kafka import Consumer

        from connectors.mqtt.config import bridge_client_id, bridge_password
        from lec.kafka import consumer_config

        self.settings = settings
        self.stopping = threading.Event()
        self.consumer = Consumer(consumer_config(bootstrap, group))
        password = password or bridge_password(settings)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or bridge_client_id(settings, "relay", password),
                                  protocol=mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311)
        self.client.username_pw_set(settings.mqtt_username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.2, 5)
        self.published = 0

    def run(self) -> None:
        self.client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        self.consumer.subscribe([topics.FEEDBACK])
        try:
            while not self.stopping.is_set():
                msgs = self.consumer.consume(500, timeout=0.5)
                if msgs:
                    self._relay(msgs)
        finally:
            self.consumer.close()
            self.client.disconnect()
            self.client.loop_stop()
            log.info("feedback relay stopped after %d messages", self.published)

    def _relay(self, msgs: list[Any]) -> None:
        infos = []
        for m in msgs:
            if m.error() is not None:
                log.warning("Kafka error: %s", m.error())
                continue
            try:
                supplier = decode(m.value())["supplier_id"]
            except Exception:  # noqa: BLE001 - not ours to fix: a malformed record is skipped, not fatal
                log.warning("skipped a feedback record that is not lec.feedback/1 JSON at offset %s", m.offset())
                continue
            infos.append(self.client.publish(feedback_topic(supplier), m.value(), qos=1))
        for info in infos:
            while not info.is_published():  # wait for PUBACK before committing the offsets
                if self.stopping.is_set() and not self.client.is_connected():
                    return  # uncommitted: relayed again after restart
                info.wait_for_publish(1.0)
        self.published += len(infos)
        self.consumer.commit(asynchronous=False)

    def stop(self, *_a: Any) -> None:
        self.stopping.set()


def run_relay(protocol: int = 4) -> None:
    from connectors.mqtt.bridge import resolve_bootstrap
    from lec.config import settings as current

    s = current()
    configure_logging("feedback-relay", level=s.log_level)
    relay = FeedbackRelay(s, bootstrap=resolve_bootstrap(s), protocol=protocol)
    signal.signal(signal.SIGTERM, relay.stop)
    signal.signal(signal.SIGINT, relay.stop)
    relay.run()
