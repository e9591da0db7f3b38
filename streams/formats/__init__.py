"""Named supplier formats (``syntax: chain2 | dso-curve-csv | dso-curve-xml``), beside generic json/csv/xml.

Each parser turns one item's bytes into the same rows the generic parsers produce (source field ->
value), already in the shape the pipeline's mapping expects: ``ts`` (UTC ISO ``Z``), ``energy``
(a register or an interval value, as a number or a decimal-point string) and, for Chain 2 live
samples, ``power``. A row also names its metering point and direction in ``_route`` =
``(pod, "withdrawal" | "injection")``: the worker sends it to that point's flow of the same syntax
whose sign convention matches the direction (``route.route_flow``), so withdrawal and injection are
kept apart, never netted, and then validated, unit-converted, sign-converted (Table 13),
deduplicated and register-differenced exactly like any other reading. A row the parser cannot
turn into a reading carries ``_error = (reason_code, message)`` and becomes a dead letter.

``spec.FLOW_DEFAULTS`` says which flow settings each format implies; the registry fills them in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = dict[str, Any]
Parser = Callable[[bytes, dict[str, Any], "str | None"], list[Row]]

NAMED_SYNTAXES = ("chain2", "dso-curve-csv", "dso-curve-xml")


def parser_for(syntax: str) -> Parser | None:
    """The parser of a named format, or None (imports lazily: the generic path never pays for them)."""
    if syntax == "chain2":
        from streams.formats.chain2 import parse_chain2
        return parse_chain2
    if syntax == "dso-curve-csv":
        from streams.formats.dso_curve_csv import parse_dso_curve_csv
        return parse_dso_curve_csv
    if syntax == "dso-curve-xml":
        from streams.formats.dso_curve_xml import parse_dso_curve_xml
        return parse_dso_curve_xml
    return None
