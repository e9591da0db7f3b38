"""Per-device 32-byte secrets for the oracle's salts (oracle.md §4), kept apart from the registry.

They live in their own database (``secrets_url``, by default a 0600 SQLite file in its own 0700
folder), never in the registry export, the lake, logs or the chain. Deleting a device's secret is
how GDPR erasure makes its anchored leaves unrecoverable.
"""

from __future__ import annotations

import os
import secrets as _random
from pathlib import Path

from sqlalchemy import Column, LargeBinary, MetaData, String, Table, create_engine, delete, insert, select
from sqlalchemy.engine import Engine

from lec.errors import RegistryError

_meta = MetaData()
device_secrets = Table(
    "device_secrets", _meta,
    Column("device_id", String(128), primary_key=True),
    Column("secret", LargeBinary(32), nullable=False),
)


class MissingSecretError(RegistryError):
    """The device has no secret (never registered, or erased)."""


class SecretStore:
    """Create, read and delete device secrets. Never prints them."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(path.parent, 0o700)
            path.touch(mode=0o600, exist_ok=True)
            os.chmod(path, 0o600)
        self.engine: Engine = create_engine(url, future=True)
        _meta.create_all(self.engine)

    def __repr__(self) -> str:  # the URL may hold a password
        return "SecretStore(<hidden>)"

    def ensure(self, device_id: str) -> bool:
        """Give the device a fresh random secret unless it has one. True if created."""
        return self.ensure_many([device_id]) == 1

    def ensure_many(self, device_ids: list[str]) -> int:
        """A fresh random secret for each device that has none, in one transaction (one per device
        cost a commit each: 2 s for 500 meters on SQLite). Returns how many were created."""
        with self.engine.begin() as conn:
            have: set[str] = set()
            for i in range(0, len(device_ids), 500):   # bound the IN list
                chunk = device_ids[i:i + 500]
                have.update(r[0] for r in conn.execute(
                    select(device_secrets.c.device_id).where(device_secrets.c.device_id.in_(chunk))))
            new = [d for d in dict.fromkeys(device_ids) if d not in have]
            if new:
                conn.execute(insert(device_secrets), [{"device_id": d, "secret": _random.token_bytes(32)} for d in new])
            return len(new)

    def get(self, device_id: str) -> bytes:
        with self.engine.connect() as conn:
            row = conn.execute(select(device_secrets.c.secret).where(device_secrets.c.device_id == device_id)).first()
        if row is None:
            raise MissingSecretError(f"device '{device_id}' has no secret (not registered, or erased)")
        return bytes(row[0])

    def get_many(self, device_ids: list[str]) -> dict[str, bytes]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(device_secrets).where(device_secrets.c.device_id.in_(device_ids))).all()
        return {r.device_id: bytes(r.secret) for r in rows}

    def delete(self, device_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(delete(device_secrets).where(device_secrets.c.device_id == device_id)).rowcount > 0
