"""XML from suppliers is parsed with defusedxml (issue 9, finding 15): no DTD gets through, whatever
the encoding (a regex guard on the raw bytes missed UTF-16 documents)."""

from __future__ import annotations

import pytest

from streams.errors import Reject
from streams.parse import parse_xml

BOMB = ('<?xml version="1.0" encoding="UTF-16"?>'
        '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<r><m ts="2024-01-01T00:00:00Z">&b;</m></r>')


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_dtd_in_a_non_ascii_compatible_encoding_is_refused(encoding: str) -> None:
    payload = BOMB.replace("UTF-16", encoding.upper()).encode(encoding)
    if encoding == "utf-16-le":
        payload = b"\xff\xfe" + payload
    with pytest.raises(Reject) as exc:
        parse_xml(payload, {})
    assert exc.value.reason_code in ("xml_forbidden", "xml_invalid")
    assert "aaaaaaaaaa" not in str(exc.value)


def test_utf16_dtd_is_refused_as_forbidden() -> None:
    with pytest.raises(Reject) as exc:
        parse_xml(BOMB.encode("utf-16"), {})
    assert exc.value.reason_code == "xml_forbidden"


def test_plain_utf16_xml_still_parses() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?><r><m ts="2024-01-01T00:00:00Z" e="1"/><m ts="x" e="2"/></r>'
    rows = parse_xml(doc.encode("utf-16"), {"record_path": "m"})
    assert [r["e"] for r in rows] == ["1", "2"]
