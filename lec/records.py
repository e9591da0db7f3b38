"""Record formats on Kafka, as plain dicts encoded with orjson.

The JSON Schemas in ``schemas/`` are the published contract; these helpers build records that
match them. Dicts (not classes) keep the hot path cheap: streams handle ~100k readings/s.

Raw envelope (``lec.raw``): one Kafka record may pack several source messages of one supplier
("items"), each keeping its original bytes (base64) and its source coordinates, so that stream
workers pay Kafka's per-message cost once per pack (environment.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any, Literal, TypedDict

import orjson

Channel = Literal["mqtt", "sftp", "http", "camel"]
CHANNELS: tuple[str, ...] = ("mqtt", "sftp", "http", "camel")

RAW_SCHEMA = "lec.raw/1"
READING_SCHEMA = "lec.reading/1"


class Source(TypedDict, total=False):
    """Where a message came from: enough for a supplier to find it again."""

    mqtt_topic: str
    file: str
    line_start: int
    line_end: int
    file_sha256: str
    batch_id: str
    index: int
    integration: str


class RawItem(TypedDict, total=False):
    message_id: str
    received_ts: str
    device_id: str
    flow_id: str
    content_type: str
    payload_b64: str
    source: Source


class RawEnvelope(TypedDict, total=False):
    schema: str
    envelope_id: str
    channel: str
    community_id: str
    supplier_id: str
    items: list[RawItem]


def utc_now_iso() -> str:
    """Current UTC time as ISO-8601 with millisecond precision and a 'Z'."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_id_for(channel: str, supplier_id: str, *parts: str | bytes) -> str:
    """Deterministic id of a source message, so a redelivered message gets the same id."""
    h = hashlib.sha256()
    for part in (channel, supplier_id, *parts):
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def raw_item(
    payload: bytes,
    *,
    message_id: str,
    source: Source,
    device_id: str | None = None,
    flow_id: str | None = None,
    content_type: str = "application/json",
    received_ts: str | None = None,
) -> RawItem:
    item: RawItem = {
        "message_id": message_id,
        "received_ts": received_ts or utc_now_iso(),
        "content_type": content_type,
        "payload_b64": base64.b64encode(payload).decode(),
        "source": source,
    }
    if device_id:
        item["device_id"] = device_id
    if flow_id:
        item["flow_id"] = flow_id
    return item


def raw_envelope(channel: str, community_id: str, supplier_id: str, items: list[RawItem]) -> RawEnvelope:
    envelope_id = message_id_for(channel, supplier_id, *(i["message_id"] for i in items))
    return {
        "schema": RAW_SCHEMA,
        "envelope_id": envelope_id,
        "channel": channel,
        "community_id": community_id,
        "supplier_id": supplier_id,
        "items": items,
    }


def item_payload(item: RawItem) -> bytes:
    return base64.b64decode(item["payload_b64"])


def encode(record: dict[str, Any] | Any) -> bytes:
    return orjson.dumps(record)


def decode(data: bytes) -> Any:
    return orjson.loads(data)


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def duplicate_json_key(payload: bytes, doc: Any) -> str | None:
    """The first key that appears twice in one object of ``payload`` (parsed already into ``doc``), or None.

    Why: orjson (like most parsers) silently keeps the last of ``{"e": 1, "e": 5000}``, while a
    supplier's gateway, a proxy or a validator may read the first: the same bytes would mean two
    different readings (or two flow ids) to two programs. Such payloads are refused instead.
    Cheap when there is none: every ':' outside strings separates one object member, so the members
    of ``doc`` are counted against the colons; only on a mismatch is the payload re-read to name the key.
    """
    members, stack = 0, [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            members += len(node)
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    if _JSON_STRING.sub(b'""', payload).count(b":") == members:
        return None
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return {}

    try:
        json.loads(payload, object_pairs_hook=pairs)
    except ValueError:
        return None  # what orjson read, the standard library does not: nothing to name
    return found[0] if found else None
