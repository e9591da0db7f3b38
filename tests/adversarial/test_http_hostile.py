"""Hostile requests against the real HTTP ingest server and Kafka (issue 9, findings 6 and 15)."""

from __future__ import annotations

import uuid

import httpx

from tests.connectors.test_http import PV_FLOW, _auth, _readings, api  # noqa: F401 - the fixture

LOAD_FLOW = "f-bruno-load"      # sup-utility's other flow (device IT001E00000002)


def test_idempotency_key_reused_for_another_flow_is_a_conflict(api: dict) -> None:  # noqa: F811
    headers = {**_auth(api["utility"]), "Idempotency-Key": uuid.uuid4().hex}
    first = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": PV_FLOW}, json=_readings(2, "a"),
                       headers=headers)
    assert first.status_code == 202, first.text
    other = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": LOAD_FLOW}, json=_readings(2, "a"),
                       headers=headers)
    assert other.status_code == 409, other.text
    problem = other.json()
    assert problem["reason_code"] == "idempotency_key_reused" and first.json()["batch_id"] in problem["message"]
    # the first batch is untouched: still its flow, device and reading count
    report = httpx.get(f"{api['url']}/v1/batches/{first.json()['batch_id']}", headers=_auth(api["utility"])).json()
    assert (report["flow_id"], report["device_id"], report["readings"]) == (PV_FLOW, "PV-0001", 2)
    # the same key with the identical request is a retry: the same batch
    again = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": PV_FLOW}, json=_readings(2, "a"),
                       headers=headers)
    assert again.status_code == 202 and again.json() == first.json()


def test_idempotency_key_reused_with_another_body_is_a_conflict(api: dict) -> None:  # noqa: F811
    headers = {**_auth(api["utility"]), "Idempotency-Key": uuid.uuid4().hex}
    first = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": PV_FLOW}, json=_readings(2, "x"),
                       headers=headers)
    changed = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": PV_FLOW}, json=_readings(3, "x"),
                         headers=headers)
    assert first.status_code == 202 and changed.status_code == 409, changed.text
    # another supplier may use the same key string: keys are per supplier
    mine = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": "f-anna-load"}, json=_readings(1, "x"),
                      headers={**_auth(api["home"]), "Idempotency-Key": headers["Idempotency-Key"]})
    assert mine.status_code == 202, mine.text


def test_reading_nested_300_deep_is_a_400_not_a_500(api: dict) -> None:  # noqa: F811
    deep = b'[{"t": "2024-01-01T00:00:00Z", "wh": 1}, {"t": "2024-01-01T00:15:00Z", "x": ' \
           + b"[" * 300 + b"]" * 300 + b"}]"
    r = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": PV_FLOW}, content=deep,
                   headers={**_auth(api["utility"]), "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["reason_code"] == "too_deep" and "reading 1 " in r.json()["message"]
    assert httpx.get(f"{api['url']}/healthz").status_code == 200


def test_oversized_idempotency_key_is_refused(api: dict) -> None:  # noqa: F811
    r = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": PV_FLOW}, json=_readings(1, "k"),
                   headers={**_auth(api["utility"]), "Idempotency-Key": "k" * 300})
    assert r.status_code == 400 and r.json()["reason_code"] == "bad_idempotency_key"


def test_refused_requests_are_dead_lettered_with_bytes_and_reason(api: dict) -> None:  # noqa: F811
    import base64

    from lec import topics
    from lec.records import decode
    from tests.support.mosquitto import read_topic

    body = b'{"not json' + uuid.uuid4().hex.encode()
    r = httpx.post(f"{api['url']}/v1/readings", params={"flow_id": PV_FLOW}, content=body,
                   headers={**_auth(api["utility"]), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["reason_code"] == "bad_json"
    [msg] = read_topic(api["bootstrap"], topics.DEADLETTER, lambda f: len(f) >= 1,
                       match=lambda m: base64.b64encode(body) in m.value())
    dead = decode(msg.value())
    assert (dead["reason_code"], dead["channel"], dead["supplier_id"], dead["flow_id"]) == (
        "bad_json", "http", "sup-utility", PV_FLOW)
    assert base64.b64decode(dead["payload_b64"]) == body and "not valid JSON" in dead["message"]


def test_a_body_with_a_duplicated_key_is_refused(api: dict) -> None:  # noqa: F811
    """Two "flow_id"s: a proxy or gateway reading the first and the ingest (orjson) the last disagreed."""
    body = (b'{"flow_id": "%s", "flow_id": "%s", "readings": [{"t": "2024-01-01T00:00:00Z", "wh": 1}]}'
            % (LOAD_FLOW.encode(), PV_FLOW.encode()))
    r = httpx.post(f"{api['url']}/v1/readings", content=body,
                   headers={**_auth(api["utility"]), "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["reason_code"] == "bad_json" and "'flow_id' appears twice" in r.json()["message"]
