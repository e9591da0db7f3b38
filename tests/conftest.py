"""Shared fixtures: real servers (Apache Kafka, anvil, PostgreSQL) on loopback with free ports.

The Kafka engine of the fixtures is Apache Kafka (KRaft); ``LEC_TEST_KAFKA_ENGINE=tansu`` runs the
suite on Tansu instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from lec.config import Settings
from lec.services import start_anvil, start_broker
from tests.support.postgres import postgres_server

EXAMPLE_COMMUNITY = Path(__file__).resolve().parent.parent / "examples" / "community.yaml"


KAFKA_ENGINE = os.environ.get("LEC_TEST_KAFKA_ENGINE", "kafka")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real broker for the whole session (topics are auto-created, use unique names)."""
    proc, bootstrap = start_broker(KAFKA_ENGINE, tmp_path_factory.mktemp("kafka"))
    yield bootstrap
    proc.stop()


@pytest.fixture()
def fresh_kafka(tmp_path: Path) -> Iterator[tuple[object, str]]:
    """A broker of the test's own (a JVM start: a few seconds; use only when sharing would not do)."""
    proc, bootstrap = start_broker(KAFKA_ENGINE, tmp_path)
    yield proc, bootstrap
    proc.stop()


@pytest.fixture(scope="session")
def anvil_rpc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_anvil(tmp_path_factory.mktemp("anvil"))
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """Settings pointing every local state at the test's temporary folder."""
    return Settings(run_dir=tmp_path / "run")


@pytest.fixture()
def registry(settings: Settings):
    from lec.registry import Registry, SecretStore

    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    return reg


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    """One short `lec demo` for the whole session (summary, stdout, run dir); tests that change the
    run dir work on a copy (``copy_demo_run``)."""
    import json
    import os
    import signal
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("demo")
    out = base / "summary.json"
    proc = subprocess.Popen([sys.executable, "-m", "lec.cli", "demo", "--days", "1", "--households", "4",
                             "--run-dir", str(base / "run"), "--summary-json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "LEC_LOG_LEVEL": "INFO"})
    try:
        stdout, stderr = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:  # a time-out (ours or pytest's): SIGTERM lets the demo stop its whole stack
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return json.loads(out.read_text()), stdout, base / "run"


def copy_demo_run(run_dir: Path, dest: Path) -> Path:
    """A private copy of the demo's run dir (paths inside stack.json pointed at the copy)."""
    import shutil

    shutil.copytree(run_dir, dest, symlinks=True)
    state = dest / "stack.json"
    if state.exists():
        state.write_text(state.read_text().replace(str(run_dir), str(dest)))
    return dest


# The pure tier (`pytest -m "not integration"`, under a minute): every test that starts a server or
# a worker process is marked `integration` here, by the fixtures it uses (directly or through other
# fixtures) or, for tests that start their own servers, by module.
SERVER_FIXTURES = frozenset({"kafka_bootstrap", "fresh_kafka", "anvil_rpc", "postgres_url", "demo_run", "spark",
                             "engines", "lakes", "hdfs_url", "search_url", "browser"})
INTEGRATION_MODULES = frozenset({  # modules (dotted) whose tests start servers or processes (lec, node, a JVM)
    "tests.lec.test_cli_output", "tests.lec.test_registry_cli", "tests.lakehouse.test_quality",
    "tests.lec.test_demo_traffic", "tests.oracle.test_merkle",
    "tests.adversarial.test_chaos", "tests.adversarial.test_fuzz_channels", "tests.adversarial.test_http_hostile",
    "tests.adversarial.test_mqtt_broker_hostile", "tests.adversarial.test_registry_live",
    "tests.adversarial.test_sftp_server_hostile", "tests.connectors.test_camel", "tests.connectors.test_camel_drop",
    "tests.connectors.test_camel_ftp_drop", "tests.connectors.test_camel_routes_run", "tests.connectors.test_http", "tests.connectors.test_keycloak_e2e",
    "tests.connectors.test_mqtt",
    "tests.connectors.test_mqtt_embedded", "tests.connectors.test_mqtt_mosquitto_service",
    "tests.connectors.test_sftp_embedded", "tests.connectors.test_sftp_openssh",
    "tests.lakehouse.settlement.test_engines", "tests.lakehouse.settlement.test_run",
    "tests.lakehouse.settlement.test_spark_crosscheck", "tests.lakehouse.settlement.test_statements",
    "tests.lakehouse.test_cluster", "tests.lakehouse.test_cluster_postgres", "tests.lakehouse.test_hdfs",
    "tests.lakehouse.test_kpi", "tests.lakehouse.test_kpi_cli", "tests.lakehouse.test_kpi_engines",
    "tests.lakehouse.test_kpi_hdfs", "tests.lakehouse.test_kpi_notebook", "tests.lakehouse.test_rawzone",
    "tests.lakehouse.test_search", "tests.lec.test_gdpr_stack", "tests.lec.test_infra_besu",
    "tests.lec.test_kafka_engines", "tests.lec.test_readme", "tests.lec.test_stack",
    "tests.oracle.test_audit_takeout", "tests.oracle.test_chain", "tests.oracle.test_contracts",
    "tests.oracle.test_contracts_build", "tests.oracle.test_kill", "tests.streams.test_worker",
})


def mark_integration(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__ if getattr(item, "module", None) else ""
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())) or module in INTEGRATION_MODULES
                or params.get("db_url") == "postgresql" or item.get_closest_marker("slow") is not None):
            item.add_marker(pytest.mark.integration)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """scripts/test.sh runs two xdist workers with --dist loadfile: a module's tests run in order on one
    worker (its module fixtures start once). The xdist_group markers (a module each, every user of the
    session demo together) are for --dist loadgroup, which xdist 3.8 cannot apply under pytest 9 (it
    renames ``item._nodeid``, which pytest 9 no longer reads): until then each worker may run its demo."""
    for item in items:
        group = "demo" if "demo_run" in getattr(item, "fixturenames", ()) else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
    mark_integration(items)
