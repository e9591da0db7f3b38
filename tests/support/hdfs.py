"""A real HDFS 3 (NameNode + DataNode, WebHDFS on) on loopback for tests and benchmarks.

    cluster = shared_hdfs()                  # one per test process: cluster.url, cluster.webhdfs_url
    with hdfs_cluster(tmp_path) as url:      # an own one (url = "hdfs://127.0.0.1:PORT")

The launcher is ``lakehouse.hdfs_cluster`` (also used by `lec up`), with Hadoop 3.5.0 jars from
Maven Central (``scripts/fetch-jars.sh``). Starting the pair takes 10-100 s on a loaded 2-core
machine, so test modules share one cluster and use a fresh directory each.
"""

from __future__ import annotations

import atexit
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lakehouse.hdfs_cluster import HdfsCluster, HdfsPorts
from lakehouse.hdfs_cluster import hdfs_cluster as _own_cluster

_lock = threading.Lock()
_shared: HdfsCluster | None = None


@contextmanager
def hdfs_cluster(workdir: Path, heap_mb: int = 256) -> Iterator[str]:
    """Format and start a NameNode and a DataNode of its own; yields ``hdfs://127.0.0.1:<rpc port>``."""
    with _own_cluster(workdir, heap_mb) as cluster:
        yield cluster.url


def shared_hdfs() -> HdfsCluster:
    """The test process's HDFS, started on first use and stopped when the process exits."""
    global _shared
    with _lock:
        if _shared is None or _shared.namenode is None or not _shared.namenode.alive():
            _shared = HdfsCluster(Path(tempfile.mkdtemp(prefix="lec-hdfs-")), HdfsPorts().resolved()).start()
            atexit.register(_shared.stop)
        if _shared.datanode is None or not _shared.datanode.alive():  # a test stopped it
            _shared.start_datanode()
        return _shared
