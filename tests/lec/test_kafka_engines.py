"""The two Kafka engines: Apache Kafka (KRaft, the default) and Tansu (pip-only fallback).

Both get the platform's topics from one table (``lec.topics.CONFIG``), which is what
``infra/k8s/kafka.yaml`` declares for production.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from confluent_kafka.admin import AdminClient, ConfigResource

from lec import topics
from lec.io import Producer, read_topic
from lec.kafka import ensure_topics
from lec.procs import pid_running, port_open
from lec.services import start_kafka, start_tansu

K8S_KAFKA = Path(__file__).resolve().parents[2] / "infra" / "k8s" / "kafka.yaml"


def test_topic_table_is_what_production_declares() -> None:
    declared = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(K8S_KAFKA.read_text())
                if d and d["kind"] == "KafkaTopic"}
    assert set(declared) == set(topics.CONFIG) == set(topics.ALL)
    for name, (partitions, config) in topics.CONFIG.items():
        assert declared[name]["partitions"] == partitions, name
        assert {k: str(v) for k, v in declared[name]["config"].items()} == config, name


def _configs(bootstrap: str, name: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)])
    return {k: v.value for k, v in next(iter(res.values())).result(timeout=15).items()}


def _roundtrip(bootstrap: str, topic: str, n: int = 50) -> list[dict]:
    ensure_topics(bootstrap, (topic,))
    p = Producer(bootstrap)
    for i in range(n):
        p.produce(topic, b'{"i": %d}' % i, str(i).encode())
    assert p.flush(180) == 0  # a busy machine: the first idempotent producer waits for its coordinator
    return read_topic(bootstrap, topic, idle_s=1.0, min_records=n)


def test_apache_kafka_node_creates_the_table_keeps_data_and_stops_clean(tmp_path: Path) -> None:
    proc, bootstrap = start_kafka(tmp_path)
    port = int(bootstrap.rsplit(":", 1)[1])
    assert (tmp_path / "kafka" / "data" / "meta.properties").exists()  # formatted on first start
    assert "-Xmx512m" in proc.argv
    ensure_topics(bootstrap)
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15).topics
    for name, (partitions, _) in topics.CONFIG.items():
        assert len(md[name].partitions) == partitions, name
    assert _configs(bootstrap, topics.REGISTRY)["cleanup.policy"] == "compact"
    assert _configs(bootstrap, topics.ANCHORS)["retention.ms"] == "-1"
    topic = f"t-{uuid.uuid4().hex[:8]}"
    assert len(_roundtrip(bootstrap, topic)) == 50
    pid = proc.pid
    assert proc.stop(timeout=60) == 0  # SIGTERM: a controlled shutdown
    assert not pid_running(pid) and not port_open(port)
    assert "Kafka Server started" in (tmp_path / "logs" / "kafka.log").read_text()

    # a second start reuses the formatted storage: the records are still there
    proc, bootstrap = start_kafka(tmp_path)
    try:
        assert len(read_topic(bootstrap, topic, idle_s=1.0, min_records=50)) == 50
    finally:
        proc.stop(timeout=60)


def test_tansu_smoke(tmp_path: Path) -> None:
    """Tansu stays selectable (kafka_engine: tansu): same topic table, produce and read back."""
    proc, bootstrap = start_tansu(tmp_path)
    try:
        ensure_topics(bootstrap)
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15).topics
        assert {n: len(md[n].partitions) for n in topics.CONFIG} == {n: p for n, (p, _) in topics.CONFIG.items()}
        assert len(_roundtrip(bootstrap, f"t-{uuid.uuid4().hex[:8]}")) == 50
    finally:
        proc.stop()


def test_a_cluster_id_starting_with_a_dash_formats(tmp_path: Path, monkeypatch) -> None:
    """One base64url cluster id in 64 starts with "-": passed as a separate argument, Kafka's storage
    tool took it for an option and `lec up` failed to start Kafka (seen in a benchmark run)."""
    import base64

    from lec import services

    dash_id = base64.urlsafe_b64encode(b"\xf8" + bytes(15)).decode().rstrip("=")
    assert dash_id.startswith("-")
    monkeypatch.setattr(services, "_kraft_cluster_id", lambda: dash_id)
    monkeypatch.setattr(services, "_FORMATTED", {})            # run the tool, not the cached copy
    data_dir = tmp_path / "kafka"
    config = services.write_kafka_config(data_dir, 9092, 9093)
    services.format_kafka_storage(data_dir, config)
    assert f"cluster.id={dash_id}" in (data_dir / "data" / "meta.properties").read_text()
