"""Apply, update, delete and read Camel K Integrations through the Kubernetes REST API (``requests``).

Authentication: a kubeconfig (token, client certificate, CA data), an explicit server URL with a
bearer token, or the in-cluster service account. Updates are JSON merge patches, which custom
resources accept; keys that the new spec no longer has are sent as null so they are removed.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from connectors.camel.integrations import API_VERSION, MANAGED_BY, CamelError

PLURAL = "integrations"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class KubeClient:
    server: str
    token: str | None = None
    verify: bool | str = True
    cert: tuple[str, str] | None = None
    timeout_s: float = 15.0
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.server = self.server.rstrip("/")
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"
        self.session.verify = self.verify
        if self.cert:
            self.session.cert = self.cert

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_kubeconfig(cls, path: Path, context: str | None = None) -> KubeClient:
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise CamelError(f"cannot read kubeconfig {path}: {exc}") from exc
        ctx_name = context or doc.get("current-context")
        ctx = _named(doc.get("contexts"), ctx_name, "context", path)
        cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster", path)
        user = _named(doc.get("users"), ctx.get("user"), "user", path) if ctx.get("user") else {}
        verify: bool | str = True
        if cluster.get("insecure-skip-tls-verify"):
            verify = False
        elif cluster.get("certificate-authority-data"):
            verify = _temp_file(base64.b64decode(cluster["certificate-authority-data"]))
        elif cluster.get("certificate-authority"):
            verify = cluster["certificate-authority"]
        cert = None
        if user.get("client-certificate-data") and user.get("client-key-data"):
            cert = (_temp_file(base64.b64decode(user["client-certificate-data"])),
                    _temp_file(base64.b64decode(user["client-key-data"])))
        elif user.get("client-certificate") and user.get("client-key"):
            cert = (user["client-certificate"], user["client-key"])
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        return cls(cluster["server"], token=token, verify=verify, cert=cert)

    @classmethod
    def in_cluster(cls) -> KubeClient:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host or not (SA_DIR / "token").exists():
            raise CamelError("no Kubernetes credentials: pass --kubeconfig, or --server with --token "
                             "(env LEC_KUBE_TOKEN), or run inside the cluster")
        return cls(f"https://{host}:{port}", token=(SA_DIR / "token").read_text().strip(),
                   verify=str(SA_DIR / "ca.crt"))

    # -- REST ------------------------------------------------------------------------------
    def _url(self, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        url = f"{self.server}/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}"
        return url + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise CamelError(f"Kubernetes API {self.server} unreachable: {exc}") from exc
        if resp.status_code in (401, 403):
            raise CamelError(f"Kubernetes API refused {method} {url} ({resp.status_code}): check the token and "
                             f"that its role may {method.lower()} integrations.camel.apache.org")
        return resp

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        resp = self._call("GET", self._url(namespace, name))
        if resp.status_code == 404:
            return None
        _check(resp, f"read Integration {namespace}/{name}")
        return resp.json()

    def list_managed(self, namespace: str) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/managed-by={MANAGED_BY}"
        resp = self._call("GET", self._url(namespace), params={"labelSelector": selector})
        _check(resp, f"list Integrations in {namespace}")
        items = resp.json().get("items", [])
        # filter here too: a selector the server ignored must not make us touch others' resources
        return [i for i in items if (i.get("metadata", {}).get("labels") or {}).get(
            "app.kubernetes.io/managed-by") == MANAGED_BY]

    def apply(self, integration: dict[str, Any]) -> str:
        """Create or update; returns 'created', 'updated' or 'unchanged'."""
        meta = integration["metadata"]
        current = self.get(meta["namespace"], meta["name"])
        if current is None:
            _check(self._call("POST", self._url(meta["namespace"]), json=integration),
                   f"create Integration {meta['namespace']}/{meta['name']}")
            return "created"
        if (current.get("metadata", {}).get("annotations") or {}).get("lec/spec-sha256") == \
                meta["annotations"]["lec/spec-sha256"] and current.get("spec") == integration["spec"]:
            return "unchanged"
        labels = (current.get("metadata", {}).get("labels") or {})
        if labels.get("app.kubernetes.io/managed-by") != MANAGED_BY:
            raise CamelError(f"Integration {meta['namespace']}/{meta['name']} exists and is not managed by lec; "
                             f"rename the flow or delete that Integration first")
        patch = {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
                 "spec": _merge_patch(current.get("spec") or {}, integration["spec"])}
        _check(self._call("PATCH", self._url(meta["namespace"], meta["name"]), json=patch,
                          headers={"Content-Type": "application/merge-patch+json"}),
               f"update Integration {meta['namespace']}/{meta['name']}")
        return "updated"

    def delete(self, namespace: str, name: str) -> bool:
        resp = self._call("DELETE", self._url(namespace, name))
        if resp.status_code == 404:
            return False
        _check(resp, f"delete Integration {namespace}/{name}")
        return True


def status_row(integration: dict[str, Any]) -> dict[str, Any]:
    """Name, flow, phase and readiness of an Integration as the Camel K operator reports them."""
    meta, status = integration.get("metadata", {}), integration.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return {"name": meta.get("name"), "flow": (meta.get("labels") or {}).get("lec.flow"),
            "phase": status.get("phase") or "Pending", "ready": ready.get("status", "Unknown"),
            "message": ready.get("message") or ready.get("reason") or ""}


def _merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 patch turning ``old`` into ``new`` (lists are replaced whole)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            patch[key] = _merge_patch(old[key], value)
        else:
            patch[key] = value
    return patch


def _check(resp: requests.Response, what: str) -> None:
    if resp.status_code >= 300:
        try:
            detail = resp.json().get("message", "")
        except ValueError:
            detail = resp.text[:300]
        raise CamelError(f"could not {what}: HTTP {resp.status_code} {detail}")


def _named(entries: Any, name: Any, kind: str, path: Path) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return entry.get(kind) or {}
    raise CamelError(f"kubeconfig {path} has no {kind} named {name!r}")


def _temp_file(data: bytes) -> str:
    with tempfile.NamedTemporaryFile(prefix="lec-kube-", delete=False) as fh:
        os.chmod(fh.name, 0o600)  # before the key material is written
        fh.write(data)
    return fh.name
