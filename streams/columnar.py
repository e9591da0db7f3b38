"""The columnar path: a JSON batch item's clean readings as Arrow columns, no per-reading Python.

An item of one flow whose payload is ``{"<readings key>": [{<ts>: "...", <energy>: <int>}, ...]}``
(one line, only the mapped fields) is decoded once by Arrow's JSON reader against an explicit
schema, so anything else (another field, a string or float value, a nested object, a duplicate
key, an escape sequence, several JSON values) makes the reader refuse it and the item takes the
row path (streams/fast.py, then the precise path) unchanged. On the decoded columns the fast
path's checks run vectorised: exact canonical UTC timestamp (parse then format back, byte equal),
the flow's and device's windows and the clock skew, energy present, unit conversion and sign
without overflow, the flow's energy limits and the device's physical bound, snapping to the grid,
repeats inside the item, earlier readings of the flow and lateness. The first row failing any of
them ends the columnar prefix: it and the rows after it go through the row path in order, so
every rule (reasons, duplicates, conflicts, anomalies) applies exactly as before; the state
changes of the prefix are those the row path would have made (stuck-meter runs included).

Why Arrow and not Polars: pyarrow is already a dependency (the lake sink is built on it) and its
JSON reader decoded these payloads 2.6x faster than orjson into dicts (docs/benchmarks.md);
Polars is not installed, and its JSON reader is not needed for anything else.

The reading's JSON is written by Arrow's string kernels from the flow's prebuilt byte pieces
(``FastFlow.pieces``): the same bytes as ``orjson.dumps`` of the reading dict (tested).
"""

from __future__ import annotations

import io
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from streams.parse import MAX_ROWS_PER_ITEM

if TYPE_CHECKING:
    from streams.fast import FastFlow

MIN_ROWS = 32          # below this the row path is as fast (Arrow's per-call cost is ~50 us)
_ISO = "%Y-%m-%dT%H:%M:%SZ"
_I64 = 2 ** 63
_F53 = 2 ** 53         # an int64 compared with a float bound is exact only below this
_SCHEMAS: dict[tuple[str, str, str], tuple[pj.ParseOptions, str]] = {}


def _options(key: str, ts_src: str, energy_src: str) -> pj.ParseOptions:
    got = _SCHEMAS.get((key, ts_src, energy_src))
    if got is None:
        row = pa.struct([(ts_src, pa.string()), (energy_src, pa.int64())])
        opts = pj.ParseOptions(explicit_schema=pa.schema([(key, pa.list_(row))]), unexpected_field_behavior="error",
                               newlines_in_values=False)
        got = _SCHEMAS[(key, ts_src, energy_src)] = (opts, key)
    return got[0]


def decode(payload: bytes, key: str, ts_src: str, energy_src: str, min_rows: int) -> tuple[np.ndarray, pa.Array,
                                                                                         np.ndarray] | None:
    """(ts as Arrow strings, energy as int64 with nulls as a mask) of a plain batch payload, or None.

    None whenever the payload is not exactly the plain shape: the row path then parses it as always."""
    if payload[:1] != b"{" or b"\n" in payload or b"\r" in payload or b"\\" in payload:
        return None
    try:
        table = pj.read_json(io.BytesIO(payload), read_options=pj.ReadOptions(use_threads=False,
                                                                             block_size=len(payload) + 64),
                             parse_options=_options(key, ts_src, energy_src))
    except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
        return None
    if table.num_rows != 1:
        return None
    lists = table.column(0).chunk(0) if table.column(0).num_chunks == 1 else table.column(0).combine_chunks()
    if lists.null_count or not min_rows <= len(lists.values) <= MAX_ROWS_PER_ITEM:
        return None
    rows = lists.flatten()
    if rows.null_count:
        return None
    return rows.field(0), rows.field(1)


_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord("T"), 13: ord(":"), 16: ord(":"), 19: ord("Z")}
_DIGITS = [i for i in range(19) if i not in _SEPARATORS]
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def utc_epochs(ts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, not-canonical mask) of ``YYYY-MM-DDTHH:MM:SSZ`` strings, from their bytes.

    Accepts exactly what ``fast.utc_seconds`` accepts (ASCII digits, a real calendar day, hours
    00-23, minutes and seconds 00-59, year >= 1970): such a string is also the canonical text of
    its instant. Arrow's strptime is lenient (2023-02-29 becomes March 1st) and its strftime
    costs ~1.7 us per value here, so the check and the day count (proleptic Gregorian, as
    ``datetime``) are numpy on the string bytes."""
    n = len(ts)
    offsets = np.frombuffer(ts.buffers()[1], dtype=np.int32)[ts.offset:ts.offset + n + 1]
    bad = np.diff(offsets) != 20
    if ts.null_count:
        bad |= ~np.asarray(pc.is_valid(ts), dtype=bool)
    data = ts.buffers()[2]
    if data is None or len(data) == 0:
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    raw = np.frombuffer(data, dtype=np.uint8)
    b = raw[np.minimum(offsets[:-1, None] + np.arange(20), len(raw) - 1)]
    for pos, ch in _SEPARATORS.items():
        bad |= b[:, pos] != ch
    d = b[:, _DIGITS].astype(np.int64) - 48
    bad |= ((d < 0) | (d > 9)).any(axis=1)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    hh, mm, ss = d[:, 8] * 10 + d[:, 9], d[:, 10] * 10 + d[:, 11], d[:, 12] * 10 + d[:, 13]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    mdays = _MONTH_DAYS[np.clip(month - 1, 0, 11)] + ((month == 2) & leap)
    bad |= (month < 1) | (month > 12) | (day < 1) | (day > mdays) | (hh > 23) | (mm > 59) | (ss > 59) | (year < 1970)
    y = year - (month <= 2)                     # days from civil (H. Hinnant's algorithm)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    epoch = days * 86400 + hh * 3600 + mm * 60 + ss
    epoch[bad] = 0
    return epoch, bad


def _first(mask: np.ndarray, n: int) -> int:
    """Index of the first True in ``mask`` (``n`` if none)."""
    hit = np.flatnonzero(mask)
    return int(hit[0]) if len(hit) else n


def columnar_prefix(proc: Any, ctx: Any, ff: FastFlow, parts: tuple[bytes, bytes, bytes, bytes], payload: bytes,
                    key: str, min_rows: int = MIN_ROWS) -> tuple[list[tuple[Any, int, bytes, bytes]], int] | None:
    """(readings of the clean prefix as (flow, index, key, bytes), number of rows in the item), or None
    when the payload is not for this path (nothing changed then). Rows from the prefix's length on are
    the row path's."""
    plan = ff.plan
    srcs = (plan.ts_src, ff.energy_src)
    if "." in plan.ts_src or "." in ff.energy_src or plan.ts_src == ff.energy_src or ff.mid_src in srcs \
            or any(o in srcs for o in ff.other_srcs):
        return None            # a field read twice or nested: the row path knows what it means
    got = decode(payload, key, plan.ts_src, ff.energy_src, min_rows)
    if got is None:
        return None
    ts, energy_col = got
    n = len(ts)
    epoch, bad = utc_epochs(ts)
    if ff.marks_end:
        epoch = epoch - ff.interval_s
    received = ctx.received_epoch
    bad |= ~((ff.not_before <= epoch) & (epoch < ff.not_after) & (epoch <= received + proc.clock_skew_s))
    bad |= (epoch < 0)
    # energy: present, converted and signed without leaving int64, inside every bound
    bad |= ~np.asarray(pc.is_valid(energy_col), dtype=bool)
    raw = np.asarray(pc.fill_null(energy_col, 0), dtype=np.int64)
    limit = (_I64 - 1) // ff.factor
    bad |= (raw > limit) | (raw < -limit)
    raw = np.where(bad, 0, raw)
    energy = raw * ff.factor
    signed = -energy if ff.sign else energy
    for lo, hi in ff.energy_bounds:
        for bound, below in ((lo, True), (hi, False)):
            if bound is None:
                continue
            b = int(bound) if type(bound) is bool else bound
            bad |= (signed < b) if below else (signed > b)
            if type(b) is float:       # numpy compares as float64: exact only for |x| < 2**53
                bad |= np.abs(signed) >= _F53
    # the grid instant, and what the flow already holds
    iv = ff.interval_s
    if ff.snap_grid:
        rem = epoch % iv
        instant = epoch - rem + np.where(rem * 2 > iv, iv, 0)
    else:
        instant = epoch.copy()
    fid = ff.flow_id
    fst = proc.state.flows.get(fid)
    k = _first(bad, n)
    if k:
        order = np.argsort(instant[:k], kind="stable")
        s = instant[:k][order]
        rep = np.zeros(k, dtype=bool)
        rep[order[1:][s[1:] == s[:-1]]] = True      # a later row at an instant already taken in the item
        k = _first(rep, k)
    if k and fst is not None:
        if fst.watermark is not None:
            k = _first(instant[:k] < fst.watermark - plan.max_late_s, k)
        if k and fst.keys:
            inst_list = instant[:k].tolist()
            held = fst.keys.keys() & set(inst_list)
            if held:
                k = _first(np.isin(instant[:k], np.fromiter(held, np.int64, len(held))), k)
    if k == 0:
        return [], n
    # clean prefix [0, k): the row path's state changes, then the readings' bytes
    values = _encode(ff, parts, ts, epoch[:k], instant[:k], signed[:k], received, k)   # what can fail, first
    if fst is None:
        fst = proc.state.flow(fid)
    inst, e_list = instant[:k].tolist(), energy[:k].tolist()
    none = repeat(None)
    ctx.staged_keys.update(zip(zip(repeat(fid), inst), zip(zip(e_list, none, none, none, none, none),
                                                                repeat(ctx.message_id))))
    _stuck_run(proc, ctx, ff, fst, inst, e_list, energy[:k])
    return list(zip(repeat(ff.flow), range(k), repeat(ff.key), values)), n


def _stuck_run(proc: Any, ctx: Any, ff: FastFlow, fst: Any, inst: list[int], e_list: list[int],
               energy: np.ndarray) -> None:
    """The stuck-meter state after the prefix, as ``Processor._stuck`` row by row would leave it.

    Vectorised when no run of equal non-zero values reaches the limit (no anomaly possible);
    otherwise the row rule itself runs over the prefix (a stuck meter is rare)."""
    k = len(e_list)
    limit = ff.plan.stuck_limit
    change = np.empty(k, dtype=bool)
    change[0] = True
    change[1:] = energy[1:] != energy[:-1]
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, k))
    carry = fst.stuck_value is not None and e_list[0] != 0 and e_list[0] == fst.stuck_value
    first_len = int(lengths[0]) + (fst.stuck_run if carry else 0)
    longest = max(first_len, int(lengths.max()))
    if longest >= limit:
        for t, v in zip(inst, e_list):
            proc._stuck(ctx, ff.flow, fst, t, v, ff.plan)
        return
    last = e_list[-1]
    if last == 0:
        fst.stuck_run, fst.stuck_value, fst.stuck_reported = 0, None, False
    elif len(starts) == 1 and carry:
        fst.stuck_run = first_len          # the carried run goes on; reported stays as it was
    else:
        fst.stuck_value, fst.stuck_run, fst.stuck_reported = last, int(lengths[-1]), False


def _text(ints: pa.Array) -> pa.Array:
    """Decimal text of int64s as binary (what ``str(int)`` writes)."""
    return pc.cast(pc.cast(ints, pa.string()), pa.binary())


def _encode(ff: FastFlow, parts: tuple[bytes, bytes, bytes, bytes], ts: pa.Array, epoch: np.ndarray,
            instant: np.ndarray, signed: np.ndarray, received: float, k: int) -> list[bytes]:
    """The readings' JSON bytes, joined by Arrow from the flow's pieces (see streams/fast.py)."""
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = ff.pieces
    head = pa.scalar(p0 + parts[0] + p1 + parts[1] + p2 + parts[2], pa.binary())
    ingest = pa.scalar(b'"' + p4 + parts[3] + p5, pa.binary())
    on_grid = instant == epoch
    if not ff.marks_end and on_grid.all():
        ts_text = pc.cast(ts.slice(0, k), pa.binary())    # already checked canonical: the source text is the ts
    else:
        ts_text = pc.cast(pc.strftime(pa.array(instant, pa.int64()).cast(pa.timestamp("s")), format=_ISO),
                          pa.binary())
    late = received > instant + (ff.interval_s + ff.grace_s)
    joined = pc.binary_join_element_wise(
        head, _text(pa.array(np.arange(k, dtype=np.int64))), pa.scalar(b'"' + p3 + b'"', pa.binary()),
        ts_text, ingest, _text(pa.array(signed)), pa.scalar(p6, pa.binary()),
        pc.if_else(pa.array(on_grid), pa.scalar(b"false", pa.binary()), pa.scalar(b"true", pa.binary())),
        pa.scalar(p7, pa.binary()),
        pc.if_else(pa.array(late), pa.scalar(b"true", pa.binary()), pa.scalar(b"false", pa.binary())),
        pa.scalar(p8, pa.binary()), pa.scalar(b"", pa.binary()))
    return joined.to_pylist()
