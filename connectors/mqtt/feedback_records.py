"""Dead-letter and feedback records for input a connector refuses at the edge.

Connectors refuse only what is theirs to judge (identity, ownership, size, topic shape); the
record formats are the shared contract of ``lec.deadletter`` and ``lec.feedback`` (common.md).
"""

from __future__ import annotations

from typing import Any

from lec.records import FEEDBACK_SCHEMA, Source, utc_now_iso


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
