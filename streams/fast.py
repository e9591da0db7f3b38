"""The fast path for clean readings: same output bytes as ``Processor._reading`` + ``orjson.dumps``, less work.

A reading takes the fast path only when nothing about it needs a rule beyond the plain case:
an ISO ``YYYY-MM-DDTHH:MM:SSZ`` timestamp (UTC, so never ambiguous), inside the flow's and
device's windows and the clock skew; an energy value (no other quantity, no supplier reading id);
an interval or instant flow (not cumulative); energy inside the flow's limits; no earlier reading
of the flow at that instant (no duplicate, no conflict). Anything else, row by row, returns
``None`` and the caller runs the full per-reading path, so every rule (dead letters, feedback,
duplicates, conflicts, anomalies) holds exactly as before. Nothing is changed before a row is
known to be clean.

Per flow, the reading's JSON is prebuilt once: ``orjson.dumps`` of the flow's template with
sentinels where the per-reading values go, split into byte pieces; a reading is the pieces joined
with its values (the same bytes ``orjson.dumps`` writes for the whole dict; tested).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from streams.errors import Reject
from streams.normalise import iso_z
from streams.parse import field as row_field
from streams.validate import LIMIT_FIELDS

if TYPE_CHECKING:
    from lec.registry.snapshot import Flow
    from streams.plan import FlowPlan

VALUE_FIELDS = frozenset(LIMIT_FIELDS.values())
# fields that vary per reading (or per item), in the template's order
_VARYING = ("supplier_id", "channel", "message_id", "ts", "ingest_ts", "energy_mwh", "interpolated", "late")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}\Z", re.ASCII)
_DAYS: dict[str, int | None] = {}
_TRUE, _FALSE = b"true", b"false"
_I64 = 2 ** 63


def day_epoch(day: str) -> int | None:
    """Epoch of ``YYYY-MM-DD`` 00:00Z exactly as ``datetime.fromisoformat`` reads it (None if invalid)."""
    got = _DAYS.get(day, 0)
    if got == 0:
        got = None
        if _DAY.match(day):
            try:
                got = int(datetime.fromisoformat(day + "T00:00:00Z").timestamp())
            except ValueError:
                got = None
        if len(_DAYS) > 100_000:
            _DAYS.clear()
        _DAYS[day] = got
    return got


def utc_seconds(value: Any) -> int | None:
    """Epoch seconds of exactly ``YYYY-MM-DDTHH:MM:SSZ``; None for anything else (the slow path decides)."""
    if type(value) is not str or len(value) != 20 or value[19] != "Z" or value[10] != "T" \
            or value[13] != ":" or value[16] != ":":
        return None
    hms = value[11:13] + value[14:16] + value[17:19]
    if not (hms.isascii() and hms.isdigit()):
        return None
    h, m, s = int(hms[0:2]), int(hms[2:4]), int(hms[4:6])
    if h > 23 or m > 59 or s > 59:
        return None
    day = day_epoch(value[:10])
    if day is None:
        return None
    return day + h * 3600 + m * 60 + s


class FastFlow:
    """One flow's fast path (built once per registry snapshot), or ``build`` returns None."""

    __slots__ = ("energy_bounds", "energy_src", "factor", "flow", "flow_id", "grace_s", "interval_s", "key",
                 "marks_end", "mid_src", "not_after", "not_before", "other_srcs", "pieces", "plan", "sign",
                 "snap_grid")

    @classmethod
    def build(cls, flow: Flow, plan: FlowPlan) -> FastFlow | None:
        if flow.value_kind not in ("interval", "instant") or flow.ts_format != "iso" or not plan.energy_src \
                or plan.energy_factor is None:
            return None
        bounds = []
        for key, b in flow.limits.items():
            if LIMIT_FIELDS.get(key, key) not in VALUE_FIELDS:
                return None
            if not isinstance(b, (list, tuple)) or len(b) != 2:
                continue
            if any(x is not None and type(x) not in (int, float, bool) for x in b):
                return None
            if LIMIT_FIELDS.get(key, key) == "energy_mwh":
                bounds.append((b[0], b[1]))
        proto = dict(plan.template)
        for name in _VARYING:
            proto[name] = f"\x01{name}\x01"
        proto["interval_s"] = flow.interval_s
        raw = orjson.dumps(proto)
        pieces, pos = [], 0
        for name in _VARYING:
            mark = orjson.dumps(f"\x01{name}\x01")
            at = raw.find(mark, pos)
            if at < 0 or raw.count(mark) != 1:
                return None
            pieces.append(raw[pos:at])
            pos = at + len(mark)
        pieces.append(raw[pos:])
        self = cls()
        self.flow, self.plan, self.flow_id = flow, plan, flow.id
        self.energy_src, self.factor = plan.energy_src, plan.energy_factor
        self.other_srcs = tuple(o[1] for o in plan.others)
        self.mid_src = plan.message_id_src
        self.not_before, self.not_after = plan.not_before, plan.not_after
        self.marks_end = plan.ts_marks_end and flow.value_kind == "interval"
        self.interval_s = flow.interval_s
        self.snap_grid = 0 < flow.interval_s <= 3600 and not 3600 % flow.interval_s
        self.grace_s = plan.grace_s
        self.sign = flow.sign_factor != 1
        self.energy_bounds = tuple(bounds)
        self.pieces = tuple(pieces)
        self.key = flow.device_id.encode()
        return self


def item_parts(ctx: Any) -> tuple[bytes, bytes, bytes, bytes]:
    """(supplier JSON, channel JSON, message id prefix ``"<mid>:``, ingest_ts JSON) of one item."""
    return (orjson.dumps(ctx.supplier_id), orjson.dumps(ctx.channel), orjson.dumps(ctx.message_id)[:-1] + b":",
            orjson.dumps(ctx.ingest_ts))


def fast_reading(proc: Any, ctx: Any, ff: FastFlow, parts: tuple[bytes, bytes, bytes, bytes], row: dict,
                 n: int) -> bytes | None:
    """The encoded reading of a clean row (state updated as the slow path would), else None (nothing changed)."""
    if "_error" in row or "_not_object" in row:
        return None
    epoch = utc_seconds(row_field(row, ff.plan.ts_src))
    if epoch is None:
        return None
    if ff.marks_end:
        epoch -= ff.interval_s
    if not (ff.not_before <= epoch < ff.not_after and epoch <= ctx.received_epoch + proc.clock_skew_s):
        return None
    v = row_field(row, ff.energy_src)
    if v is None or v == "":
        return None
    for src in ff.other_srcs:
        o = row_field(row, src)
        if o is not None and o != "":
            return None
    if ff.mid_src and row_field(row, ff.mid_src) is not None:
        return None
    if type(v) is int:
        energy = v * ff.factor
    else:
        try:
            energy = proc._energy(v, ff.plan)
        except Exception:      # the slow path gives the same rejection (or the same error)
            return None
    signed = (-energy if energy else energy) if ff.sign else energy
    if not -_I64 <= signed < _I64:
        return None           # orjson refuses it: the slow path keeps its behaviour
    for lo, hi in ff.energy_bounds:
        if (lo is not None and signed < lo) or (hi is not None and signed > hi):
            return None
    iv = ff.interval_s
    if ff.snap_grid:
        rem = epoch % iv
        instant = epoch - rem + (iv if rem * 2 > iv else 0)
    else:
        instant = epoch
    fid = ff.flow_id
    if (fid, instant) in ctx.staged_keys:
        return None
    fst = proc.state.flows.get(fid)
    if fst is not None and instant in fst.keys:
        return None
    # clean: from here on, the same state changes as the slow path
    if fst is None:
        fst = proc.state.flow(fid)
    row["_epoch"] = epoch
    signature = (energy, None, None, None, None, None)
    ctx.staged_keys[(fid, instant)] = (signature, ctx.message_id)
    proc._stuck(ctx, ff.flow, fst, instant, energy, ff.plan)
    p = ff.pieces
    return b"".join((p[0], parts[0], p[1], parts[1], p[2], parts[2], str(n).encode(), b'"', p[3], b'"',
                     iso_z(instant).encode(), b'"', p[4], parts[3], p[5], str(signed).encode(), p[6],
                     _FALSE if instant == epoch else _TRUE, p[7],
                     _TRUE if ctx.received_epoch > instant + iv + ff.grace_s else _FALSE, p[8]))
