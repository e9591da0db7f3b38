"""A real HDFS (NameNode + DataNode, Hadoop 2.7.3) on loopback for tests and benchmarks.

    with hdfs_cluster(tmp_path) as url:      # url = "hdfs://127.0.0.1:PORT"
        write_deltalake(f"{url}/lake/readings", table)

The Hadoop jars come from the `pyspark==2.4.8` source package on PyPI (environment.md), fetched
once with pip into ``$LEC_HADOOP_CACHE`` (default ``~/.cache/lec/hadoop``). That sdist's build
metadata step needs ``wheel`` and no ``pypandoc``, so pip runs from a small venv of its own with
``--no-build-isolation``. Every port is a free one; WebHDFS is off (Jersey 1 is not in the jars).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lec.errors import ServiceError
from lec.procs import ManagedProcess, free_port

PYSPARK_SDIST = "pyspark==2.4.8"
JARS_IN_SDIST = "pyspark-2.4.8/deps/jars/"


def hadoop_cache() -> Path:
    return Path(os.environ.get("LEC_HADOOP_CACHE", Path.home() / ".cache" / "lec" / "hadoop"))


def hadoop_jars() -> Path:
    """The folder of Hadoop 2.7.3 jars, downloaded and unpacked on first use."""
    cache = hadoop_cache()
    jars = cache / "jars"
    if (jars / "hadoop-hdfs-2.7.3.jar").exists():
        return jars
    cache.mkdir(parents=True, exist_ok=True)
    sdist = next(cache.glob("pyspark-2.4.8.tar.gz"), None)
    if sdist is None:
        sdist = _download_sdist(cache)
    tmp = Path(tempfile.mkdtemp(prefix="jars.partial.", dir=cache))
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name.startswith(JARS_IN_SDIST) and member.name.endswith(".jar") and member.isfile():
                member.name = member.name[len(JARS_IN_SDIST):]
                tar.extract(member, tmp, filter="data")
    try:
        tmp.rename(jars)  # atomic: a half-unpacked folder is never taken for a complete one
    except OSError:  # another process got there first
        shutil.rmtree(tmp, ignore_errors=True)
    sdist.unlink(missing_ok=True)
    return jars


def _download_sdist(cache: Path) -> Path:
    venv = cache / "pip-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        _pip(py, "install", "-q", "setuptools<81", "wheel")
    _pip(py, "download", "-q", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", PYSPARK_SDIST,
         "-d", str(cache))
    shutil.rmtree(venv, ignore_errors=True)
    found = next(cache.glob("pyspark-2.4.8.tar.gz"), None)
    if found is None:
        raise ServiceError(f"pip did not leave {PYSPARK_SDIST} in {cache}")
    return found


def _pip(py: Path, *args: str) -> None:
    done = subprocess.run([str(py), "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ServiceError(f"pip {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def _site(props: dict[str, str]) -> str:
    body = "".join(f"<property><name>{k}</name><value>{v}</value></property>\n" for k, v in props.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'


def _live_datanodes(http_port: int) -> int:
    url = f"http://127.0.0.1:{http_port}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            beans = json.load(resp).get("beans", [])
    except (OSError, ValueError):
        return 0
    return int(beans[0].get("NumLiveDataNodes", 0)) if beans else 0


@contextmanager
def hdfs_cluster(workdir: Path, heap_mb: int = 256) -> Iterator[str]:
    """Format and start a NameNode and a DataNode; yields ``hdfs://127.0.0.1:<rpc port>``."""
    jars = hadoop_jars()
    java = shutil.which("java")
    if java is None:
        raise ServiceError("java not found: install a JRE (Debian: apt-get install openjdk-17-jre-headless)")
    conf = workdir / "conf"
    for webapp in ("hdfs", "datanode"):  # the HTTP servers look these up on the classpath
        (conf / "webapps" / webapp).mkdir(parents=True, exist_ok=True)
    rpc, nn_http, dn_xfer, dn_http, dn_ipc = (free_port() for _ in range(5))
    url = f"hdfs://127.0.0.1:{rpc}"
    (conf / "core-site.xml").write_text(_site({"fs.defaultFS": url, "hadoop.tmp.dir": str(workdir / "tmp")}))
    (conf / "hdfs-site.xml").write_text(_site({
        "dfs.namenode.name.dir": str(workdir / "name"), "dfs.datanode.data.dir": str(workdir / "data"),
        "dfs.replication": "1", "dfs.permissions.enabled": "false", "dfs.webhdfs.enabled": "false",
        "dfs.namenode.rpc-address": f"127.0.0.1:{rpc}", "dfs.namenode.http-address": f"127.0.0.1:{nn_http}",
        "dfs.namenode.secondary.http-address": "127.0.0.1:0",
        "dfs.datanode.address": f"127.0.0.1:{dn_xfer}", "dfs.datanode.http.address": f"127.0.0.1:{dn_http}",
        "dfs.datanode.ipc.address": f"127.0.0.1:{dn_ipc}",
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        "dfs.client.use.datanode.hostname": "false", "dfs.namenode.safemode.extension": "0",
    }))
    (conf / "log4j.properties").write_text(
        "log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=%d %p %c{1}: %m%n\n"
        "log4j.logger.org.apache.hadoop.hdfs.StateChange=WARN\n")
    cp = f"{conf}:{jars}/*"
    jvm = [java, f"-Xmx{heap_mb}m", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true", "-cp", cp]
    fmt = subprocess.run([*jvm, "org.apache.hadoop.hdfs.server.namenode.NameNode", "-format", "-force",
                          "-nonInteractive"], capture_output=True, text=True, cwd=workdir)
    if fmt.returncode != 0:
        raise ServiceError(f"HDFS format failed:\n{fmt.stdout[-2000:]}{fmt.stderr[-2000:]}")
    logs = workdir / "logs"
    namenode = ManagedProcess("hdfs-namenode", [*jvm, "org.apache.hadoop.hdfs.server.namenode.NameNode"],
                              logs / "namenode.log", cwd=workdir)
    datanode = None
    try:
        datanode = ManagedProcess("hdfs-datanode", [*jvm, "org.apache.hadoop.hdfs.server.datanode.DataNode"],
                                  logs / "datanode.log", cwd=workdir)
        namenode.wait_ready(lambda: _live_datanodes(nn_http) >= 1, timeout=90)
        yield url
    finally:
        if datanode is not None:
            datanode.stop()
        namenode.stop()
