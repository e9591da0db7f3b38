"""The one logging setup: workers and tools configure it once, from the settings' level."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

# A worker's lines name the worker (`... bridge-0 INFO bridge stopped ...`: logs of several processes
# side by side); a tool's lines name the module.
WORKER_FORMAT = "%(asctime)s {worker} %(levelname)s %(message)s"
TOOL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(worker: str | None = None, *, level: str | int | None = None,
                      stream: TextIO | None = None) -> None:
    """Root logging for this process: ``level`` (default LEC_LOG_LEVEL), to ``stream`` (default
    stderr), in the worker format when ``worker`` names the process, else the tool format."""
    if level is None:
        from lec.config import settings

        level = settings().log_level
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    fmt = WORKER_FORMAT.format(worker=worker) if worker else TOOL_FORMAT
    logging.basicConfig(level=level, stream=stream or sys.stderr, format=fmt)
