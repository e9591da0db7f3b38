"""Bounded in-memory state of one worker: duplicate/conflict keys, cumulative registers, liveness.

Why in memory and not a Faust Table: a crash loses it, and redelivered messages are then
re-emitted with the same message ids (at-least-once; the lake and oracle are idempotent on
``message_id``). A changelogged table could remember a reading whose output was never flushed
and then drop its redelivery as a duplicate: a loss. Bounds (per worker): the last
``MAX_KEYS_PER_FLOW`` reading instants and registers of each flow (20,000 = 208 days of
quarter-hours), the last ``MAX_ITEMS`` item message ids (500,000). Kafka keys raw envelopes by
device, so a device's items reach one worker, whose state covers them; after a rebalance the new
owner starts empty (duplicates are then caught downstream by message id).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import Any

MAX_KEYS_PER_FLOW = 20_000
MAX_ITEMS = 500_000
MAX_SOURCE_IDS_PER_FLOW = 20_000


class FlowState:
    """What one worker remembers about one flow."""

    __slots__ = (
        "keys",
        "last_seen",
        "reg_ts",
        "registers",
        "silent_reported",
        "source_ids",
        "stuck_reported",
        "stuck_run",
        "stuck_value",
        "watermark",
    )

    def __init__(self) -> None:
        # OrderedDict: dropping the oldest is O(1) (a plain dict's next(iter()) scans the deleted slots)
        self.keys: OrderedDict[int, tuple[tuple[Any, ...], str]] = OrderedDict()   # instant -> (values, item id)
        self.source_ids: OrderedDict[str, None] = OrderedDict()
        self.reg_ts: list[int] = []                 # sorted instants of known cumulative registers
        self.registers: dict[int, int] = {}         # instant -> register mWh
        self.stuck_value: Any = None
        self.stuck_run = 0
        self.stuck_reported = False
        self.last_seen: float | None = None         # wall clock of the last accepted reading
        self.silent_reported: float | None = None
        self.watermark: int | None = None           # latest accepted reading instant (bounds lateness)

    def put_key(self, instant: int, signature: tuple[Any, ...], item_id: str) -> None:
        keys = self.keys
        keys[instant] = (signature, item_id)
        if len(keys) > MAX_KEYS_PER_FLOW:       # insertion order (a re-put keeps its place): drop the oldest
            keys.popitem(last=False)

    def put_source_id(self, source_id: str) -> None:
        self.source_ids[source_id] = None
        if len(self.source_ids) > MAX_SOURCE_IDS_PER_FLOW:
            self.source_ids.popitem(last=False)

    def put_register(self, instant: int, register: int) -> None:
        if instant not in self.registers:
            bisect.insort(self.reg_ts, instant)
        self.registers[instant] = register
        if len(self.reg_ts) > MAX_KEYS_PER_FLOW:
            del self.registers[self.reg_ts.pop(0)]

    def register_before(self, instant: int) -> tuple[int, int] | None:
        """The latest known register strictly before ``instant``."""
        i = bisect.bisect_left(self.reg_ts, instant)
        if i == 0:
            return None
        t = self.reg_ts[i - 1]
        return t, self.registers[t]


class StreamState:
    """All flows' state plus the ids of items already processed."""

    def __init__(self) -> None:
        self.flows: dict[str, FlowState] = {}
        self.items: OrderedDict[str, int] = OrderedDict()   # item message id -> readings accepted, oldest first

    def flow(self, flow_id: str) -> FlowState:
        st = self.flows.get(flow_id)
        if st is None:
            st = self.flows[flow_id] = FlowState()
        return st

    def remember_item(self, message_id: str, accepted: int) -> None:
        self.items[message_id] = accepted
        if len(self.items) > MAX_ITEMS:
            self.items.popitem(last=False)
