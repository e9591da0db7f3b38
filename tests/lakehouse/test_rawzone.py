"""The raw zone: the SFTP watcher archives every accepted original, byte for byte with its
checksum, under raw/{supplier}/{flow}/{yyyy}/{mm}/{dd}/ on local disk and on HDFS 3 (WebHDFS,
the `hdfs` package); a raw-zone failure (DataNode stopped) leaves the file in the inbox."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.sftp.area import SftpArea
from connectors.sftp.state import IngestedFiles
from connectors.sftp.watch import SftpWatcher, WatchOptions, kafka_producer
from lakehouse.rawzone import RawZone
from tests.connectors.test_sftp_watch import consume_all, csv_lines
from tests.support.hdfs import shared_hdfs
from tests.support.sshd import load_community, make_keys


def _world(tmp_path: Path, bootstrap: str, raw: RawZone) -> dict[str, Any]:
    reg = load_community(tmp_path / "run", make_keys(tmp_path / "keys"))
    area = SftpArea(tmp_path / "sftp")
    area.ensure(reg.snapshot())
    topic = f"raw-{secrets.token_hex(4)}"
    state = IngestedFiles(tmp_path / "run" / "sftp-watch" / "ingested.sqlite")
    watcher = SftpWatcher(reg, area, state, kafka_producer(bootstrap),
                          WatchOptions(chunk_bytes=4096, chunk_lines=50, max_line_bytes=1024, settle_s=0),
                          raw_topic=topic, deadletter_topic=f"dl-{secrets.token_hex(4)}", raw_zone=raw)
    return {"watcher": watcher, "area": area, "topic": topic, "state": state,
            "inbox": area.folder("sup-a", "inbox", "f-a")}


def _today() -> str:
    return f"{datetime.now(UTC):%Y/%m/%d}"


def test_local_raw_zone_archives_once_and_cli_fetches(tmp_path: Path, kafka_bootstrap: str) -> None:
    lake = tmp_path / "lake"
    w = _world(tmp_path, kafka_bootstrap, RawZone(str(lake)))
    data = b"ts,kwh\r\n" + b"\r\n".join(csv_lines(120))  # CRLF, no final newline: kept exactly
    (w["inbox"] / "day 1.csv").write_bytes(data)
    outcomes = w["watcher"].scan_once()
    assert [o.status for o in outcomes] == ["processed"]
    day = lake / "raw" / "sup-a" / "f-a" / _today()
    sha = hashlib.sha256(data).hexdigest()
    assert (day / "day_1.csv").read_bytes() == data
    assert (day / "day_1.csv.sha256").read_text() == f"{sha}  day_1.csv\n"
    # the same bytes dropped again (even under another name): a duplicate, not archived twice
    (w["inbox"] / "again.csv").write_bytes(data)
    assert [o.status for o in w["watcher"].scan_once()] == ["duplicate"]
    assert sorted(p.name for p in day.iterdir()) == ["day_1.csv", "day_1.csv.sha256"]
    # archiving the same content directly: the existing copy is returned
    fd = os.open(day / "day_1.csv", os.O_RDONLY)
    try:
        assert RawZone(str(lake)).archive_fd("sup-a", "f-a", "other.csv", fd, sha) == f"sup-a/f-a/{_today()}/day_1.csv"
    finally:
        os.close(fd)
    # an engineer lists and fetches the original
    env = {**os.environ, "LEC_LAKE_URI": str(lake), "LEC_RUN_DIR": str(tmp_path / "run")}
    lec = str(Path(sys.executable).with_name("lec"))
    ls = subprocess.run([lec, "lake", "raw", "ls", "sup-a"], env=env, capture_output=True, text=True, check=True)
    assert ls.stdout.splitlines() == [f"sup-a/f-a/{_today()}/day_1.csv\t{len(data)}\t{sha}"]
    out = tmp_path / "fetched.csv"
    subprocess.run([lec, "lake", "raw", "get", f"sup-a/f-a/{_today()}/day_1.csv", "--out", str(out)], env=env,
                   check=True, capture_output=True)
    assert out.read_bytes() == data
    (day / "day_1.csv").write_bytes(data + b"tampered")
    bad = subprocess.run([lec, "lake", "raw", "get", f"sup-a/f-a/{_today()}/day_1.csv", "--out", str(out)],
                         env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "does not match" in bad.stderr
    w["state"].close()


@pytest.mark.slow
def test_hdfs_raw_zone_and_a_stopped_datanode_loses_nothing(tmp_path: Path, kafka_bootstrap: str) -> None:
    cluster = shared_hdfs()
    lake = f"{cluster.url}/lake-{uuid.uuid4().hex[:6]}"
    raw = RawZone(lake, cluster.webhdfs_url)
    w = _world(tmp_path, kafka_bootstrap, raw)
    first = b"ts,kwh\n" + b"\n".join(csv_lines(60)) + b"\n"
    (w["inbox"] / "a.csv").write_bytes(first)
    done = w["watcher"].scan_once()
    assert [o.status for o in done] == ["processed"]
    rel = f"sup-a/f-a/{_today()}/a.csv"
    assert [(e.path, e.size, e.sha256) for e in raw.ls("sup-a/f-a")] == [
        (rel, len(first), hashlib.sha256(first).hexdigest())]
    got = tmp_path / "a.csv"
    raw.get(rel, got)
    assert got.read_bytes() == first
    from hdfs import InsecureClient  # the same bytes straight through WebHDFS, as an engineer would

    with InsecureClient(cluster.webhdfs_url, user="lec").read(f"{lake.split(cluster.url, 1)[1]}/raw/{rel}") as r:
        assert r.read() == first

    second = b"ts,kwh\n" + b"\n".join(csv_lines(40, start=500)) + b"\n"
    cluster.stop_datanode()
    try:
        (w["inbox"] / "b.csv").write_bytes(second)
        outcomes = w["watcher"].scan_once()
        assert [o.status for o in outcomes] == ["interrupted"]
        assert (w["inbox"] / "b.csv").read_bytes() == second  # still in the inbox, to retry
        assert not (w["area"].folder("sup-a", "processed", "f-a") / "b.csv").exists()
    finally:
        cluster.start_datanode()
    # the DataNode is live again, but its first writes can still be refused for a moment: the file
    # stays in the inbox and a later scan retries it (what the watcher's loop does), never "failed"
    deadline = time.monotonic() + 120
    while True:
        outcomes = w["watcher"].scan_once()
        if [o.status for o in outcomes] != ["interrupted"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [o.status for o in outcomes] == ["processed"]
    assert sorted(e.path for e in raw.ls("sup-a")) == [rel, f"sup-a/f-a/{_today()}/b.csv"]
    sent = done[0].chunks + outcomes[0].chunks
    assert len(consume_all(kafka_bootstrap, w["topic"], expect=sent)) == sent  # each chunk sent once
    w["state"].close()
