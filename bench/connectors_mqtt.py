"""MQTT bridge throughput (QoS 1, Kafka acknowledged) beside mosquitto's own C clients, same broker, same run.

    .venv/bin/python bench/connectors_mqtt.py [--messages 30000] [--processes 1,2] [--protocols 5,3.1.1]

Starts Tansu and Mosquitto (config generated from the example community), then measures:
  baseline: mosquitto_pub -l (QoS 1) -> Mosquitto -> mosquitto_sub (QoS 1), msgs/s;
  bridge:   mosquitto_pub -l -> Mosquitto -> `lec connectors mqtt-bridge --processes N` -> lec.raw,
            timed until every message id is in Kafka (the bridge acks only after Kafka did).
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.mqtt.config import bridge_password
from connectors.mqtt.topics import reading_topic
from lec import topics
from lec.config import Settings
from lec.kafka import consumer_config, ensure_topics
from lec.procs import ManagedProcess
from lec.records import decode
from lec.registry import Registry, SecretStore
from lec.services import start_tansu
from tests.support.mosquitto import mosquitto_broker, worker_env

TOPIC = reading_topic("cer-example", "sup-home", "IT001E00000001", "f-anna-load")


def lines(n: int, tag: str) -> bytes:
    return b"".join(b'{"ts":"2024-01-01T00:00:00Z","e":%d,"p":%d,"tag":"%s"}\n' % (i, i % 3000, tag.encode())
                    for i in range(n))


def publish(port: int, data: bytes, topic: str = TOPIC, user: str = "sup-home",
            password: str = "home-box-secret") -> subprocess.Popen:
    """mosquitto_pub -l (QoS 1) as ``user``; the caller writes one message a line to its stdin."""
    # Mosquitto's clientid_prefix plugin takes only client ids that start with "<user>-"
    return subprocess.Popen(["mosquitto_pub", "-p", str(port), "-u", user, "-P", password,
                             "-q", "1", "-t", topic, "-l", "-i", f"{user}-bench-pub-{uuid.uuid4().hex[:6]}"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)


def baseline(port: int, password: str, n: int) -> float:
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-u", "lec-bridge", "-P", password, "-q", "1",
                            "-t", TOPIC, "-C", str(n), "-i", f"lec-bridge-bench-sub-{uuid.uuid4().hex[:6]}"],
                           stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    t0 = time.perf_counter()
    pub = publish(port, b"")
    pub.communicate(lines(n, uuid.uuid4().hex))
    sub.wait(300)
    return n / (time.perf_counter() - t0)


def count_in_kafka(bootstrap: str, tag: str, n: int, timeout: float = 600) -> float:
    """Seconds from the call until all ``n`` items carrying ``tag`` are in lec.raw."""
    from confluent_kafka import Consumer

    c = Consumer(consumer_config(bootstrap, f"bench-{uuid.uuid4().hex}"))
    c.subscribe([topics.RAW])
    t0 = time.perf_counter()
    seen: set[str] = set()
    needle = tag.encode()
    try:
        while len(seen) < n and time.perf_counter() - t0 < timeout:
            for m in c.consume(1000, timeout=0.2):
                if m.error() is None:
                    items = decode(m.value())["items"]
                    if needle in base64.b64decode(items[0]["payload_b64"]):
                        seen.update(i["message_id"] for i in items)
    finally:
        c.close()
    return time.perf_counter() - t0


def start_bridge(settings: Settings, bootstrap: str, port: int, processes: int, logs: Path,
                 protocol: str) -> ManagedProcess:
    env = worker_env(settings, bootstrap, port)
    proc = ManagedProcess(f"bridge{processes}", [sys.executable, "-m", "connectors", "mqtt-bridge",
                                                 "--protocol", protocol, "--processes", str(processes)],
                          logs / f"bridge-{processes}-{uuid.uuid4().hex[:4]}.log", env=env, cwd=ROOT)
    proc.wait_ready(lambda: proc.log.read_text(errors="replace").count("subscribed to") >= processes, 120)
    return proc


def bridge_live_rate(settings: Settings, bootstrap: str, port: int, n: int, processes: int, logs: Path,
                     protocol: str) -> float:
    """mosquitto_pub and the bridge at once: until the last message is in Kafka."""
    proc = start_bridge(settings, bootstrap, port, processes, logs, protocol)
    try:
        tag = uuid.uuid4().hex
        return n / publish_and_count(bootstrap, port, lines(n, tag), tag, n)
    finally:
        proc.stop(30)


def publish_and_count(bootstrap: str, port: int, data: bytes, tag: str, n: int, **publish_as: str) -> float:
    """mosquitto_pub -l of ``data`` (one message a line, QoS 1; ``publish_as``: publish's topic, user,
    password) while counting in lec.raw: seconds until all ``n`` messages carrying ``tag`` are in Kafka
    (a running bridge takes them there)."""
    import threading

    result: dict[str, float] = {}
    t = threading.Thread(target=lambda: result.update(s=count_in_kafka(bootstrap, tag, n)), daemon=True)
    t.start()
    pub = publish(port, b"", **publish_as)
    pub.communicate(data)
    if pub.returncode != 0:
        raise RuntimeError(f"mosquitto_pub exited with {pub.returncode} (see the Mosquitto log)")
    t.join()
    return result["s"]


def bridge_drain_rate(settings: Settings, bootstrap: str, port: int, n: int, processes: int, logs: Path,
                      protocol: str) -> float:
    """A backlog queued in the bridge's persistent sessions while it was stopped: how fast it drains."""
    start_bridge(settings, bootstrap, port, processes, logs, protocol).stop(30)   # sessions + subscriptions exist
    tag = uuid.uuid4().hex
    publish(port, b"").communicate(lines(n, tag))
    proc = start_bridge(settings, bootstrap, port, processes, logs, protocol)
    try:
        count_in_kafka(bootstrap, tag, n)
        done = time.time()   # the last message is in Kafka
    finally:
        proc.stop(30)
    return n / (done - connected_at(proc.log))


def connected_at(log: Path) -> float:
    """Wall-clock time of the first "connected to MQTT broker" line of a bridge log."""
    from datetime import datetime

    for line in log.read_text(errors="replace").splitlines():
        if "connected to MQTT broker" in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise RuntimeError(f"no connection line in {log}")


def sub_drain_rate(port: int, password: str, n: int) -> float:
    """Baseline for the backlog: mosquitto_sub draining its own persistent session."""
    sid = f"lec-bridge-bench-drain-{uuid.uuid4().hex[:6]}"
    argv = ["mosquitto_sub", "-p", str(port), "-u", "lec-bridge", "-P", password, "-q", "1", "-t", TOPIC,
            "-c", "-i", sid]
    first = subprocess.Popen([*argv, "-C", "1"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    publish(port, b"").communicate(b"{}\n")
    first.wait(30)
    publish(port, b"").communicate(lines(n, uuid.uuid4().hex))
    t0 = time.perf_counter()
    subprocess.run([*argv, "-C", str(n)], stdout=subprocess.DEVNULL, check=True, timeout=300)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=30000)
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--protocols", default="5,3.1.1")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        root = Path(tmp)
        settings = Settings(run_dir=root / "run")
        reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
        reg.migrate()
        reg.load_file(ROOT / "examples" / "community.yaml")
        kafka, bootstrap = start_tansu(root)
        try:
            ensure_topics(bootstrap)
            hashes = reg.supplier_password_hashes()

            def fresh_broker():  # each figure on an empty broker: no sessions left by the previous one
                return mosquitto_broker(settings, hashes, root / f"mosquitto-{uuid.uuid4().hex[:6]}")

            n, password = args.messages, bridge_password(settings, create=True)
            procs = [int(x) for x in args.processes.split(",")]
            with fresh_broker() as port:
                base = baseline(port, password, n)
            print(f"live  baseline mosquitto_pub -> mosquitto -> mosquitto_sub (QoS 1): {base:,.0f} msg/s")
            runs = [(proto, p) for proto in args.protocols.split(",") for p in procs]
            for proto, p in runs:
                with fresh_broker() as port:
                    rate = bridge_live_rate(settings, bootstrap, port, n, p, root, proto)
                print(f"live  bridge --protocol {proto} --processes {p} (QoS 1, Kafka-acked): {rate:,.0f} msg/s "
                      f"= {rate / base:.2f} x baseline")
            with fresh_broker() as port:
                drain = sub_drain_rate(port, password, n)
            print(f"drain baseline mosquitto_sub emptying a queued backlog (QoS 1): {drain:,.0f} msg/s")
            for proto, p in runs:
                with fresh_broker() as port:
                    rate = bridge_drain_rate(settings, bootstrap, port, n, p, root, proto)
                print(f"drain bridge --protocol {proto} --processes {p} (QoS 1, Kafka-acked): {rate:,.0f} msg/s "
                      f"= {rate / drain:.2f} x baseline")
        finally:
            kafka.stop()
    print(f"machine: {os.cpu_count()} cores; messages per run: {args.messages}")


if __name__ == "__main__":
    main()
