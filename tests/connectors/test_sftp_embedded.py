"""The embedded SFTP server (`lec connectors sftp-server`), driven by paramiko and the real `sftp` client."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from connectors.sftp.area import SftpArea
from connectors.sftp.state import IngestedFiles
from connectors.sftp.watch import SftpWatcher, WatchOptions, kafka_producer
from lec.procs import ManagedProcess, free_port, port_open
from tests.connectors.test_sftp_watch import consume_all, lines_received
from tests.support.sshd import PASSWORDS, load_community, make_keys, sftp_batch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The worker command itself, as `lec up` starts it, on a free loopback port."""
    base = tmp_path_factory.mktemp("sftp-embedded")
    keys = make_keys(base / "keys")
    run_dir = base / "run"
    reg = load_community(run_dir, keys)
    root = base / "sftp"
    port = free_port()
    env = {"LEC_RUN_DIR": str(run_dir), "LEC_SFTP_ROOT": str(root), "LEC_SFTP_PORT": str(port),
           "LEC_REGISTRY_URL": f"sqlite:///{run_dir / 'registry.db'}",
           "LEC_SECRETS_URL": f"sqlite:///{run_dir / 'secrets.db'}"}
    proc = ManagedProcess("sftp-server", [sys.executable, "-m", "connectors", "sftp-server"],
                          base / "sftp-server.log", env=env, cwd=REPO)
    proc.wait_ready(lambda: port_open(port), timeout=60)
    # things an administrator (not a supplier) left inside a space: links pointing outside it
    secret = base / "secret.csv"
    secret.write_text("ts,kwh\nTOP-SECRET\n")
    outside_dir = base / "outside"
    outside_dir.mkdir()
    (outside_dir / "other.csv").write_text("nope\n")
    area = SftpArea(root)
    (area.folder("sup-a", "inbox", "f-a") / "escape.csv").symlink_to(secret)
    (area.space("sup-a") / "outside").symlink_to(outside_dir)
    (area.space("sup-a") / "inbox" / "rel").symlink_to("../../sup-b")
    yield {"port": port, "keys": keys, "reg": reg, "area": area, "base": base, "secret": secret, "proc": proc}
    assert proc.stop() == 0, "sftp-server must stop cleanly on SIGTERM"
    assert "SFTP server stopped" in proc.log.read_text()


def connect(port: int, user: str, *, password: str | None = None, key: Path | None = None) -> paramiko.SFTPClient:
    transport = paramiko.Transport(("127.0.0.1", port))
    if key is not None:
        transport.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(str(key)))
    else:
        transport.connect(username=user, password=password)
    return paramiko.SFTPClient.from_transport(transport)


def test_password_login_and_upload_by_rename(embedded: dict[str, Any]) -> None:
    sftp = connect(embedded["port"], "sup-a", password=PASSWORDS["sup-a"])
    try:
        assert sorted(sftp.listdir("/")) == ["failed", "inbox", "outside", "processed"]
        assert sorted(sftp.listdir("/inbox")) == ["f-a", "f-a-json", "rel"]
        with sftp.open("/inbox/f-a/pw.csv.part", "wb") as fh:
            fh.write(b"ts,kwh\n2024-01-01T00:00:00Z,1.5\n")
        sftp.rename("/inbox/f-a/pw.csv.part", "/inbox/f-a/pw.csv")
    finally:
        sftp.close()
    assert (embedded["area"].folder("sup-a", "inbox", "f-a") / "pw.csv").read_bytes() == \
        b"ts,kwh\n2024-01-01T00:00:00Z,1.5\n"


@pytest.mark.parametrize("user,password", [("sup-a", "wrong-password"), ("sup-a", PASSWORDS["sup-b"]),
                                           ("nobody", "whatever"), ("root", "root")])
def test_wrong_credentials_are_refused(embedded: dict[str, Any], user: str, password: str) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        connect(embedded["port"], user, password=password)


def test_another_suppliers_key_is_refused(embedded: dict[str, Any]) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        connect(embedded["port"], "sup-a", key=embedded["keys"]["sup-b"].private_file)


def test_key_login_with_the_real_sftp_client(embedded: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "day.csv").write_bytes(b"ts,kwh\n2024-01-01T00:00:00Z,2\n")
    result = sftp_batch(embedded["port"], "sup-b", embedded["keys"]["sup-b"].private_file,
                        "put day.csv /inbox/f-b/day.csv.part\nrename /inbox/f-b/day.csv.part /inbox/f-b/day.csv\n"
                        "ls /inbox/f-b\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (embedded["area"].folder("sup-b", "inbox", "f-b") / "day.csv").exists()
    refused = sftp_batch(embedded["port"], "sup-b", embedded["keys"]["sup-a"].private_file, "ls /\n", tmp_path)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr


@pytest.mark.parametrize("target", [
    "../sup-b/inbox/f-b/x.csv",          # climb out with ..
    "/../../sup-b/inbox/f-b/x.csv",
    "/inbox/f-b/x.csv",                  # another supplier's flow (absolute path)
    "/inbox/f-a-mqtt/x.csv",             # own flow but not an SFTP one
    "/inbox/x.csv",                      # outside a flow folder
    "/processed/f-a/x.csv",              # the platform's folders are read-only
    "/failed/f-a/x.csv.report.txt",
    "/etc/passwd",
    "/inbox/rel/inbox/f-b/x.csv",        # through a symlink to another space
    "/outside/x.csv",                    # through a symlink to outside the root
])
def test_writes_outside_own_flow_folders_are_denied(embedded: dict[str, Any], target: str) -> None:
    sftp = connect(embedded["port"], "sup-a", password=PASSWORDS["sup-a"])
    try:
        with pytest.raises((PermissionError, IOError)), sftp.open(target, "wb") as fh:
            fh.write(b"ts,kwh\n")
    finally:
        sftp.close()
    root = embedded["area"].root
    assert not (root / "sup-b" / "inbox" / "f-b" / "x.csv").exists()
    assert not (embedded["base"] / "outside" / "x.csv").exists()
    assert not list(root.rglob("x.csv*"))


def test_symlinks_inside_the_root_are_not_followed(embedded: dict[str, Any]) -> None:
    sftp = connect(embedded["port"], "sup-a", password=PASSWORDS["sup-a"])
    try:
        for path in ("/inbox/f-a/escape.csv", "/outside/other.csv", "/inbox/rel/inbox"):
            with pytest.raises((PermissionError, IOError)), sftp.open(path, "rb") as fh:
                fh.read()
        for folder in ("/outside", "/inbox/rel", "/inbox/rel/inbox/f-b"):
            with pytest.raises((PermissionError, IOError)):
                sftp.listdir(folder)
        with pytest.raises((PermissionError, IOError)):
            sftp.stat("/inbox/f-a/escape.csv")
        with pytest.raises((PermissionError, IOError)):
            sftp.symlink("/etc/passwd", "/inbox/f-a/mine.csv")
        with pytest.raises((PermissionError, IOError)):
            sftp.mkdir("/inbox/f-a/sub")
        with pytest.raises((PermissionError, IOError)):
            sftp.rename("/inbox/f-a/escape.csv", "/inbox/f-a/renamed.csv")
        # '..' and absolute paths stay inside the space
        assert sorted(sftp.listdir("/../../..")) == ["failed", "inbox", "outside", "processed"]
        with pytest.raises(IOError):
            sftp.listdir("/etc")
    finally:
        sftp.close()
    assert not (embedded["area"].folder("sup-a", "inbox", "f-a") / "mine.csv").exists()


def test_no_shell_or_command_execution(embedded: dict[str, Any]) -> None:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", embedded["port"], username="sup-a", password=PASSWORDS["sup-a"],
                   allow_agent=False, look_for_keys=False)
    try:
        with pytest.raises(paramiko.SSHException):
            client.exec_command("id")
        with pytest.raises(paramiko.SSHException):
            client.get_transport().open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 0))
    finally:
        client.close()


def test_upload_over_embedded_server_reaches_kafka(embedded: dict[str, Any], kafka_bootstrap: str,
                                                   tmp_path: Path) -> None:
    lines = [f"2024-01-02T00:{m:02d}:00Z,{m / 10}".encode() for m in range(0, 60, 15)]
    (tmp_path / "e2e.csv").write_bytes(b"ts,kwh\n" + b"\n".join(lines) + b"\n")
    result = sftp_batch(embedded["port"], "sup-a", embedded["keys"]["sup-a"].private_file,
                        "put e2e.csv /inbox/f-a/e2e.csv.part\nrename /inbox/f-a/e2e.csv.part /inbox/f-a/e2e.csv\n",
                        tmp_path)
    assert result.returncode == 0, result.stderr
    topic = f"raw-{secrets.token_hex(4)}"
    state = IngestedFiles(tmp_path / "state.sqlite")
    watcher = SftpWatcher(embedded["reg"], embedded["area"], state, kafka_producer(kafka_bootstrap),
                          WatchOptions(settle_s=0), raw_topic=topic, deadletter_topic=f"dl-{secrets.token_hex(4)}")
    outcomes = {o.file: o.status for o in watcher.scan_once()}
    state.close()
    assert outcomes["inbox/f-a/e2e.csv"] == "processed"
    assert outcomes["inbox/f-a/escape.csv"] == "failed"  # the admin's symlink is refused by the watcher too
    records = [r for r in consume_all(kafka_bootstrap, topic, idle_s=2)
               if r[1]["items"][0]["source"]["file"] == "inbox/f-a/e2e.csv"]
    assert [lines_received(records)[n] for n in range(2, 6)] == lines
    assert records[0][1]["supplier_id"] == "sup-a" and records[0][0] == b"DEV-A1"
    # the supplier sees its file in processed/ over SFTP
    sftp = connect(embedded["port"], "sup-a", key=embedded["keys"]["sup-a"].private_file)
    try:
        assert "e2e.csv" in sftp.listdir("/processed/f-a")
        assert "escape.csv.report.txt" in sftp.listdir("/failed/f-a")
    finally:
        sftp.close()
    assert os.path.exists(embedded["secret"])
