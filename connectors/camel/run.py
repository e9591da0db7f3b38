"""Run the registry's Camel routes for real on Apache Camel 4 (camel-main + YAML DSL).

The routes are the ``spec.flows`` of the Integrations that ``lec connectors camel apply`` sends to
Camel K (``connectors.camel.integrations.render_all``): the same text, written to one YAML file and loaded by
``org.apache.camel.main.Main`` with the jars ``scripts/fetch-jars.sh`` put in ``.cache/jvm/camel``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from lec.errors import ServiceError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CAMEL_HEAP = "384m"


def camel_jars() -> Path:
    root = Path(os.environ.get("LEC_JVM_CACHE") or PROJECT_ROOT / ".cache" / "jvm")
    jars = root / "camel"
    if not any(jars.glob("camel-main-*.jar")):
        raise ServiceError(f"Apache Camel jars not found in {jars}: run scripts/fetch-jars.sh")
    return jars


def routes_yaml(snapshot: Any, *, kafka_brokers: str, max_payload_bytes: int) -> str:
    """Every camel flow's route (with its beans and retry configuration) as one YAML DSL file."""
    from connectors.camel.integrations import render_all, to_yaml

    flows: list[dict[str, Any]] = []
    for integration in render_all(snapshot, namespace="local", kafka_brokers=kafka_brokers,
                                  max_payload_bytes=max_payload_bytes):
        flows += integration["spec"]["flows"]
    return to_yaml([flows])


def secrets_dir(settings: Any) -> Path:
    """Where the local run finds the Kubernetes Secrets the flows reference, one properties file each."""
    return settings.resolved_run_dir() / "secrets" / "camel"


def secret_files(snapshot: Any, folder: Path) -> list[Path]:
    """The properties files of the secrets the camel flows name in ``syntax_options.camel.secret``.

    Camel K mounts the Secret ``NAME`` as Camel properties; here ``folder/NAME.properties`` holds the same
    ``key=value`` lines (e.g. ``lec.sup-b.ftp-password=...``) and is given to camel-main as a properties
    location: the values are never copied into the routes or application.properties.
    """
    from connectors.camel.integrations import camel_flows

    names = sorted({str(f.syntax_options["camel"]["secret"]) for f in camel_flows(snapshot)
                    if isinstance(f.syntax_options.get("camel"), dict) and f.syntax_options["camel"].get("secret")})
    files = []
    for name in names:
        path = folder / f"{name}.properties"
        if not path.is_file():
            raise ServiceError(f"a camel flow references the secret '{name}': write its keys as key=value lines "
                               f"(the same as in the Kubernetes Secret) to {path}, mode 0600")
        if path.stat().st_mode & 0o077:
            raise ServiceError(f"{path} holds secrets but others may read it: chmod 600 {path}")
        files.append(path)
    return files


def prepare(work: Path, routes: str, properties: dict[str, str] | None = None,
            secrets: list[Path] | None = None) -> list[str]:
    """Write the routes and camel-main's application.properties; returns the java command."""
    conf = work / "conf"
    conf.mkdir(parents=True, exist_ok=True, mode=0o700)
    (work / "routes.yaml").write_text(routes)
    locations = ["classpath:application.properties", *(f"file:{p}" for p in secrets or ())]
    props = {"camel.main.name": "lec-camel",
             "camel.main.routesIncludePattern": f"file:{work / 'routes.yaml'}",
             "camel.main.shutdownTimeout": "10",
             # the start-up summary prints every property placeholder with its value: secrets included
             "camel.main.autoConfigurationLogSummary": "false",
             "camel.component.properties.location": ",".join(locations),
             **(properties or {})}
    (conf / "application.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    java = shutil.which("java") or "/usr/bin/java"
    return [java, f"-Xmx{CAMEL_HEAP}", "-Xms32m", "-XX:+UseSerialGC", "-cp", f"{conf}:{camel_jars()}/*",
            "org.apache.camel.main.Main"]


READY_LINE = "started in"  # camel-main: "Apache Camel 4.x (lec-camel) started in 1s"


def ensure_seen_topic(bootstrap: str) -> None:
    """The idempotent repository reads its topic at start and fails if it does not exist yet."""
    from connectors.camel.integrations import SEEN_TOPIC
    from lec.kafka import ensure_topics

    ensure_topics(bootstrap, (SEEN_TOPIC,), partitions=1)


def has_camel_flows(snapshot: Any) -> bool:
    from connectors.camel.integrations import camel_flows

    return bool(camel_flows(snapshot))


def run(settings: Any) -> None:
    """Build the routes from the registry and replace this process with camel-main."""
    from lec.registry import open_registry

    snapshot = open_registry(settings).snapshot()
    if not has_camel_flows(snapshot):
        raise ServiceError("no active camel flow in the registry: nothing to run")
    if not settings.kafka_bootstrap:
        raise ServiceError("LEC_KAFKA_BOOTSTRAP is not set: Camel routes need Kafka")
    ensure_seen_topic(settings.kafka_bootstrap)
    argv = prepare(settings.resolved_run_dir() / "camel",
                   routes_yaml(snapshot, kafka_brokers=settings.kafka_bootstrap,
                               max_payload_bytes=settings.max_payload_bytes),
                   secrets=secret_files(snapshot, secrets_dir(settings)))
    os.execv(argv[0], argv)  # the supervisor's signals reach the JVM itself
