"""A real HDFS 3 (NameNode + DataNode, WebHDFS on) on loopback: tests, benchmarks and `lec up`.

    with hdfs_cluster(workdir) as cluster:     # cluster.url = "hdfs://127.0.0.1:PORT"
        write_deltalake(f"{cluster.url}/lake/readings", table)
        cluster.webhdfs_url                     # "http://127.0.0.1:PORT" for the `hdfs` package

The jars are Hadoop 3.5.0's ``hadoop-hdfs`` and ``hadoop-common`` from Maven Central
(``scripts/jvm/hadoop/pom.xml``, fetched by ``scripts/fetch-jars.sh`` into ``.cache/jvm/hadoop``).
Every port is a free one unless given; the name directory is formatted only once, so a restart
keeps the lake. Health is the NameNode's JMX: live DataNodes and safe mode off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lec.errors import ConfigError, ServiceError
from lec.procs import ManagedProcess, free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NAMENODE = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE = "org.apache.hadoop.hdfs.server.datanode.DataNode"


def hadoop_jars() -> Path:
    """The folder of Hadoop 3 jars fetched from Maven Central; a clear error if setup has not run."""
    folder = Path(os.environ.get("LEC_JVM_CACHE") or PROJECT_ROOT / ".cache" / "jvm") / "hadoop"
    if not any(folder.glob("hadoop-hdfs-3*.jar")):
        raise ConfigError(f"no Hadoop 3 jars in {folder}: run scripts/fetch-jars.sh (Maven Central)")
    return folder


def _site(props: dict[str, str]) -> str:
    body = "".join(f"<property><name>{k}</name><value>{v}</value></property>\n" for k, v in props.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'


def namenode_state(http_port: int) -> dict[str, int | bool]:
    """From the NameNode's JMX: live DataNodes and whether safe mode is on (empty if not answering)."""
    url = f"http://127.0.0.1:{http_port}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            beans = json.load(resp).get("beans", [])
    except (OSError, ValueError):
        return {}
    if not beans:
        return {}
    return {"live_datanodes": int(beans[0].get("NumLiveDataNodes", 0)),
            "safemode": str(beans[0].get("FSState", "")) == "safeMode"}


@dataclass
class HdfsPorts:
    rpc: int = 0
    nn_http: int = 0
    dn_xfer: int = 0
    dn_http: int = 0
    dn_ipc: int = 0

    def resolved(self) -> HdfsPorts:
        return HdfsPorts(*(p or free_port() for p in (self.rpc, self.nn_http, self.dn_xfer, self.dn_http,
                                                      self.dn_ipc)))


@dataclass
class HdfsCluster:
    """A NameNode and a DataNode started from ``workdir`` (conf/, name/, data/, logs/)."""

    workdir: Path
    ports: HdfsPorts
    heap_mb: int = 256
    namenode: ManagedProcess | None = None
    datanode: ManagedProcess | None = None
    _jvm: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"hdfs://127.0.0.1:{self.ports.rpc}"

    @property
    def webhdfs_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.nn_http}"

    def configure(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("java not found: install a JRE 17 (Debian: apt-get install openjdk-17-jre-headless)")
        w, p = self.workdir, self.ports
        conf = w / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        for webapp in ("hdfs", "datanode", "static"):  # the Maven jar has no webapps/: the HTTP servers
            (conf / "webapps" / webapp).mkdir(parents=True, exist_ok=True)  # (JMX, WebHDFS) only need the dirs
        (conf / "core-site.xml").write_text(_site({"fs.defaultFS": self.url, "hadoop.tmp.dir": str(w / "tmp")}))
        (conf / "hdfs-site.xml").write_text(_site({
            "dfs.namenode.name.dir": str(w / "name"), "dfs.datanode.data.dir": str(w / "data"),
            "dfs.replication": "1", "dfs.permissions.enabled": "false", "dfs.webhdfs.enabled": "true",
            "dfs.namenode.rpc-address": f"127.0.0.1:{p.rpc}", "dfs.namenode.http-address": f"127.0.0.1:{p.nn_http}",
            "dfs.namenode.secondary.http-address": "127.0.0.1:0",
            "dfs.datanode.address": f"127.0.0.1:{p.dn_xfer}", "dfs.datanode.http.address": f"127.0.0.1:{p.dn_http}",
            "dfs.datanode.ipc.address": f"127.0.0.1:{p.dn_ipc}", "dfs.datanode.hostname": "127.0.0.1",
            "dfs.namenode.datanode.registration.ip-hostname-check": "false",
            "dfs.client.use.datanode.hostname": "false", "dfs.namenode.safemode.extension": "0",
            # a stopped DataNode is noticed in seconds, not the default 10.5 minutes
            "dfs.heartbeat.interval": "1", "dfs.namenode.heartbeat.recheck-interval": "5000",
        }))
        (conf / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=%d %p %c{1}: %m%n\n")
        self._jvm = [java, f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true",
                     "-Dhadoop.log.dir=" + str(w / "logs"), "-cp", f"{conf}:{hadoop_jars()}/*"]
        if not (w / "name" / "current" / "VERSION").exists():  # format once; a restart keeps the lake
            fmt = subprocess.run([*self._jvm, NAMENODE, "-format", "-force", "-nonInteractive"],
                                 capture_output=True, text=True, cwd=w)
            if fmt.returncode != 0:
                raise ServiceError(f"HDFS format failed:\n{fmt.stdout[-2000:]}{fmt.stderr[-2000:]}")

    def command(self, main: str) -> list[str]:
        """The JVM command line of ``NAMENODE`` or ``DATANODE`` (after ``configure``), for supervisors."""
        assert self._jvm, "configure() first"
        return [*self._jvm, main]

    def start(self, timeout: float = 180.0) -> HdfsCluster:
        self.configure()
        logs = self.workdir / "logs"
        self.namenode = ManagedProcess("hdfs-namenode", [*self._jvm, NAMENODE], logs / "namenode.log",
                                       cwd=self.workdir)
        try:
            self.start_datanode(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_datanode(self, timeout: float = 180.0) -> None:
        assert self.namenode is not None, "start the NameNode first"
        self.datanode = ManagedProcess("hdfs-datanode", [*self._jvm, DATANODE], self.workdir / "logs" / "datanode.log",
                                       cwd=self.workdir)
        self.namenode.wait_ready(self.healthy, timeout=timeout)

    def stop_datanode(self) -> None:
        """Stop the DataNode and wait until the NameNode counts it dead (writes then fail)."""
        if self.datanode is not None:
            self.datanode.stop()
            self.datanode = None
        if self.namenode is not None:
            from lec.procs import wait_until

            wait_until(lambda: namenode_state(self.ports.nn_http).get("live_datanodes") == 0, 60,
                       "the NameNode noticing the stopped DataNode")

    def healthy(self) -> bool:
        state = namenode_state(self.ports.nn_http)
        return bool(state) and int(state["live_datanodes"]) >= 1 and not state["safemode"]

    def stop(self) -> None:
        """Clean stop: DataNode first, then NameNode (SIGTERM, their shutdown hooks run)."""
        for proc in (self.datanode, self.namenode):
            if proc is not None:
                proc.stop(timeout=20)
        self.datanode = self.namenode = None


@contextmanager
def hdfs_cluster(workdir: Path, heap_mb: int = 256, ports: HdfsPorts | None = None) -> Iterator[HdfsCluster]:
    """Format (once) and start a NameNode and a DataNode; stops both on exit."""
    cluster = HdfsCluster(workdir, (ports or HdfsPorts()).resolved(), heap_mb).start()
    try:
        yield cluster
    finally:
        cluster.stop()
