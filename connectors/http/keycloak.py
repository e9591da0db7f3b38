"""Keycloak as the token issuer of HTTP suppliers: build once, start, and a realm from the registry.

Opt-in at run time (``lec up --keycloak``). ``python -m connectors.http.keycloak build`` (scripts/setup.sh
runs it) fetches the server distribution (``org.keycloak:keycloak-quarkus-dist``, a zip) from Maven Central,
unpacks it and runs ``kc.sh build`` once per version and build options, so each start is
``kc.sh start --optimized``. The realm ``lec`` holds one confidential client per supplier
(client-credentials grant, client id = supplier id) whose access tokens carry the supplier id in the
``supplier`` claim (hardcoded-claim mapper) and ``lec-ingest`` in ``aud`` (audience mapper): exactly
what ``connectors.http.tokens.TokenVerifier`` checks through the realm's JWKS.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from connectors.http.tokens import AUDIENCE
from lec.config import Settings, write_private
from lec.errors import ServiceError
from lec.procs import ManagedProcess, free_port, port_open

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VERSION = "26.4.0"
REALM = "lec"
# Build-time options (baked in by `kc.sh build`): an H2 file database and the health endpoints.
BUILD_OPTIONS = ("--db=dev-file", "--health-enabled=true")
# The JVM of `kc.sh build` and `kc.sh start`: a 512 MB heap, and the C1 compiler only: a first start
# (schema creation included) then takes ~34 s of CPU instead of ~73 s (docs/keycloak.md).
JVM_ENV = {"JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m", "JAVA_OPTS_APPEND": "-XX:TieredStopAtLevel=1"}
READY_TIMEOUT = 300.0  # ~1 min on an idle 2-core machine; room for a CI run's parallel tests
SECRETS_FILE = "keycloak.json"
ADMIN_USER = "lec-admin"


def _jvm_root() -> Path:
    return Path(os.environ.get("LEC_JVM_CACHE") or PROJECT_ROOT / ".cache" / "jvm")


def dist_zip() -> Path:
    """The distribution zip in .cache/jvm/keycloak, fetched from Maven Central the first time."""
    folder = _jvm_root() / "keycloak"
    zip_path = folder / f"keycloak-quarkus-dist-{VERSION}.zip"
    if not zip_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mvn", "-q", "-B", "dependency:copy",
                            f"-Dartifact=org.keycloak:keycloak-quarkus-dist:{VERSION}:zip",
                            f"-DoutputDirectory={folder}"], capture_output=True, text=True, check=False, timeout=1800)
        if r.returncode != 0 or not zip_path.exists():
            raise ServiceError(f"fetching keycloak-quarkus-dist {VERSION} with mvn failed: "
                               f"{(r.stdout + r.stderr).strip()[-1500:]}")
    return zip_path


def server_home() -> Path:
    """Where the built server lives: .cache/jvm/keycloak-server/keycloak-<version>."""
    return _jvm_root() / "keycloak-server" / f"keycloak-{VERSION}"


def _stamp() -> str:
    return " ".join(BUILD_OPTIONS)


def is_built() -> bool:
    stamp = server_home() / ".lec-built"
    return stamp.exists() and stamp.read_text().strip() == _stamp()


def ensure_built(timeout: float = 3600) -> Path:
    """Unpack the zip and run ``kc.sh build`` unless already done for this version and these options."""
    home = server_home()
    if is_built():
        return home
    tmp = home.with_name(home.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(dist_zip()) as zf:
        zf.extractall(tmp)
    unpacked = next(tmp.iterdir())
    for script in (unpacked / "bin").glob("*.sh"):
        script.chmod(0o755)
    r = subprocess.run([str(unpacked / "bin" / "kc.sh"), "build", *BUILD_OPTIONS], capture_output=True, text=True,
                       check=False, timeout=timeout, env={**os.environ, **JVM_ENV})
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ServiceError(f"`kc.sh build` failed: {(r.stdout + r.stderr).strip()[-1500:]}")
    (unpacked / ".lec-built").write_text(_stamp() + "\n")
    shutil.rmtree(home, ignore_errors=True)  # an older build with other options
    unpacked.rename(home)
    shutil.rmtree(tmp, ignore_errors=True)
    return home


# -- secrets and the server process -----------------------------------------------------------

def load_secrets(run_dir: Path) -> dict[str, Any]:
    """The admin password and one client secret per supplier, created on first use (file mode 600)."""
    path = run_dir / "secrets" / SECRETS_FILE
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    changed = "admin_password" not in data
    data.setdefault("admin_password", secrets.token_urlsafe(24))
    data.setdefault("clients", {})
    if changed:
        write_private(path, json.dumps(data, indent=2))
    return data


def client_secret(run_dir: Path, supplier_id: str) -> str:
    """The supplier's client secret (generated and stored on first use)."""
    path = run_dir / "secrets" / SECRETS_FILE
    data = load_secrets(run_dir)
    if supplier_id not in data["clients"]:
        data["clients"][supplier_id] = secrets.token_urlsafe(32)
        write_private(path, json.dumps(data, indent=2))
    return data["clients"][supplier_id]


def keycloak_argv(home: Path, port: int, management_port: int, db_dir: Path) -> list[str]:
    """``kc.sh start --optimized`` on loopback with its H2 database under ``db_dir``."""
    db_dir.mkdir(parents=True, exist_ok=True)
    return [str(home / "bin" / "kc.sh"), "start", "--optimized", "--http-enabled=true", "--http-host=127.0.0.1",
            f"--http-port={port}", f"--http-management-port={management_port}",
            "--cache=local",  # one node: no JGroups discovery (its H2 ping table timed out under load)
            f"--hostname=http://127.0.0.1:{port}",  # a fixed issuer: iss = http://127.0.0.1:PORT/realms/lec
            f"--db-url=jdbc:h2:file:{db_dir / 'keycloakdb'};NON_KEYWORDS=VALUE"]


def keycloak_env(run_dir: Path) -> dict[str, str]:
    """The bootstrap admin (used by an empty database only) goes through the environment, not argv."""
    return {"KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": load_secrets(run_dir)["admin_password"], **JVM_ENV}


def keycloak_ready(management_port: int) -> bool:
    """Ready once the management port answers /health/ready with 200 (plain HTTP: polled often, stay cheap)."""
    import http.client

    if not port_open(management_port):
        return False
    conn = http.client.HTTPConnection("127.0.0.1", management_port, timeout=2)
    try:
        conn.request("GET", "/health/ready")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def issuer_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/realms/{REALM}"


def jwks_url(port: int) -> str:
    return f"{issuer_url(port)}/protocol/openid-connect/certs"


def built_home() -> Path:
    """The built server, or a clear error saying how to build it."""
    home = server_home()
    if not is_built():
        raise ServiceError(f"Keycloak is not built in {home}: run `python -m connectors.http.keycloak build` "
                           "(once, as scripts/setup.sh does; about 80 s of CPU)")
    return home


def start_keycloak(run_dir: Path, port: int = 0) -> tuple[ManagedProcess, str]:
    """Start the built Keycloak (data under run_dir/keycloak); returns it and its base URL once ready."""
    home = built_home()
    port, mgmt = port or free_port(), free_port()
    proc = ManagedProcess("keycloak", keycloak_argv(home, port, mgmt, run_dir / "keycloak"),
                          run_dir / "logs" / "keycloak.log", env=keycloak_env(run_dir))
    proc.wait_ready(lambda: keycloak_ready(mgmt), timeout=READY_TIMEOUT)  # stops it if never ready
    return proc, f"http://127.0.0.1:{port}"


# -- the realm, from the registry ------------------------------------------------------------

def client_representation(supplier_id: str, secret: str) -> dict[str, Any]:
    """A confidential client for one supplier: client-credentials only, supplier claim, lec-ingest audience."""
    return {
        "clientId": supplier_id, "name": f"LEC supplier {supplier_id}", "enabled": True,
        "protocol": "openid-connect", "publicClient": False, "clientAuthenticatorType": "client-secret",
        "secret": secret, "serviceAccountsEnabled": True, "standardFlowEnabled": False,
        "implicitFlowEnabled": False, "directAccessGrantsEnabled": False,
        "protocolMappers": [
            {"name": "supplier", "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-claim-mapper",
             "config": {"claim.name": "supplier", "claim.value": supplier_id, "jsonType.label": "String",
                        "access.token.claim": "true", "id.token.claim": "false", "userinfo.token.claim": "false",
                        "introspection.token.claim": "true"}},
            {"name": AUDIENCE, "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
             "config": {"included.custom.audience": AUDIENCE, "access.token.claim": "true",
                        "id.token.claim": "false", "introspection.token.claim": "true"}},
        ],
    }


def realm_representation(run_dir: Path, supplier_ids: list[str]) -> dict[str, Any]:
    return {"realm": REALM, "enabled": True, "accessTokenLifespan": 300,
            "clients": [client_representation(s, client_secret(run_dir, s)) for s in sorted(supplier_ids)]}


class KeycloakAdmin:
    """The few admin REST calls the platform makes (realm and clients from the registry, keys)."""

    def __init__(self, base_url: str, run_dir: Path) -> None:
        self.base_url = base_url.rstrip("/")
        self.run_dir = run_dir
        self._http = httpx.Client(base_url=self.base_url, timeout=60)
        self._token: tuple[float, str] | None = None  # (monotonic expiry, admin access token)

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        if self._token is not None and time.monotonic() < self._token[0]:
            return {"Authorization": f"Bearer {self._token[1]}"}
        r = self._http.post("/realms/master/protocol/openid-connect/token",
                            data={"grant_type": "password", "client_id": "admin-cli", "username": ADMIN_USER,
                                  "password": load_secrets(self.run_dir)["admin_password"]})
        if r.status_code != 200:
            raise ServiceError(f"Keycloak admin login refused ({r.status_code}): the admin password in "
                               f"{self.run_dir / 'secrets' / SECRETS_FILE} does not match its database")
        body = r.json()
        # master's admin tokens live 60 s: renew at half their life
        self._token = (time.monotonic() + body.get("expires_in", 60) / 2, body["access_token"])
        return {"Authorization": f"Bearer {body['access_token']}"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        r = self._http.request(method, f"/admin/realms{path}", headers=self._headers(), **kwargs)
        if r.status_code >= 400 and not (method == "GET" and r.status_code == 404):
            raise ServiceError(f"Keycloak admin {method} {path} failed ({r.status_code}): {r.text[:500]}")
        return r

    def sync_realm(self, supplier_ids: list[str]) -> list[str]:
        """Create the realm, or the clients of suppliers added since; returns the client ids created."""
        if self.call("GET", f"/{REALM}").status_code == 404:
            self.call("POST", "", json=realm_representation(self.run_dir, supplier_ids))
            return sorted(supplier_ids)
        created = []
        for sid in sorted(supplier_ids):
            if not self.call("GET", f"/{REALM}/clients", params={"clientId": sid}).json():
                self.call("POST", f"/{REALM}/clients", json=client_representation(sid, client_secret(self.run_dir, sid)))
                created.append(sid)
        return created

    def add_rsa_key(self, name: str, priority: int = 200) -> str:
        """Rotate: a new RS256 key with a higher priority signs from now on; returns its kid."""
        realm_id = self.call("GET", f"/{REALM}").json()["id"]
        r = self.call("POST", f"/{REALM}/components", json={
            "name": name, "providerId": "rsa-generated", "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id, "config": {"priority": [str(priority)], "enabled": ["true"],
                                             "active": ["true"], "algorithm": ["RS256"], "keySize": ["2048"]}})
        component = r.headers["location"].rsplit("/", 1)[-1]
        keys = self.call("GET", f"/{REALM}/keys").json()["keys"]
        return next(k["kid"] for k in keys if k.get("providerId") == component)


def client_token(base_url: str, supplier_id: str, secret: str) -> str:
    """An access token for a supplier's client (client-credentials grant), as a supplier would get it."""
    r = httpx.post(f"{base_url.rstrip('/')}/realms/{REALM}/protocol/openid-connect/token",
                   data={"grant_type": "client_credentials"}, auth=(supplier_id, secret), timeout=60)
    if r.status_code != 200:
        raise ServiceError(f"Keycloak refused a token to client '{supplier_id}' ({r.status_code}): {r.text[:300]}")
    return r.json()["access_token"]


def configure_from_registry(settings: Settings, base_url: str) -> list[str]:
    """Sync the realm with the registry's suppliers (`lec up --keycloak` calls it after the start)."""
    from lec.registry import open_registry

    admin = KeycloakAdmin(base_url, settings.resolved_run_dir())
    try:
        return admin.sync_realm(sorted(open_registry(settings).snapshot().suppliers))
    finally:
        admin.close()


if __name__ == "__main__":  # scripts/setup.sh: python -m connectors.http.keycloak build
    import sys

    if sys.argv[1:] != ["build"]:
        raise SystemExit("usage: python -m connectors.http.keycloak build")
    print(f"keycloak built in {ensure_built()}")
