"""HTTP ingest against a real uvicorn server (the `http-serve` command) and real Kafka (Tansu)."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
import orjson
import pytest

from connectors.http.tokens import AUDIENCE, EMBEDDED_ISSUER, issue_token
from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.procs import ManagedProcess, free_port, port_open
from lec.records import encode, utc_now_iso
from lec.registry import Registry, SecretStore
from tests.conftest import EXAMPLE_COMMUNITY
from tests.support.mosquitto import PROJECT_ROOT, raw_items, read_topic, start_worker, worker_env

PV_FLOW = "f-bruno-pv"          # sup-utility's PV plant (device PV-0001)
MAX_BODY = 400_000


def start_http(settings: Settings, bootstrap: str, root, **extra: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = worker_env(settings, bootstrap, 0, LEC_HTTP_PORT=str(port), LEC_HTTP_MAX_BODY_BYTES=str(MAX_BODY),
                     **extra)
    proc = start_worker("http", ["http-serve"], env, root)
    proc.wait_ready(lambda: port_open(port), timeout=60)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("http")
    settings = Settings(run_dir=root / "run", max_payload_bytes=256 * 1024)
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    ensure_topics(kafka_bootstrap)
    proc, url = start_http(settings, kafka_bootstrap, root)
    try:
        yield {"url": url, "settings": settings, "bootstrap": kafka_bootstrap, "root": root,
               "utility": issue_token(settings, "sup-utility"), "home": issue_token(settings, "sup-home")}
    finally:
        proc.stop()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _readings(n: int, tag: str) -> list[dict]:
    return [{"t": f"2024-01-01T{(i // 4) % 24:02d}:{(i % 4) * 15:02d}:00Z", "wh": i, "tag": tag} for i in range(n)]


def _raw_of_batch(api: dict, batch_id: str, items: int) -> list[dict]:
    msgs = read_topic(api["bootstrap"], topics.RAW, lambda f: len(f) >= items,
                      match=lambda m: batch_id.encode() in m.value())
    return sorted(raw_items(msgs), key=lambda i: i["source"]["index"])


def test_tokens_issue_command_prints_a_verifiable_token(api: dict) -> None:
    s = api["settings"]
    out = subprocess.run([sys.executable, "-m", "connectors", "tokens", "issue", "--supplier",
                          "sup-home", "--ttl", "120"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                         env=worker_env(s, api["bootstrap"], 0), check=True).stdout.strip()
    claims = jwt.decode(out, options={"verify_signature": False})
    assert claims["supplier"] == "sup-home" and claims["aud"] == AUDIENCE and claims["exp"] - claims["iat"] == 120
    r = httpx.get(f"{api['url']}/v1/batches/nope", headers=_auth(out))
    assert r.status_code == 404                       # authenticated, just no such batch
    bad = subprocess.run([sys.executable, "-m", "connectors", "tokens", "issue", "--supplier",
                          "sup-nobody"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                         env=worker_env(s, api["bootstrap"], 0))
    assert bad.returncode != 0 and "not in the registry" in bad.stderr + bad.stdout


def test_json_batch_is_chunked_into_raw_items_with_batch_coordinates(api: dict) -> None:
    tag = uuid.uuid4().hex
    readings = _readings(2500, tag)
    r = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": PV_FLOW}, json=readings,
                   headers=_auth(api["utility"]), timeout=30)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["readings"] == 2500 and body["items"] == 3 and body["device_id"] == "PV-0001"
    items = _raw_of_batch(api, body["batch_id"], 3)
    assert [i["source"] for i in items] == [{"batch_id": body["batch_id"], "index": k} for k in (0, 1000, 2000)]
    got = [rd for i in items for rd in orjson.loads(base64.b64decode(i["payload_b64"]))]
    assert got == readings
    assert {i["flow_id"] for i in items} == {PV_FLOW} and items[0]["content_type"] == "application/json"


def test_csv_batch_keeps_exact_lines_and_header(api: dict) -> None:
    lines = [f"2024-01-01T00:{m:02d}:00Z;{m * 3}".encode() for m in range(0, 60, 15)]
    body = b"t;wh\r\n" + b"\n".join(lines) + b"\n"
    r = httpx.post(f"{api['url']}/v1/readings?flow_id={PV_FLOW}", content=body,
                   headers={**_auth(api["utility"]), "Content-Type": "text/csv"})
    assert r.status_code == 202, r.text
    items = _raw_of_batch(api, r.json()["batch_id"], 1)
    assert base64.b64decode(items[0]["payload_b64"]) == b"\n".join(lines) + b"\n"
    assert items[0]["source"]["header"] == "t;wh" and items[0]["content_type"] == "text/csv"


def test_object_body_and_idempotency_key_give_the_same_batch(api: dict) -> None:
    doc = {"flow_id": PV_FLOW, "device_id": "PV-0001", "readings": _readings(3, uuid.uuid4().hex)}
    headers = {**_auth(api["utility"]), "Idempotency-Key": uuid.uuid4().hex}
    first = httpx.post(f"{api['url']}/v1/readings", json=doc, headers=headers)
    again = httpx.post(f"{api['url']}/v1/readings", json=doc, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["batch_id"] == again.json()["batch_id"]


def test_unauthenticated_and_forged_tokens_are_refused(api: dict) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    url = f"{api['url']}/v1/readings?flow_id={PV_FLOW}"
    data = _readings(2, "x")
    assert httpx.post(url, json=data).status_code == 401
    assert httpx.post(url, json=data, headers={"Authorization": "Basic abc"}).status_code == 401
    now = int(time.time())
    claims = {"iss": EMBEDDED_ISSUER, "aud": AUDIENCE, "supplier": "sup-utility", "iat": now, "exp": now + 60}
    forged = jwt.encode(claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256")
    r = httpx.post(url, json=data, headers=_auth(forged))
    assert r.status_code == 401 and r.json()["reason_code"] == "bad_token"
    assert r.headers["www-authenticate"] == "Bearer"
    expired = issue_token(api["settings"], "sup-utility", ttl_s=-120)
    r = httpx.post(url, json=data, headers=_auth(expired))
    assert r.status_code == 401 and "expired" in r.json()["message"]
    from connectors.http.tokens import signing_key

    wrong_aud = jwt.encode({**claims, "aud": "account"}, signing_key(api["settings"]), algorithm="RS256")
    assert httpx.post(url, json=data, headers=_auth(wrong_aud)).status_code == 401


def test_supplier_may_only_post_its_own_flows(api: dict) -> None:
    r = httpx.post(f"{api['url']}/v1/readings?flow_id={PV_FLOW}", json=_readings(2, "x"), headers=_auth(api["home"]))
    assert r.status_code == 403 and r.json()["reason_code"] == "not_owner" and "sup-home" in r.json()["message"]
    r = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": PV_FLOW, "device_id": "IT001E00000001"},
                   json=_readings(2, "x"), headers=_auth(api["utility"]))
    assert r.status_code == 403 and "PV-0001" in r.json()["message"]
    r = httpx.post(f"{api['url']}/v1/readings?flow_id=no-such-flow", json=_readings(2, "x"),
                   headers=_auth(api["utility"]))
    assert r.status_code == 403


def test_size_and_format_limits(api: dict) -> None:
    url = f"{api['url']}/v1/readings?flow_id={PV_FLOW}"
    auth = _auth(api["utility"])
    r = httpx.post(url, content=b"[" + b'{"wh":1},' * (MAX_BODY // 9) + b'{"wh":1}]', headers=auth)
    assert r.status_code == 413 and r.json()["reason_code"] == "too_large"
    one_big = [{"pad": "x" * (300 * 1024)}]       # one reading over max_payload_bytes (256 KiB)
    assert httpx.post(url, json=one_big, headers=auth).status_code == 413
    r = httpx.post(url, content=b"<xml/>", headers={**auth, "Content-Type": "application/xml"})
    assert r.status_code == 415
    r = httpx.post(url, content=b"[{", headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["reason_code"] == "bad_json"
    assert httpx.post(url, json=[1, 2], headers=auth).status_code == 400
    assert httpx.post(url, json=[], headers=auth).status_code == 400


def test_batch_status_reports_each_reading_from_feedback(api: dict) -> None:
    from lec.io import Producer

    r = httpx.post(f"{api['url']}/v1/readings?flow_id={PV_FLOW}", json=_readings(1500, uuid.uuid4().hex),
                   headers=_auth(api["utility"]), timeout=30)
    batch_id = r.json()["batch_id"]
    status = httpx.get(f"{api['url']}/v1/batches/{batch_id}", headers=_auth(api["utility"])).json()
    assert status["status"] == "pending" and status["pending"] == 1500
    items = status["items"]
    assert [(i["index"], i["count"]) for i in items] == [(0, 1000), (1000, 500)]
    # what the streams would answer: item 0 fully accepted, item 1 with readings 5 and 7 rejected
    producer = Producer(api["bootstrap"])
    for item, accepted, errors in ((items[0], 1000, []), (items[1], 498, [5, 7])):
        producer.produce(topics.FEEDBACK, encode({
            "schema": "lec.feedback/1", "supplier_id": "sup-utility", "community_id": "cer-example",
            "channel": "http", "message_id": item["message_id"], "batch_id": batch_id,
            "status": "partial" if errors else "accepted", "accepted": accepted, "rejected": len(errors),
            "duplicates": 0, "errors": [{"index": e, "line": None, "reason_code": "out_of_range",
                                         "message": f"energy of reading {e} out of range"} for e in errors],
            "source": {"batch_id": batch_id, "index": item["index"]}, "ts": utc_now_iso()}), b"sup-utility")
    producer.flush(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = httpx.get(f"{api['url']}/v1/batches/{batch_id}", params={"readings": "true"},
                           headers=_auth(api["utility"])).json()
        if status["status"] == "complete":
            break
        time.sleep(0.2)
    assert status["status"] == "complete" and status["accepted"] == 1498 and status["rejected"] == 2
    assert [x["index"] for x in status["rejections"]] == [1005, 1007]
    assert status["rejections"][0]["reason_code"] == "out_of_range"
    marks = status["reading_status"]
    assert len(marks) == 1500 and marks[1005] == marks[1007] == "rejected" and marks.count("accepted") == 1498
    # another supplier cannot see it
    assert httpx.get(f"{api['url']}/v1/batches/{batch_id}", headers=_auth(api["home"])).status_code == 404


def test_external_jwks_issuer_keycloak_style(api: dict, tmp_path) -> None:
    """A server configured with LEC_JWKS_URL/LEC_JWT_ISSUER verifies tokens through the remote JWKS."""
    settings = Settings(run_dir=tmp_path / "run", registry_url=api["settings"].resolved_registry_url())
    proc, url = start_http(settings, api["bootstrap"], tmp_path,
                           LEC_JWKS_URL=f"{api['url']}/realms/lec/protocol/openid-connect/certs",
                           LEC_JWT_ISSUER=EMBEDDED_ISSUER)
    try:
        r = httpx.post(f"{url}/v1/readings?flow_id={PV_FLOW}", json=_readings(3, "ext"), headers=_auth(api["utility"]))
        assert r.status_code == 202, r.text
        own = issue_token(settings.model_copy(update={"jwks_url": ""}), "sup-utility")  # key unknown to the JWKS
        assert httpx.post(f"{url}/v1/readings?flow_id={PV_FLOW}", json=_readings(3, "ext"),
                          headers=_auth(own)).status_code == 401
    finally:
        proc.stop()


def test_schemathesis_finds_no_server_errors(api: dict) -> None:
    """Property-based requests generated from the served OpenAPI spec: no 5xx, responses as documented."""
    run = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "schemathesis"), "run", f"{api['url']}/openapi.json",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "-H", f"Authorization: Bearer {api['utility']}", "--max-examples", "40", "--generation-deterministic",
         "--request-timeout", "20"],
        capture_output=True, text=True, timeout=400, cwd=api["root"])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
