"""The MQTT topic scheme: ``lec/{community}/{supplier}/{device}/{flow}``.

A supplier publishes each reading message of one flow on that flow's topic; the broker's ACL
lets it publish only under ``lec/+/{supplier}/#`` and read only ``lec-feedback/{supplier}``, where
the platform answers each message (accepted or rejected, with reasons). The feedback topics live
outside ``lec/`` so the bridge's ``lec/#`` subscription never receives them.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "lec"
FEEDBACK_PREFIX = "lec-feedback"
BRIDGE_FILTER = f"{PREFIX}/#"
PROBE_PREFIX = f"{PREFIX}/_probe"     # `lec status` liveness probe: bridge account only, forwarded to lec.probe
SHARE_GROUP = "lec-bridge"
SHARED_FILTER = f"$share/{SHARE_GROUP}/{BRIDGE_FILTER}"
PACKET_OVERHEAD = 64 * 1024 + 1024   # a topic name may be 64 KiB; fixed header, packet id, properties


def max_packet_bytes(max_payload_bytes: int) -> int:
    """The largest MQTT packet the brokers accept: the payload limit plus the packet's own overhead."""
    return max_payload_bytes + PACKET_OVERHEAD


@dataclass(frozen=True)
class ReadingTopic:
    community_id: str
    supplier_id: str
    device_id: str
    flow_id: str


def reading_topic(community_id: str, supplier_id: str, device_id: str, flow_id: str) -> str:
    return f"{PREFIX}/{community_id}/{supplier_id}/{device_id}/{flow_id}"


def feedback_topic(supplier_id: str) -> str:
    return f"{FEEDBACK_PREFIX}/{supplier_id}"


def supplier_of(topic: str) -> str | None:
    """The supplier a topic under ``lec/`` belongs to (its third level), whatever its shape."""
    parts = topic.split("/")
    return parts[2] if len(parts) >= 3 and parts[0] == PREFIX and parts[2] else None


def parse_reading_topic(topic: str) -> ReadingTopic | None:
    """The coordinates of a reading topic, or None if the topic does not follow the scheme."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != PREFIX or not all(parts[1:]):
        return None
    return ReadingTopic(*parts[1:])
