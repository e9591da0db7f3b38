"""Sign conversion to the seed's Table 13.

Table 13: load absorption +, PV production -, grid exchange + withdrawal / - injection,
storage + charging / - discharging. In words: + means energy flowing INTO the device from
the community's point of view. A flow declares its source convention: ``consumer`` already
means "+ = into the device"; ``generator`` means "+ = out of the device" (an inverter reporting
positive generation, a meter reporting injection as +, a battery reporting discharge as +), so
its values are negated (``Flow.sign_factor`` = -1).
"""

from __future__ import annotations

from typing import Any

SIGNED_FIELDS = ("energy_mwh", "power_active_w", "power_reactive_var")


def apply_sign(reading: dict[str, Any], sign_factor: int) -> dict[str, Any]:
    """Multiply the signed quantities by the flow's factor (in place; returns the reading)."""
    if sign_factor != 1:
        for name in SIGNED_FIELDS:
            v = reading[name]
            if v is not None:
                reading[name] = -v if v else v
    return reading
