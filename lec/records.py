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
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

import orjson

from lec.errors import LecError

Channel = Literal["mqtt", "sftp", "http", "camel"]
CHANNELS: tuple[str, ...] = ("mqtt", "sftp", "http", "camel")

RAW_SCHEMA = "lec.raw/1"
READING_SCHEMA = "lec.reading/1"
DEADLETTER_SCHEMA = "lec.deadletter/1"
FEEDBACK_SCHEMA = "lec.feedback/1"
ANOMALY_SCHEMA = "lec.anomaly/1"

# The one payload cap of the record contract: a dead letter keeps at most this many of the original
# bytes, bigger payloads add the whole payload's SHA-256 and ``payload_truncated`` (schemas/deadletter.json).
MAX_DEADLETTER_PAYLOAD = 64 * 1024


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
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    while stack:        # exact types: orjson makes only dict and list containers (3x faster than isinstance)
        node = stack.pop()
        if type(node) is dict:
            members += len(node)
            node = node.values()
        elif type(node) is not list:
            continue
        for v in node:
            t = type(v)
            if t is dict or t is list:
                stack.append(v)
    # Compact JSON (no whitespace byte at all): each member's key is a string followed at once by ':', so
    # the '":' pairs are at least the members written; equal to those parsed, no key was written twice.
    # Saves the string-stripping pass (about half of this check) on what devices and connectors send.
    # (int membership: a bytes needle costs 7x more for one byte)
    if 32 not in payload and 10 not in payload and 9 not in payload and 13 not in payload \
            and payload.count(b'":') == members:
        return None
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


class Rejection(LecError):
    """Input refused, by any layer: a stable ``reason_code``, a ``message`` the supplier can act on and
    the coordinates of what was refused (``source``: file and lines, MQTT topic, batch and index;
    ``index``: the reading within its item), so the dead letter and the feedback say the same."""

    def __init__(self, reason_code: str, message: str, *, source: Source | dict[str, Any] | None = None,
                 index: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message
        self.source = source
        self.index = index


def capped_payload(payload: bytes, *, whole_sha256: str | None = None, whole_size: int | None = None) -> dict[str, Any]:
    """The payload fields of a dead letter: the bytes up to the cap, and past it the SHA-256 of the whole
    (``whole_sha256``/``whole_size`` when ``payload`` is already only the head of something larger)."""
    size = len(payload) if whole_size is None else whole_size
    if size <= MAX_DEADLETTER_PAYLOAD:
        return {"payload_b64": base64.b64encode(payload).decode()}
    return {"payload_b64": base64.b64encode(payload[:MAX_DEADLETTER_PAYLOAD]).decode(),
            "payload_sha256": whole_sha256 or hashlib.sha256(payload).hexdigest(), "payload_truncated": True}


def deadletter_record(*, reason_code: str, message: str, channel: str | None, supplier_id: str | None,
                      message_id: str, payload: bytes, source: Source | dict[str, Any] | None,
                      community_id: str | None = None, device_id: str | None = None, flow_id: str | None = None,
                      reading_index: int | None = None, rejected_ts: str | None = None,
                      whole_sha256: str | None = None, whole_size: int | None = None) -> dict[str, Any]:
    """A ``lec.deadletter/1`` record keeping the original bytes (capped, see :func:`capped_payload`)."""
    return {"schema": DEADLETTER_SCHEMA, "reason_code": reason_code, "message": message, "channel": channel,
            "community_id": community_id, "supplier_id": supplier_id, "device_id": device_id, "flow_id": flow_id,
            "message_id": message_id, "reading_index": reading_index,
            **capped_payload(payload, whole_sha256=whole_sha256, whole_size=whole_size),
            "source": dict(source) if source is not None else None, "rejected_ts": rejected_ts or utc_now_iso()}
