"""Pseudonymous ids for log lines: a device, flow, user or file name is logged as ``p-<12 hex>``.

The pseudonym is an HMAC of the id under a random key kept beside the device secrets
(``run_dir/secrets/log-pseudonym.key``, mode 0600): an operator who knows a POD can find its log
lines (``lec gdpr pseudonym ID``), a reader of the logs alone cannot recover the POD. ``lec gdpr
erase`` redacts both the ids and their pseudonyms from the platform's logs, so nothing left in a
log links back to an erased member.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

KEY_FILE = Path("secrets") / "log-pseudonym.key"


@lru_cache(maxsize=8)
def _key(run_dir: str) -> bytes:
    path = Path(run_dir) / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable
        try:
            os.write(fd, key)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return key
    except OSError:
        return b"lec-no-key"  # a read-only run dir: still no POD in the log line


def pseudonym(value: str, run_dir: Path | str | None = None) -> str:
    """The log name of ``value`` (a device/flow/user id or a file name): stable per installation."""
    if run_dir is None:
        from lec.config import settings

        run_dir = settings().resolved_run_dir()
    try:
        key = _key(str(run_dir))
    except FileExistsError:  # another process created it between our read and our create
        _key.cache_clear()
        key = _key(str(run_dir))
    return "p-" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:12]
