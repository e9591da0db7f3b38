"""Which flow a named-format row goes to: the point's flow of that syntax for that direction.

Both Chain 2 registers and both curve series are positive totals. Table 13 wants withdrawal +
and injection -, so the withdrawal flow declares ``sign_convention: consumer`` and the injection
flow ``sign_convention: generator`` (its values are negated): the sign convention *is* the
direction, and one point has at most one flow per syntax and direction (the registry checks it).
"""

from __future__ import annotations

from typing import Any

from lec.registry.snapshot import Flow
from streams.errors import Reject
from streams.formats import Row

# formats whose every message comes from one meter: its POD must be the item's device
ONE_POINT_PER_MESSAGE = frozenset({"chain2"})


def direction_of(flow: Flow) -> str:
    return "injection" if flow.sign_factor == -1 else "withdrawal"


def route_flow(proc: Any, ctx: Any, row: Row, syntax: str) -> Flow:
    """The flow of ``row['_route']`` among the sending supplier's flows on the item's channel."""
    pod, direction = row["_route"]
    item_device = ctx.item.get("device_id")
    if syntax in ONE_POINT_PER_MESSAGE and item_device and pod != item_device:
        raise Reject("flow_device_mismatch", f"the message is for POD '{pod[:64]}' but was sent for device "
                     f"'{str(item_device)[:64]}'; send each meter's messages on its own device's topic")
    index = _index(proc, ctx, syntax)
    flow = index.get((pod, direction))
    if flow is not None:
        return flow
    if not any(k[0] == pod for k in index):
        proc._unknown_device(ctx, pod)          # raises the precise reason (unknown / not yours / no flow)
    want = "generator" if direction == "injection" else "consumer"
    raise Reject("no_flow", f"point '{pod}' has no {syntax} flow for {direction} on channel '{ctx.channel}' (the "
                 f"{direction} flow declares sign_convention: {want}); register it, or restrict the flow with "
                 "syntax_options.directions")


def _index(proc: Any, ctx: Any, syntax: str) -> dict[tuple[str, str], Flow]:
    """(pod, direction) -> flow for one supplier/community/channel/syntax, built once per snapshot."""
    cache = proc.__dict__.get("_format_routes")
    if cache is None or cache[0] is not proc.snapshot:
        cache = proc._format_routes = (proc.snapshot, {})
    key = (ctx.supplier_id, ctx.community_id, ctx.channel, syntax)
    index = cache[1].get(key)
    if index is None:
        index = {}
        for f in proc._candidate_flows(ctx):
            if f.syntax == syntax:
                index.setdefault((f.device_id, direction_of(f)), f)
        # also the supplier's devices without a flow of this syntax, so unknown PODs get the precise reason
        for f in proc._candidate_flows(ctx):
            index.setdefault((f.device_id, "_any"), f)
        cache[1][key] = index
    return index
