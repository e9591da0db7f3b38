"""Camel K ``Integration`` resources for external sources described in the registry (seed §4.3.3).

A flow with ``channel: camel`` describes its source in ``syntax_options.camel``::

    camel:
      kind: http-poll            # GET a supplier's HTTP API every ``period`` ms
      url: https://api.example/readings
      period: 60000
      headers: {Authorization: "Bearer {{lec.sup-b.token}}"}   # optional; {{...}} = Camel property
      secret: sup-b-api          # optional Kubernetes Secret mounted as Camel properties

    camel:
      kind: ftp-poll             # take files from an FTP/SFTP folder (moved to .done after reading)
      url: sftp://ftp.example:22/out
      period: 300000
      username: lec
      password: "{{lec.sup-b.ftp-password}}"
      known_hosts: "[ftp.example]:22 ssh-ed25519 AAAA..."   # sftp://: the only host key accepted
      trust_cert: "-----BEGIN CERTIFICATE-----..."   # ftps://, optional: the vendor's cert or CA (PEM)
      secret: sup-b-ftp

Each flow becomes one Integration whose YAML DSL route polls the source, wraps the response or
file into the platform's raw envelope (``lec.raw/1``, channel ``camel``, one item whose
message_id is ``records.message_id_for("camel", supplier, flow, sha256(payload))``, so polling
the same content twice gives the same id) and sends it to the raw topic keyed by device.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import yaml

from lec import topics
from lec.errors import LecError
from lec.records import RAW_SCHEMA
from lec.registry import Flow, RegistrySnapshot

API_VERSION = "camel.apache.org/v1"
MANAGED_BY = "lec"
KINDS = ("http-poll", "ftp-poll")
IDEMPOTENT_REPOSITORY = "org.apache.camel.processor.idempotent.kafka.KafkaIdempotentRepository"
SSL_CONTEXT = "org.apache.camel.support.jsse.SSLContextParameters"
SEEN_TOPIC = "lec.camel.seen"  # message ids of pages/files a Camel route already sent
CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "xml": "application/xml"}


class CamelError(LecError):
    """A Camel source description or a Kubernetes call is wrong."""


def integration_name(flow_id: str) -> str:
    """A DNS-1123 name for the flow's Integration."""
    name = re.sub(r"[^a-z0-9-]", "-", f"lec-{flow_id}".lower()).strip("-")[:63].rstrip("-")
    return name


# Groovy, run by Camel for each polled body: the same id scheme as lec.records.message_id_for.
GROOVY_IMPORTS = """\
import java.security.MessageDigest
import java.time.ZoneOffset
import java.time.ZonedDateTime
import java.time.format.DateTimeFormatter
"""
ENVELOPE_GROOVY = """\
def sha = { List parts ->
    def md = MessageDigest.getInstance('SHA-256')
    parts.each { p -> md.update(p instanceof byte[] ? p : p.toString().getBytes('UTF-8')); md.update((byte) 0) }
    md.digest().encodeHex().toString()
}
byte[] payload = exchange.message.getBody(byte[].class) ?: new byte[0]
if (payload.length > MAX_PAYLOAD) {
    throw new IllegalArgumentException("source message of ${payload.length} bytes exceeds the ${MAX_PAYLOAD}-byte bound")
}
def payloadSha = MessageDigest.getInstance('SHA-256').digest(payload).encodeHex().toString()
def file = exchange.message.getHeader('CamelFileName')
def idParts = ['camel', SUPPLIER, FLOW, payloadSha] + (file ? [file] : [])
def messageId = sha(idParts).substring(0, 32)
def source = [integration: INTEGRATION]
if (file) { source.file = file.toString(); source.file_sha256 = payloadSha }
def item = [message_id: messageId,
            received_ts: ZonedDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")),
            device_id: DEVICE, flow_id: FLOW, content_type: CONTENT_TYPE,
            payload_b64: payload.encodeBase64().toString(), source: source]
def envelope = [schema: RAW_SCHEMA, envelope_id: sha(['camel', SUPPLIER, messageId]).substring(0, 32),
                channel: 'camel', community_id: COMMUNITY, supplier_id: SUPPLIER, items: [item]]
// the idempotent consumer's key: a page or file already sent (same bytes) is not sent again
exchange.message.setHeader('LecMessageId', messageId)
// paging: the next query comes from the page's cursor field; garbage keeps the current one
def query = exchange.getProperty('LecQuery') ?: ''
if (CURSOR_FIELD) {
    try {
        def doc = new groovy.json.JsonSlurper().parse(payload)
        def next = (doc instanceof Map) ? doc[CURSOR_FIELD] : null
        if (next != null && next.toString()) {
            query = CURSOR_PARAM + '=' + URLEncoder.encode(next.toString(), 'UTF-8')
        }
    } catch (Exception ignored) { }
}
exchange.setProperty('LecNextQuery', query)
groovy.json.JsonOutput.toJson(envelope)
"""


def _groovy_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def envelope_script(flow: Flow, integration: str, max_payload_bytes: int) -> str:
    cursor = (flow.syntax_options.get("camel") or {}).get("cursor") or {}
    consts = {"SUPPLIER": flow.supplier_id, "FLOW": flow.id, "DEVICE": flow.device_id,
              "COMMUNITY": flow.community_id, "INTEGRATION": integration, "RAW_SCHEMA": RAW_SCHEMA,
              "CONTENT_TYPE": CONTENT_TYPES.get(flow.syntax, "application/octet-stream"),
              "CURSOR_FIELD": str(cursor.get("field", "")), "CURSOR_PARAM": str(cursor.get("param", "cursor"))}
    head = "".join(f"def {k} = {_groovy_string(v)}\n" for k, v in consts.items())
    return GROOVY_IMPORTS + head + f"def MAX_PAYLOAD = {int(max_payload_bytes)}\n" + ENVELOPE_GROOVY


def _source_steps(flow: Flow, spec: dict[str, Any], name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    kind = spec.get("kind")
    url = spec.get("url")
    period = int(spec.get("period", 60000))
    if kind not in KINDS:
        raise CamelError(f"flow {flow.id}: syntax_options.camel.kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(url, str) or not url:
        raise CamelError(f"flow {flow.id}: syntax_options.camel.url is required")
    if period < 1000:
        raise CamelError(f"flow {flow.id}: syntax_options.camel.period is in milliseconds and must be >= 1000")
    if kind == "http-poll":
        if not url.startswith(("http://", "https://")):
            raise CamelError(f"flow {flow.id}: an http-poll url must start with http:// or https://")
        cursor = spec.get("cursor")
        if cursor is not None and (not isinstance(cursor, dict) or not cursor.get("field")):
            raise CamelError(f"flow {flow.id}: syntax_options.camel.cursor needs a 'field' (and optionally 'param')")
        steps: list[dict[str, Any]] = [{"setHeader": {"name": "CamelHttpMethod", "constant": "GET"}}]
        for header, value in sorted((spec.get("headers") or {}).items()):
            steps.append({"setHeader": {"name": str(header), "constant": str(value)}})
        # the cursor reached so far (empty at start: the idempotent consumer drops pages sent before)
        steps.append({"setProperty": {"name": "LecQuery", "simple": f"${{variable.global:{name}-query}}"}})
        steps.append({"setHeader": {"name": "CamelHttpQuery", "simple": "${exchangeProperty.LecQuery}"}})
        timeout_ms = int(spec.get("timeout_ms", 30000))
        steps.append({"to": {"uri": url, "parameters": {"throwExceptionOnFailure": True,
                                                        "connectTimeout": timeout_ms, "responseTimeout": timeout_ms}}})
        return {"uri": f"timer:{name}", "parameters": {"period": period}}, steps
    if not url.startswith(("ftp://", "ftps://", "sftp://")):
        raise CamelError(f"flow {flow.id}: an ftp-poll url must start with ftp://, ftps:// or sftp://")
    params: dict[str, Any] = {"delay": period, "move": ".done", "moveFailed": ".failed", "readLock": "changed",
                              "binary": True, "maxMessagesPerPoll": 100}
    if spec.get("trust_cert") and not url.startswith("ftps://"):
        raise CamelError(f"flow {flow.id}: syntax_options.camel.trust_cert is for ftps:// urls only")
    if url.startswith("sftp://"):
        params.update(_host_key_checking(flow, spec))
    else:
        params["passiveMode"] = True
    if url.startswith("ftps://"):
        # camel-ftp's own FTPS default trusts any certificate that is in its validity dates: the trust
        # comes from an SSLContext (the JVM's trust store, or the flow's trust_cert), the name is checked
        params.update({"sslContextParameters": f"#{name}-tls", "ftpClient.endpointCheckingEnabled": True})
    for key in ("username", "password"):
        if spec.get(key):
            params[key] = str(spec[key])
    return {"uri": url, "parameters": params}, []


def _host_key_checking(flow: Flow, spec: dict[str, Any]) -> dict[str, Any]:
    """SFTP checks the vendor's host key against the flow's ``known_hosts`` and nothing else.

    camel-ftp's default is ``strictHostKeyChecking=no`` (any key accepted: a man in the middle gets the
    password) and ``~/.ssh/known_hosts`` of whoever runs the JVM; both are turned off here.
    """
    known = spec.get("known_hosts")
    if not isinstance(known, str) or not known.strip():
        raise CamelError(f"flow {flow.id}: an sftp:// url needs syntax_options.camel.known_hosts, the vendor's host "
                         f"key as a known_hosts line ('[host]:port ssh-ed25519 AAAA...', e.g. from "
                         f"`ssh-keyscan -p PORT host` checked with the vendor), or a {{{{property}}}} of the secret")
    return {"strictHostKeyChecking": "yes", "useUserKnownHostsFile": False, "knownHosts": known.strip()}


def trust_store(flow: Flow, pem: Any) -> str:
    """The flow's ``trust_cert`` (PEM, one or more certificates) as a PKCS#12 trust store Java reads, base64.

    Certificates are public: the store travels in the route itself (Camel's ``base64:`` resource), so
    the same Integration works on Camel K and in the local run without a file to mount.
    """
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

    try:
        certs = x509.load_pem_x509_certificates(str(pem).encode())
    except ValueError as e:
        raise CamelError(f"flow {flow.id}: syntax_options.camel.trust_cert must be the vendor's certificate (or its "
                         f"CA) in PEM ('-----BEGIN CERTIFICATE-----...'): {e}") from None
    store = pkcs12.serialize_java_truststore(
        [pkcs12.PKCS12Certificate(c, f"trust-{i}".encode()) for i, c in enumerate(certs)], NoEncryption())
    return base64.b64encode(_without_mac(store)).decode()


def _der_item(data: bytes, at: int) -> int:
    """The end offset of the DER element starting at ``at``."""
    size, at = data[at + 1], at + 2
    if size & 0x80:
        count = size & 0x7F
        size, at = int.from_bytes(data[at:at + count], "big"), at + count
    return at + size


def _without_mac(pfx: bytes) -> bytes:
    """The PKCS#12 without its (optional) MacData, whose salt is random: the same PEM gives the same route,
    so ``apply`` does not redeploy it. Java reads such a password-less store (as its own, since 8u301)."""
    start = 2 + (pfx[1] & 0x7F if pfx[1] & 0x80 else 0)  # inside the outer SEQUENCE: version, authSafe, macData
    body = pfx[start:_der_item(pfx, _der_item(pfx, start))]
    size = len(body)
    head = bytes([0x30, size]) if size < 0x80 else \
        bytes([0x30, 0x80 | ((size.bit_length() + 7) // 8)]) + size.to_bytes((size.bit_length() + 7) // 8, "big")
    return head + body


def _tls_bean(flow: Flow, spec: dict[str, Any], name: str) -> dict[str, Any]:
    bean: dict[str, Any] = {"name": f"{name}-tls", "type": SSL_CONTEXT}
    if spec.get("trust_cert"):  # else: the JVM's default trust store (public CAs)
        bean["properties"] = {"trustManagers.keyStore.resource": "base64:" + trust_store(flow, spec["trust_cert"]),
                              "trustManagers.keyStore.type": "PKCS12"}
    return bean


def render_integration(flow: Flow, *, namespace: str, kafka_brokers: str, max_payload_bytes: int = 1024 * 1024,
                       raw_topic: str = topics.RAW) -> dict[str, Any]:
    """The Integration resource for one camel flow."""
    spec = flow.syntax_options.get("camel")
    if not isinstance(spec, dict):
        raise CamelError(f"flow {flow.id} has channel 'camel' but no syntax_options.camel mapping")
    for ident in (flow.id, flow.supplier_id, flow.community_id):
        if len(ident) > 63:
            raise CamelError(f"'{ident}' is longer than the 63 characters of a Kubernetes label value; "
                             f"use a shorter id for flows delivered by Camel K")
    name = integration_name(flow.id)
    source, steps = _source_steps(flow, spec, name)
    steps += [
        {"setHeader": {"name": "kafka.KEY", "constant": flow.device_id}},
        {"setBody": {"expression": {"groovy": {"expression": envelope_script(flow, name, max_payload_bytes)}}}},
        {"idempotentConsumer": {
            "header": "LecMessageId", "idempotentRepository": f"#{name}-seen",
            "steps": [{"to": {"uri": f"kafka:{raw_topic}",
                              "parameters": {"brokers": kafka_brokers, "requestRequiredAcks": "all",
                                             "enableIdempotence": True}}}]}},
    ]
    if spec["kind"] == "http-poll":  # the cursor moves on only once the page is in Kafka
        steps.append({"setVariable": {"name": f"global:{name}-query", "simple": "${exchangeProperty.LecNextQuery}"}})
    retry = {"maximumRedeliveries": int(spec.get("retries", 5)), "redeliveryDelay": int(spec.get("retry_delay_ms", 1000)),
             "useExponentialBackOff": True, "backOffMultiplier": 2, "maximumRedeliveryDelay": 60000,
             "retryAttemptedLogLevel": "WARN"}
    integration: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Integration",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, "lec.flow": flow.id,
                       "lec.supplier": flow.supplier_id, "lec.community": flow.community_id},
        },
        "spec": {"flows": [
            # sources already sent, kept on a Kafka topic: no duplicate after a restart of the route
            {"beans": [{"name": f"{name}-seen", "type": IDEMPOTENT_REPOSITORY,
                        "properties": {"topic": SEEN_TOPIC, "bootstrapServers": kafka_brokers}},
                       *([_tls_bean(flow, spec, name)] if str(spec["url"]).startswith("ftps://") else [])]},
            # a vendor answering 5xx, timing out or unreachable: retried with exponential back-off
            {"routeConfiguration": {"id": f"{name}-retry",
                                    "errorHandler": {"defaultErrorHandler": {"redeliveryPolicy": retry}}}},
            {"route": {"id": name, "routeConfigurationId": f"{name}-retry", "from": {**source, "steps": steps}}},
        ]},
    }
    if spec.get("secret"):
        integration["spec"]["traits"] = {"mount": {"configs": [f"secret:{spec['secret']}"]}}
    digest = hashlib.sha256(json.dumps(integration["spec"], sort_keys=True).encode()).hexdigest()[:16]
    integration["metadata"]["annotations"] = {"lec/spec-sha256": digest}
    return integration


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (the Groovy transform) as readable literal blocks."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str_presenter)


def to_yaml(integrations: list[dict[str, Any]]) -> str:
    """YAML documents as `kubectl apply -f` takes them."""
    return yaml.dump_all(integrations, Dumper=_LiteralDumper, sort_keys=False)


def camel_flows(snapshot: RegistrySnapshot) -> list[Flow]:
    return sorted((f for f in snapshot.flows.values() if f.channel == "camel" and f.active), key=lambda f: f.id)


def render_all(snapshot: RegistrySnapshot, *, namespace: str, kafka_brokers: str,
               max_payload_bytes: int = 1024 * 1024) -> list[dict[str, Any]]:
    return [render_integration(f, namespace=namespace, kafka_brokers=kafka_brokers,
                               max_payload_bytes=max_payload_bytes) for f in camel_flows(snapshot)]
