"""From raw envelopes to canonical readings, dead letters, feedback and anomalies (no Kafka here).

:class:`Processor` is the whole pipeline for one worker: parse (``parse``), validate
(``validate``), normalise (``normalise``), sign-convert (``sign``), deduplicate (``state``).
It never raises on input: every failure of an item or a reading becomes a dead letter and a
feedback error; exactly one feedback record is produced per raw item.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any

import orjson

from lec.records import (
    ANOMALY_SCHEMA,
    CHANNELS,
    DEADLETTER_SCHEMA,
    FEEDBACK_SCHEMA,
    MAX_DEADLETTER_PAYLOAD,
    RAW_SCHEMA,
    capped_payload,
    utc_now_iso,
)
from lec.registry.snapshot import Device, Flow, RegistrySnapshot
from streams.columnar import MIN_ROWS, columnar_prefix
from streams.errors import Reject
from streams.fast import FastFlow, fast_reading, fast_run, item_parts
from streams.formats import NAMED_SYNTAXES
from streams.formats.route import route_flow
from streams.normalise import (
    energy_to_mwh,
    iso_to_epoch,
    iso_z,
    local_to_epoch,
    parse_ts,
    power_to_mwh,
    snap,
    to_decimal,
    zone,
)
from streams.parse import Row, parse_rows
from streams.parse import field as row_field
from streams.plan import I64, Bounds, FlowPlan, build_plan
from streams.sign import apply_sign
from streams.state import MAX_KEYS_PER_FLOW, FlowState, StreamState
from streams.validate import check_flow, check_limits, check_supplier, check_time

log = logging.getLogger("lec.streams")

SMALL_ITEM = MAX_DEADLETTER_PAYLOAD   # an item's dead letter carries the whole item up to this size
MAX_FEEDBACK_ERRORS = 100
MAX_DEADLETTER_INDEXES = 1000  # one dead letter per item lists at most this many bad reading indexes
DEADLETTER_BURST_S = 16        # a supplier's dead-letter byte budget holds this many seconds of its rate
SOURCE_KEYS = {"mqtt_topic": str, "file": str, "line_start": int, "line_end": int, "file_sha256": str,
               "header": str, "batch_id": str, "index": int, "integration": str}
CONTENT_SYNTAX = {"json": "json", "csv": "csv", "xml": "xml"}
VALUE_QUANTITIES = ("energy", "power", "reactive", "current", "voltage", "charge")


class Duplicate(Exception):
    """A reading already seen with the same key and values: dropped once, counted in feedback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Output:
    """Encoded records to send: lists of (key, value) bytes per topic."""

    readings: list[tuple[bytes, bytes]] = field(default_factory=list)
    deadletters: list[tuple[bytes, bytes]] = field(default_factory=list)
    feedback: list[tuple[bytes, bytes]] = field(default_factory=list)
    anomalies: list[tuple[bytes, bytes]] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.readings += other.readings
        self.deadletters += other.deadletters
        self.feedback += other.feedback
        self.anomalies += other.anomalies


def anomaly_id(kind: str, flow_id: str, *parts: Any) -> str:
    h = hashlib.sha256("|".join([kind, flow_id, *map(str, parts)]).encode())
    return h.hexdigest()[:32]


def anomaly_record(kind: str, flow: Flow, ts: int | None, detail: str, value: float | None, *key: Any) -> dict:
    return {"schema": ANOMALY_SCHEMA, "anomaly_id": anomaly_id(kind, flow.id, ts, *key), "kind": kind,
            "community_id": flow.community_id, "device_id": flow.device_id, "flow_id": flow.id,
            "ts": iso_z(ts) if ts is not None else None, "detected_ts": utc_now_iso(), "detail": detail[:2000],
            "value": value}


def clean_source(source: Any) -> dict[str, Any]:
    """Only the known coordinates, with the right types (the dead-letter schema is closed)."""
    if type(source) is not dict:
        return {}
    if all(type(v) is SOURCE_KEYS.get(k) and (type(v) is int or len(v) <= 4096) for k, v in source.items()):
        return source      # the common case: already clean
    out = {}
    for k, typ in SOURCE_KEYS.items():
        v = source.get(k)
        if isinstance(v, typ) and not isinstance(v, bool):
            out[k] = v[:4096] if isinstance(v, str) else v
    return out


class ItemContext:
    """Per-item working set: staged dedup keys/registers committed only if the item is accepted."""

    __slots__ = (
        "ambiguous_seen",
        "anomalies",
        "anomaly_kinds",
        "channel",
        "community_id",
        "devices",
        "env",
        "ingest_ts",
        "item",
        "message_id",
        "payload",
        "received_epoch",
        "source",
        "staged_keys",
        "staged_registers",
        "staged_source_ids",
        "supplier_id",
    )

    def __init__(self, env: dict, item: dict, payload: bytes, received_epoch: float) -> None:
        self.env = env
        self.item = item
        self.channel = env["channel"]
        self.supplier_id = env["supplier_id"]
        self.community_id = env["community_id"]
        self.message_id = item["message_id"]
        self.received_epoch = received_epoch
        self.ingest_ts = item["received_ts"]
        self.source = clean_source(item.get("source"))
        self.payload = payload
        self.staged_keys: dict[tuple[str, int], tuple[tuple[Any, ...], str]] = {}
        self.staged_registers: dict[str, dict[int, int]] = {}
        self.staged_source_ids: set[tuple[str, str]] = set()
        self.ambiguous_seen: set[tuple[str, datetime]] = set()
        self.anomalies: list[dict] = []
        self.anomaly_kinds: set[tuple[str, str]] = set()
        self.devices: dict[str, Device | Reject] = {}


def routed_run_end(rows: list[Row], n: int, route: Any) -> int:
    """End of the run of rows from ``n`` carrying the same route object (a named format's line)."""
    end = n + 1
    while end < len(rows) and rows[end].get("_route") is route:
        end += 1
    return end


class Processor:
    """The pipeline of one worker over a registry snapshot and bounded state."""

    def __init__(self, snapshot: RegistrySnapshot, *, clock_skew_s: int = 300,
                 max_payload_bytes: int = 1024 * 1024, fast_path: bool = True, bounds: Bounds | None = None,
                 deadletter_bytes_per_s: int = 1024 * 1024) -> None:
        self.state = StreamState()
        self.bounds = bounds or Bounds()
        self.budget = DeadLetterBudget(deadletter_bytes_per_s)
        self.fast_path = fast_path      # False: every reading through the per-reading path (tests compare both)
        self.columnar_min_rows = MIN_ROWS   # items with fewer readings skip the columnar path (tests lower it)
        self.columnar_min_bytes = MIN_ROWS * 16
        self._pending: RegistrySnapshot | None = None
        self.clock_skew_s = clock_skew_s
        self.max_payload_bytes = max_payload_bytes
        self.set_snapshot(snapshot)

    @classmethod
    def from_settings(cls, snapshot: RegistrySnapshot, settings: Any, **kw: Any) -> Processor:
        """A processor with the worker settings' bounds (``clock_skew_s``, ``streams_*``)."""
        bounds = Bounds(default_rated_power_w=settings.streams_default_rated_power_w,
                        power_margin=settings.streams_power_margin,
                        lateness_margin_s=settings.streams_lateness_margin_s,
                        max_lateness_s=settings.streams_max_lateness_s)
        return cls(snapshot, clock_skew_s=settings.clock_skew_s, max_payload_bytes=settings.max_payload_bytes,
                   bounds=bounds, deadletter_bytes_per_s=settings.streams_deadletter_bytes_per_s, **kw)

    def set_snapshot(self, snapshot: RegistrySnapshot) -> None:
        self.snapshot = snapshot
        self._candidates: dict[tuple[str, str, str], list[Flow]] = {}
        self._plans: dict[str, FlowPlan] = {}
        self._fast: dict[str, FastFlow | None] = {}
        self._checked: dict[tuple[str, str, str, str | None], Device | Reject] = {}
        self._now_iso = utc_now_iso()
        self._received: tuple[Any, float] = (None, 0.0)

    # -- envelopes --------------------------------------------------------------------------
    def offer_snapshot(self, snapshot: RegistrySnapshot) -> None:
        """Thread-safe: a new registry version, swapped in before the next batch (never mid-batch)."""
        self._pending = snapshot

    def _swap_snapshot(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.set_snapshot(pending)

    def begin_batch(self) -> None:
        """Between batches: take a newly offered registry snapshot."""
        self._swap_snapshot()

    def process_batch(self, values: list[tuple[bytes | None, bytes]]) -> Output:
        self._swap_snapshot()
        out = Output()
        for key, value in values:
            out.extend(self.process_envelope(value, key))
        return out

    def process_envelope(self, value: bytes, key: bytes | None = None) -> Output:
        out = Output()
        self._now_iso = utc_now_iso()
        try:
            env = self._envelope(value)
        except Reject as rej:
            self._bad_envelope(out, value, key, rej)
            return out
        for item in env["items"]:
            mine = Output()     # the item's outputs reach ``out`` only whole: never a part of an item
            try:
                self._item(mine, env, item)
                out.extend(mine)
            except Exception as exc:  # never let one item stop the partition
                log.exception("internal error on item %s", item.get("message_id") if isinstance(item, dict) else "?")
                rej = Reject("internal_error", f"the platform failed to process this message ({type(exc).__name__}); "
                             "it was kept and operators were alerted")
                self._reject_item(out, env, item if isinstance(item, dict) else {}, rej)
        return out

    def _envelope(self, value: bytes) -> dict:
        try:
            env = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise Reject("envelope_invalid", "the raw record is not JSON (expected a lec.raw/1 envelope)") from None
        if not isinstance(env, dict) or env.get("schema") != RAW_SCHEMA:
            raise Reject("envelope_invalid", f"the raw record is not a {RAW_SCHEMA} envelope")
        for name in ("supplier_id", "community_id", "channel"):
            if not isinstance(env.get(name), str) or not env[name]:
                raise Reject("envelope_invalid", f"the envelope has no '{name}'")
        if env["channel"] not in CHANNELS:
            raise Reject("envelope_invalid", f"the envelope's channel '{env['channel'][:20]}' is unknown")
        if not isinstance(env.get("items"), list):
            raise Reject("envelope_invalid", "the envelope has no 'items' list")
        return env

    def _bad_envelope(self, out: Output, value: bytes, key: bytes | None, rej: Reject) -> None:
        supplier = "unknown"
        channel = "camel"   # not from one of our connectors: treat as an external integration
        try:
            env = orjson.loads(value)
            if isinstance(env, dict):
                supplier = str(env.get("supplier_id") or supplier)[:128]
                channel = env.get("channel") if env.get("channel") in CHANNELS else channel
        except orjson.JSONDecodeError:
            if key:
                supplier = key.decode("utf-8", "replace")[:128]
        mid = hashlib.sha256(value).hexdigest()[:32]
        base = {"channel": channel, "community_id": None, "supplier_id": supplier, "message_id": mid}
        out.deadletters.append(self._dead(base, rej, value, None, None, {}, None))
        out.feedback.append(self._feedback(base, 0, 1, 0, [self._error(None, None, rej)], {}))

    # -- items ------------------------------------------------------------------------------
    def _item(self, out: Output, env: dict, item: Any) -> None:
        if not isinstance(item, dict) or not isinstance(item.get("message_id"), str) or not item["message_id"] \
                or len(item["message_id"]) > 128:
            self._reject_item(out, env, item if isinstance(item, dict) else {},
                              Reject("item_invalid", "the item has no valid 'message_id'"))
            return
        mid = item["message_id"]
        if mid in self.state.items:
            n = self.state.items[mid]
            base = self._base(env, item)
            out.feedback.append(self._feedback(base, 0, 0, max(n, 1), [], clean_source(item.get("source")),
                                               status="duplicate"))
            return
        try:
            payload = binascii.a2b_base64(item.get("payload_b64") or "", strict_mode=True)
        except (binascii.Error, ValueError, TypeError):
            self._reject_item(out, env, item, Reject("payload_invalid", "the item's payload_b64 is not base64"))
            return
        try:
            received = item["received_ts"]
            if received != self._received[0]:      # items of one envelope often share it
                self._received = (received, iso_to_epoch(received))
            received_epoch = self._received[1]
        except (KeyError, TypeError, ValueError):
            received_epoch = time.time()
            item = {**item, "received_ts": utc_now_iso()}
        ctx = ItemContext(env, item, payload, received_epoch)
        try:
            check_supplier(self.snapshot, ctx.supplier_id, ctx.community_id)
            fixed, syntax_flow = self._resolve_item_flow(ctx)
            done = self._columnar(ctx, fixed, syntax_flow, payload)
            if done is not None and len(done[0]) == done[1]:
                self._rows(out, ctx, [], fixed, syntax_flow, done[0])   # every row clean: nothing to parse
                return
            header = ctx.source.get("header")
            rows = parse_rows(payload, syntax_flow.syntax, syntax_flow.syntax_options, header, self.max_payload_bytes)
            if not rows:
                raise Reject("no_readings", "the message holds no readings")
            if syntax_flow.syntax in NAMED_SYNTAXES:
                fixed = None        # each row names its point and direction (streams/formats/route.py)
        except Reject as rej:
            self._reject_item(out, env, item, rej, payload)
            self.state.remember_item(mid, 0)
            return
        self._rows(out, ctx, rows, fixed, syntax_flow, done[0] if done is not None else None)

    def _columnar(self, ctx: ItemContext, fixed: Flow | None, syntax_flow: Flow, payload: bytes
                  ) -> tuple[list[tuple[Flow, int, bytes, bytes]], int] | None:
        """The clean prefix of a plain JSON batch item of one flow (streams/columnar.py), or None."""
        if not self.fast_path or fixed is None or syntax_flow.syntax != "json" or len(payload) < self.columnar_min_bytes \
                or len(payload) > self.max_payload_bytes:
            return None
        opts = syntax_flow.syntax_options
        if str(opts.get("encoding", "utf-8")).lower() not in ("utf-8", "utf8"):
            return None
        ff = self._fast_flow(ctx, fixed)
        parts = item_parts(ctx) if ff is not None else None
        if parts is None:
            return None
        return columnar_prefix(self, ctx, ff, parts, payload, str(opts.get("readings_key", "readings")),
                               self.columnar_min_rows)

    def _rows(self, out: Output, ctx: ItemContext, rows: list[Row], fixed: Flow | None, syntax_flow: Flow,
              done: list[tuple[Flow, int, bytes, bytes]] | None = None) -> None:
        """``done``: the readings of rows already taken by the columnar path (the first ``len(done)``)."""
        readings: list[tuple[Flow, int, bytes, bytes | dict]] = done or []   # (flow, index, key, encoded or dict)
        rejects: list[tuple[int, Row, Flow | None, Reject]] = []
        dups: list[tuple[int, Row, str]] = []
        fast: dict[str, FastFlow | None] = {}
        parts = item_parts(ctx) if self.fast_path else None     # None: every reading on the full path
        resume = len(readings)
        encode = False          # some readings are dicts (the precise path): encoded below
        run: tuple[Any, int] = (None, 0)    # (route, end) of the routed line being read
        for n in range(resume, len(rows)):
            row = rows[n]
            if n < resume:
                continue            # taken by fast_run
            flow = fixed
            try:
                if flow is None:
                    flow = self._row_flow(ctx, row, syntax_flow)
                if parts is not None:
                    ff = fast.get(flow.id, False)
                    if ff is False:
                        ff = fast[flow.id] = self._fast_flow(ctx, flow)
                    route = row.get("_route") if fixed is None else None
                    if ff is not None and (fixed is not None or route is not None):
                        # rows of one flow in one loop: the rest of the item, or a routed line (one curve's
                        # day: its rows share one route object, so one flow)
                        if route is not None and route is not run[0]:
                            run = (route, routed_run_end(rows, n, route))
                        resume = fast_run(self, ctx, ff, parts, rows, n, readings,
                                          None if route is None else run[1])
                        if resume > n:
                            continue
                    elif ff is not None:
                        got = fast_reading(self, ctx, ff, parts, row, n)
                        if got is not None:
                            readings.append((flow, n, ff.key, got))
                            continue
                rd = self._reading(ctx, flow, row, n)
                readings.append((flow, n, rd["device_id"].encode(), rd))
                encode = True
            except Duplicate as dup:
                dups.append((n, row, dup.message))
            except Reject as rej:
                rejects.append((n, row, flow, rej))
                if rej.anomaly and flow is not None and (rej.anomaly, flow.id) not in ctx.anomaly_kinds:
                    ctx.anomaly_kinds.add((rej.anomaly, flow.id))   # one per kind and flow per item, not a flood
                    ts = row.get("_epoch")
                    ctx.anomalies.append(anomaly_record(rej.anomaly, flow, ts, rej.message, rej.value,
                                                        ctx.message_id, n))
        batch_flow = fixed or syntax_flow
        if rejects and readings and batch_flow.on_error == "reject_batch":
            first = rejects[0][3].reason_code
            for flow, n, _key, _value in readings:
                rejects.append((n, rows[n], flow, Reject("batch_rejected", f"the flow rejects whole messages on "
                                                         f"error and reading {rejects[0][0]} failed ({first})")))
            readings = []
            # only the anomalies of the rejected readings stand: nothing of this item was accepted
            ctx.anomalies = [a for a in ctx.anomalies if a["kind"] in ("after_end", "out_of_range")]
        # encode everything first (what can fail fails before any state or output changes)
        for i, (flow, n, key, value) in enumerate(readings if encode else ()):
            if type(value) is not bytes:
                readings[i] = (flow, n, key, orjson.dumps(value))
        errors = []
        rejects.sort(key=lambda r: r[0])
        for n, row, _flow, rej in rejects[:MAX_FEEDBACK_ERRORS]:
            errors.append(self._error(n, self._file_line(ctx, row), rej))
        for n, row, msg in dups:
            if len(errors) < MAX_FEEDBACK_ERRORS:
                errors.append({"index": n, "line": self._file_line(ctx, row), "reason_code": "duplicate",
                               "message": msg})
        dead = self._readings_dead_letter(ctx, rejects) if rejects else None
        anomalies = [(a["device_id"].encode(), orjson.dumps(a)) for a in ctx.anomalies]
        feedback = self._feedback(self._base(ctx.env, ctx.item, fixed), len(readings), len(rejects), len(dups),
                                  errors, ctx.source)
        if readings:
            self._commit(ctx, readings)
        out.readings += zip(map(_KEY, readings), map(_VALUE, readings))   # C loops: no per-reading bytecode
        if dead is not None:
            out.deadletters.append(dead)
        out.anomalies += anomalies
        out.feedback.append(feedback)
        self.state.remember_item(ctx.message_id, len(readings))

    def _readings_dead_letter(self, ctx: ItemContext, rejects: list[tuple[int, Row, Flow | None, Reject]]
                              ) -> tuple[bytes, bytes]:
        """One dead letter for all of an item's rejected readings (sorted by index), not one each: a
        4 KiB item of 1,365 bad readings must not become 1,365 records (amplification). It lists the
        bad indexes (capped), counts them, keeps the first reason and message and the original bytes:
        the whole item when small, else the rejected readings' own bytes, one per line."""
        n0, _row0, flow0, rej0 = rejects[0]
        flows = {f.id if f else None for _n, _r, f, _j in rejects}
        base = self._base(ctx.env, ctx.item, flow0 if len(flows) == 1 else None)
        source = dict(ctx.source)
        lines = [x for x in (self._file_line(ctx, r[1]) for r in rejects) if x is not None]
        if lines:
            source["line_start"], source["line_end"] = min(lines), max(lines)
        if len(rejects) == 1:
            rej = rej0
        else:
            counts: dict[str, int] = {}
            for r in rejects:
                counts[r[3].reason_code] = counts.get(r[3].reason_code, 0) + 1
            summary = ", ".join(f"{code} x{k}" for code, k in counts.items())
            rej = Reject(rej0.reason_code, f"{len(rejects)} readings of this message were rejected ({summary}); "
                         f"the first, reading {n0}: {rej0.message}")
        if len(ctx.payload) <= SMALL_ITEM:
            payload, whole = ctx.payload, None
        else:       # a large item: the rejected readings' own bytes (up to the cap), plus the whole item's hash
            parts, size = [], 0
            for r in rejects:
                b = self._row_bytes(r[1])
                parts.append(b)
                size += len(b) + 1
                if size > MAX_DEADLETTER_PAYLOAD:
                    break
            payload, whole = b"\n".join(parts), ctx.payload
        key, value = self._dead(base, rej, payload, n0, flow0, source, whole,
                                extra={"reading_indexes": [r[0] for r in rejects[:MAX_DEADLETTER_INDEXES]],
                                       "rejected_count": len(rejects)})
        return key, value

    # -- flow resolution --------------------------------------------------------------------
    def _resolve_item_flow(self, ctx: ItemContext) -> tuple[Flow | None, Flow]:
        """(the item's flow if it names one, the flow whose syntax parses the item)."""
        flow_id, device_id = ctx.item.get("flow_id"), ctx.item.get("device_id")
        if flow_id:
            flow = self.snapshot.flows.get(flow_id)
            if flow is None:
                raise Reject("unknown_flow", f"flow '{str(flow_id)[:128]}' is not in the registry")
            self._device(ctx, flow, device_id)
            return flow, flow
        cands = self._candidate_flows(ctx)
        if device_id:
            mine = [f for f in cands if f.device_id == device_id]
            if len(mine) == 1:
                self._device(ctx, mine[0], device_id)
                return mine[0], mine[0]
            if not mine:
                self._unknown_device(ctx, str(device_id))
            cands = mine
        if not cands:
            raise Reject("no_flow", f"supplier '{ctx.supplier_id}' has no flow on channel '{ctx.channel}' in "
                         f"community '{ctx.community_id}'; register one or name the flow")
        want = next((s for k, s in CONTENT_SYNTAX.items() if k in str(ctx.item.get("content_type", ""))), None)
        group = [f for f in cands if f.syntax == want] or cands
        shapes = {(f.syntax, orjson.dumps(f.syntax_options, option=orjson.OPT_SORT_KEYS)) for f in group}
        if len(shapes) > 1:
            raise Reject("flow_ambiguous", "several of your flows could match this message with different formats; "
                         "name the flow (flow_id) or the device in the message")
        return None, group[0]

    def _candidate_flows(self, ctx: ItemContext) -> list[Flow]:
        key = (ctx.supplier_id, ctx.community_id, ctx.channel)
        cands = self._candidates.get(key)
        if cands is None:
            cands = sorted((f for f in self.snapshot.flows.values() if f.supplier_id == ctx.supplier_id
                            and f.community_id == ctx.community_id and f.channel == ctx.channel), key=lambda f: f.id)
            self._candidates[key] = cands
        return cands

    def _row_flow(self, ctx: ItemContext, row: Row, syntax_flow: Flow) -> Flow:
        """A batch without device/flow: each reading names its flow or device (mapping 'flow'/'device')."""
        if "_error" in row:
            raise Reject(*row["_error"])
        if "_not_object" in row:
            raise Reject("reading_not_object", f"a reading is a {type(row['_not_object']).__name__}, not an object")
        if "_route" in row:
            return route_flow(self, ctx, row, syntax_flow.syntax)
        m = syntax_flow.mapping
        flow_ref = row_field(row, m.get("flow", "flow_id")) or row.get("flow")
        if flow_ref:
            flow = self.snapshot.flows.get(str(flow_ref))
            if flow is None:
                raise Reject("unknown_flow", f"flow '{str(flow_ref)[:128]}' is not in the registry")
            return flow
        dev_ref = row_field(row, m.get("device", "device_id")) or row.get("device")
        if not dev_ref:
            raise Reject("missing_field", "the reading names no device or flow; add a 'device_id' or 'flow_id' "
                         "field (or the columns your flow's mapping declares as 'device'/'flow')")
        mine = [f for f in self._candidate_flows(ctx) if f.device_id == str(dev_ref)]
        if len(mine) == 1:
            return mine[0]
        if not mine:
            self._unknown_device(ctx, str(dev_ref))
        raise Reject("flow_ambiguous", f"device '{dev_ref}' has several flows on this channel; name the flow")

    def _unknown_device(self, ctx: ItemContext, device_id: str) -> None:
        dev = self.snapshot.devices.get(device_id)
        if dev is not None and dev.supplier_id != ctx.supplier_id:
            raise Reject("not_your_device", f"supplier '{ctx.supplier_id}' does not supply device '{device_id}'; "
                         "you may only send data for your own devices")
        if dev is None:
            raise Reject("unknown_device", f"device '{device_id[:128]}' is not in the registry")
        raise Reject("no_flow", f"device '{device_id}' has no flow of yours on channel '{ctx.channel}'")

    def _device(self, ctx: ItemContext, flow: Flow, device_id: str | None = None) -> Device:
        got = ctx.devices.get(flow.id)
        if got is None:
            key = (flow.id, ctx.supplier_id, ctx.community_id, device_id or None)
            got = self._checked.get(key)
            if got is None:
                try:
                    got = check_flow(self.snapshot, flow, ctx.supplier_id, ctx.community_id, device_id or None)
                except Reject as rej:
                    got = rej
                if len(self._checked) > 100_000:
                    self._checked.clear()
                self._checked[key] = got
            ctx.devices[flow.id] = got
        if isinstance(got, Reject):
            raise got
        return got

    # -- one reading ------------------------------------------------------------------------
    def _fast_flow(self, ctx: ItemContext, flow: Flow) -> FastFlow | None:
        """The flow's fast path (streams/fast.py), or None when the flow or its device needs the full path."""
        try:
            dev = self._device(ctx, flow)
        except Reject:
            return None          # every reading gets the precise rejection from the full path
        if flow.id not in self._fast:
            plan = self._plans.get(flow.id)
            if plan is None:
                plan = self._plans[flow.id] = build_plan(flow, dev, self.bounds)
            self._fast[flow.id] = FastFlow.build(flow, plan)
        return self._fast[flow.id]

    def _reading(self, ctx: ItemContext, flow: Flow, row: Row, n: int) -> dict[str, Any]:
        if "_error" in row:
            raise Reject(*row["_error"])
        if "_not_object" in row:
            raise Reject("reading_not_object", f"reading {n} is a {type(row['_not_object']).__name__}, not an object")
        dev = self._device(ctx, flow)
        plan = self._plans.get(flow.id)
        if plan is None:
            plan = self._plans[flow.id] = build_plan(flow, dev, self.bounds)
        epoch, naive, ambiguous = parse_ts(row_field(row, plan.ts_src), flow.ts_format, flow.timezone)
        if ambiguous:
            epoch = self._resolve_ambiguous(ctx, flow, naive, epoch)
        if plan.ts_marks_end and flow.value_kind == "interval":
            epoch -= flow.interval_s
        row["_epoch"] = epoch
        if not (plan.not_before <= epoch < plan.not_after and epoch <= ctx.received_epoch + self.clock_skew_s):
            check_time(flow, dev, epoch, ctx.received_epoch, self.clock_skew_s)   # raises the precise reason
        instant = snap(epoch, flow.interval_s)
        known = self.state.flows.get(flow.id)
        if known is not None and known.watermark is not None and instant < known.watermark - plan.max_late_s:
            raise Reject("too_late", f"reading at {iso_z(instant)} is {known.watermark - instant} s older than flow "
                         f"'{flow.id}''s latest reading ({iso_z(known.watermark)}), more than its maximum lateness of "
                         f"{plan.max_late_s} s (send frequency + derogation + margin, or the flow's max_lateness_s); "
                         "corrections older than that go through the community administrator")
        rd: dict[str, Any] = plan.template.copy()
        rd["supplier_id"] = ctx.supplier_id
        rd["channel"] = ctx.channel
        rd["message_id"] = f"{ctx.message_id}:{n}"
        rd["ingest_ts"] = ctx.ingest_ts
        rd["interpolated"] = instant != epoch
        energy = power = None
        found = False
        if plan.energy_src:
            v = row_field(row, plan.energy_src)
            if v is not None and v != "":
                found = True
                energy = self._energy(v, plan)
        for q, src, fname, factor, unit, label in plan.others:
            v = row_field(row, src)
            if v is None or v == "":
                continue
            found = True
            if factor is None:
                raise Reject("unit_unknown", f"{q} unit '{unit}' of flow '{flow.id}' is not known")
            d = to_decimal(v, label, plan.decimal_comma)
            x = float(d) * factor
            if not math.isfinite(x) or (q == "power" and abs(x) > plan.power_cap_w):
                raise Reject("out_of_range", f"{label} = {v} is beyond what device '{flow.device_id}' can do "
                             f"(rated power x margin = {plan.power_cap_w:g} W)", anomaly="out_of_range",
                             value=x if math.isfinite(x) else None)
            rd[fname] = x
            if q == "power":
                power = d
        if not found:
            wanted = ", ".join(f"'{x}'" for x in (plan.energy_src, *(o[1] for o in plan.others)) if x) or "none"
            raise Reject("missing_value", f"the reading has no value (fields mapped for this flow: {wanted})")
        signature = (energy, rd["power_active_w"], rd["power_reactive_var"], rd["current_a"], rd["voltage_v"],
                     rd["charge_pct"])
        fst = self.state.flow(flow.id)
        self._check_duplicate(ctx, flow, fst, row, instant, signature, rd, plan)
        start, interval_s = instant, (flow.interval_s if flow.value_kind == "interval" else 0)
        if flow.value_kind == "cumulative" and energy is not None:
            start, interval_s, energy = self._delta(ctx, flow, fst, instant, energy, rd)
        elif energy is None and power is not None and flow.value_kind != "cumulative" and flow.interval_s > 0:
            energy = power_to_mwh(power * plan.power_w_factor, flow.interval_s)
            interval_s = flow.interval_s
            rd["estimated"] = True
        if energy is not None and interval_s == 0 and flow.value_kind == "instant":
            interval_s = flow.interval_s
        rd["energy_mwh"] = energy
        rd["ts"] = iso_z(start)
        rd["interval_s"] = interval_s
        if flow.sign_factor != 1:
            apply_sign(rd, flow.sign_factor)
        if energy is not None:
            cap = plan.energy_cap_mwh(interval_s or flow.interval_s)
            if not -cap <= rd["energy_mwh"] <= cap:
                raise Reject("out_of_range", f"energy_mwh = {rd['energy_mwh']} in {interval_s or flow.interval_s} s is "
                             f"beyond what device '{flow.device_id}' can do (rated power x margin = "
                             f"{plan.power_cap_w:g} W, at most {cap} mWh); declare the device's rated_power_w or "
                             "check the unit", anomaly="out_of_range",
                             value=float(rd["energy_mwh"]) if -I64 <= rd["energy_mwh"] < I64 else None)
        if plan.limits or rd["voltage_v"] is not None or rd["charge_pct"] is not None:
            check_limits(rd, flow.limits)
        rd["late"] = ctx.received_epoch > start + interval_s + plan.grace_s
        self._stage(ctx, flow, row, instant, signature, plan)
        self._stuck(ctx, flow, fst, instant, energy if flow.value_kind != "cumulative" else signature[0], plan)
        return rd

    @staticmethod
    def _energy(v: Any, plan: FlowPlan) -> int:
        """Integer mWh: exact integer arithmetic for integers, Decimal half-even otherwise."""
        if plan.energy_factor is None:
            raise Reject("unit_unknown", f"energy unit '{plan.energy_unit}' is not one of mWh, Wh, kWh, MWh")
        if type(v) is int:
            return v * plan.energy_factor
        return energy_to_mwh(to_decimal(v, plan.energy_label, plan.decimal_comma), plan.energy_unit)

    def _resolve_ambiguous(self, ctx: ItemContext, flow: Flow, naive: datetime, first_epoch: int) -> int:
        """Fall-back hour: the second time a wall time appears (in this message, or in another message
        of the flow already holding the first instant) it is the later (standard-time) instant."""
        key = (flow.id, naive)
        taken = ctx.staged_keys.get((flow.id, snap(first_epoch, flow.interval_s)))
        prior = self.state.flow(flow.id).keys.get(snap(first_epoch, flow.interval_s))
        if key in ctx.ambiguous_seen or (taken is None and prior is not None and prior[1] != ctx.message_id):
            return local_to_epoch(naive, zone(flow.timezone), second_occurrence=True)[0]
        ctx.ambiguous_seen.add(key)
        return first_epoch

    def _check_duplicate(self, ctx: ItemContext, flow: Flow, fst: FlowState, row: Row, instant: int,
                         signature: tuple[Any, ...], rd: dict, plan: FlowPlan) -> None:
        src_key = plan.message_id_src
        if src_key:
            sid = row_field(row, src_key)
            if sid is not None and ((flow.id, str(sid)) in ctx.staged_source_ids or str(sid) in fst.source_ids):
                raise Duplicate(f"reading id '{str(sid)[:64]}' of flow '{flow.id}' was already received")
        prev = ctx.staged_keys.get((flow.id, instant)) or fst.keys.get(instant)
        if prev is None:
            return
        if prev[0] == signature:
            raise Duplicate(f"flow '{flow.id}' already has this reading at {iso_z(instant)} with the same values")
        rd["conflict"] = True
        ctx.anomalies.append(anomaly_record(
            "conflict", flow, instant, f"a reading of flow '{flow.id}' at {iso_z(instant)} has values {signature} "
            f"differing from the earlier {prev[0]} (message {prev[1]}); both kept", None, ctx.message_id))

    def _stage(self, ctx: ItemContext, flow: Flow, row: Row, instant: int, signature: tuple[Any, ...],
               plan: FlowPlan) -> None:
        ctx.staged_keys[(flow.id, instant)] = (signature, ctx.message_id)
        src_key = plan.message_id_src
        if src_key and row_field(row, src_key) is not None:
            ctx.staged_source_ids.add((flow.id, str(row_field(row, src_key))))

    def _delta(self, ctx: ItemContext, flow: Flow, fst: FlowState, instant: int, register: int,
               rd: dict) -> tuple[int, int, int | None]:
        """Cumulative register -> energy since the previous register, with rollover and reset."""
        staged = ctx.staged_registers.setdefault(flow.id, {})
        staged[instant] = register
        earlier = [t for t in staged if t < instant]
        prev = fst.register_before(instant)
        if earlier and (prev is None or max(earlier) > prev[0]):
            t = max(earlier)
            prev = (t, staged[t])
        if prev is None:
            return instant, 0, None          # the first register of a flow is the baseline
        prev_ts, prev_reg = prev
        delta = register - prev_reg
        cmax = flow.counter_max_mwh
        if delta < 0:
            if cmax and prev_reg > cmax // 2 and register < cmax // 2:
                delta = register + cmax - prev_reg        # the register wrapped at counter_max_mwh back to 0
            else:
                ctx.anomalies.append(anomaly_record(
                    "counter_reset", flow, instant, f"register of flow '{flow.id}' went from {prev_reg} to {register} "
                    "mWh: meter reset or replaced; energy since the reset assumed to start at 0",
                    float(register), ctx.message_id))
                delta = register
                rd["estimated"] = True
        return prev_ts, instant - prev_ts, delta

    def _stuck(self, ctx: ItemContext, flow: Flow, fst: FlowState, instant: int, value: Any, plan: FlowPlan) -> None:
        """The same non-zero value (or an unchanged register) for N readings in a row."""
        if value is None or (value == 0 and flow.value_kind != "cumulative"):
            fst.stuck_run, fst.stuck_value, fst.stuck_reported = 0, None, False
            return
        if value == fst.stuck_value:
            fst.stuck_run += 1
        else:
            fst.stuck_value, fst.stuck_run, fst.stuck_reported = value, 1, False
        limit = plan.stuck_limit
        if fst.stuck_run >= limit and not fst.stuck_reported:
            fst.stuck_reported = True
            ctx.anomalies.append(anomaly_record(
                "stuck_meter", flow, instant, f"flow '{flow.id}' sent the same value {value} in {limit} readings in a "
                "row: the meter may be stuck", float(value), "run"))

    def _commit(self, ctx: ItemContext, readings: list[tuple[Flow, int, bytes, bytes | dict]]) -> None:
        states: dict[str, FlowState] = {}
        if len(ctx.staged_keys) < MIN_ROWS or not self._commit_keys_bulk(ctx):   # bulk pays off on many keys
            self._commit_keys(ctx, states)
        for flow_id, regs in ctx.staged_registers.items():
            fst = self.state.flow(flow_id)
            for instant, reg in regs.items():
                fst.put_register(instant, reg)
        for flow_id, sid in ctx.staged_source_ids:
            self.state.flow(flow_id).put_source_id(sid)
        now = time.time()
        for flow_id in set(map(_FLOW_ID, map(_FLOW, readings))):
            self.state.flow(flow_id).last_seen = now

    def _commit_keys_bulk(self, ctx: ItemContext) -> bool:
        """One flow's staged keys, none already held: one dict update (what ``put_key`` one by one leaves)."""
        staged = ctx.staged_keys
        fids = set(map(_FLOW, staged))
        if len(fids) != 1:
            return False
        fst = self.state.flow(next(iter(fids)))
        instants = list(map(_INSTANT, staged))
        keys = fst.keys
        if not keys.keys().isdisjoint(instants):
            return False    # a re-put keeps its old place before trimming: the one-by-one rule decides
        keys.update(zip(instants, staged.values()))
        for _ in range(len(keys) - MAX_KEYS_PER_FLOW):
            keys.popitem(last=False)
        top = max(instants)
        if fst.watermark is None or top > fst.watermark:
            fst.watermark = top
        return True

    def _commit_keys(self, ctx: ItemContext, states: dict[str, FlowState]) -> None:
        for (flow_id, instant), (sig, mid) in ctx.staged_keys.items():
            fst = states.get(flow_id)
            if fst is None:
                fst = states[flow_id] = self.state.flow(flow_id)
            fst.put_key(instant, sig, mid)
        for (flow_id, instant) in ctx.staged_keys:
            fst = states.get(flow_id) or self.state.flow(flow_id)
            if fst.watermark is None or instant > fst.watermark:
                fst.watermark = instant

    # -- silence ----------------------------------------------------------------------------
    def silent_flows(self, now: float | None = None) -> Output:
        """Flows that sent before but not within send frequency + derogation (one anomaly per silence)."""
        self._swap_snapshot()
        now = time.time() if now is None else now
        out = Output()
        for flow_id, fst in self.state.flows.items():
            flow = self.snapshot.flows.get(flow_id)
            if flow is None or fst.last_seen is None or not flow.send_frequency_s or not flow.active:
                continue
            allowed = flow.send_frequency_s + flow.derogation_s
            if now - fst.last_seen > allowed and fst.silent_reported != fst.last_seen:
                fst.silent_reported = fst.last_seen
                a = anomaly_record("silent_flow", flow, None, f"flow '{flow.id}' sent nothing for "
                                   f"{int(now - fst.last_seen)} s, more than its send frequency {flow.send_frequency_s} "
                                   f"s + derogation {flow.derogation_s} s", None, fst.last_seen)
                out.anomalies.append((flow.device_id.encode(), orjson.dumps(a)))
        return out

    # -- records ----------------------------------------------------------------------------
    def _base(self, env: dict, item: dict, flow: Flow | None = None) -> dict[str, Any]:
        return {"channel": env["channel"], "community_id": str(env["community_id"])[:128],
                "supplier_id": str(env["supplier_id"])[:128], "message_id": str(item.get("message_id") or "")[:128],
                "device_id": flow.device_id if flow else _str_or_none(item.get("device_id")),
                "flow_id": flow.id if flow else _str_or_none(item.get("flow_id"))}

    def _reject_item(self, out: Output, env: dict, item: dict, rej: Reject, payload: bytes | None = None) -> None:
        if payload is None:
            try:
                payload = base64.b64decode(item.get("payload_b64") or "")
            except (binascii.Error, ValueError, TypeError):
                payload = orjson.dumps(item.get("payload_b64")) if "payload_b64" in item else b""
        base = self._base(env, item)
        source = clean_source(item.get("source"))
        out.deadletters.append(self._dead(base, rej, payload, None, None, source, None))
        out.feedback.append(self._feedback(base, 0, 1, 0, [self._error(None, None, rej)], source))

    def _dead(self, base: dict, rej: Reject, payload: bytes, index: int | None, flow: Flow | None,
              source: dict, whole: bytes | None, extra: dict[str, Any] | None = None) -> tuple[bytes, bytes]:
        rec = {"schema": DEADLETTER_SCHEMA, "reason_code": rej.reason_code, "message": rej.message[:2000],
               "channel": base["channel"], "community_id": base["community_id"], "supplier_id": base["supplier_id"],
               "device_id": base.get("device_id"), "flow_id": base.get("flow_id"), "message_id": base["message_id"],
               "reading_index": index, **capped_payload(payload), "source": source, "rejected_ts": self._now_iso}
        if whole is not None:      # a large item: the rejected readings' own bytes, plus the hash of the whole item
            rec["payload_sha256"] = hashlib.sha256(whole).hexdigest()
            rec["payload_truncated"] = True
        if extra:
            rec.update(extra)
        kept = len(rec["payload_b64"]) * 3 // 4
        if not self.budget.take(base["supplier_id"], kept):
            # over the supplier's byte budget: the record stays (reason, indexes, hash), the bytes go
            rec["payload_sha256"] = rec.get("payload_sha256") or hashlib.sha256(whole or payload).hexdigest()
            rec["payload_b64"], rec["payload_truncated"], rec["payload_rate_limited"] = "", True, True
        return base["supplier_id"].encode(), orjson.dumps(rec)

    @staticmethod
    def _row_bytes(row: Row) -> bytes:
        if "_raw" in row:
            return str(row["_raw"]).encode()
        clean = {k: v for k, v in row.items() if not k.startswith("_")}
        if "_not_object" in row:
            clean = row["_not_object"]
        try:
            return orjson.dumps(clean, default=str)
        except orjson.JSONEncodeError:      # deeper than orjson writes, or integers beyond 64 bits
            return repr(clean)[:MAX_DEADLETTER_PAYLOAD].encode("utf-8", "replace")

    @staticmethod
    def _file_line(ctx: ItemContext, row: Row) -> int | None:
        n = row.get("_line")
        if n is None:
            return None
        start = ctx.source.get("line_start")
        return start + n - 1 if isinstance(start, int) else n

    @staticmethod
    def _error(index: int | None, line: int | None, rej: Reject) -> dict[str, Any]:
        return {"index": index, "line": line, "reason_code": rej.reason_code, "message": rej.message[:2000]}

    def _feedback(self, base: dict, accepted: int, rejected: int, duplicates: int, errors: list[dict],
                  source: dict, status: str | None = None) -> tuple[bytes, bytes]:
        if status is None:
            if accepted and rejected:
                status = "partial"
            elif accepted:
                status = "accepted"
            elif rejected:
                status = "rejected"
            else:
                status = "duplicate"
        batch_id = source.get("batch_id")
        rec = {"schema": FEEDBACK_SCHEMA, "supplier_id": base["supplier_id"], "community_id": base["community_id"],
               "channel": base["channel"], "message_id": base["message_id"], "batch_id": batch_id,
               "status": status, "accepted": accepted, "rejected": rejected, "duplicates": duplicates,
               "errors": errors[:MAX_FEEDBACK_ERRORS], "source": source, "ts": self._now_iso}
        return base["supplier_id"].encode(), orjson.dumps(rec)


class DeadLetterBudget:
    """Per-supplier token bucket of original bytes copied into dead letters.

    A supplier flooding garbage cannot make the dead-letter topic grow faster than its budget:
    beyond it, dead letters still say what was rejected and why (and the bytes' SHA-256), without
    the bytes themselves (``payload_rate_limited``)."""

    def __init__(self, bytes_per_s: int, burst_s: float = DEADLETTER_BURST_S) -> None:
        self.rate = float(bytes_per_s)
        self.capacity = self.rate * burst_s
        self.buckets: dict[str, tuple[float, float]] = {}    # supplier -> (tokens, monotonic time)

    def take(self, supplier: str, size: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, then = self.buckets.get(supplier, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        ok = size <= tokens
        if ok:
            tokens -= size
        if len(self.buckets) > 100_000:
            self.buckets.clear()
        self.buckets[supplier] = (tokens, now)
        return ok


_FLOW, _INSTANT, _KEY, _VALUE, _FLOW_ID = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3), attrgetter("id")


def _str_or_none(v: Any) -> str | None:
    return str(v)[:128] if isinstance(v, str) and v else None
