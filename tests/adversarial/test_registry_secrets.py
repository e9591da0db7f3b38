"""Finding 14: credentials in URLs masked by `lec config`, state files 0600, a modern password hash
replaced transparently at login."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from lec.config import Settings
from lec.registry import Registry, SecretStore
from lec.registry.passwords import ITERATIONS, LoginCache, hash_password, needs_rehash, verify_password

ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_lec_config_masks_credentials_inside_urls(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEC_RUN_DIR": str(tmp_path / "run"),
           "LEC_REGISTRY_URL": "postgresql+psycopg://lec:hunter2@db.example:5432/registry",
           "LEC_SEARCH_URL": "https://elastic:s3cr3t-pw@search.example:9200",
           "LEC_CHAIN_RPC": "https://rpc.example/v3?apikey=abcdef123456",
           "LEC_SPARK_REMOTE": "sc://tokenvalue987@spark.example:15002"}
    out = subprocess.run([sys.executable, "-m", "lec.cli", "config"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120, check=True).stdout
    shown = json.loads(out)
    for secret in ("hunter2", "s3cr3t-pw", "abcdef123456", "tokenvalue987"):
        assert secret not in out
    assert shown["registry_url"] == "postgresql+psycopg://lec:***@db.example:5432/registry"
    assert shown["search_url"] == "https://elastic:***@search.example:9200"


def test_state_files_are_private(tmp_path: Path) -> None:
    from lec.stack.supervisor import Stack

    os.umask(0o022)
    settings = Settings(run_dir=tmp_path / "run")
    Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url())).migrate()
    assert _mode(tmp_path / "run" / "registry.db") == 0o600
    assert _mode(tmp_path / "run" / "secrets" / "device-secrets.db") == 0o600
    stack = Stack(settings, with_workers=False)
    stack.env = {"LEC_REGISTRY_URL": "postgresql://lec:hunter2@db/registry"}
    stack.write_state()
    assert _mode(tmp_path / "run" / "stack.json") == 0o600


def test_hash_is_strong_and_a_legacy_hash_is_replaced_at_login(registry: Registry) -> None:
    fresh = hash_password("x" * 12)
    assert fresh.startswith(f"$7${ITERATIONS}$") and ITERATIONS >= 210_000 and not needs_rehash(fresh)
    assert registry.supplier_password_hashes()["sup-home"].startswith(f"$7${ITERATIONS}$")
    legacy = hash_password("home-box-secret", iterations=101)      # what older registries hold
    assert registry.replace_password_hash("sup-home", registry.supplier_password_hashes()["sup-home"], legacy)
    cache = LoginCache(on_rehash=lambda user, old, new: registry.replace_password_hash(user, old, new))
    assert not cache.verify("sup-home", "wrong-password", legacy)
    assert registry.supplier_password_hashes()["sup-home"] == legacy          # a failed login changes nothing
    assert cache.verify("sup-home", "home-box-secret", legacy)
    upgraded = registry.supplier_password_hashes()["sup-home"]
    assert upgraded != legacy and not needs_rehash(upgraded) and verify_password("home-box-secret", upgraded)
    # the cache answers a repeat login (also against the new hash) and never a wrong password
    assert cache.verify("sup-home", "home-box-secret", upgraded)
    assert not cache.verify("sup-home", "home-box-secreT", upgraded)


def test_device_secrets_in_bulk_are_created_once_and_never_replaced(tmp_path: Path) -> None:
    # load() creates every device's secret in one transaction: existing secrets stay (a reload must not
    # change what the chain's leaves were salted with), only the missing ones are made.
    store = SecretStore(f"sqlite:///{tmp_path / 'secrets.sqlite'}")
    assert store.ensure("d-1")
    before = store.get("d-1")
    ids = ["d-1", *(f"d-{i}" for i in range(2, 1203)), "d-2"]       # over the 500-id chunks, one repeated
    assert store.ensure_many(ids) == 1201
    assert store.get("d-1") == before
    secrets = store.get_many(ids)
    assert len(secrets) == 1202 and len(set(secrets.values())) == 1202 and all(len(s) == 32 for s in secrets.values())
    assert store.ensure_many(ids) == 0 and store.get_many(ids) == secrets
