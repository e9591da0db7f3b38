"""`lec up --keycloak`'s plan and the realm, without starting Keycloak (tests/connectors/test_keycloak_e2e.py does)."""

from __future__ import annotations

import pytest

from connectors.http.keycloak import (
    _stamp,
    client_representation,
    issuer_url,
    jwks_url,
    realm_representation,
    server_home,
)
from connectors.http.tokens import AUDIENCE
from lec.config import Settings
from lec.errors import ServiceError


def test_stack_with_keycloak_plans_it_and_points_http_ingest_at_its_jwks(tmp_path, monkeypatch) -> None:
    """`lec up --keycloak`: a supervised keycloak server whose admin password is in its environment only.

    Without a build (scripts/setup.sh makes one) `lec up --keycloak` stops at once with the command that
    builds it; with one (its build marker, in a JVM cache of this test's own) it is planned as a
    supervised server."""
    from lec.stack.supervisor import Stack

    monkeypatch.setenv("LEC_JVM_CACHE", str(tmp_path / "jvm"))
    unbuilt = Stack(Settings(run_dir=tmp_path / "run0", keycloak=True, kafka_bootstrap="localhost:1"))
    unbuilt._assign_ports()
    with pytest.raises(ServiceError, match=r"python -m connectors.http.keycloak build"):
        unbuilt.server_specs()
    server_home().mkdir(parents=True)
    (server_home() / ".lec-built").write_text(_stamp())

    stack = Stack(Settings(run_dir=tmp_path / "run", keycloak=True, kafka_bootstrap="localhost:1"))
    stack._assign_ports()
    port = stack.ports["keycloak"]
    assert stack.env["LEC_JWKS_URL"] == jwks_url(port) and stack.env["LEC_JWT_ISSUER"] == issuer_url(port)
    (spec,) = [s for s in stack.server_specs() if s.name == "keycloak"]
    password = spec.env["KC_BOOTSTRAP_ADMIN_PASSWORD"]
    assert spec.port == port and not spec.restart and password not in " ".join(spec.argv)
    assert (tmp_path / "run" / "secrets" / "keycloak.json").stat().st_mode & 0o077 == 0


def test_realm_gives_each_supplier_a_confidential_client_credentials_client(tmp_path) -> None:
    realm = realm_representation(tmp_path, ["sup-b", "sup-a"])
    assert [c["clientId"] for c in realm["clients"]] == ["sup-a", "sup-b"]
    rep = client_representation("sup-a", "s3cret")
    assert rep["serviceAccountsEnabled"] and not rep["publicClient"] and not rep["standardFlowEnabled"]
    assert not rep["directAccessGrantsEnabled"] and not rep["implicitFlowEnabled"]
    mappers = {m["protocolMapper"]: m["config"] for m in rep["protocolMappers"]}
    assert mappers["oidc-hardcoded-claim-mapper"]["claim.name"] == "supplier"
    assert mappers["oidc-hardcoded-claim-mapper"]["claim.value"] == "sup-a"
    assert mappers["oidc-audience-mapper"]["included.custom.audience"] == AUDIENCE
    # the secret is generated once and kept (mode 600): a second realm build gives the same one
    assert realm_representation(tmp_path, ["sup-a"])["clients"][0]["secret"] == realm["clients"][0]["secret"]
