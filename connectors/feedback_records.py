"""Dead-letter and feedback records for input a connector refuses at the edge.

Connectors refuse only what is theirs to judge (identity, ownership, size, topic shape); the
record formats are the shared contract of ``lec.deadletter`` and ``lec.feedback`` (common.md).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from lec.records import Source, utc_now_iso

DEADLETTER_SCHEMA = "lec.deadletter/1"
FEEDBACK_SCHEMA = "lec.feedback/1"
DEADLETTER_MAX_PAYLOAD = 64 * 1024  # bigger payloads keep their first 64 KiB and a digest


def deadletter_record(*, reason_code: str, message: str, channel: str, supplier_id: str, message_id: str,
                      payload: bytes, source: Source, community_id: str | None = None,
                      device_id: str | None = None, flow_id: str | None = None) -> dict[str, Any]:
    """A dead letter keeping the original bytes (truncated to 64 KiB with a digest when bigger)."""
    record: dict[str, Any] = {
        "schema": DEADLETTER_SCHEMA, "reason_code": reason_code, "message": message, "channel": channel,
        "community_id": community_id, "supplier_id": supplier_id, "device_id": device_id,
        "flow_id": flow_id, "message_id": message_id, "reading_index": None,
        "payload_b64": base64.b64encode(payload[:DEADLETTER_MAX_PAYLOAD]).decode(),
        "source": dict(source), "rejected_ts": utc_now_iso(),
    }
    if len(payload) > DEADLETTER_MAX_PAYLOAD:
        record["payload_sha256"] = hashlib.sha256(payload).hexdigest()
        record["payload_truncated"] = True
    return record


def rejection_feedback(*, reason_code: str, message: str, channel: str, supplier_id: str, message_id: str,
                       source: Source, community_id: str | None = None,
                       batch_id: str | None = None) -> dict[str, Any]:
    """The feedback answer for a source message refused as a whole."""
    return {
        "schema": FEEDBACK_SCHEMA, "supplier_id": supplier_id, "community_id": community_id,
        "channel": channel, "message_id": message_id, "batch_id": batch_id, "status": "rejected",
        "accepted": 0, "rejected": 1, "duplicates": 0,
        "errors": [{"index": 0, "line": None, "reason_code": reason_code, "message": message}],
        "source": dict(source), "ts": utc_now_iso(),
    }
