"""MQTT → Kafka bridge: every QoS 1 message reaches ``lec.raw`` (or the dead letters) before its PUBACK.

Why it is lossless: the client acknowledges manually (paho ``manual_ack``) only once Kafka has
acknowledged the envelope (or the dead letter and feedback) holding the message; its session is
persistent (MQTT 3.1.1 ``clean_session=False`` / MQTT 5 session expiry), so a crash means the
broker redelivers what was not acknowledged. When Kafka is unreachable nothing is acknowledged,
and the broker stops sending once the client's in-flight window (receive maximum) is full.

Several messages of one device (same supplier and community) are packed into one raw envelope
keyed by that device (environment.md: per-message cost downstream); keying by device keeps every
reading of a device on one partition, hence one stream worker (cumulative registers, duplicates). Scale-out: MQTT 5 shared subscription ``$share/lec-bridge/lec/#``
across ``--processes N`` processes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from connectors.channel import RawSink
from connectors.mqtt.feedback_records import rejection_feedback
from connectors.mqtt.topics import (
    BRIDGE_FILTER,
    PROBE_PREFIX,
    SHARED_FILTER,
    ReadingTopic,
    parse_reading_topic,
    supplier_of,
)
from lec import topics
from lec.config import Settings
from lec.io import Producer, configure_logging
from lec.records import (
    Rejection,
    deadletter_record,
    encode,
    message_id_for,
    raw_item,
    utc_now_iso,
)
from lec.registry.snapshot import RegistrySnapshot

log = logging.getLogger("lec.connectors.mqtt_bridge")

CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "xml": "application/xml"}
SESSION_EXPIRY_S = 7 * 24 * 3600
RECEIVE_MAXIMUM = 1000          # in-flight QoS 1 messages per bridge client: the buffer bound
PACK_MAX_ITEMS = 500
PACK_MAX_BYTES = 512 * 1024
PACK_MAX_AGE_S = 0.01


@dataclass
class AckToken:
    """One MQTT message waiting for ``remaining`` Kafka acknowledgements before its PUBACK."""

    generation: int
    mid: int
    qos: int
    remaining: int = 1


@dataclass
class Pack:
    community_id: str
    supplier_id: str
    device_id: str
    items: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[AckToken] = field(default_factory=list)
    size: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    message_key: str | None = None     # MQTT 5 user property "message_id", if the device sends one
    content_type: str | None = None


class BridgeCore:
    """Checks, packs and produces messages; acknowledges them through ``ack(tokens)`` once Kafka has them.

    Runs on one thread (the bridge's main loop); the MQTT network loop only queues ``Incoming``.
    """

    def __init__(self, producer: Producer, snapshot: RegistrySnapshot, ack: Any, *, max_payload_bytes: int,
                 pack_max_items: int = PACK_MAX_ITEMS, pack_max_age_s: float = PACK_MAX_AGE_S) -> None:
        self.producer = producer
        self.raw = RawSink("mqtt", producer)
        self.snapshot = snapshot
        self._ack = ack
        self.max_payload_bytes = max_payload_bytes
        self.pack_max_items = pack_max_items
        self.pack_max_age_s = pack_max_age_s
        self.packs: dict[tuple[str, str, str], Pack] = {}
        self.retry: deque[tuple[str, bytes, bytes, list[AckToken]]] = deque()
        self.unacked = 0
        self.forwarded = 0
        self.rejected = 0

    # -- intake -------------------------------------------------------------------------------
    def handle(self, msg: Incoming, received_ts: str | None = None) -> None:
        token = AckToken(msg.generation, msg.mid, msg.qos)
        self.unacked += 1
        if msg.topic.startswith(PROBE_PREFIX + "/"):   # `lec status`: proves MQTT -> bridge -> Kafka works
            self._produce(topics.PROBE, msg.topic.encode(), msg.payload[:1024], [token])
            return
        supplier = supplier_of(msg.topic) or "unknown"
        mid_parts: tuple[str | bytes, ...] = (msg.topic, msg.message_key) if msg.message_key else (msg.topic, msg.payload)
        message_id = message_id_for("mqtt", supplier, *mid_parts)
        try:
            coords = self._check(msg)
        except Rejection as rej:
            self._reject(msg, token, supplier, message_id, rej)
            return
        flow = self.snapshot.flows.get(coords.flow_id)
        content_type = msg.content_type or CONTENT_TYPES.get(flow.syntax if flow else "", "application/octet-stream")
        item = raw_item(msg.payload, message_id=message_id, source={"mqtt_topic": msg.topic},
                        device_id=coords.device_id, flow_id=coords.flow_id, content_type=content_type,
                        received_ts=received_ts)
        key = (coords.community_id, coords.supplier_id, coords.device_id)
        pack = self.packs.get(key)
        if pack is None:
            pack = self.packs[key] = Pack(coords.community_id, coords.supplier_id, coords.device_id)
        pack.items.append(item)
        pack.tokens.append(token)
        pack.size += len(msg.payload)
        if len(pack.items) >= self.pack_max_items or pack.size >= PACK_MAX_BYTES:
            self._flush_pack(key)

    def _check(self, msg: Incoming) -> ReadingTopic:
        coords = parse_reading_topic(msg.topic)
        if coords is None:
            raise Rejection("bad_topic", f"topic '{msg.topic}' does not follow lec/{{community}}/{{supplier}}/"
                                         "{device}/{flow}: publish each flow's readings on its own topic")
        if len(msg.payload) > self.max_payload_bytes:
            raise Rejection("too_large", f"message of {len(msg.payload)} bytes is larger than the limit of "
                                         f"{self.max_payload_bytes} bytes: split it into smaller messages")
        snap = self.snapshot
        supplier = snap.suppliers.get(coords.supplier_id)
        if supplier is None or not supplier.active:
            raise Rejection("unknown_supplier", f"supplier '{coords.supplier_id}' is not registered or not active")
        device = snap.devices.get(coords.device_id)
        if (not snap.supplier_owns(coords.supplier_id, coords.device_id, coords.flow_id)
                or device is None or device.community_id != coords.community_id):
            raise Rejection("not_owner", f"supplier '{coords.supplier_id}' does not supply device "
                                         f"'{coords.device_id}' with flow '{coords.flow_id}' in community "
                                         f"'{coords.community_id}': check the topic against the registry")
        return coords

    def _reject(self, msg: Incoming, token: AckToken, supplier: str, message_id: str, rej: Rejection) -> None:
        coords = parse_reading_topic(msg.topic)
        community = coords.community_id if coords and coords.community_id in self.snapshot.communities else None
        source = {"mqtt_topic": msg.topic}
        dead = deadletter_record(reason_code=rej.reason_code, message=rej.message, channel="mqtt",
                                 supplier_id=supplier, message_id=message_id, payload=msg.payload, source=source,
                                 community_id=community, device_id=coords.device_id if coords else None,
                                 flow_id=coords.flow_id if coords else None)
        feedback = rejection_feedback(reason_code=rej.reason_code, message=rej.message, channel="mqtt",
                                      supplier_id=supplier, message_id=message_id, source=source,
                                      community_id=community)
        token.remaining = 2
        self.rejected += 1
        log.info("rejected message on %s: %s", msg.topic, rej.reason_code)
        self._produce(topics.DEADLETTER, supplier.encode(), encode(dead), [token])
        self._produce(topics.FEEDBACK, supplier.encode(), encode(feedback), [token])

    # -- output -------------------------------------------------------------------------------
    def flush_due(self, force: bool = False) -> None:
        now = time.monotonic()
        for key in [k for k, p in self.packs.items() if force or now - p.started >= self.pack_max_age_s]:
            self._flush_pack(key)
        while self.retry:
            topic, k, v, tokens = self.retry.popleft()
            self._produce(topic, k, v, tokens)

    def _flush_pack(self, key: tuple[str, str, str]) -> None:
        pack = self.packs.pop(key)
        # one device per pack, always: the sink keys it by device, so its readings stay on one partition
        record = self.raw.record(pack.community_id, pack.supplier_id, pack.device_id, pack.items)  # type: ignore[arg-type]
        self._produce(self.raw.topic, record.key, record.value, pack.tokens)
        self.forwarded += len(pack.items)

    def _produce(self, topic: str, key: bytes, value: bytes, tokens: list[AckToken]) -> None:
        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                # not in Kafka: keep the message unacknowledged and try again (idempotent producer)
                log.warning("Kafka did not take a record for %s (%s): retrying", topic, err)
                self.retry.append((topic, key, value, tokens))
                return
            done = []
            for token in tokens:
                token.remaining -= 1
                if token.remaining == 0:
                    done.append(token)
            self.unacked -= len(done)
            self._ack(done)

        if not self.producer.try_produce(topic, value, key, delivered):
            self.retry.append((topic, key, value, tokens))  # local queue full: back off, never drop


class MqttBridge:
    """One bridge client: paho network thread → queue → ``BridgeCore`` on the main thread."""

    def __init__(self, settings: Settings, *, bootstrap: str, client_id: str, protocol: int = 5,
                 shared: bool = True, password: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        from connectors.mqtt.client import BufferedClient
        from connectors.mqtt.config import bridge_password
        from lec.registry.view import RegistryView

        self.settings = settings
        self.view = RegistryView(settings, bootstrap=bootstrap)
        self.protocol = mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311
        self.shared = shared
        self.incoming: deque[Incoming] = deque()
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.generation = 0
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.producer = Producer(bootstrap, **{"message.max.bytes": 16 * 1024 * 1024, "linger.ms": 2})
        self.core = BridgeCore(self.producer, self.view.snapshot(), self._ack,
                               max_payload_bytes=settings.max_payload_bytes)
        # a registry change (lec.registry) reaches the checks within a second or two
        self.view.on_change(lambda v: setattr(self.core, "snapshot", v.snapshot()))
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": self.protocol, "manual_ack": True}
        if self.protocol == mqtt.MQTTv311:
            kwargs["clean_session"] = False
        self.client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.client.username_pw_set(settings.mqtt_username, password or bridge_password(settings))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(0.2, 5)

    # paho network thread ---------------------------------------------------------------------
    def _on_connect(self, client: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the bridge: %s", reason)
            return
        with self.lock:
            self.generation += 1
        client.subscribe(SHARED_FILTER if self.shared else BRIDGE_FILTER, qos=1)
        log.info("connected to MQTT broker")

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, reasons: Any, _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("the broker refused the bridge's subscription: %s", reasons)
            return
        self.connected.set()
        log.info("subscribed to %s", SHARED_FILTER if self.shared else BRIDGE_FILTER)

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self.lock:  # acks of the old connection's message ids must never reach the next one
            self.generation += 1
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("disconnected from MQTT broker (%s): reconnecting", reason)

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        key = ctype = None
        props = getattr(message, "properties", None)
        if props is not None:
            for name, value in getattr(props, "UserProperty", None) or ():
                if name == "message_id":
                    key = value
            ctype = getattr(props, "ContentType", None)
        idle = not self.incoming
        self.incoming.append(Incoming(message.topic, message.payload, message.mid, message.qos,
                                      self.generation, key, ctype))
        if idle:  # the main loop drains everything queued once woken; one wake-up per burst
            self.wake.set()

    # main thread -----------------------------------------------------------------------------
    def _ack(self, tokens: list[AckToken]) -> None:
        with self.lock:
            current = [t for t in tokens if t.generation == self.generation]
            self.client.ack_many([t.mid for t in current if t.qos == 1])
            for t in current:
                if t.qos == 2:
                    self.client.ack(t.mid, 2)

    def connect(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = None
        if self.protocol == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            props.ReceiveMaximum = RECEIVE_MAXIMUM
            self.client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30,
                                clean_start=False, properties=props)
        else:
            self.client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()

    def run(self) -> None:
        """Forward until SIGTERM/SIGINT, then flush Kafka and acknowledge what it holds."""
        self.view.start()
        self.connect()
        core = self.core
        while not self.stopping.is_set():
            self.wake.wait(0.005)
            self.wake.clear()
            n = 0
            now = utc_now_iso()  # one clock read per drained batch (ms precision anyway)
            while self.incoming and n < 5000:
                core.handle(self.incoming.popleft(), now)
                n += 1
            core.flush_due()
            self.producer.poll(0)
        while self.incoming:
            core.handle(self.incoming.popleft())
        core.flush_due(force=True)
        self.producer.flush(30)
        core.flush_due(force=True)
        self.producer.flush(10)
        # the figures are final once Kafka holds everything: say so before the (bounded) disconnects
        log.info("bridge stopped: %d forwarded, %d rejected, %d left unacknowledged for redelivery",
                 core.forwarded, core.rejected, core.unacked)
        self.client.disconnect()
        self.client.loop_stop()
        self.view.stop()

    def stop(self, *_args: Any) -> None:
        self.stopping.set()
        self.wake.set()


def resolve_bootstrap(settings: Settings) -> str:
    """Kafka bootstrap from the settings, else the address ``lec up`` records in the run dir."""
    from lec.errors import ConfigError
    from lec.registry.view import known_bootstrap

    bootstrap = known_bootstrap(settings)
    if not bootstrap:
        raise ConfigError("no Kafka bootstrap: set LEC_KAFKA_BOOTSTRAP (or start the stack with `lec up`)")
    return bootstrap


def broker_speaks_mqtt5(settings: Settings, password: str, timeout: float = 5.0) -> bool | None:
    """Whether the broker accepts an MQTT 5 login (Mosquitto does; the embedded amqtt does not).

    None when the broker cannot be reached at all.
    """
    import uuid

    import paho.mqtt.client as mqtt

    result: dict[str, bool] = {}
    done = threading.Event()
    probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{settings.mqtt_username}-probe-{uuid.uuid4().hex}",
                        protocol=mqtt.MQTTv5)
    probe.username_pw_set(settings.mqtt_username, password)

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result["ok"] = not reason.is_failure
        done.set()

    probe.on_connect = on_connect
    probe.on_disconnect = lambda *_a: done.set()
    try:
        probe.connect(settings.mqtt_host, settings.mqtt_port, keepalive=10)
    except OSError:
        return None
    probe.loop_start()
    done.wait(timeout)
    probe.disconnect()
    probe.loop_stop()
    return result.get("ok", False)


def probe_liveness(settings: Settings, bootstrap: str, timeout_s: float = 10.0) -> tuple[bool, str]:
    """Publish a probe through the broker (bridge account) and wait for the bridge to put it on ``lec.probe``.

    Why: a broker that acknowledges publishes while no bridge forwards them looks healthy to every
    port check; only a message seen end to end proves ingestion works.
    """
    import uuid

    import paho.mqtt.client as mqtt

    from connectors.mqtt.config import bridge_password
    from lec.io import replay
    from lec.kafka import ensure_topics

    nonce = uuid.uuid4().hex
    topic = f"{PROBE_PREFIX}/{nonce}"
    ensure_topics(bootstrap, (topics.PROBE,))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{settings.mqtt_username}-probe-{nonce}",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(settings.mqtt_username, bridge_password(settings))
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        try:
            client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=10)
        except OSError as exc:
            return False, f"MQTT broker {settings.mqtt_host}:{settings.mqtt_port} unreachable: {exc}"
        client.loop_start()
        if not connected.wait(timeout_s) or refused:
            return False, f"MQTT broker refused the probe login: {refused[0] if refused else 'no CONNACK'}"
        started = time.monotonic()
        info = client.publish(topic, nonce.encode(), qos=1)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            return False, "MQTT broker did not acknowledge the probe publish"
        # read from the start (no group join to wait for; probe records are few and small)
        for msgs in replay(bootstrap, topics.PROBE, timeout=max(started + timeout_s - time.monotonic(), 0.1),
                           batch=100, poll_s=0.2, group=f"lec-probe-{nonce}"):
            if any(m.key() == topic.encode() for m in msgs):
                return True, f"probe reached {topics.PROBE} in {time.monotonic() - started:.2f} s"
        return False, (f"the broker accepted a probe publish but nothing reached {topics.PROBE} within "
                       f"{timeout_s:.0f} s: the MQTT bridge receives nothing (check mqtt-bridge's log)")
    finally:
        client.disconnect()
        client.loop_stop()


def choose_protocol(settings: Settings, protocol: int, wait_s: float = 60.0) -> tuple[int, bool]:
    """(protocol, shared). A broker that speaks MQTT 5 (Mosquitto) also offers shared subscriptions,
    to its MQTT 3.1.1 clients too; the embedded amqtt offers neither. ``protocol`` 0 = MQTT 5 if possible."""
    from connectors.mqtt.config import bridge_password
    from lec.errors import ConfigError, ServiceError

    password = bridge_password(settings)
    deadline = time.monotonic() + wait_s
    speaks5 = broker_speaks_mqtt5(settings, password)
    while speaks5 is None and time.monotonic() < deadline:  # broker still starting
        time.sleep(1.0)
        speaks5 = broker_speaks_mqtt5(settings, password)
    if speaks5 is None:
        raise ServiceError(f"no MQTT broker answers on {settings.mqtt_host}:{settings.mqtt_port}")
    if protocol == 5 and not speaks5:
        raise ConfigError("the MQTT broker refuses MQTT 5: use --protocol auto or 3.1.1")
    chosen = protocol or (5 if speaks5 else 4)
    log.info("broker speaks MQTT %s; bridge uses MQTT %s%s", "5" if speaks5 else "3.1.1",
             "5" if chosen == 5 else "3.1.1", " with shared subscriptions" if speaks5 else "")
    return chosen, speaks5


def run_one(index: int, protocol: int, shared: bool) -> None:
    """One bridge process (also the target of each child of ``--processes N``)."""
    from lec.config import settings as current

    s = current()
    configure_logging(f"bridge-{index}", level=s.log_level)
    from connectors.mqtt.config import bridge_client_id

    bridge = MqttBridge(s, bootstrap=resolve_bootstrap(s), client_id=bridge_client_id(s, index),
                        protocol=protocol, shared=shared)
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    bridge.run()


def run_bridge(processes: int = 1, protocol: int = 0) -> None:
    """Run ``processes`` bridge clients (children restarted if they die) until SIGTERM/SIGINT.

    ``protocol``: 5, 4 (MQTT 3.1.1) or 0 = MQTT 5 if the broker accepts it. Shared subscriptions
    whenever the broker offers them.
    """
    import multiprocessing as mp

    from lec.config import settings as current
    from lec.errors import ConfigError

    s = current()
    name = "bridge" if processes > 1 else "bridge-0"
    configure_logging(name, level=s.log_level)
    protocol, shared = choose_protocol(s, protocol)
    if processes <= 1:
        run_one(0, protocol, shared)
        return
    if not shared:
        raise ConfigError("--processes > 1 needs a broker with shared subscriptions (Mosquitto), "
                          "not the embedded one")
    ctx = mp.get_context("spawn")
    stopping = threading.Event()
    children = {}

    def start(i: int) -> None:
        children[i] = ctx.Process(target=run_one, args=(i, protocol, shared), name=f"bridge-{i}")
        children[i].start()

    def stop(*_a: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for i in range(processes):
        start(i)
    while not stopping.is_set():
        stopping.wait(0.5)
        for i, child in list(children.items()):
            if not child.is_alive() and not stopping.is_set():
                log.warning("bridge-%d exited with %s: restarting it", i, child.exitcode)
                start(i)
    for child in children.values():
        if child.is_alive():
            child.terminate()
    for child in children.values():
        child.join(40)
