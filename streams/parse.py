"""Parse one raw item's bytes into source rows (dicts of source field -> value), by declared syntax.

Pure functions: no registry, no Kafka. Hostile input (garbage bytes, wrong encodings, deep nesting,
huge strings, XML entities, CSV formula injection) raises :class:`Reject`, never anything else.
"""

from __future__ import annotations

import csv
import re
from typing import Any
from xml.etree import ElementTree

import defusedxml.ElementTree as DefusedET
import orjson
from defusedxml import DefusedXmlException

from lec.records import duplicate_json_key
from streams.errors import Reject

Row = dict[str, Any]
MAX_ROWS_PER_ITEM = 200_000
MAX_FIELD_CHARS = 4096
MAX_JSON_DEPTH = 32            # a reading is flat or nested a few levels; deeper is an attack or a bug
_FORMULA_START = ("=", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


def decode_text(payload: bytes, encoding: str = "utf-8") -> str:
    try:
        text = payload.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise Reject("encoding_invalid", f"the payload is not valid {encoding} text ({exc.__class__.__name__} at "
                     f"byte {getattr(exc, 'start', '?')}); send {encoding} or declare the encoding in the flow's "
                     "syntax_options.encoding") from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise Reject("encoding_invalid", "the payload contains NUL bytes: it is binary, not text")
    return text


def parse_rows(payload: bytes, syntax: str, options: dict[str, Any] | None = None, header: str | None = None,
               max_bytes: int = 1024 * 1024) -> list[Row]:
    """Rows of one item. CSV rows carry ``_line`` (1-based line within the chunk, header excluded)."""
    options = options or {}
    if len(payload) > max_bytes:
        raise Reject("payload_too_large", f"the message is {len(payload)} bytes, more than the limit of {max_bytes}; "
                     "split it into smaller messages")
    if not payload.strip():
        raise Reject("empty_payload", "the message is empty")
    if syntax == "json":
        return parse_json(payload, options)
    if syntax == "csv":
        return parse_csv(decode_text(payload, options.get("encoding", "utf-8")), options, header)
    if syntax == "xml":
        return parse_xml(payload, options)
    from streams.formats import parser_for  # named formats (chain2, dso-curve-*): streams/formats/

    named = parser_for(syntax)
    if named is not None:
        return named(payload, options, header)
    raise Reject("syntax_unknown", f"the flow declares syntax '{syntax}', which is not json, csv, xml, chain2, "
                 "dso-curve-csv or dso-curve-xml")


def parse_json(payload: bytes, options: dict[str, Any]) -> list[Row]:
    """An object (one reading), an array of objects, or an object with a readings array.

    Top-level fields of a batch object (e.g. ``device``) are inherited by each of its readings.
    """
    if options.get("encoding", "utf-8").lower() not in ("utf-8", "utf8"):
        payload = decode_text(payload, options["encoding"]).encode()
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        msg = str(exc)[:200]
        raise Reject("json_invalid", f"the payload is not valid JSON: {msg}") from None
    check_depth(payload, doc)
    refuse_duplicate_keys(payload, doc)
    key = options.get("readings_key", "readings")
    if isinstance(doc, list):
        return [r if isinstance(r, dict) else {"_not_object": r} for r in _bounded(doc)]
    if isinstance(doc, dict):
        batch = doc.get(key)
        if isinstance(batch, list):
            common = {k: v for k, v in doc.items() if k != key and not isinstance(v, (dict, list))}
            return [({**common, **r} if isinstance(r, dict) else {"_not_object": r}) for r in _bounded(batch)]
        return [doc]
    raise Reject("json_shape", f"the JSON payload is a {type(doc).__name__}; send an object, an array of objects or "
                 f"an object with a '{key}' array")


def refuse_duplicate_keys(payload: bytes, doc: Any) -> None:
    """``{"e": 1, "e": 5000}`` means 1 to a reader keeping the first and 5000 to orjson: refuse it."""
    key = duplicate_json_key(payload, doc)
    if key is not None:
        raise Reject("json_invalid", f"the key '{key[:60]}' appears twice in one JSON object: programs disagree "
                     "on which value counts, so send each key once")


def check_depth(payload: bytes, doc: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` (orjson reads 1024 levels but writes only 254, so a deep
    reading would fail later, when its dead letter is written, after other outputs)."""
    openers = payload.count(b"[") + payload.count(b"{")
    if openers <= limit:
        return                        # cannot nest deeper than it has brackets
    rows = doc if isinstance(doc, list) else doc.get("readings") if isinstance(doc, dict) else None
    if isinstance(rows, list) and openers <= len(rows) + 2:
        return                        # one bracket per reading plus the wrappers: every reading is flat
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise Reject("json_too_deep", f"the JSON nests deeper than {limit} levels; send flat readings")
        children = node.values() if type(node) is dict else node
        stack.extend((c, depth + 1) for c in children if type(c) in (dict, list))


def _bounded(rows: list[Any]) -> list[Any]:
    if len(rows) > MAX_ROWS_PER_ITEM:
        raise Reject("too_many_readings", f"the message holds {len(rows)} readings, more than {MAX_ROWS_PER_ITEM}")
    return rows


def csv_header(options: dict[str, Any], header: str | None, delimiter: str) -> list[str] | None:
    cols = options.get("columns")
    if isinstance(cols, list):
        return [str(c) for c in cols]
    if header:
        return _header_cells(header.strip("\r\n"), delimiter)
    return None


def _header_cells(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error as exc:
        raise Reject("csv_no_header", f"the CSV header line is not valid CSV: {exc}") from None


def parse_csv(text: str, options: dict[str, Any], header: str | None = None) -> list[Row]:
    """CSV lines into rows keyed by header columns; a bad line becomes a row carrying ``_error``."""
    delimiter = str(options.get("delimiter", ","))[:1] or ","
    lines = text.splitlines()
    cols = csv_header(options, header, delimiter)
    offset = 0
    if cols is None and options.get("has_header", True):
        if not lines:
            raise Reject("csv_no_header", "the CSV chunk has no header line and the flow declares no columns")
        cols = _header_cells(lines[0], delimiter)
        lines, offset = lines[1:], 1
    if not cols:
        raise Reject("csv_no_header", "the CSV has no header: send one, or declare syntax_options.columns in the flow")
    cols = [c.strip() for c in cols]
    _bounded(lines)
    rows: list[Row] = []
    for i, line in enumerate(lines):
        lineno = i + 1 + offset
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line], delimiter=delimiter))
        except csv.Error as exc:
            rows.append({"_line": lineno, "_raw": line, "_error": ("csv_invalid", f"line {lineno} is not valid CSV: {exc}")})
            continue
        if len(cells) != len(cols):
            rows.append({"_line": lineno, "_raw": line, "_error": (
                "csv_columns", f"line {lineno} has {len(cells)} fields, the header has {len(cols)}")})
            continue
        bad = next((c for c in cells if _is_formula(c)), None)
        if bad is not None:
            rows.append({"_line": lineno, "_raw": line, "_error": (
                "csv_formula", (f"line {lineno} has a cell starting like a spreadsheet formula ({bad[:20]!r}); "
                "formulas are refused"))})
            continue
        row: Row = dict(zip(cols, cells))
        row["_line"] = lineno
        row["_raw"] = line
        rows.append(row)
    return rows


def _is_formula(cell: str) -> bool:
    if not cell:
        return False
    c = cell.lstrip(" ")
    if c[:1] in _FORMULA_START:
        return True
    return c[:1] in "+-" and not _NUMBER.match(c.strip())


_XML_FORBIDDEN = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def parse_xml(payload: bytes, options: dict[str, Any]) -> list[Row]:
    """Records at ``syntax_options.record_path`` (ElementTree path, default: the root's children).

    A record's fields are its attributes and its child elements' text. DTDs and entities are refused
    (no entity expansion, no external resources).
    """
    root = xml_root(payload)
    path = options.get("record_path")
    try:
        records = root.findall(path) if path else (list(root) if len(root) and len(root[0]) else [root])
    except (SyntaxError, KeyError) as exc:
        raise Reject("xml_record_path", f"the flow's syntax_options.record_path '{path}' is invalid: {exc}") from None
    _bounded(records)
    rows = []
    for rec in records:
        row: Row = {_local(k): v for k, v in rec.attrib.items()}
        for child in rec:
            row[_local(child.tag)] = (child.text or "").strip()
        if not len(rec) and rec.text and rec.text.strip() and "value" not in row:
            row["value"] = rec.text.strip()
        rows.append(row)
    return rows


def xml_root(payload: bytes) -> ElementTree.Element:
    """The document's root element; DTDs/entities, malformed and too deeply nested XML are refused."""
    if _XML_FORBIDDEN.search(payload):
        raise Reject("xml_forbidden", "the XML declares a DOCTYPE or ENTITY; DTDs are refused for safety")
    try:  # defusedxml: DTDs refused by the parser itself (the regex above misses e.g. UTF-16 input)
        root = DefusedET.fromstring(payload, forbid_dtd=True)
    except DefusedXmlException:
        raise Reject("xml_forbidden", "the XML declares a DOCTYPE or ENTITY; DTDs are refused for safety") from None
    except (ElementTree.ParseError, ValueError) as exc:
        raise Reject("xml_invalid", f"the payload is not well-formed XML: {str(exc)[:200]}") from None
    except RecursionError:
        raise Reject("xml_invalid", "the XML is nested too deeply") from None
    return root


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def field(row: Row, name: str) -> Any:
    """A (possibly dotted, for nested JSON) source field of a row; None when absent."""
    if name in row:
        return row[name]
    if "." in name:
        cur: Any = row
        for part in name.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
        return cur
    return None
