"""Typed rejections: every refused item or reading carries a reason code and an actionable sentence."""

from __future__ import annotations

from lec.errors import LecError
from lec.records import Rejection


class Reject(Rejection):
    """An item or reading cannot be accepted (the record contract's :class:`Rejection`), with the
    anomaly to raise alongside it and the offending value."""

    def __init__(self, reason_code: str, message: str, *, anomaly: str | None = None,
                 value: float | None = None) -> None:
        super().__init__(reason_code, message)
        self.anomaly = anomaly      # anomaly kind to raise alongside the rejection (e.g. after_end)
        self.value = value


class StreamsError(LecError):
    """The streams worker cannot start or run (bad settings, unreachable broker)."""
