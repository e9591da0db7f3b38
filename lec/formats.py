"""The flow settings each named format implies (filled in by the registry when a flow leaves them out).

A community administrator picks a format by name; the mapping, units, value kind and time format
are then the format's, so they cannot drift from what its parser emits. Declaring a different
value is an error that names the expected one.
"""

from __future__ import annotations

from typing import Any

_CURVE = {"value_kind": "interval", "interval_s": 900, "ts_format": "iso", "timezone": "UTC",
          "mapping": {"ts": "ts", "energy": "energy"}, "units": {"energy": "kWh"}}
FLOW_DEFAULTS: dict[str, dict[str, Any]] = {
    "chain2": {"value_kind": "cumulative", "interval_s": 900, "ts_format": "iso", "timezone": "UTC",
               "mapping": {"ts": "ts", "energy": "energy", "power": "power"}, "units": {"energy": "Wh", "power": "W"}},
    "dso-curve-csv": _CURVE,
    "dso-curve-xml": _CURVE,
}
# a curve may be sent in Wh or MWh instead of kWh; everything else is fixed by the format
FREE = {("units", "energy")}


def format_problems(syntax: str, declared: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each declared setting that contradicts the format ``syntax``."""
    spec = FLOW_DEFAULTS.get(syntax)
    if spec is None:
        return []
    problems = []
    for name, expected in spec.items():
        if name not in declared:
            continue
        got = declared[name]
        if isinstance(expected, dict):
            wrong = {k: v for k, v in (got or {}).items() if (name, k) not in FREE and expected.get(k) != v}
            if wrong:
                problems.append((name, f"syntax {syntax} fixes {name} to {expected}; remove {wrong} (or the whole "
                                 f"'{name}')"))
        elif got != expected:
            problems.append((name, f"syntax {syntax} fixes {name} to {expected!r}, not {got!r}; remove it"))
    return problems


def completed(syntax: str, declared: dict[str, Any]) -> dict[str, Any]:
    """The settings with the format's defaults filled in (declared free units win)."""
    spec = FLOW_DEFAULTS.get(syntax)
    if spec is None:
        return {}
    out: dict[str, Any] = {}
    for name, expected in spec.items():
        if isinstance(expected, dict):
            out[name] = {**expected, **(declared.get(name) or {})}
        else:
            out[name] = expected
    return out
