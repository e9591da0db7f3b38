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
_SIXTY = {f"{i:02d}": i for i in range(60)}
_MINUTES: dict[str, int | None] = {}
# an unsigned decimal number without exponent: read exactly as integers when the unit's factor leaves no
# fraction of a mWh, which is what the Decimal path computes then (no rounding happens)
_PLAIN_DECIMAL = re.compile(r"([0-9]{1,19})(?:\.([0-9]{0,9}))?")


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
            if got is not None and got < 0:
                got = None          # before 1970: refused by the slow path (parse_ts)
        if len(_DAYS) > 100_000:
            _DAYS.clear()
        _DAYS[day] = got
    return got


def minute_epoch(prefix: str) -> int | None:
    """Epoch of ``YYYY-MM-DDTHH:MM`` (UTC), cached (readings cluster in a few minutes of a few days)."""
    got = _MINUTES.get(prefix, 0)
    if got == 0:
        got = None
        if prefix[10] == "T" and prefix[13] == ":":
            h, m = _SIXTY.get(prefix[11:13]), _SIXTY.get(prefix[14:16])
            day = day_epoch(prefix[:10])
            if h is not None and h < 24 and m is not None and day is not None:
                got = day + h * 3600 + m * 60
        if len(_MINUTES) > 200_000:
            _MINUTES.clear()
        _MINUTES[prefix] = got
    return got


def utc_seconds(value: Any) -> int | None:
    """Epoch seconds of exactly ``YYYY-MM-DDTHH:MM:SSZ``; None for anything else (the slow path decides)."""
    if type(value) is not str or len(value) != 20 or value[19] != "Z" or value[16] != ":":
        return None
    sec = _SIXTY.get(value[17:19])
    if sec is None:
        return None
    base = minute_epoch(value[:16])
    return None if base is None else base + sec


class FastFlow:
    """One flow's fast path (built once per registry snapshot), or ``build`` returns None."""

    __slots__ = ("decimal_scale", "energy_bounds", "energy_src", "factor", "flow", "flow_id", "grace_s",
                 "interval_s", "key", "marks_end", "mid_src", "not_after", "not_before", "other_srcs", "pieces",
                 "plan", "sign", "snap_grid")

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
        cap = plan.energy_cap_mwh(flow.interval_s)      # the device's physical bound (the slow path's check)
        bounds.append((-cap, cap))
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
        self.decimal_scale = decimal_scale(plan.energy_factor)
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


def decimal_scale(factor: int) -> tuple[int, ...]:
    """Multipliers by fraction length for exact text values: ``int(digits) * scale[k]`` is value x factor
    when the text has ``k`` fraction digits and 10^k divides the factor (kWh: up to 6 digits, Wh: 3)."""
    if factor <= 0:
        return ()
    scale, k = [], 0
    while factor % 10 ** k == 0 and k <= 9:
        scale.append(factor // 10 ** k)
        k += 1
    return tuple(scale)


def item_parts(ctx: Any) -> tuple[bytes, bytes, bytes, bytes] | None:
    """(supplier JSON, channel JSON, message id prefix ``"<mid>:``, ingest_ts JSON) of one item; None if
    one cannot be encoded (the full path then meets the same error where it always did)."""
    try:
        return (orjson.dumps(ctx.supplier_id), orjson.dumps(ctx.channel),
                orjson.dumps(ctx.message_id)[:-1] + b":", orjson.dumps(ctx.ingest_ts))
    except TypeError:
        return None


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
        except Exception:  # noqa: BLE001 -- the full path meets the same rejection (or error) in its place
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
    if fst is not None and (instant in fst.keys or (fst.watermark is not None and
                                                    instant < fst.watermark - ff.plan.max_late_s)):
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


def fast_run(proc: Any, ctx: Any, ff: FastFlow, parts: tuple[bytes, bytes, bytes, bytes], rows: list,
             start: int, readings: list, stop: int | None = None) -> int:
    """``fast_reading`` over ``rows[start:stop]`` in one loop (rows of one flow), appending (flow, n, key, bytes)
    to ``readings``; returns the index of the first row that is not clean (``stop`` if none)."""
    plan, flow, fid, key = ff.plan, ff.flow, ff.flow_id, ff.key
    ts_src, energy_src, other_srcs, mid_src = plan.ts_src, ff.energy_src, ff.other_srcs, ff.mid_src
    factor, sign, bounds, iv, grid, marks_end = ff.factor, ff.sign, ff.energy_bounds, ff.interval_s, ff.snap_grid, \
        ff.marks_end
    scale, plain = ff.decimal_scale, _PLAIN_DECIMAL.fullmatch
    stop = len(rows) if stop is None else stop
    received = ctx.received_epoch
    lo_t, hi_t, max_t, late_span = ff.not_before, ff.not_after, received + proc.clock_skew_s, iv + ff.grace_s
    staged, mid, stuck, energy_of = ctx.staged_keys, ctx.message_id, proc._stuck, proc._energy
    fst = proc.state.flows.get(fid)
    known = fst.keys if fst is not None else {}
    # older than the flow's latest accepted reading by more than its lateness: the slow path refuses it
    oldest = fst.watermark - plan.max_late_s if fst is not None and fst.watermark is not None else -_I64
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = ff.pieces
    head = p0 + parts[0] + p1 + parts[1] + p2 + parts[2]
    ingest = b'"' + p4 + parts[3] + p5
    append = readings.append
    minutes, sixty = _MINUTES, _SIXTY
    n = start
    for n in range(start, stop):
        row = rows[n]
        if "_error" in row or "_not_object" in row:
            return n
        ts = row[ts_src] if ts_src in row else row_field(row, ts_src)
        if type(ts) is not str or len(ts) != 20 or ts[19] != "Z" or ts[16] != ":":
            return n
        epoch = minutes.get(ts[:16], 0)          # inlined utc_seconds
        if epoch == 0:
            epoch = minute_epoch(ts[:16])
        sec = sixty.get(ts[17:19])
        if epoch is None or sec is None:
            return n
        epoch += sec
        if marks_end:
            epoch -= iv
        if not (lo_t <= epoch < hi_t and epoch <= max_t):
            return n
        v = row[energy_src] if energy_src in row else row_field(row, energy_src)
        if v is None or v == "":
            return n
        for src in other_srcs:
            o = row_field(row, src)
            if o is not None and o != "":
                return n
        if mid_src and row_field(row, mid_src) is not None:
            return n
        if type(v) is int:
            energy = v * factor
        elif type(v) is str and (m := plain(v)) is not None and len(frac := m[2] or "") < len(scale):
            energy = int(m[1] + frac) * scale[len(frac)]   # text of a file: exact, no Decimal
        else:
            try:
                energy = energy_of(v, plan)
            except Exception:  # noqa: BLE001 -- the full path meets the same rejection (or error) in its place
                return n
        signed = (-energy if energy else energy) if sign else energy
        if not -_I64 <= signed < _I64:
            return n
        for lo, hi in bounds:
            if (lo is not None and signed < lo) or (hi is not None and signed > hi):
                return n
        if grid:
            rem = epoch % iv
            instant = epoch - rem + (iv if rem * 2 > iv else 0)
        else:
            instant = epoch
        if (fid, instant) in staged or instant in known or instant < oldest:
            return n
        if fst is None:
            fst = proc.state.flow(fid)
            known = fst.keys
        row["_epoch"] = epoch
        staged[(fid, instant)] = ((energy, None, None, None, None, None), mid)
        stuck(ctx, flow, fst, instant, energy, plan)
        # the canonical form of an on-grid UTC timestamp is the source text itself (years 1000-9999)
        ts_b = ts.encode() if instant == epoch >= 0 and not marks_end and ts[0] != "0" else iso_z(instant).encode()
        append((flow, n, key, b"".join((head, str(n).encode(), b'"', p3, b'"', ts_b, ingest, str(signed).encode(),
                                          p6, _FALSE if instant == epoch else _TRUE, p7,
                                          _TRUE if received > instant + late_span else _FALSE, p8))))
    return stop
