"""Supplier bearer tokens: RS256 JWTs checked against a JWKS (Keycloak-compatible).

Production: ``LEC_JWT_ISSUER`` (e.g. ``https://sso.example/realms/lec``) and ``LEC_JWKS_URL``
(``.../protocol/openid-connect/certs``). Embedded default: the platform is its own issuer; its
RSA key lives in ``run_dir/secrets/jwt-signing-key.pem`` (mode 600) and the HTTP server serves
the public half at ``/.well-known/jwks.json`` and ``/realms/lec/protocol/openid-connect/certs``.

Claims checked: signature (RS256), ``iss``, ``aud`` (must contain ``lec-ingest``), ``exp``.
The supplier is the ``supplier`` claim, else ``azp`` (Keycloak's client id for a client-credentials
token), else ``sub``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from lec.config import Settings
from lec.errors import ConfigError, LecError

EMBEDDED_ISSUER = "urn:lec:embedded-issuer"
AUDIENCE = "lec-ingest"
KEY_FILE = "jwt-signing-key.pem"
LEEWAY_S = 30
JWKS_REFRESH_COOLDOWN_S = 5.0


class TokenError(LecError):
    """A bearer token is missing, malformed, expired, or not ours."""


def _key_path(settings: Settings) -> Path:
    return settings.resolved_run_dir() / "secrets" / KEY_FILE


def signing_key(settings: Settings) -> Any:
    """The embedded issuer's RSA private key, created on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = _key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
        except FileExistsError:  # created meanwhile by another worker: use theirs
            time.sleep(0.2)
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def public_jwk(settings: Settings) -> dict[str, Any]:
    from jwt.algorithms import RSAAlgorithm

    jwk = json.loads(RSAAlgorithm.to_jwk(signing_key(settings).public_key()))
    jwk.update({"use": "sig", "alg": "RS256", "kid": _kid(jwk)})
    return jwk


def _kid(jwk: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(f"{jwk['e']}.{jwk['n']}".encode()).hexdigest()[:16]


def jwks(settings: Settings) -> dict[str, Any]:
    return {"keys": [public_jwk(settings)]}


def issue_token(settings: Settings, supplier_id: str, ttl_s: int = 3600) -> str:
    """A token of the embedded issuer for ``supplier_id``, valid ``ttl_s`` seconds."""
    import jwt

    if settings.jwks_url:
        raise ConfigError("LEC_JWKS_URL points at an external issuer: get tokens from it, not from `lec tokens`")
    now = int(time.time())
    claims = {"iss": EMBEDDED_ISSUER, "aud": AUDIENCE, "sub": supplier_id, "azp": supplier_id,
              "supplier": supplier_id, "iat": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, signing_key(settings), algorithm="RS256", headers={"kid": public_jwk(settings)["kid"]})


def issue_for_supplier(supplier_id: str, ttl_s: int = 3600) -> str:
    """`lec tokens issue`: checks the supplier exists in the registry first."""
    from lec.config import settings as current
    from lec.registry import open_registry

    s = current()
    if supplier_id not in open_registry(s).snapshot().suppliers:
        raise ConfigError(f"supplier '{supplier_id}' is not in the registry: `lec registry` lists the suppliers")
    return issue_token(s, supplier_id, ttl_s)


class TokenVerifier:
    """Verifies bearer tokens and returns the supplier id they speak for."""

    def __init__(self, settings: Settings) -> None:
        import jwt

        if settings.jwks_url:
            if not settings.jwt_issuer:
                raise ConfigError("LEC_JWKS_URL is set but LEC_JWT_ISSUER is not: set the issuer the tokens carry")
            self.issuer = settings.jwt_issuer
            # The key set is cached 300 s, so a key the issuer removed stops verifying within 5 min (no
            # per-kid cache: it never expires). An unknown kid refetches the set at most once per
            # JWKS_REFRESH_COOLDOWN_S: a rotated key is accepted within seconds, a flood of made-up kids
            # costs the issuer one fetch per cooldown.
            self._jwks_client = jwt.PyJWKClient(settings.jwks_url, lifespan=300, timeout=10,
                                                cooldown_duration=JWKS_REFRESH_COOLDOWN_S)
            self._key = None
        else:
            self.issuer = settings.jwt_issuer or EMBEDDED_ISSUER
            self._jwks_client = None
            self._key = signing_key(settings).public_key()

    def supplier_of(self, token: str) -> str:
        import jwt

        try:
            key = self._key if self._jwks_client is None else self._jwks_client.get_signing_key_from_jwt(token).key
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=self.issuer,
                                leeway=LEEWAY_S, options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("the token has expired: get a new one") from exc
        except jwt.PyJWKClientError as exc:
            raise TokenError(f"the token's signing key is unknown to the issuer's JWKS: {exc}") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"the token is not valid: {exc}") from exc
        supplier = claims.get("supplier") or claims.get("azp") or claims.get("sub")
        if not isinstance(supplier, str) or not supplier:
            raise TokenError("the token names no supplier (claim 'supplier', 'azp' or 'sub')")
        return supplier
