"""Typed rejections: every refused item or reading carries a reason code and an actionable sentence."""

from __future__ import annotations

from lec.errors import LecError


class Reject(LecError):
    """An item or reading cannot be accepted; ``reason_code`` is stable, ``message`` tells what to fix."""

    def __init__(self, reason_code: str, message: str, *, anomaly: str | None = None,
                 value: float | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message
        self.anomaly = anomaly      # anomaly kind to raise alongside the rejection (e.g. after_end)
        self.value = value


class StreamsError(LecError):
    """The streams worker cannot start or run (bad settings, unreachable broker)."""
