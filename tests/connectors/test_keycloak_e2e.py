"""HTTP ingest with tokens from a real Keycloak (realm generated from the registry), one start per module.

Keycloak is built once by scripts/setup.sh (`python -m connectors.http.keycloak build`, cached under
.cache/jvm); its start on a fresh H2 database costs ~35 s of CPU (docs/keycloak.md).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import jwt
import orjson
import pytest

from connectors.http.keycloak import (
    KeycloakAdmin,
    client_representation,
    client_secret,
    client_token,
    issuer_url,
    jwks_url,
    start_keycloak,
)
from connectors.http.tokens import AUDIENCE, JWKS_REFRESH_COOLDOWN_S
from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.procs import wait_until
from tests.conftest import EXAMPLE_COMMUNITY
from tests.connectors.test_http import PV_FLOW, start_http
from tests.support.mosquitto import raw_items, read_topic
from tests.support.streams import load_test_registry

pytestmark = pytest.mark.slow  # one Keycloak start (~35 s of CPU for a fresh database)


@pytest.fixture(scope="module")
def kc(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("keycloak")
    settings = Settings(run_dir=root / "run")
    reg = load_test_registry(settings, EXAMPLE_COMMUNITY.read_text())
    ensure_topics(kafka_bootstrap)
    run_dir = settings.resolved_run_dir()
    proc, url = start_keycloak(run_dir)
    admin = KeycloakAdmin(url, run_dir)
    http = None
    try:
        created = admin.sync_realm(sorted(reg.snapshot().suppliers))
        port = int(url.rsplit(":", 1)[1])
        http, api = start_http(settings, kafka_bootstrap, root, LEC_JWT_ISSUER=issuer_url(port),
                               LEC_JWKS_URL=jwks_url(port))
        yield {"url": url, "api": api, "admin": admin, "run_dir": run_dir, "bootstrap": kafka_bootstrap,
               "created": created}
    finally:
        if http is not None:
            http.stop()
        admin.close()
        proc.stop(timeout=30)


def _token(kc: dict, supplier: str) -> str:
    return client_token(kc["url"], supplier, client_secret(kc["run_dir"], supplier))


def _post(kc: dict, token: str, tag: str, flow: str = PV_FLOW, **params: str) -> httpx.Response:
    readings = [{"t": f"2024-03-01T00:{15 * i:02d}:00Z", "wh": i, "tag": tag} for i in range(3)]
    return httpx.post(f"{kc['api']}/v1/readings", params={"flow_id": flow, **params}, json=readings,
                      headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_realm_has_one_confidential_client_per_supplier(kc: dict) -> None:
    assert {"sup-utility", "sup-home"} <= set(kc["created"])
    rep = client_representation("sup-x", "s3cret")
    assert rep["serviceAccountsEnabled"] and not rep["publicClient"] and not rep["standardFlowEnabled"]
    # a second sync creates nothing; a new supplier gets its client
    assert kc["admin"].sync_realm(kc["created"]) == []


def test_supplier_token_from_keycloak_is_accepted_and_lands_in_kafka(kc: dict) -> None:
    token = _token(kc, "sup-utility")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["supplier"] == "sup-utility" and AUDIENCE in claims["aud"]
    assert claims["iss"] == issuer_url(int(kc["url"].rsplit(":", 1)[1]))
    r = _post(kc, token, "kc-ok")
    assert r.status_code == 202, r.text
    batch = r.json()["batch_id"]
    msgs = read_topic(kc["bootstrap"], topics.RAW, lambda f: len(f) >= 1, match=lambda m: batch.encode() in m.value())
    (item,) = raw_items(msgs)
    assert orjson.loads(msgs[0].value())["supplier_id"] == "sup-utility" and item["device_id"] == "PV-0001"


def test_token_of_one_supplier_cannot_write_another_suppliers_device(kc: dict) -> None:
    r = _post(kc, _token(kc, "sup-home"), "kc-other")
    assert r.status_code == 403 and r.json()["reason_code"] == "not_owner"
    assert "sup-home" in r.json()["message"] and PV_FLOW in r.json()["message"]


def test_unknown_kid_and_tampered_token_are_refused(kc: dict) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = int(time.time())
    claims = {"iss": issuer_url(int(kc["url"].rsplit(":", 1)[1])), "aud": AUDIENCE, "supplier": "sup-utility",
              "iat": now, "exp": now + 300}
    forged = jwt.encode(claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256",
                        headers={"kid": "not-a-keycloak-kid"})
    r = _post(kc, forged, "kc-forged")
    assert r.status_code == 401 and r.json()["reason_code"] == "bad_token" and "signing key" in r.json()["message"]
    # sup-home's real token with the supplier claim rewritten: Keycloak's signature no longer matches
    head, body, sig = _token(kc, "sup-home").split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["supplier"] = "sup-utility"
    tampered = ".".join([head, base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("="), sig])
    r = _post(kc, tampered, "kc-tampered")
    assert r.status_code == 401 and r.json()["reason_code"] == "bad_token" and "ignature" in r.json()["message"]


def test_key_rotation_new_kid_is_fetched(kc: dict) -> None:
    before = jwt.get_unverified_header(_token(kc, "sup-utility"))["kid"]
    assert _post(kc, _token(kc, "sup-utility"), "kc-before").status_code == 202  # the JWKS is cached now
    kid = kc["admin"].add_rsa_key("lec-rotated")
    token = _token(kc, "sup-utility")
    assert jwt.get_unverified_header(token)["kid"] == kid != before
    # the unknown-kid test may have just refetched the JWKS: the next refetch waits out the cooldown
    answers: list[httpx.Response] = []
    wait_until(lambda: answers.append(_post(kc, token, "kc-rotated")) or answers[-1].status_code != 401,
               timeout=JWKS_REFRESH_COOLDOWN_S + 30, what="HTTP ingest accepting the rotated key")
    assert answers[-1].status_code == 202, answers[-1].text
    assert all(a.json()["reason_code"] == "bad_token" for a in answers[:-1])

