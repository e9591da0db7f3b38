"""Chain 2 JSON: what in-home devices read from the Italian 2G meter (CEI TS 13-82...90) and push.

One message (or an array of them, or ``{"messages": [...]}`` after a power cut: a catch-up burst)::

    {"pod": "IT001E00000001", "device_id": "C2-0001", "ts": 1774861207,
     "1-0:1.8.0": 12345678, "1-0:2.8.0": 2345, "1-0:1.7.0": 850, "1-0:2.7.0": 0,
     "qh": {"last":     {"end": 1774861200, "1-0:1.8.0": 12345600, "1-0:2.8.0": 2345},
            "previous": {"end": 1774860300, "1-0:1.8.0": 12345400, "1-0:2.8.0": 2345}}}

1-0:1.8.0 / 1-0:2.8.0 are the cumulative active-energy registers withdrawn / injected (Wh, both
positive totals); 1-0:1.7.0 / 1-0:2.7.0 the instantaneous powers (W); ``qh`` the meter's
quarter-hour profile: the registers at the end of the last and previous quarter-hours. The OBIS
keys may also sit in a ``data`` object. ``docs/formats.md`` and ``schemas/formats/chain2.json``.

Rows: per profile entry and direction, the register at the quarter-hour end (``ts`` = end), routed
to the point's withdrawal or injection flow (a cumulative flow: energy = register difference, with
rollover and meter-replacement handling in the pipeline). The same quarter-hour reported again as
``previous`` has the same register and is dropped as a duplicate. A message without a profile
gives its live registers at ``ts`` (the injection register dated ``production_lag_s``, default
60 s, earlier: devices update production about a minute before the export) with the powers.
Time stamp 0 (a device whose clock is unset): a profile entry without ``end`` takes its slot from
``ts``; with neither, the sample is rejected (``ts_unset``), never dated 1970. Rows are ordered by
time so a burst sent newest first is differenced in order.
"""

from __future__ import annotations

from typing import Any

import orjson

from lec.records import duplicate_json_key
from streams.errors import Reject
from streams.formats import Row
from streams.formats.common import QH, bounded, directions_of, epoch_of, error_row, iso_z

REGISTER = {"withdrawal": "1-0:1.8.0", "injection": "1-0:2.8.0"}
POWER = {"withdrawal": "1-0:1.7.0", "injection": "1-0:2.7.0"}
PROFILE_SLOTS = ("previous", "last")        # older first
MAX_MESSAGES = 10_000


def parse_chain2(payload: bytes, options: dict[str, Any], header: str | None = None) -> list[Row]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Reject("json_invalid", f"the Chain 2 payload is not valid JSON: {str(exc)[:200]}") from None
    if (key := duplicate_json_key(payload, doc)) is not None:  # a reader keeping the first value would disagree
        raise Reject("json_invalid", f"the key '{key[:60]}' appears twice in one JSON object of the Chain 2 payload")
    if isinstance(doc, dict) and isinstance(doc.get("messages"), list):
        doc = doc["messages"]
    messages = doc if isinstance(doc, list) else [doc]
    if not messages:
        raise Reject("no_readings", "the Chain 2 burst holds no messages")
    if len(messages) > MAX_MESSAGES:
        raise Reject("too_many_readings", f"the Chain 2 burst holds {len(messages)} messages, more than "
                     f"{MAX_MESSAGES}")
    directions = directions_of(options)
    lag = options.get("production_lag_s", 60)
    lag = lag if type(lag) is int and 0 <= lag < QH else 60
    rows: list[Row] = []
    for i, msg in enumerate(messages):
        rows.extend(_message_rows(msg, i, directions, lag))
        bounded(len(rows))
    # by time, withdrawal before injection; dated rows first keep their order among errors
    rows.sort(key=lambda r: (r.get("ts") or "", r.get("direction") or ""))
    return rows


def _message_rows(msg: Any, i: int, directions: tuple[str, ...], lag: int) -> list[Row]:
    where = f"message {i}"
    if not isinstance(msg, dict):
        return [error_row("chain2_shape", f"{where} is a {type(msg).__name__}, not a Chain 2 object")]
    data = msg.get("data") if isinstance(msg.get("data"), dict) else {}
    obis = {**msg, **data}
    pod = msg.get("pod")
    if not isinstance(pod, str) or not pod.strip() or len(pod) > 128:
        return [error_row("missing_field", f"{where} has no 'pod' (the meter's point of delivery)")]
    pod = pod.strip()
    device = msg.get("device_id")
    sent = epoch_of(msg.get("ts"))
    qh = msg.get("qh")
    rows: list[Row] = []
    if qh is not None:
        if not isinstance(qh, dict):
            return [error_row("chain2_shape", f"{where}: 'qh' must be an object with 'last' and/or 'previous'")]
        for slot in PROFILE_SLOTS:
            entry = qh.get(slot)
            if entry is None:
                continue
            if not isinstance(entry, dict):
                rows.append(error_row("chain2_shape", f"{where}: qh.{slot} is not an object", device=pod))
                continue
            end = epoch_of(entry.get("end"))
            if end is None and entry.get("end") not in (None, 0, "0"):
                rows.append(error_row("ts_invalid", f"{where}: qh.{slot}.end {str(entry.get('end'))[:40]!r} is not "
                                      "a time stamp (epoch seconds or ISO-8601 with zone)", device=pod))
                continue
            if end is None and sent is not None:
                # the profile's own slot: 'last' ends at the quarter-hour the message was sent in
                end = sent - sent % QH - (QH if slot == "previous" else 0)
            if end is None:
                rows.append(error_row("ts_unset", f"{where}: qh.{slot} has no end time and the message's time stamp "
                                      f"is {msg.get('ts')!r} (the device clock is not set): the quarter-hour cannot "
                                      "be dated; set the device clock", device=pod))
                continue
            if end % QH:
                rows.append(error_row("ts_invalid", f"{where}: qh.{slot}.end {iso_z(end)} is not a quarter-hour "
                                      "boundary", device=pod))
                continue
            for d in directions:
                if REGISTER[d] in entry:
                    rows.append(_row(pod, d, end, entry[REGISTER[d]], None, device))
        if not rows and not any(REGISTER[d] in e for e in qh.values() if isinstance(e, dict) for d in directions):
            rows.append(error_row("missing_value", f"{where}: the quarter-hour profile holds no register "
                                  f"({', '.join(REGISTER[d] for d in directions)})", device=pod))
        return rows
    present = [d for d in directions if REGISTER[d] in obis]
    if not present:
        return [error_row("missing_value", f"{where} holds neither a quarter-hour profile ('qh') nor a register "
                          f"({', '.join(REGISTER[d] for d in directions)})", device=pod)]
    if sent is None:
        return [error_row("ts_unset", f"{where}: time stamp {str(msg.get('ts'))[:40]!r} is unset or invalid (a "
                          "device with its clock not set sends 0) and there is no quarter-hour profile to date "
                          "the registers; the sample is refused, never dated 1970", device=pod)]
    for d in present:
        at = sent - lag if d == "injection" else sent
        rows.append(_row(pod, d, at, obis[REGISTER[d]], obis.get(POWER[d]), device))
    return rows


def _row(pod: str, direction: str, epoch: int, register: Any, power: Any, device: Any) -> Row:
    row: Row = {"ts": iso_z(epoch), "energy": register, "device": pod, "direction": direction,
                "_route": (pod, direction)}
    if power is not None:
        row["power"] = power
    if isinstance(device, str):
        row["chain2_device"] = device[:128]
    return row
