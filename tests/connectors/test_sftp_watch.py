"""The SFTP watcher against a real Tansu broker: ingestion, duplicates, failures with reports, kill -9."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.sftp.area import SftpArea
from connectors.sftp.state import IngestedFiles
from connectors.sftp.watch import SftpWatcher, WatchOptions, Window, kafka_producer
from lec.records import decode
from tests.support.sshd import load_community, make_keys

REPO = Path(__file__).resolve().parents[2]


def consume_all(bootstrap: str, topic: str, expect: int | None = None, idle_s: float = 3.0,
                timeout_s: float = 60.0) -> list[tuple[bytes, dict[str, Any]]]:
    """Every record of ``topic`` (key, decoded value), reading until ``expect`` or ``idle_s`` of silence."""
    from lec.io import read_topic

    # the topic is created first, so that "nothing was sent" is read from real, empty partitions
    msgs = read_topic(bootstrap, topic, timeout=timeout_s, decode="message", idle_s=idle_s, min_records=expect or 0,
                      ensure=True)
    return [(m.key(), decode(m.value())) for m in msgs]


def lines_received(records: list[tuple[bytes, dict[str, Any]]]) -> dict[int, bytes]:
    """File line number -> line bytes, over every item; asserts duplicates carry identical ids and bytes."""
    seen: dict[int, bytes] = {}
    ids: dict[int, str] = {}
    for _, env in records:
        for item in env["items"]:
            src = item["source"]
            payload = base64.b64decode(item["payload_b64"])
            parts = payload.split(b"\n")
            if payload.endswith(b"\n"):
                parts = parts[:-1]
            assert len(parts) == src["line_end"] - src["line_start"] + 1
            if src["line_start"] in ids:
                assert ids[src["line_start"]] == item["message_id"], "a resent chunk must keep its message id"
            ids[src["line_start"]] = item["message_id"]
            for n, line in enumerate(parts, start=src["line_start"]):
                assert seen.setdefault(n, line) == line
    return seen


@pytest.fixture()
def world(tmp_path: Path, kafka_bootstrap: str):
    keys = make_keys(tmp_path / "keys")
    run_dir = tmp_path / "run"
    reg = load_community(run_dir, keys)
    area = SftpArea(tmp_path / "sftp")
    area.ensure(reg.snapshot())
    topic = f"raw-{secrets.token_hex(4)}"
    dl_topic = f"dl-{secrets.token_hex(4)}"
    state = IngestedFiles(run_dir / "sftp-watch" / "ingested.sqlite")
    watcher = SftpWatcher(reg, area, state, kafka_producer(kafka_bootstrap),
                          WatchOptions(chunk_bytes=4096, chunk_lines=50, max_line_bytes=1024, settle_s=0),
                          raw_topic=topic, deadletter_topic=dl_topic)
    yield {"reg": reg, "area": area, "watcher": watcher, "topic": topic, "dl": dl_topic, "run": run_dir,
           "root": tmp_path / "sftp", "bootstrap": kafka_bootstrap}
    state.close()


def csv_lines(n: int, start: int = 0) -> list[bytes]:
    return [f"2024-01-01T{(i // 4) % 24:02d}:{(i % 4) * 15:02d}:00Z,{i * 0.001:.3f}".encode()
            for i in range(start, start + n)]


def test_file_is_chunked_into_lec_raw_and_moved_to_processed(world: dict[str, Any]) -> None:
    inbox = world["area"].folder("sup-a", "inbox", "f-a")
    body = csv_lines(500)
    data = b"ts,kwh\n" + b"\n".join(body) + b"\n"
    (inbox / "day1.csv").write_bytes(data)
    (inbox / "day2.csv.part").write_bytes(b"ts,kwh\nstill uploading")
    outcomes = world["watcher"].scan_once()
    assert [(o.file, o.status, o.lines) for o in outcomes] == [("inbox/f-a/day1.csv", "processed", 501)]
    assert not (inbox / "day1.csv").exists() and (inbox / "day2.csv.part").exists()
    assert (world["area"].folder("sup-a", "processed", "f-a") / "day1.csv").read_bytes() == data
    records = consume_all(world["bootstrap"], world["topic"], expect=outcomes[0].chunks)
    assert len(records) == outcomes[0].chunks >= 10  # 500 lines / 50 per chunk
    got = lines_received(records)
    assert [got[n] for n in range(2, 502)] == body
    key, env = records[0]
    item = env["items"][0]
    assert key == b"DEV-A1"
    assert (env["schema"], env["channel"], env["community_id"], env["supplier_id"]) == \
           ("lec.raw/1", "sftp", "cer-sftp", "sup-a")
    assert (item["device_id"], item["flow_id"], item["content_type"]) == ("DEV-A1", "f-a", "text/csv")
    assert item["source"]["header"] == "ts,kwh" and item["source"]["file"] == "inbox/f-a/day1.csv"
    assert len(item["source"]["file_sha256"]) == 64


def test_same_file_twice_is_ingested_once(world: dict[str, Any]) -> None:
    inbox = world["area"].folder("sup-a", "inbox", "f-a")
    data = b"ts,kwh\n" + b"\n".join(csv_lines(30)) + b"\n"
    (inbox / "a.csv").write_bytes(data)
    assert [o.status for o in world["watcher"].scan_once()] == ["processed"]
    (inbox / "a-again.csv").write_bytes(data)
    assert [o.status for o in world["watcher"].scan_once()] == ["duplicate"]
    processed = world["area"].folder("sup-a", "processed", "f-a")
    assert "already ingested from inbox/f-a/a.csv" in (processed / "a-again.csv.duplicate.txt").read_text()
    assert len(consume_all(world["bootstrap"], world["topic"], idle_s=2)) == 1


@pytest.mark.parametrize("content,reason,line", [
    (b"ts,kwh\n2024-01-01T00:00:00Z,1\n2024-01-01T00:15:00Z,\xe9\n", "undecodable_bytes", 3),
    (b"ts,kwh\n" + b"9" * 5000 + b"\n", "line_too_long", 2),
])
def test_bad_file_goes_to_failed_with_a_report_and_a_dead_letter(world: dict[str, Any], content: bytes,
                                                                 reason: str, line: int) -> None:
    inbox = world["area"].folder("sup-a", "inbox", "f-a")
    (inbox / "bad.csv").write_bytes(content)
    [outcome] = world["watcher"].scan_once()
    assert outcome.status == "failed" and outcome.problem.reason_code == reason
    failed = world["area"].folder("sup-a", "failed", "f-a")
    assert (failed / "bad.csv").read_bytes() == content  # the original bytes are kept
    report = (failed / "bad.csv.report.txt").read_text()
    assert f"reason: {reason}" in report and f"line: {line}\n" in report
    [(key, dead)] = consume_all(world["bootstrap"], world["dl"], expect=1)
    assert key == b"sup-a" and dead["reason_code"] == reason and dead["flow_id"] == "f-a"
    assert base64.b64decode(dead["payload_b64"]) == content
    assert consume_all(world["bootstrap"], world["topic"], idle_s=1) == []


def test_file_for_a_flow_the_supplier_does_not_own_is_refused(world: dict[str, Any]) -> None:
    # a folder for another supplier's flow (made by hand) and one for a flow that is not SFTP
    for flow in ("f-b", "f-a-mqtt"):
        folder = world["area"].folder("sup-a", "inbox", flow)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "x.csv").write_bytes(b"ts,kwh\n2024-01-01T00:00:00Z,1\n")
    outcomes = world["watcher"].scan_once()
    assert sorted((o.file, o.status, o.problem.reason_code) for o in outcomes) == [
        ("inbox/f-a-mqtt/x.csv", "failed", "flow_not_owned"), ("inbox/f-b/x.csv", "failed", "flow_not_owned")]
    assert "not an active SFTP flow of supplier 'sup-a'" in (
        world["area"].folder("sup-a", "failed", "f-b") / "x.csv.report.txt").read_text()
    assert consume_all(world["bootstrap"], world["topic"], idle_s=1) == []


def test_symlink_in_inbox_is_refused_not_followed(world: dict[str, Any], tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret.csv"
    secret.write_bytes(b"ts,kwh\n2024-01-01T00:00:00Z,42\n")
    inbox = world["area"].folder("sup-a", "inbox", "f-a")
    (inbox / "link.csv").symlink_to(secret)
    [outcome] = world["watcher"].scan_once()
    assert (outcome.status, outcome.problem.reason_code) == ("failed", "not_a_regular_file")
    assert secret.exists()
    assert (world["area"].folder("sup-a", "failed", "f-a") / "link.csv").is_symlink()
    [(_, dead)] = consume_all(world["bootstrap"], world["dl"], expect=1)
    assert dead["payload_b64"] == ""  # the target's bytes were never read
    assert consume_all(world["bootstrap"], world["topic"], idle_s=1) == []


def test_upload_still_growing_waits_for_a_stable_size(world: dict[str, Any]) -> None:
    watcher = SftpWatcher(world["reg"], world["area"], world["watcher"].state, world["watcher"].producer,
                          WatchOptions(chunk_bytes=4096, chunk_lines=50, max_line_bytes=1024, settle_s=0.5),
                          raw_topic=world["topic"], deadletter_topic=world["dl"])
    path = world["area"].folder("sup-a", "inbox", "f-a") / "slow.csv"
    path.write_bytes(b"ts,kwh\n")
    assert watcher.scan_once() == []
    with open(path, "ab") as fh:
        fh.write(b"2024-01-01T00:00:00Z,1\n")
    assert watcher.scan_once() == []  # changed since last look: wait again
    time.sleep(0.6)
    assert [o.status for o in watcher.scan_once()] == ["processed"]


def test_schedule_outside_the_window_ingests_nothing(world: dict[str, Any]) -> None:
    now = time.localtime()
    closed = f"{(now.tm_hour + 2) % 24:02d}:00-{(now.tm_hour + 3) % 24:02d}:00"
    watcher = SftpWatcher(world["reg"], world["area"], world["watcher"].state, world["watcher"].producer,
                          WatchOptions(chunk_bytes=4096, chunk_lines=50, max_line_bytes=1024, settle_s=0),
                          window=Window(closed), raw_topic=world["topic"], deadletter_topic=world["dl"])
    (world["area"].folder("sup-a", "inbox", "f-a") / "night.csv").write_bytes(b"ts,kwh\n2024-01-01T00:00:00Z,1\n")
    assert watcher.scan_once() == []
    assert [o.status for o in world["watcher"].scan_once()] == ["processed"]


def test_watcher_killed_mid_file_loses_nothing(tmp_path: Path, kafka_bootstrap: str) -> None:
    """SIGKILL the `sftp-watch` worker while it sends a file; after a restart every line is on lec.raw."""
    from lec.io import replay
    from lec.kafka import ensure_topics

    keys = make_keys(tmp_path / "keys")
    run_dir = tmp_path / "run"
    reg = load_community(run_dir, keys)
    area = SftpArea(tmp_path / "sftp")
    area.ensure(reg.snapshot())
    n_lines = 100_000
    body = csv_lines(n_lines)
    data = b"ts,kwh\n" + b"\n".join(body) + b"\n"
    sha = hashlib.sha256(data).hexdigest()
    path = area.folder("sup-a", "inbox", "f-a") / "big.csv"
    path.write_bytes(data)
    env = {**os.environ, "LEC_RUN_DIR": str(run_dir), "LEC_SFTP_ROOT": str(area.root),
           "LEC_KAFKA_BOOTSTRAP": kafka_bootstrap, "LEC_REGISTRY_URL": f"sqlite:///{run_dir / 'registry.db'}",
           "LEC_SECRETS_URL": f"sqlite:///{run_dir / 'secrets.db'}", "LEC_SFTP_SCHEDULE": "immediate"}
    # one line per chunk so that sending takes a few seconds; the worker writes lec.raw of the shared
    # broker, so only records carrying this file's sha256 are counted
    chunking = ["--chunk-bytes", "2048", "--chunk-lines", "1", "--max-line-bytes", "1024"]
    argv = [sys.executable, "-m", "connectors", "sftp-watch"]
    ensure_topics(kafka_bootstrap, ("lec.raw",))
    raw = replay(kafka_bootstrap, "lec.raw", batch=500, poll_s=0.2)
    log_path = tmp_path / "watch1.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*argv, "--settle-s", "0.2", *chunking], env=env, cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            seen, deadline = 0, time.monotonic() + 120
            while time.monotonic() < deadline and seen < 1000 and proc.poll() is None:
                for msg in next(raw):
                    if sha.encode() in msg.value():
                        seen += 1
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raw.close()
    assert seen >= 1000, "the watcher never started sending:\n" + log_path.read_text()[-3000:]
    staged = area.staging("sup-a", "f-a") / "big.csv"
    assert path.exists() or staged.exists(), "killed mid-file: the file must still be in the inbox or staging"
    result = subprocess.run([*argv, "--once", *chunking], env=env, cwd=REPO, check=False, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"processed\tinbox/f-a/big.csv\tlines={n_lines + 1}" in result.stdout
    assert not path.exists() and not staged.exists()
    records = [r for r in consume_all(kafka_bootstrap, "lec.raw", idle_s=3, timeout_s=240)
               if r[1]["items"][0]["source"].get("file_sha256") == sha]
    got = lines_received(records)  # also asserts a resent chunk kept its message id
    assert len(got) == n_lines and [got[n] for n in range(2, n_lines + 2)] == body
    ids = {r[1]["items"][0]["message_id"] for r in records}
    assert len(ids) == n_lines and len(records) >= len(ids)


def test_json_file_is_sent_whole_without_header(world: dict[str, Any]) -> None:
    doc = b'[\n {"ts": "2024-01-01T00:00:00Z", "e": 1},\n {"ts": "2024-01-01T00:15:00Z", "e": 2}\n]\n'
    (world["area"].folder("sup-a", "inbox", "f-a-json") / "r.json").write_bytes(doc)
    assert [o.status for o in world["watcher"].scan_once()] == ["processed"]
    [(key, env)] = consume_all(world["bootstrap"], world["topic"], expect=1)
    item = env["items"][0]
    assert key == b"DEV-A2" and item["content_type"] == "application/json"
    assert "header" not in item["source"] and (item["source"]["line_start"], item["source"]["line_end"]) == (1, 4)
    assert base64.b64decode(item["payload_b64"]) == doc
    # a document over the payload bound is refused whole, with the reason
    (world["area"].folder("sup-a", "inbox", "f-a-json") / "big.json").write_bytes(
        b"[" + b",\n".join([b'{"ts": "2024-01-01T00:00:00Z", "e": 1}'] * 40_000) + b"]\n")
    [outcome] = world["watcher"].scan_once()
    assert (outcome.status, outcome.problem.reason_code) == ("failed", "file_too_large")


def test_sigterm_stops_the_worker_cleanly(tmp_path: Path, kafka_bootstrap: str) -> None:
    run_dir = tmp_path / "run"
    load_community(run_dir, make_keys(tmp_path / "keys"))
    env = {**os.environ, "LEC_RUN_DIR": str(run_dir), "LEC_SFTP_ROOT": str(tmp_path / "sftp"),
           "LEC_KAFKA_BOOTSTRAP": kafka_bootstrap, "LEC_REGISTRY_URL": f"sqlite:///{run_dir / 'registry.db'}",
           "LEC_SECRETS_URL": f"sqlite:///{run_dir / 'secrets.db'}"}
    proc = subprocess.Popen([sys.executable, "-m", "connectors", "sftp-watch"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "sftp" / "sup-a" / "inbox" / "f-a").is_dir() and time.monotonic() < deadline:
            time.sleep(0.1)  # the worker creates the flow folders once running
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"SFTP watcher stopped" in out


def test_kafka_unreachable_keeps_the_file_in_the_inbox(world: dict[str, Any]) -> None:
    """No acknowledgement, no move: the file waits in the inbox for the next scan."""
    from lec.io import Producer
    from lec.procs import free_port

    dead = Producer(f"127.0.0.1:{free_port()}", **{"message.timeout.ms": 1500})
    watcher = SftpWatcher(world["reg"], world["area"], world["watcher"].state, dead,
                          WatchOptions(chunk_bytes=4096, chunk_lines=50, max_line_bytes=1024, settle_s=0),
                          raw_topic=world["topic"], deadletter_topic=world["dl"])
    path = world["area"].folder("sup-a", "inbox", "f-a") / "wait.csv"
    path.write_bytes(b"ts,kwh\n" + b"\n".join(csv_lines(120)) + b"\n")
    assert [o.status for o in watcher.scan_once()] == ["interrupted"]
    assert path.exists() and world["watcher"].state.count() == 0
    # the broker is back (the normal watcher): the same file goes through
    assert [o.status for o in world["watcher"].scan_once()] == ["processed"]


def test_restart_after_recording_but_before_moving_does_not_resend(world: dict[str, Any]) -> None:
    data = b"ts,kwh\n" + b"\n".join(csv_lines(10)) + b"\n"
    path = world["area"].folder("sup-a", "inbox", "f-a") / "half.csv"
    path.write_bytes(data)
    # what a crash right after the checksum was recorded leaves behind
    world["watcher"].state.record("sup-a", "f-a", hashlib.sha256(data).hexdigest(), "inbox/f-a/half.csv", 11, 1)
    assert [o.status for o in world["watcher"].scan_once()] == ["duplicate"]
    processed = world["area"].folder("sup-a", "processed", "f-a")
    assert (processed / "half.csv").read_bytes() == data
    assert not (processed / "half.csv.duplicate.txt").exists()  # same file finishing its move: no note
    assert consume_all(world["bootstrap"], world["topic"], idle_s=1) == []
