"""Erasure in Kafka: bounded retention on the topics that carry readings, tombstones on compacted ones.

A Kafka log cannot delete one record. So every topic that carries readings or their answers
keeps them for at most ``kafka_retention_hours`` (docs/gdpr.md says why 7 days); ``lec gdpr
erase`` checks (and, if a topic was created without it, sets) that bound and reports it as the
residual window: the subject's records leave Kafka at the latest that long after the erasure.
Compacted topics keep the latest value per key: the erasure writes a tombstone (null value) for
each of the subject's keys (device, flow and user ids) and republishes the registry snapshot
without the subject, so compaction removes the older values.
"""

from __future__ import annotations

from typing import Any

from lec import topics
from lec.errors import LecError
from lec.kafka import PERSONAL_TOPICS as READING_TOPICS  # records that name a device, flow or file


class KafkaErasureError(LecError):
    """Kafka could not be reached or refused a configuration change; rerun the erasure."""


def retention_ms(hours: int) -> str:
    return str(int(hours) * 3600 * 1000)


def topic_configs(admin: Any, names: list[str]) -> dict[str, dict[str, str]]:
    from confluent_kafka.admin import ConfigResource, ResourceType

    if not names:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    return {res.name: {k: v.value for k, v in fut.result(timeout=15).items()} for res, fut in futures.items()}


def bound_retention(admin: Any, names: list[str], hours: int) -> dict[str, str]:
    """Set ``retention.ms`` to the bound on topics that keep longer (or forever); topic -> old value."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    bound = int(retention_ms(hours))
    changed: dict[str, str] = {}
    for name, conf in topic_configs(admin, names).items():
        current = int(conf.get("retention.ms") or -1)
        if 0 <= current <= bound:
            continue
        res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
            ConfigEntry("retention.ms", str(bound), incremental_operation=AlterConfigOpType.SET)])
        for fut in admin.incremental_alter_configs([res]).values():
            fut.result(timeout=15)
        changed[name] = str(current)
    return changed


def erase_kafka(bootstrap: str, keys: list[str], hours: int, registry_snapshot: Any = None) -> dict[str, Any]:
    """Bound retention, tombstone the subject's keys on compacted topics; the receipt's Kafka part."""
    from confluent_kafka.admin import AdminClient

    from lec.io import DeliveryFailed, Producer

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        existing = sorted(t for t in admin.list_topics(timeout=10).topics if not t.startswith("__"))
        configs = topic_configs(admin, existing)
        reading_topics = [t for t in existing if t in READING_TOPICS]
        changed = bound_retention(admin, reading_topics, hours)
        compacted = [t for t, c in configs.items() if "compact" in (c.get("cleanup.policy") or "")]
        producer = Producer(bootstrap)
        tombstones: dict[str, int] = {}
        for topic in compacted:
            if topic == topics.REGISTRY:
                continue  # keyed by "snapshot": republished below without the subject
            for key in keys:
                producer.produce(topic, key=key.encode(), value=None)
            tombstones[topic] = len(keys)
        try:
            producer.flush_or_raise(30, "tombstones")
        except DeliveryFailed as exc:
            raise KafkaErasureError(f"Kafka at {bootstrap} did not acknowledge the tombstones ({exc}); "
                                    "rerun the erasure") from exc
        if registry_snapshot is not None and topics.REGISTRY in existing:
            from streams.registry_sync import publish

            publish(bootstrap, registry_snapshot)
            tombstones[topics.REGISTRY] = 0
    except KafkaErasureError:
        raise
    except Exception as exc:  # confluent_kafka's KafkaException and time-outs
        raise KafkaErasureError(f"Kafka at {bootstrap}: {exc}; rerun the erasure once Kafka answers") from exc
    residual = {}
    for topic in reading_topics:
        ms = int(configs[topic].get("retention.ms") or -1) if topic not in changed else int(retention_ms(hours))
        residual[topic] = f"{ms / 3_600_000:g}h" if ms >= 0 else "forever"
    for topic in compacted:
        residual[topic] = "until compaction (tombstoned)" if topic != topics.REGISTRY else \
            "until compaction (latest snapshot no longer holds the subject)"
    return {"retention_set": changed, "tombstones": tombstones, "residual_window": residual,
            "retention_hours": hours}
