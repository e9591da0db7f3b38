"""Supplier password hashes in Mosquitto's ``$7$`` format (PBKDF2-HMAC-SHA512), usable by every channel.

Why this format and cost: the generated Mosquitto ``password_file`` must verify the very hash the
registry stores, and Mosquitto 2.0 reads only ``$6$``/``$7$``; 210,000 PBKDF2-SHA512 iterations is
OWASP's current recommendation for that function. Older hashes (``mosquitto_passwd``'s 101
iterations) keep working and are replaced on the next successful login (``needs_rehash``).
Verifying costs ~0.2-1 s of CPU, so servers keep a per-process cache of verified logins
(:class:`LoginCache`) instead of paying it on every connection.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections.abc import Callable

ITERATIONS = 210_000  # OWASP 2023 for PBKDF2-HMAC-SHA512
LEGACY_ITERATIONS = 101  # mosquitto_passwd's default, what older registries hold


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _iterations(stored: str) -> int | None:
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return None
    try:
        return int(parts[2])
    except ValueError:
        return None


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("$7$"):
        return False
    try:
        _, _, iterations, salt_b64, digest_b64 = stored.split("$")
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def needs_rehash(stored: str) -> bool:
    """True for a hash weaker than today's cost: replace it at the next successful login."""
    n = _iterations(stored)
    return n is None or n < ITERATIONS


RehashHook = Callable[[str, str, str], None]   # (username, old hash, new hash)


class LoginCache:
    """Verified logins of one process: a repeat login with the same password costs one HMAC.

    The cache holds, per user, the stored hash it was verified against and an HMAC of the password
    under a key that lives only in this process's memory; a changed hash in the registry misses the
    cache. Failed attempts are never cached (each pays the full cost). ``on_rehash`` receives a
    stronger hash for a legacy one after a successful login (transparent rehash).
    """

    def __init__(self, on_rehash: RehashHook | None = None, max_entries: int = 100_000) -> None:
        self._key = os.urandom(32)
        self._ok: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self.on_rehash = on_rehash
        self.max_entries = max_entries

    def _tag(self, username: str, stored: str, password: str) -> bytes:
        return hmac.new(self._key, b"\0".join((username.encode(), stored.encode(), password.encode())),
                        hashlib.sha256).digest()

    def verify(self, username: str, password: str, stored: str | None) -> bool:
        if not stored:
            return False
        tag = self._tag(username, stored, password)
        with self._lock:
            hit = self._ok.get(username)
        if hit is not None and hit[0] == stored and hmac.compare_digest(hit[1], tag):
            return True
        if not verify_password(password, stored):
            return False
        with self._lock:
            if len(self._ok) >= self.max_entries:
                self._ok.clear()
            self._ok[username] = (stored, tag)
        if self.on_rehash is not None and needs_rehash(stored):
            new = hash_password(password)
            with self._lock:
                self._ok[username] = (new, self._tag(username, new, password))
            self.on_rehash(username, stored, new)
        return True
