"""JVM Spark with Delta: a local Spark Connect server from the pinned ``pyspark`` wheel's own jars.

Why a Connect server rather than a classic in-process session (docs/lakehouse-analytics.md):
every Spark job of the project speaks the Spark Connect API (Sail is a Connect server too), so
the same code runs on both engines unchanged; the JVM starts once per process (10-20 s, more on
a loaded machine) and then serves every session and every test module of that process (a `lec kpi`
with ``spark_engine=jvm`` starts its own; to share one across shells, start a Connect server and
set ``LEC_SPARK_REMOTE``); and a JVM crash cannot take the Python process with it.

The Delta jars come from Maven Central into ``.cache/jvm/delta`` (``scripts/fetch-jars.sh``,
``scripts/jvm/delta/pom.xml``); Spark, Scala and Hadoop are the wheel's ``pyspark/jars``. The
wheel's ``hadoop-client-api``/``-runtime`` 3.5.0 carry the HDFS client, so ``hdfs://host:port/...``
lakes are read and written with no extra jar or configuration (Delta commits there through its
``HDFSLogStore``); an HA name service needs ``HADOOP_CONF_DIR``, which spark-submit puts on the
classpath from the environment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import threading
from pathlib import Path

from lec.errors import ConfigError, ServiceError
from lec.procs import ManagedProcess, free_port, port_open

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONNECT_SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"

# Delta's extension and catalog make `format("delta")`, DESCRIBE HISTORY, OPTIMIZE, VACUUM and
# ALTER TABLE work on `delta.`<path>``. The small partition counts fit a 2-core machine: the
# defaults (200 shuffle partitions, 50 for Delta's log replay) spend most of a small job
# scheduling empty tasks.
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",  # VACUUM lists with 10000 tasks
    "spark.driver.host": "127.0.0.1",
}


def jvm_cache() -> Path:
    return Path(os.environ.get("LEC_JVM_CACHE") or PROJECT_ROOT / ".cache" / "jvm")


def delta_jars() -> list[Path]:
    """The Delta jars fetched from Maven Central; a clear error when setup has not run."""
    folder = jvm_cache() / "delta"
    jars = sorted(folder.glob("*.jar"))
    if not any(j.name.startswith("delta-spark_") for j in jars):
        raise ConfigError(f"no Delta jars in {folder}: run scripts/fetch-jars.sh (Maven Central) "
                          "or set spark_engine=sail")
    return jars


def spark_home() -> Path:
    import pyspark

    home = Path(pyspark.__file__).parent
    if not (home / "jars").is_dir():
        raise ConfigError(f"{home} has no jars/: the JVM engine needs the full pyspark wheel "
                          "(pyspark==4.2.0), not pyspark-client")
    return home


def connect_server_argv(port: int, driver_memory_mb: int = 1024, master: str = "local[2]",
                        extra_conf: dict[str, str] | None = None) -> list[str]:
    """The command line of a local Spark Connect server with Delta, bound to loopback."""
    java = shutil.which("java")
    if java is None:
        raise ServiceError("java not found: install a JRE 17 (Debian: apt-get install openjdk-17-jre-headless)")
    home = spark_home()
    conf = {**DELTA_CONF, "spark.master": master,
            "spark.connect.grpc.binding.address": "127.0.0.1", "spark.connect.grpc.binding.port": str(port),
            "spark.jars": ",".join(str(j) for j in delta_jars()), **(extra_conf or {})}
    argv = [str(home / "bin" / "spark-submit"), "--driver-memory", f"{driver_memory_mb}m",
            "--class", CONNECT_SERVER]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return [*argv, "spark-internal"]


LOG4J2 = """rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
logger.connect.name = org.apache.spark.sql.connect.service.SparkConnectServer
logger.connect.level = info
"""


def connect_server_env(run_dir: Path) -> dict[str, str]:
    """SPARK_HOME at the wheel; Python workers (pandas UDFs) run this interpreter with our packages."""
    import sys

    home = spark_home()
    java = os.path.realpath(shutil.which("java") or "/usr/bin/java")
    conf_dir = run_dir / "spark-conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "log4j2.properties").write_text(LOG4J2)  # INFO per task would cost CPU on 2 cores
    path = [str(PROJECT_ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {"SPARK_HOME": str(home), "SPARK_CONF_DIR": str(conf_dir),
            "JAVA_HOME": os.environ.get("JAVA_HOME") or str(Path(java).parent.parent),
            "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join(path),
            "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(run_dir / "logs")}


def start_connect_server(run_dir: Path, port: int = 0, timeout: float = 900.0,
                         driver_memory_mb: int = 1024) -> tuple[ManagedProcess, str]:
    """Start a JVM Spark Connect server with Delta; returns the process and its ``sc://`` URL."""
    port = port or free_port()
    proc = ManagedProcess("spark-jvm", connect_server_argv(port, driver_memory_mb), run_dir / "logs" / "spark-jvm.log",
                          env=connect_server_env(run_dir), cwd=run_dir)
    try:
        proc.wait_ready(lambda: port_open(port), timeout=timeout)
    except ServiceError:
        proc.stop()
        raise
    return proc, f"sc://127.0.0.1:{port}"


_lock = threading.Lock()
_server: ManagedProcess | None = None
_url = ""


def start_jvm(run_dir: Path | None = None) -> str:
    """Start (once per process) a JVM Spark Connect server; it stops when the process exits."""
    global _server, _url
    with _lock:
        if _server is None or not _server.alive():
            import tempfile

            where = run_dir or Path(tempfile.mkdtemp(prefix="lec-spark-jvm-"))
            where.mkdir(parents=True, exist_ok=True)
            _server, _url = start_connect_server(where)
            atexit.register(stop_jvm)
        return _url


def stop_jvm() -> None:
    """Stop the JVM server this process started, if any."""
    global _server, _url
    with _lock:
        if _server is not None:
            from lakehouse.spark.sessions import _sessions

            _sessions.pop(_url, None)
            _server.stop(timeout=20)
            _server, _url = None, ""
