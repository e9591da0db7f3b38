"""Camel K Integrations: rendering checked against the resource shape, and the full lifecycle through the
Kubernetes REST API of the `kmock` emulator (environment.md: no real API server installs here)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from connectors.camel.examples import example_files
from connectors.camel.integrations import (
    SSL_CONTEXT,
    CamelError,
    camel_flows,
    integration_name,
    render_all,
    render_integration,
)
from connectors.camel.kube import KubeClient, status_row
from lec.records import RAW_SCHEMA
from tests.support.ftpd import self_signed_cert
from tests.support.sshd import load_community, make_keys

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "infra" / "camel-k" / "integration.schema.json").read_text())
NS = "lec-test"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("camel")
    return load_community(base / "run", make_keys(base / "keys"))


@pytest.fixture(scope="module")
def kube() -> Iterator[dict[str, Any]]:
    """kmock's KubernetesEmulator on a loopback port, in a thread with its own event loop."""
    from kmock import KubernetesEmulator, Server

    ready, box = threading.Event(), {}

    async def main() -> None:
        async with KubernetesEmulator() as emulator, Server(emulator) as server:
            emulator.resources["camel.apache.org/v1/integrations"] = {"kind": "Integration", "namespaced": True}
            box.update(url=str(server.url).rstrip("/"), emulator=emulator, loop=asyncio.get_running_loop(),
                       stop=asyncio.Event())
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(30), "kmock did not start"
    yield box
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(10)


def _route(integration: dict[str, Any]) -> dict[str, Any]:
    return next(f["route"] for f in integration["spec"]["flows"] if "route" in f)


def _camel_flow(registry, **camel: Any):
    [flow] = camel_flows(registry.snapshot())
    return replace(flow, syntax_options={"camel": camel})


def test_rendered_http_poll_integration_matches_the_camel_k_shape(registry) -> None:
    [integration] = render_all(registry.snapshot(), namespace=NS, kafka_brokers="kafka.lec:9092")
    jsonschema.validate(integration, SCHEMA)
    assert integration["metadata"]["name"] == "lec-f-b-camel"
    assert integration["metadata"]["labels"]["lec.flow"] == "f-b-camel"
    route = _route(integration)
    assert route["from"]["uri"] == "timer:lec-f-b-camel" and route["from"]["parameters"] == {"period": 60000}
    steps = route["from"]["steps"]
    assert steps[3]["to"]["uri"] == "https://api.sup-b.example/readings"
    assert {"setHeader": {"name": "kafka.KEY", "constant": "DEV-B1"}} in steps
    # sent once per message id (a Kafka-backed idempotent repository), then the cursor moves on
    [send] = steps[-2]["idempotentConsumer"]["steps"]
    assert steps[-2]["idempotentConsumer"]["idempotentRepository"] == "#lec-f-b-camel-seen"
    assert send["to"]["uri"] == "kafka:lec.raw" and send["to"]["parameters"]["brokers"] == "kafka.lec:9092"
    assert steps[-1]["setVariable"]["name"] == "global:lec-f-b-camel-query"
    assert route["routeConfigurationId"] == "lec-f-b-camel-retry"
    script = steps[-3]["setBody"]["expression"]["groovy"]["expression"]
    for const in ("def SUPPLIER = 'sup-b'", "def FLOW = 'f-b-camel'", "def DEVICE = 'DEV-B1'",
                  "def COMMUNITY = 'cer-sftp'", f"def RAW_SCHEMA = '{RAW_SCHEMA}'", "def MAX_PAYLOAD = 1048576",
                  "channel: 'camel'", "payload_b64"):
        assert const in script
    # rendered YAML round-trips (what `camel render` prints is what `camel apply` sends)
    assert yaml.safe_load(yaml.safe_dump(integration)) == integration


def test_rendered_ftp_poll_integration_with_secret(registry) -> None:
    flow = _camel_flow(registry, kind="ftp-poll", url="sftp://ftp.sup-b.example:22/out", period=300000,
                       username="lec", password="{{lec.sup-b.ftp-password}}", secret="sup-b-ftp",
                       known_hosts="ftp.sup-b.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample")
    integration = render_integration(flow, namespace=NS, kafka_brokers="k:9092")
    jsonschema.validate(integration, SCHEMA)
    source = _route(integration)["from"]
    assert source["uri"] == "sftp://ftp.sup-b.example:22/out"
    params = source["parameters"]
    assert params["delay"] == 300000 and params["move"] == ".done"
    assert params["password"] == "{{lec.sup-b.ftp-password}}"
    # only the flow's host key is accepted (camel-ftp's default accepts any), not ~/.ssh/known_hosts
    assert params["strictHostKeyChecking"] == "yes" and params["useUserKnownHostsFile"] is False
    assert params["knownHosts"] == "ftp.sup-b.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
    assert "passiveMode" not in params  # an FTP option; on sftp:// it means nothing
    assert integration["spec"]["traits"] == {"mount": {"configs": ["secret:sup-b-ftp"]}}
    ftp = render_integration(_camel_flow(registry, kind="ftp-poll", url="ftp://ftp.sup-b.example/out", period=5000),
                             namespace=NS, kafka_brokers="k:9092")
    assert _route(ftp)["from"]["parameters"]["passiveMode"] is True
    assert "sslContextParameters" not in _route(ftp)["from"]["parameters"]


def test_rendered_ftps_integration_checks_the_certificate(registry, tmp_path: Path) -> None:
    ftps = _camel_flow(registry, kind="ftp-poll", url="ftps://ftp.sup-b.example/out", period=5000)
    integration = render_integration(ftps, namespace=NS, kafka_brokers="k:9092")
    jsonschema.validate(integration, SCHEMA)
    params = _route(integration)["from"]["parameters"]
    # camel-ftp's FTPS default trusts any certificate in its dates: an SSLContext and the name check instead
    assert params["sslContextParameters"] == "#lec-f-b-camel-tls" and params["ftpClient.endpointCheckingEnabled"]
    assert {"name": "lec-f-b-camel-tls", "type": SSL_CONTEXT} in integration["spec"]["flows"][0]["beans"]
    pem = self_signed_cert(tmp_path, "vendor")[0].read_text()
    pinned = render_integration(replace(ftps, syntax_options={"camel": {**ftps.syntax_options["camel"],
                                                                        "trust_cert": pem}}),
                                namespace=NS, kafka_brokers="k:9092")
    jsonschema.validate(pinned, SCHEMA)
    [tls] = [b for b in pinned["spec"]["flows"][0]["beans"] if b["type"] == SSL_CONTEXT]
    assert tls["properties"]["trustManagers.keyStore.resource"].startswith("base64:")
    assert render_integration(replace(ftps, syntax_options={"camel": {**ftps.syntax_options["camel"],
                                                                      "trust_cert": pem}}),
                              namespace=NS, kafka_brokers="k:9092") == pinned  # stable spec digest


@pytest.mark.parametrize("camel,message", [
    ({"kind": "mqtt", "url": "x", "period": 5000}, "kind must be one of"),
    ({"kind": "http-poll", "period": 5000}, "url is required"),
    ({"kind": "http-poll", "url": "ftp://x/y", "period": 5000}, "must start with http"),
    ({"kind": "ftp-poll", "url": "https://x/y", "period": 5000}, "must start with ftp"),
    ({"kind": "http-poll", "url": "https://x/y", "period": 10}, "milliseconds"),
    ({"kind": "ftp-poll", "url": "sftp://x/y", "period": 5000}, "needs syntax_options.camel.known_hosts"),
    ({"kind": "ftp-poll", "url": "ftps://x/y", "period": 5000, "trust_cert": "x"}, "trust_cert must be .* PEM"),
    ({"kind": "ftp-poll", "url": "ftp://x/y", "period": 5000, "trust_cert": "x"}, "for ftps:// urls only"),
])
def test_bad_camel_descriptions_are_refused_with_a_reason(registry, camel: dict[str, Any], message: str) -> None:
    with pytest.raises(CamelError, match=message):
        render_integration(_camel_flow(registry, **camel), namespace=NS, kafka_brokers="k:9092")


def test_shape_check_catches_a_broken_resource(registry) -> None:
    [integration] = render_all(registry.snapshot(), namespace=NS, kafka_brokers="k:9092")
    _route(integration)["from"]["steps"].append({"log": "x", "to": {"uri": "kafka:x"}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(integration, SCHEMA)
    assert integration_name("F_b.Camel") == "lec-f-b-camel"


def test_apply_update_status_delete_through_the_kubernetes_api(registry, kube: dict[str, Any]) -> None:
    client = KubeClient(kube["url"], token="test-token")
    flow = _camel_flow(registry, kind="http-poll", url="https://api.sup-b.example/v1", period=60000)
    integration = render_integration(flow, namespace=NS, kafka_brokers="k:9092")
    assert client.apply(integration) == "created"
    assert client.apply(integration) == "unchanged"
    stored = client.get(NS, "lec-f-b-camel")
    assert stored["spec"] == integration["spec"]
    changed = render_integration(replace(flow, syntax_options={"camel": {"kind": "http-poll", "period": 120000,
                                                                          "url": "https://api.sup-b.example/v2"}}),
                                 namespace=NS, kafka_brokers="k:9092")
    assert client.apply(changed) == "updated"
    stored = client.get(NS, "lec-f-b-camel")
    route = _route(stored)["from"]
    assert route["parameters"]["period"] == 120000 and route["steps"][3]["to"]["uri"] == "https://api.sup-b.example/v2"
    assert stored["metadata"]["annotations"] == changed["metadata"]["annotations"]
    # the Camel K operator reports status on the status subresource; we read it back
    assert status_row(stored)["phase"] == "Pending"
    import requests
    requests.patch(f"{kube['url']}/apis/camel.apache.org/v1/namespaces/{NS}/integrations/lec-f-b-camel/status",
                   json={"status": {"phase": "Running", "conditions": [
                       {"type": "Ready", "status": "True", "reason": "DeploymentReady"}]}},
                   headers={"Content-Type": "application/merge-patch+json"}, timeout=10).raise_for_status()
    rows = [status_row(i) for i in client.list_managed(NS)]
    assert rows == [{"name": "lec-f-b-camel", "flow": "f-b-camel", "phase": "Running", "ready": "True",
                     "message": "DeploymentReady"}]
    # every call of the client (get, create, get, get, patch, get, list) carried the bearer token
    assert sum(r.headers.get("Authorization") == "Bearer test-token" for r in kube["emulator"]) >= 7
    assert client.delete(NS, "lec-f-b-camel") is True
    assert client.get(NS, "lec-f-b-camel") is None
    assert client.delete(NS, "lec-f-b-camel") is False


def test_apply_refuses_to_take_over_an_unmanaged_integration(registry, kube: dict[str, Any]) -> None:
    client = KubeClient(kube["url"])
    [integration] = render_all(registry.snapshot(), namespace="other-ns", kafka_brokers="k:9092")
    foreign = {**integration, "metadata": {**integration["metadata"], "labels": {"owner": "someone"},
                                           "annotations": {}}, "spec": {"flows": []}}
    import requests
    requests.post(f"{kube['url']}/apis/camel.apache.org/v1/namespaces/other-ns/integrations", json=foreign,
                  timeout=10).raise_for_status()
    with pytest.raises(CamelError, match="not managed by lec"):
        client.apply(integration)
    assert client.list_managed("other-ns") == []


def test_cli_apply_status_delete_with_a_kubeconfig(registry, kube: dict[str, Any], tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "kmock", "cluster": {"server": kube["url"]}}],
        "users": [{"name": "lec", "user": {"token": "kubeconfig-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "kmock", "user": "lec"}}]}))
    run_dir = Path(registry.engine.url.database).parent
    env = {**os.environ, "LEC_RUN_DIR": str(run_dir), "LEC_REGISTRY_URL": f"sqlite:///{run_dir / 'registry.db'}",
           "LEC_SECRETS_URL": f"sqlite:///{run_dir / 'secrets.db'}", "LEC_KAFKA_BOOTSTRAP": "kafka.lec:9092"}

    def lec(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "connectors", "camel", *args], env=env,
                                cwd=REPO, check=False, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    rendered = list(yaml.safe_load_all(lec("render", "-n", "cli-ns")))
    assert [r["metadata"]["name"] for r in rendered] == ["lec-f-b-camel"]
    jsonschema.validate(rendered[0], SCHEMA)
    assert lec("apply", "-n", "cli-ns", "--kubeconfig", str(kubeconfig)).split() == ["created", "lec-f-b-camel"]
    assert lec("apply", "-n", "cli-ns", "--kubeconfig", str(kubeconfig)).split() == ["unchanged", "lec-f-b-camel"]
    assert "lec-f-b-camel\tf-b-camel\tPending\tUnknown" in lec("status", "-n", "cli-ns", "--kubeconfig",
                                                                 str(kubeconfig))
    assert any(r.headers.get("Authorization") == "Bearer kubeconfig-token" for r in kube["emulator"])
    assert lec("delete", "-n", "cli-ns", "--kubeconfig", str(kubeconfig)).split() == ["deleted", "lec-f-b-camel"]
    assert "lec-f-b-camel" not in lec("status", "-n", "cli-ns", "--kubeconfig", str(kubeconfig))


def test_infra_examples_parse_and_match_the_shape() -> None:
    folder = REPO / "infra" / "camel-k"
    integrations = [doc for path in sorted(folder.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
                    if doc and doc.get("kind") == "Integration"]
    assert len(integrations) == 2
    for integration in integrations:
        jsonschema.validate(integration, SCHEMA)
    rbac = list(yaml.safe_load_all((folder / "rbac.yaml").read_text()))
    [role] = [d for d in rbac if d["kind"] == "Role"]
    assert {"create", "patch", "delete", "list", "get"} <= set(role["rules"][0]["verbs"])


def test_infra_examples_are_what_the_example_community_renders(tmp_path: Path) -> None:
    """infra/camel-k/example-*.yaml are generated from examples/camel-community.yaml by the CLI: a change to
    the rendering or to that file that was not re-rendered fails here, so the examples cannot go stale."""
    import asyncssh

    env = {**os.environ, "LEC_KAFKA_BOOTSTRAP": "elsewhere:9092", "LEC_MAX_PAYLOAD_BYTES": "1000"}  # not used
    result = subprocess.run([sys.executable, "-m", "connectors", "camel", "render", "--community-file",
                             "examples/camel-community.yaml", "--out", str(tmp_path)], env=env, cwd=REPO,
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    committed = sorted((REPO / "infra" / "camel-k").glob("example-*.yaml"))
    assert [p.name for p in committed] == ["example-ftp-poll.yaml", "example-http-poll.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in committed]
    for path in committed:
        assert path.read_bytes() == (tmp_path / path.name).read_bytes(), (
            f"{path.relative_to(REPO)} is stale: run `lec connectors camel render --community-file "
            f"examples/camel-community.yaml --out infra/camel-k` and commit the result")
    assert example_files(REPO / "examples" / "camel-community.yaml")["example-ftp-poll.yaml"] == \
        committed[0].read_text()
    # the sftp example's placeholder host key is a well-formed known_hosts line for the URL's host and port
    ftp = yaml.safe_load(committed[0].read_text())
    params = _route(ftp)["from"]["parameters"]
    assert params["strictHostKeyChecking"] == "yes"
    host_keys = asyncssh.import_known_hosts(params["knownHosts"]).match("ftp.sup-b.example", "", 22)[0]
    assert [k.get_algorithm() for k in host_keys] == ["ssh-ed25519"]
