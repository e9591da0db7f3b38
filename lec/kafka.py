"""Kafka client settings (right for Apache Kafka and Tansu; docs/kafka-engines.md) and topic creation."""

from __future__ import annotations

from typing import Any

from lec import topics

# Tansu: a group join waits ~half the creator's session timeout; librdkafka backs off 1 s when
# Tansu's large fetches overrun its queue.
CONSUMER_TUNING: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "fetch.queue.backoff.ms": 10,
}
FAUST_TUNING: dict[str, Any] = {"broker_session_timeout": 6.0, "broker_heartbeat_interval": 2.0}


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """An idempotent producer: retries never duplicate or reorder."""
    return {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "compression.type": "none", **extra}


def consumer_config(bootstrap: str, group: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", **CONSUMER_TUNING, **extra}


# Topics whose records carry a member's readings: their retention is bounded by kafka_retention_hours,
# the longest a copy can outlive an erasure (docs/gdpr.md).
PERSONAL_TOPICS = (topics.RAW, topics.READINGS, topics.DEADLETTER, topics.FEEDBACK, topics.ANOMALIES)


def topic_config(name: str, retention_hours: int | None = None) -> dict[str, str]:
    """``topics.CONFIG``'s settings of a topic, with the GDPR bound on the retention of reading topics."""
    config = dict(topics.CONFIG.get(name, (0, {}))[1])
    if name in PERSONAL_TOPICS:
        if retention_hours is None:
            from lec.config import settings

            retention_hours = settings().kafka_retention_hours
        bound = int(retention_hours) * 3_600_000
        current = int(config.get("retention.ms", -1))
        config["retention.ms"] = str(bound if current < 0 else min(current, bound))
    return config


def ensure_topics(bootstrap: str, names: tuple[str, ...] = topics.ALL, partitions: int = 4,
                  retention_hours: int | None = None) -> None:
    """Create the platform's topics if missing, with the partitions and configs of ``topics.CONFIG``
    (other names get ``partitions`` and the broker's defaults); reading topics' retention bounded."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(n, num_partitions=topics.CONFIG.get(n, (partitions, {}))[0], replication_factor=1,
                    config=topic_config(n, retention_hours))
           for n in names if n not in existing]
    if new:
        for fut in admin.create_topics(new).values():
            try:
                fut.result(timeout=15)
            except Exception as exc:  # already exists after a race is fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
