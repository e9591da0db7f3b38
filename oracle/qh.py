"""Quarter-hour windows and the event-time watermark (oracle.md §1, §9).

State per community: a watermark (the largest event time seen, ``ts`` of any reading of the
community) and, per QH, the leaf accumulators: (supplier, device, flow) -> {message_id: mWh}.
Keeping the message ids makes the sums idempotent under redelivery (readings are
at-least-once upstream) and lets a late reading extend an anchored QH into version n+1 with the
full leaf set. Every change bumps the QH's ``revision`` so the anchoring loop, running off the
event loop, knows whether what it anchored is still the current content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

QH_S = 900
ACCOUNTING = (1, 2)


def parse_ts(value: str | datetime | int) -> int:
    """ISO-8601 UTC ('2024-01-01T00:00:00Z'), an aware datetime (lake rows) or unix seconds."""
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(datetime.fromisoformat(value).timestamp())


def qh_start(ts: int) -> int:
    return ts - ts % QH_S


def anchorable_qh(reading: dict[str, Any]) -> int | None:
    """The QH a reading's energy counts in, or None when oracle.md §1/§5 exclude it.

    Included: energy present, accounting flow (account 1 or 2), 0 < interval_s <= 900 and the
    interval [ts, ts + interval_s) inside one QH. Instants and coarser data never count.
    """
    if reading.get("energy_mwh") is None or reading.get("account") not in ACCOUNTING:
        return None
    interval = reading.get("interval_s") or 0
    if not 0 < interval <= QH_S:
        return None
    ts = parse_ts(reading["ts"])
    start = qh_start(ts)
    return start if ts + interval <= start + QH_S else None


@dataclass
class LeafAcc:
    account: int
    energy_mwh: int = 0
    messages: dict[str, int] = field(default_factory=dict)
    covered_s: int = 0         # seconds of the QH its readings cover: 900 = the flow delivered the QH


@dataclass(frozen=True)
class ExpectedFlow:
    """An accounting flow a community expects in each QH of [start, end), and how long (event time
    past the QH's end) the oracle waits for it: its declared send frequency + derogation."""

    flow_id: str
    wait_s: int
    start: float = float("-inf")
    end: float = float("inf")


# community id -> its expected accounting flows; None = unknown (close on watermark + grace only)
ExpectedFlows = Callable[[str], "tuple[ExpectedFlow, ...] | None"]


def expected_from_snapshot(snapshot: Callable[[], Any]) -> ExpectedFlows:
    """Expected flows per community from a registry snapshot provider (recomputed when it changes)."""
    cache: dict[str, Any] = {"snap": None, "by_community": {}}

    def expected(community_id: str) -> tuple[ExpectedFlow, ...] | None:
        snap = snapshot()
        if snap is not cache["snap"]:
            by: dict[str, list[ExpectedFlow]] = {}
            for f in snap.flows.values():
                dev = snap.devices.get(f.device_id)
                if f.account not in ACCOUNTING or not f.active or dev is None or dev.status != "active":
                    continue
                starts = [x.timestamp() for x in (f.start_ts, dev.start_ts) if x is not None]
                ends = [x.timestamp() for x in (f.end_ts, dev.end_ts) if x is not None]
                wait = (f.send_frequency_s + f.derogation_s) if f.send_frequency_s else 0
                by.setdefault(f.community_id, []).append(ExpectedFlow(
                    f.id, wait, max(starts, default=float("-inf")), min(ends, default=float("inf"))))
            cache["snap"], cache["by_community"] = snap, {k: tuple(v) for k, v in by.items()}
        return cache["by_community"].get(community_id)

    return expected


LeafId = tuple[str, str, str]  # supplier_id, device_id, flow_id


@dataclass
class QhBucket:
    community_id: str
    qh: int
    leaves: dict[LeafId, LeafAcc] = field(default_factory=dict)
    revision: int = 0          # bumped on every content change
    settled_revision: int = -1  # revision known to match the chain (anchored or checked)
    changed_at: float = 0.0    # monotonic time of the last change

    @property
    def dirty(self) -> bool:
        return self.revision != self.settled_revision

    def sums(self) -> dict[LeafId, tuple[int, int]]:
        """leaf id -> (account, QH energy in mWh), a copy safe to hand to another thread."""
        return {k: (v.account, v.energy_mwh) for k, v in self.leaves.items()}


class QhWindows:
    """Groups readings by (community, QH), deduplicated by message id; closes a QH when it is complete
    or its missing flows' declared lateness has passed on the event-time watermark."""

    def __init__(self, grace_s: int = 300, max_future_s: int = 300, restate_after_s: float = 0.0,
                 expected: ExpectedFlows | None = None, silence_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_s = grace_s
        self.silence_s = silence_s
        self.clock = clock
        self.started = clock()
        # per (community, flow): its own event-time watermark and when its last reading arrived
        self.flow_watermarks: dict[tuple[str, str], int] = {}
        self.flow_seen: dict[tuple[str, str], float] = {}
        self.expected = expected
        self.max_future_s = max_future_s
        self.restate_after_s = restate_after_s
        self.buckets: dict[tuple[str, int], QhBucket] = {}
        self.watermarks: dict[str, int] = {}
        self.counted = 0
        self.duplicates = 0
        self.ignored = 0

    def add(self, reading: dict[str, Any]) -> bool:
        """Account one canonical reading; True when it changed a QH's content."""
        community = reading["community_id"]
        ts = parse_ts(reading["ts"])
        qh = anchorable_qh(reading)
        energy = int(reading["energy_mwh"]) if qh is not None else 0  # validate before any change
        leaf_id = (reading["supplier_id"], reading["device_id"], reading["flow_id"])
        message_id = reading["message_id"]
        # a clock far in the future must not close every open QH at once
        horizon = int(time.time()) + self.max_future_s
        if min(ts, horizon) > self.watermarks.get(community, -1):
            self.watermarks[community] = min(ts, horizon)
        flow_key = (community, reading["flow_id"])
        self.flow_seen[flow_key] = self.clock()
        if min(ts, horizon) > self.flow_watermarks.get(flow_key, -1):
            self.flow_watermarks[flow_key] = min(ts, horizon)
        if qh is None:
            self.ignored += 1
            return False
        key = (community, qh)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = QhBucket(community, qh)
        acc = bucket.leaves.get(leaf_id)
        if acc is None:
            acc = bucket.leaves[leaf_id] = LeafAcc(reading["account"])
        if message_id in acc.messages:
            self.duplicates += 1
            return False
        acc.messages[message_id] = energy
        acc.energy_mwh += energy
        acc.covered_s += int(reading.get("interval_s") or 0)
        bucket.revision += 1
        bucket.changed_at = time.monotonic()
        self.counted += 1
        return True

    def is_closed(self, community_id: str, qh: int) -> bool:
        """Closed when complete (every expected accounting flow delivered it). Otherwise each missing
        flow must have been given up: the community's event-time watermark passed qh + 900 + max(grace,
        the flow's declared wait: send frequency + derogation), and either the flow's own data has
        moved past that point too, or the flow has sent nothing for ``silence_s`` of wall time. A flow
        that is sending but behind (a replay, a backlog) is waited for, so its data lands in version 1.
        Without expected flows (no registry): on the watermark + grace, as before."""
        return self._closed(community_id, qh, self.buckets.get((community_id, qh)))

    def _closed(self, community_id: str, qh: int, bucket: QhBucket | None) -> bool:
        watermark = self.watermarks.get(community_id, -1)
        flows = self.expected(community_id) if self.expected is not None else None
        if not flows:
            return watermark >= qh + QH_S + self.grace_s
        delivered = {leaf[2] for leaf, acc in bucket.leaves.items() if acc.covered_s >= QH_S} if bucket else set()
        now = self.clock()
        for e in flows:
            if not e.start <= qh < e.end or e.flow_id in delivered:
                continue
            deadline = qh + QH_S + max(self.grace_s, e.wait_s)
            if watermark < deadline:
                return False                   # the community's event time has not passed its wait
            key = (community_id, e.flow_id)
            if self.flow_watermarks.get(key, -1) >= deadline:
                continue                       # the flow itself moved past the QH and its wait: a gap
            if now - max(self.started, self.flow_seen.get(key, self.started)) < self.silence_s:
                return False                   # still sending (or silent only briefly): wait for it
        return True

    def due(self) -> list[QhBucket]:
        """Closed QHs whose content is not yet known to be on chain, oldest first.

        A QH already settled once (anchored or checked) that changes again waits until its content
        has been still for ``restate_after_s``: late readings usually come in bursts (an SFTP file,
        an HTTP batch), and one version n+1 per burst costs less gas than one per arrival.
        """
        now = time.monotonic()
        return sorted((b for b in self.buckets.values() if b.dirty
                       and self._closed(b.community_id, b.qh, b)
                       and (b.settled_revision < 0 or now - b.changed_at >= self.restate_after_s)),
                      key=lambda b: (b.qh, b.community_id))
