"""The embedded stack: every local service as a supervised child process on loopback.

``Stack.start()`` starts the servers (Kafka, MQTT, SFTP, chain) and then the platform's workers,
each with a health check, its log under ``run_dir/logs`` and its port in ``run_dir/stack.json``.
A worker that dies is restarted with back-off; ``Stack.stop()`` (SIGTERM, Ctrl-C, ``lec down``)
stops them in reverse order and leaves no orphan: each child runs in its own process group.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lec.config import Settings, write_private
from lec.errors import ServiceError
from lec.procs import ManagedProcess, free_port, pid_running, port_open

if TYPE_CHECKING:
    from lakehouse.hdfs_cluster import HdfsCluster

log = logging.getLogger("lec.stack")

STATE_FILE = "stack.json"
PID_FILE = "stack.pid"


@dataclass
class ServiceSpec:
    """How to run one service: its command, the port it answers on (if any) and when it is ready."""

    name: str
    argv: list[str]
    port: int | None = None
    ready_timeout: float = 30.0
    restart: bool = True
    ready: Callable[[], bool] | None = None
    ready_log: str | None = None   # a worker is ready once its log shows this line
    env: dict[str, str] | None = None  # extra variables of this child only (e.g. Keycloak's bootstrap admin)


@dataclass
class RunningService:
    spec: ServiceSpec
    proc: ManagedProcess
    restarts: int = 0
    started_at: float = field(default_factory=time.time)


def lec_argv(*args: str) -> list[str]:
    """Run a ``lec`` subcommand with this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "lec.cli", *args]


class Stack:
    """Start, watch and stop the embedded services described by the settings."""

    def __init__(self, settings: Settings, *, with_workers: bool = True) -> None:
        self.settings = settings
        self.run_dir = settings.resolved_run_dir()
        self.with_workers = with_workers
        self.services: list[RunningService] = []
        self.ports: dict[str, int] = {}
        self.env: dict[str, str] = {}
        self.ready = False  # every requested service started and answered once
        self._watching: threading.Event | None = None  # background supervision (demo)
        self._watcher: threading.Thread | None = None
        self._mqtt_hashes: dict[str, str] = {}
        self._mqtt_checked = 0.0
        self._registry = None  # opened once Mosquitto's files are first generated
        self._hdfs: HdfsCluster | None = None  # the lake's HDFS when settings.lake_hdfs (lakehouse.hdfs_cluster)
        self._keycloak_suppliers: frozenset[str] | None = None  # suppliers the realm was last synced with

    # -- plan -----------------------------------------------------------------------------
    def _assign_ports(self) -> None:
        s = self.settings
        self.ports = {
            "kafka": s.kafka_port or free_port(),
            "mqtt": s.mqtt_port or free_port(),
            "sftp": s.sftp_port or free_port(),
            "http": s.http_port or free_port(),
            "chain": s.chain_port or free_port(),
        }
        self._hdfs = None
        if s.lake_hdfs and not s.lake_uri:
            from lakehouse.hdfs_cluster import HdfsCluster, HdfsPorts

            self._hdfs = HdfsCluster(self.run_dir / "hdfs", HdfsPorts(s.hdfs_port, s.hdfs_http_port).resolved())
        bootstrap = s.kafka_bootstrap or f"localhost:{self.ports['kafka']}"
        rpc = s.chain_rpc or f"http://127.0.0.1:{self.ports['chain']}"
        # Children read the same settings through LEC_* variables.
        self.env = {
            "LEC_RUN_DIR": str(self.run_dir),
            "LEC_KAFKA_BOOTSTRAP": bootstrap,
            "LEC_MQTT_PORT": str(self.ports["mqtt"]),
            "LEC_SFTP_PORT": str(self.ports["sftp"]),
            "LEC_HTTP_PORT": str(self.ports["http"]),
            "LEC_CHAIN_RPC": rpc,
            "LEC_CHAIN_PORT": str(self.ports["chain"]),
            "LEC_REGISTRY_URL": s.resolved_registry_url(),
            "LEC_SECRETS_URL": s.resolved_secrets_url(),
            "LEC_LAKE_URI": s.resolved_lake_uri(),
            "LEC_LOG_LEVEL": s.log_level,
        }
        if self._hdfs is not None:
            self.env["LEC_LAKE_URI"] = f"{self._hdfs.url}/lake"
            self.env["LEC_WEBHDFS_URL"] = s.webhdfs_url or self._hdfs.webhdfs_url
        if s.keycloak:  # HTTP ingest verifies the realm's tokens through its JWKS
            from connectors.http.keycloak import issuer_url, jwks_url

            self.ports["keycloak"] = s.keycloak_port or free_port()
            self.ports["keycloak-management"] = free_port()
            self.env["LEC_JWT_ISSUER"] = issuer_url(self.ports["keycloak"])
            self.env["LEC_JWKS_URL"] = jwks_url(self.ports["keycloak"])

    def server_specs(self) -> list[ServiceSpec]:
        from lec.services import (
            KAFKA_READY_TIMEOUT,
            anvil_argv,
            kafka_argv,
            kafka_ready,
            mosquitto_argv,
            tansu_argv,
        )

        specs = self._hdfs_specs()
        if not self.settings.kafka_bootstrap:
            port = self.ports["kafka"]
            if self.settings.kafka_engine == "kafka":  # data under run_dir/kafka survives restarts
                specs.append(ServiceSpec("kafka", kafka_argv(self.run_dir / "kafka", port), port=port,
                                         restart=False, ready=lambda: kafka_ready(port),
                                         ready_timeout=KAFKA_READY_TIMEOUT))
            else:
                specs.append(ServiceSpec("kafka", tansu_argv(port), port=port, restart=False))
        if self.settings.mqtt_broker == "mosquitto":
            specs.append(ServiceSpec("mqtt", mosquitto_argv(self._mosquitto_config()), port=self.ports["mqtt"]))
        else:
            specs.append(ServiceSpec("mqtt", lec_argv("connectors", "mqtt-broker"), port=self.ports["mqtt"]))
        specs.append(ServiceSpec("sftp", lec_argv("connectors", "sftp-server"), port=self.ports["sftp"]))
        if self.settings.keycloak:
            from connectors.http.keycloak import (
                READY_TIMEOUT,
                built_home,
                keycloak_argv,
                keycloak_env,
                keycloak_ready,
            )

            mgmt = self.ports["keycloak-management"]
            specs.append(ServiceSpec("keycloak", keycloak_argv(built_home(), self.ports["keycloak"], mgmt,
                                                               self.run_dir / "keycloak"),
                                     port=self.ports["keycloak"], ready=lambda: keycloak_ready(mgmt),
                                     ready_timeout=READY_TIMEOUT, restart=False, env=keycloak_env(self.run_dir)))
        if not self.settings.chain_rpc:
            state = self.run_dir / "chain" / "anvil-state.json"
            state.parent.mkdir(parents=True, exist_ok=True)
            specs.append(ServiceSpec("chain", anvil_argv(self.ports["chain"], self.settings.chain_id, state),
                                     port=self.ports["chain"], restart=False))
        return specs

    def _hdfs_specs(self) -> list[ServiceSpec]:
        """The lake's NameNode and DataNode (lake_hdfs): started first, stopped after every worker.

        Health is the NameNode's JMX: it answers, then counts the DataNode live with safe mode off.
        The name directory is formatted once, so a restart keeps the lake.
        """
        if self._hdfs is None:
            return []
        from lakehouse.hdfs_cluster import DATANODE, NAMENODE, namenode_state

        h = self._hdfs
        h.configure()
        return [ServiceSpec("hdfs-namenode", h.command(NAMENODE), port=h.ports.rpc, ready_timeout=300,
                            ready=lambda: bool(namenode_state(h.ports.nn_http))),
                ServiceSpec("hdfs-datanode", h.command(DATANODE), port=h.ports.dn_xfer, ready_timeout=300,
                            ready=h.healthy)]

    def _mosquitto_config(self) -> Path:
        """Mosquitto's files from the registry's suppliers (regenerated when they change)."""
        from lec.registry import open_registry
        from lec.services import mosquitto_config

        if self._registry is None:
            self._registry = open_registry(self.settings)
        hashes = self._registry.supplier_password_hashes()
        self._mqtt_hashes = hashes
        return mosquitto_config(self.settings, hashes, self.run_dir / "mqtt", self.ports["mqtt"])

    def _camel_specs(self) -> list[ServiceSpec]:
        """One Camel process for the registry's camel flows, when there are any."""
        from connectors.camel.run import READY_LINE, has_camel_flows
        from lec.registry import open_registry

        try:
            if not has_camel_flows(open_registry(self.settings, migrate=False).snapshot()):
                return []
        except Exception:  # noqa: BLE001 - no registry yet: the stack migrates it when workers load one
            return []
        return [ServiceSpec("camel", lec_argv("connectors", "camel", "run"), ready_log=READY_LINE, ready_timeout=240)]

    def reload_mqtt_if_registry_changed(self) -> bool:
        """Regenerate password_file/acl_file and SIGHUP Mosquitto when the registry's suppliers changed."""
        from lec.services import reload_mosquitto

        svc = next((s for s in self.services if s.spec.name == "mqtt"), None)
        if svc is None or self.settings.mqtt_broker != "mosquitto" or not svc.proc.alive():
            return False
        if self._registry is None or self._registry.supplier_password_hashes() == self._mqtt_hashes:
            return False
        self._mosquitto_config()
        reload_mosquitto(svc.proc.pid)
        log.info("registry changed: mosquitto password_file and acl_file regenerated, broker reloaded")
        return True

    def sync_keycloak_if_registry_changed(self) -> bool:
        """Give each supplier of the registry its Keycloak client (created for new suppliers)."""
        if not self.settings.keycloak or not any(s.spec.name == "keycloak" for s in self.services):
            return False
        from connectors.http.keycloak import KeycloakAdmin
        from lec.registry import open_registry

        suppliers = frozenset(open_registry(self.settings).snapshot().suppliers)
        if suppliers == self._keycloak_suppliers:
            return False
        admin = KeycloakAdmin(f"http://127.0.0.1:{self.ports['keycloak']}", self.run_dir)
        try:
            created = admin.sync_realm(sorted(suppliers))
        finally:
            admin.close()
        self._keycloak_suppliers = suppliers
        if created:
            log.info("keycloak realm synced with the registry: clients created for %s", ", ".join(created))
        return bool(created)

    def worker_specs(self) -> list[ServiceSpec]:
        return [*self._camel_specs(), 
            # publishers' messages reach the bridge only once it has subscribed
            ServiceSpec("mqtt-bridge", lec_argv("connectors", "mqtt-bridge"), ready_log="subscribed to"),
            ServiceSpec("feedback-relay", lec_argv("connectors", "feedback-relay")),
            ServiceSpec("sftp-watch", lec_argv("connectors", "sftp-watch")),
            ServiceSpec("http", lec_argv("connectors", "http-serve"), port=self.ports["http"]),
            ServiceSpec("streams", lec_argv("streams", "worker")),
            ServiceSpec("lake-sink", lec_argv("lake", "sink")),
            ServiceSpec("oracle", lec_argv("oracle", "run")),
        ]

    # -- run ------------------------------------------------------------------------------
    def _launch(self, spec: ServiceSpec) -> ManagedProcess:
        log_path = self.run_dir / "logs" / f"{spec.name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0  # logs append across restarts
        proc = ManagedProcess(spec.name, spec.argv, log_path, env={**self.env, **(spec.env or {})})
        if spec.ready is not None:
            check = spec.ready
        elif spec.port:
            check = lambda: port_open(spec.port)
        elif spec.ready_log:
            check = lambda: spec.ready_log in _read_from(proc.log, offset)
        else:
            check = lambda: True
        proc.wait_ready(check, spec.ready_timeout)
        if spec.port is None:
            time.sleep(0.5)  # a worker that fails at start-up does so at once
            if not proc.alive():
                raise ServiceError(f"{spec.name} exited at start-up; see {proc.log}")
        return proc

    def start_servers(self) -> None:
        assert_not_running(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        self._assign_ports()
        os.environ.update(self.env)  # in-process users (demo, tests) see the same settings
        for spec in self.server_specs():
            self._start(spec)
        from lec.kafka import ensure_topics

        ensure_topics(self.env["LEC_KAFKA_BOOTSTRAP"])
        self.sync_keycloak_if_registry_changed()
        self.write_state()

    def start_workers(self, names: list[str] | None = None) -> None:
        for spec in self.worker_specs():
            if names is None or spec.name in names:
                self._start(spec)
        self.write_state()

    def start(self) -> None:
        try:
            self.start_servers()
            if self.with_workers:
                self.deploy_contracts_if_missing()
                self.start_workers()
            self.ready = True
            self.write_state()
        except BaseException:
            self.stop()
            raise

    def deploy_contracts_if_missing(self) -> None:
        """On the embedded chain the stack deploys the contracts itself (the oracle waits for them)."""
        if self.settings.chain_rpc:
            return  # an external chain: deployed by its operators with `lec chain deploy --rpc`
        import subprocess

        from lec.registry import open_registry

        if not open_registry(self.settings).community_ids():
            log.warning("no community in the registry yet: contracts not deployed; after `lec registry load`, "
                        "run `lec chain deploy --dev --if-missing` (the oracle waits for it)")
            return
        r = subprocess.run(lec_argv("chain", "deploy", "--dev", "--if-missing"), capture_output=True, text=True,
                           env={**os.environ, **self.env}, timeout=300)
        if r.returncode != 0:
            raise ServiceError(f"deploying the contracts to the embedded chain failed: {r.stderr.strip()[-1500:]}")

    def _start(self, spec: ServiceSpec) -> None:
        log.info("starting %s", spec.name)
        self.services.append(RunningService(spec, self._launch(spec)))

    def supervise_once(self) -> None:
        """Restart workers that died (back-off grows with each restart); reload Mosquitto's users."""
        if time.monotonic() - self._mqtt_checked > 2.0:
            self._mqtt_checked = time.monotonic()
            try:
                self.reload_mqtt_if_registry_changed()
            except Exception as exc:  # noqa: BLE001 - a registry mid-migration must not stop the supervision
                log.warning("mosquitto reload check failed: %s", exc)
            try:
                self.sync_keycloak_if_registry_changed()
            except Exception as exc:  # noqa: BLE001 - Keycloak busy: retried at the next check
                log.warning("keycloak realm sync failed: %s", exc)
        for svc in self.services:
            if svc.proc.alive() or not svc.spec.restart:
                continue
            delay = min(30.0, 2.0 ** min(svc.restarts, 5))
            if time.time() - svc.started_at < delay:
                continue
            log.warning("%s exited with %s; restarting (see %s)", svc.spec.name, svc.proc.proc.returncode,
                        svc.proc.log)
            svc.proc.stop()
            try:
                svc.proc = self._launch(svc.spec)
            except ServiceError as exc:
                log.error("%s", exc)
            svc.restarts += 1
            svc.started_at = time.time()
        self.write_state()

    def supervise_in_background(self, interval_s: float = 0.5) -> None:
        """Restart dead workers from a daemon thread (for callers that have their own main loop)."""
        watching = threading.Event()

        def loop() -> None:
            while not watching.wait(interval_s):
                self.supervise_once()

        # both set before the start: a signal may stop the stack at any point in between
        self._watching = watching
        self._watcher = threading.Thread(target=loop, name="lec-stack-supervisor", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        if self._watching is not None:  # no restart may race the stop
            self._watching.set()
            if self._watcher is not None and self._watcher.ident is not None:  # started
                self._watcher.join(timeout=60)
        for svc in reversed(self.services):
            log.info("stopping %s", svc.spec.name)
            svc.proc.stop(timeout=15)
        self.services.clear()
        state = self.run_dir / STATE_FILE
        if state.exists():
            doc = json.loads(state.read_text())
            doc["running"] = False
            write_private(state, json.dumps(doc, indent=2))

    # -- state ----------------------------------------------------------------------------
    def write_state(self) -> None:
        doc = {
            "running": True,
            "ready": self.ready,
            "supervisor_pid": os.getpid(),
            "env": self.env,
            "services": {s.spec.name: {"pid": s.proc.pid, "port": s.spec.port, "restarts": s.restarts,
                                       "log": str(s.proc.log), "argv": s.spec.argv} for s in self.services},
        }
        write_private(self.run_dir / STATE_FILE, json.dumps(doc, indent=2))  # env holds URLs with passwords


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


def assert_not_running(run_dir: Path) -> None:
    """Refuse to start a second stack on the same run directory (they would share files)."""
    state = read_state(run_dir)
    if state and state.get("running") and state.get("supervisor_pid") != os.getpid() \
            and pid_running(int(state.get("supervisor_pid", 0))):
        raise ServiceError(f"a stack is already running in {run_dir} (pid {state['supervisor_pid']}): "
                           f"stop it with `lec down` (LEC_RUN_DIR={run_dir}) or use another run directory")


def read_state(run_dir: Path) -> dict | None:
    path = run_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def service_status(run_dir: Path) -> dict[str, dict]:
    """Each service's pid, port and whether it is alive and answering."""
    state = read_state(run_dir)
    if not state:
        return {}
    out = {}
    for name, svc in state["services"].items():
        alive = bool(state["running"]) and pid_running(svc["pid"])
        answering = port_open(svc["port"]) if (alive and svc["port"]) else None
        out[name] = {"pid": svc["pid"], "port": svc["port"], "alive": alive, "answering": answering,
                     "restarts": svc["restarts"], "log": svc["log"]}
    return out
