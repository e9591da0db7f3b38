"""Production deployment files parse and agree with the code: workers, settings, topics."""

from __future__ import annotations

from pathlib import Path

import yaml

from lec import topics
from lec.config import Settings
from lec.stack.supervisor import Stack

INFRA = Path(__file__).resolve().parents[2] / "infra"
# Variables read outside Settings on purpose (keys never sit in the settings object).
EXTRA_ENV = {"LEC_ORACLE_KEY", "LEC_CHAIN_KEY"}


def k8s_docs() -> list[dict]:
    docs = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_every_yaml_file_under_infra_parses() -> None:
    files = [p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml")]
    assert len(files) >= 4
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc is None or isinstance(doc, (dict, list)), path


def test_every_worker_of_lec_up_is_deployed() -> None:
    stack = Stack(Settings())
    stack.ports = {"http": 8080}
    deployed = {tuple(c["args"]) for d in k8s_docs() if d["kind"] == "Deployment"
                for c in d["spec"]["template"]["spec"]["containers"]}
    for spec in stack.worker_specs():
        args = tuple(spec.argv[3:])  # after `python -m lec.cli`
        assert args in deployed, f"worker {spec.name} ({' '.join(args)}) has no Deployment"


def test_environment_names_are_real_settings() -> None:
    known = {f"LEC_{name.upper()}" for name in Settings.model_fields} | EXTRA_ENV
    for doc in k8s_docs():
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "lec-settings":
            assert set(doc["data"]) <= known
            Settings(**{k.removeprefix("LEC_").lower(): v for k, v in doc["data"].items()})
        if doc["kind"] == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                for env in c.get("env", []):
                    if env["name"].startswith("LEC_"):
                        assert env["name"] in known, f"{env['name']} is not a setting"


def test_secrets_come_from_secrets_and_containers_are_hardened() -> None:
    for doc in k8s_docs():
        if doc["kind"] != "Deployment":
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            for env in c.get("env", []):
                if any(w in env["name"] for w in ("KEY", "PASSWORD", "REGISTRY_URL", "SECRETS_URL")):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{env['name']} must come from a Secret"
            assert c["securityContext"]["runAsNonRoot"] is True
            assert "memory" in c["resources"]["limits"]


def test_every_topic_is_declared_with_the_right_policy() -> None:
    declared = {d["metadata"]["name"]: d["spec"] for d in k8s_docs() if d["kind"] == "KafkaTopic"}
    assert set(topics.ALL) <= set(declared)
    assert declared[topics.REGISTRY]["config"]["cleanup.policy"] == "compact"
    assert declared[topics.ANCHORS]["partitions"] == 1  # anchors stay in one order
