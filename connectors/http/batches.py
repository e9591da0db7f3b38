"""Per-batch state of the HTTP API, fed by the ``lec.feedback`` records of the batch's items.

A batch is cut into items (chunks of readings); each item gets one feedback record whose
``errors[].index`` is the reading's index inside the item, so reading ``source.index +
errors[].index`` of the batch is the rejected one. State is kept in memory (most recent
``MAX_BATCHES``): ask the server instance that took the batch.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("lec.connectors.http")

MAX_BATCHES = 50_000


@dataclass
class Chunk:
    message_id: str
    index: int                         # first reading's index within the batch
    count: int
    feedback: dict[str, Any] | None = None


@dataclass
class Batch:
    batch_id: str
    supplier_id: str
    flow_id: str
    device_id: str
    received_ts: str
    readings: int
    chunks: list[Chunk] = field(default_factory=list)
    idempotency_key: str | None = None
    fingerprint: str = ""              # sha256 of flow, content type and body: what the key stands for
    stored: bool = False               # Kafka acknowledged every item


class BatchStore:
    def __init__(self, max_batches: int = MAX_BATCHES) -> None:
        self._batches: OrderedDict[str, Batch] = OrderedDict()
        self._by_message: dict[str, Chunk] = {}
        self._early: OrderedDict[str, dict[str, Any]] = OrderedDict()  # feedback seen before its batch
        self._keys: dict[tuple[str, str], str] = {}  # (supplier, Idempotency-Key) -> batch id
        self._lock = threading.Lock()
        self.max_batches = max_batches

    def claim(self, batch: Batch) -> Batch:
        """Add ``batch``, or return the batch its supplier already sent with the same Idempotency-Key
        (the caller compares fingerprints: same request = a retry, another request = a conflict)."""
        with self._lock:
            if batch.idempotency_key is not None:
                prior_id = self._keys.get((batch.supplier_id, batch.idempotency_key))
                prior = self._batches.get(prior_id) if prior_id else None
                if prior is not None:
                    return prior
                self._keys[(batch.supplier_id, batch.idempotency_key)] = batch.batch_id
            self._add(batch)
            return batch

    def _add(self, batch: Batch) -> None:
        """Index a batch (lock held); the oldest are forgotten beyond ``max_batches``."""
        self._batches[batch.batch_id] = batch
        for chunk in batch.chunks:
            self._by_message[chunk.message_id] = chunk
            if chunk.message_id in self._early:
                chunk.feedback = self._early.pop(chunk.message_id)
        while len(self._batches) > self.max_batches:
            _, old = self._batches.popitem(last=False)
            for chunk in old.chunks:
                self._by_message.pop(chunk.message_id, None)
            if old.idempotency_key is not None:
                self._keys.pop((old.supplier_id, old.idempotency_key), None)

    def apply_feedback(self, record: dict[str, Any]) -> None:
        if record.get("channel") != "http":
            return
        with self._lock:
            chunk = self._by_message.get(record.get("message_id", ""))
            if chunk is not None:
                chunk.feedback = record
            elif record.get("batch_id"):
                self._early[record["message_id"]] = record
                while len(self._early) > self.max_batches:
                    self._early.popitem(last=False)

    def get(self, batch_id: str) -> Batch | None:
        with self._lock:
            return self._batches.get(batch_id)

    def report(self, batch: Batch, with_readings: bool = False) -> dict[str, Any]:
        """Counts, rejected readings with reasons, and optionally one status per reading."""
        accepted = rejected = duplicates = pending = 0
        rejections: list[dict[str, Any]] = []
        statuses: list[str] = []
        with self._lock:
            for chunk in batch.chunks:
                fb = chunk.feedback
                if fb is None:
                    pending += chunk.count
                    statuses += ["pending"] * chunk.count
                    continue
                accepted += int(fb.get("accepted", 0))
                rejected += int(fb.get("rejected", 0))
                duplicates += int(fb.get("duplicates", 0))
                errs = {}
                for err in fb.get("errors") or []:
                    idx = err.get("index")
                    if isinstance(idx, int) and 0 <= idx < chunk.count:
                        errs[idx] = err
                        rejections.append({"index": chunk.index + idx, "line": err.get("line"),
                                           "reason_code": err.get("reason_code"), "message": err.get("message")})
                if with_readings:
                    fallback = "duplicate" if fb.get("status") == "duplicate" else (
                        "rejected" if fb.get("status") == "rejected" else "accepted")
                    statuses += ["rejected" if i in errs else fallback for i in range(chunk.count)]
        report: dict[str, Any] = {
            "batch_id": batch.batch_id, "supplier_id": batch.supplier_id, "flow_id": batch.flow_id,
            "device_id": batch.device_id, "received_ts": batch.received_ts, "readings": batch.readings,
            "status": "pending" if pending else "complete", "accepted": accepted, "rejected": rejected,
            "duplicates": duplicates, "pending": pending,
            "items": [{"message_id": c.message_id, "index": c.index, "count": c.count,
                       "status": c.feedback.get("status") if c.feedback else "pending"} for c in batch.chunks],
            "rejections": sorted(rejections, key=lambda r: r["index"]),
        }
        if with_readings:
            report["reading_status"] = statuses
        return report


class FeedbackWatcher:
    """Reads ``lec.feedback`` from the start (no consumer group: every server instance sees all)."""

    def __init__(self, bootstrap: str, store: BatchStore) -> None:
        self.bootstrap = bootstrap
        self.store = store
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="feedback-watcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)

    def _run(self) -> None:
        from lec import topics
        from lec.io import replay
        from lec.records import decode

        try:
            for msgs in replay(self.bootstrap, topics.FEEDBACK, group=f"lec-http-batches-{uuid.uuid4().hex}"):
                if self.stopping.is_set():
                    break
                for m in msgs:
                    try:
                        self.store.apply_feedback(decode(m.value()))
                    except Exception:  # noqa: BLE001 - a malformed record must not stop batch tracking
                        log.warning("skipped a malformed lec.feedback record at offset %s", m.offset())
        except Exception:
            log.exception("feedback watcher stopped: batch reports will stay pending")
