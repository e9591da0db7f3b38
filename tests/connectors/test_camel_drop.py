"""The ftp-poll route (a vendor's SFTP drop folder) executed for real on Apache Camel 4 against OpenSSH.

The vendor is the real /usr/sbin/sshd (tests/support/sshd.py) with a chrooted SFTP-only Unix account
that logs in with a password; the route gets that password from the secret it references (a properties
file given to camel-main, as Camel K mounts the Kubernetes Secret) and accepts only the host key of
its ``known_hosts``. Files dropped there land on lec.raw as raw envelopes, the streams worker turns
them into readings with channel ``camel`` and dead-letters the garbage file with its reason; a
restart of the route takes the file dropped meanwhile and does not send again a file already taken.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from connectors.camel.run import prepare, routes_yaml, secret_files, secrets_dir
from lec import topics
from lec.config import Settings
from lec.errors import ServiceError
from lec.procs import ManagedProcess, wait_until
from tests.connectors.test_camel_routes_run import camel_registry, camel_routes, flow_records, start_camel
from tests.support.sshd import real_sshd, remove_users, unique_prefix
from tests.support.streams import log_contains, start_worker

pytestmark = pytest.mark.slow
FLOW = "f-vendor-drop"
SECRET = "vendor-drop"
PASSWORD_PROPERTY = "lec.vendor-drop.password"

VENDOR_MATCH = """\
Match User {user}
    PasswordAuthentication yes
    ChrootDirectory {chroot}
    ForceCommand internal-sftp
    AllowTcpForwarding no
    AllowStreamLocalForwarding no
    X11Forwarding no
    AllowAgentForwarding no
    PermitTunnel no
    PermitTTY no
"""


class DropFolder:
    """A vendor's drop folder as seen on this machine (``out``); ``drop`` writes a file as the vendor does."""

    out: Path

    def drop(self, name: str, body: bytes) -> None:
        raise NotImplementedError

    def waiting(self) -> list[str]:
        return sorted(p.name for p in self.out.iterdir() if not p.name.startswith("."))

    def folder(self, name: str) -> list[str]:
        folder = self.out / name
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@dataclass
class VendorDrop(DropFolder):
    port: int
    user: str
    password: str
    known_hosts: str   # "[127.0.0.1]:port ssh-ed25519 AAAA...": the only host key the route accepts
    out: Path          # the drop folder on this machine (the vendor account sees it as /out)
    sshd: ManagedProcess

    def drop(self, name: str, body: bytes) -> None:
        """Write a file the way a vendor should: under a hidden name (never read), then renamed."""
        tmp = self.out / f".{name}.tmp"
        tmp.write_bytes(body)
        owner = pwd.getpwnam(self.user)
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
        tmp.rename(self.out / name)


@pytest.fixture()
def vendor(tmp_path: Path) -> Iterator[VendorDrop]:
    """OpenSSH with one vendor account (password, chrooted, SFTP only) whose /out is the drop folder."""
    prefix = unique_prefix()
    user, password = prefix + "vendor", secrets.token_urlsafe(18)
    root = tmp_path / "vendor-root"
    root.mkdir(mode=0o755)  # the chroot: root-owned, not writable by the vendor account
    os.chmod(root, 0o755)
    mount_point = Path(f"/run/lec-camel-drop-{secrets.token_hex(4)}")
    try:
        subprocess.run(["useradd", "--no-create-home", "--home-dir", "/", "--shell", "/usr/sbin/nologin",
                        "--user-group", user], check=True, capture_output=True)
        subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True, capture_output=True)
        owner = pwd.getpwnam(user)
        out = root / "out"
        out.mkdir(mode=0o750)
        os.chown(out, owner.pw_uid, owner.pw_gid)
        include = tmp_path / "vendor-sshd.conf"
        include.write_text(VENDOR_MATCH.format(user=user, chroot=mount_point))
        with real_sshd(tmp_path / "sshd", root, include, mount_point) as sshd:
            key_type, key = (tmp_path / "sshd" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            yield VendorDrop(sshd.port, user, password, f"[127.0.0.1]:{sshd.port} {key_type} {key}", out,
                             sshd.process)
    finally:
        remove_users(prefix)


def drop_flow(vendor: VendorDrop, known_hosts: str) -> dict[str, Any]:
    return {"kind": "ftp-poll", "url": f"sftp://127.0.0.1:{vendor.port}/out", "period": 1000, "retry_delay_ms": 200,
            "username": vendor.user, "password": f"{{{{{PASSWORD_PROPERTY}}}}}", "secret": SECRET,
            "known_hosts": known_hosts}


def readings_file(day: int) -> bytes:
    rows = [{"ts": f"2025-03-{day:02d}T00:{m:02d}:00Z", "e": 200 + day * 4 + i} for i, m in enumerate((0, 15, 30, 45))]
    return json.dumps({"readings": rows}).encode()


def write_secret(run_dir: Path, snapshot: Any, password: str) -> list[Path]:
    """The local stand-in for the Kubernetes Secret the Integration mounts: one properties file, 0600."""
    folder = secrets_dir(Settings(run_dir=run_dir))
    folder.mkdir(parents=True, mode=0o700)
    secret = folder / f"{SECRET}.properties"
    secret.write_text(f"{PASSWORD_PROPERTY}={password}\n")
    secret.chmod(0o600)
    secrets_used = secret_files(snapshot, folder)
    assert secrets_used == [secret]
    return secrets_used


def camel_readings(bootstrap: str) -> list[dict]:
    return [r for r in flow_records(bootstrap, topics.READINGS, FLOW) if r.get("channel") == "camel"]


def drop_lands_once_across_restart(bootstrap: str, vendor: DropFolder, password: str, camel_flow: dict[str, Any],
                                   tmp_path: Path) -> list[Path]:
    """Files dropped land once on lec.raw and as readings, the garbage is dead-lettered, a restart of the route
    takes the file dropped meanwhile and does not resend one taken before. Returns the secret files used."""
    run_dir = tmp_path / "run"
    snapshot, routes = camel_routes(bootstrap, run_dir, FLOW, camel_flow)
    assert password not in routes  # the route names the property; the value stays in the secret
    secrets_used = write_secret(run_dir, snapshot, password)

    vendor.drop("day01.json", readings_file(1))
    vendor.drop("day02.json", readings_file(2))
    vendor.drop("garbage.json", b"<html>maintenance \xff\xfe</html>")
    worker = start_worker(run_dir, bootstrap, "streams")
    camel = None
    try:
        camel = start_camel(tmp_path / "camel", routes, secrets_used)
        wait_until(lambda: len(flow_records(bootstrap, topics.RAW, FLOW)) >= 3, 180, "camel envelopes from the drop",
                   camel.proc, camel.log)
        wait_until(lambda: vendor.waiting() == [] and len(vendor.folder(".done")) == 3, 60, "files moved to .done",
                   camel.proc, camel.log)
        camel.stop()
        first_log = camel.log.read_text(errors="replace")
        camel = None
        # while the route is down: a new file, and a file taken before dropped again (same name and bytes,
        # as after a move that failed): the restarted route takes the new one and does not resend the old
        vendor.drop("day03.json", readings_file(3))
        vendor.drop("day01.json", readings_file(1))
        camel = start_camel(tmp_path / "camel", routes, secrets_used)
        wait_until(lambda: vendor.waiting() == [] and len(flow_records(bootstrap, topics.RAW, FLOW)) >= 4, 180,
                   "the file dropped during the restart", camel.proc, camel.log)
        time.sleep(3)  # a few more polls: nothing else may arrive
        raw = flow_records(bootstrap, topics.RAW, FLOW)
        ids = [e["items"][0]["message_id"] for e in raw]
        assert len(ids) == len(set(ids)) == 4, [e["items"][0]["source"] for e in raw]
        assert sorted(e["items"][0]["source"]["file"] for e in raw) == \
            ["day01.json", "day02.json", "day03.json", "garbage.json"]
        assert all(e["schema"] == "lec.raw/1" and e["channel"] == "camel" and e["supplier_id"] == "sup-utility"
                   for e in raw)
        assert vendor.folder(".failed") == []
        assert sorted(vendor.folder(".done")) == ["day01.json", "day02.json", "day03.json", "garbage.json"]

        wait_until(lambda: len(camel_readings(bootstrap)) >= 12, 180, "camel readings", worker.proc, worker.log)
        assert len({r["ts"] for r in camel_readings(bootstrap)}) == 12  # days 1-3, four readings each, none twice
        dead = flow_records(bootstrap, topics.DEADLETTER, FLOW)
        assert [d["reason_code"] for d in dead] == ["json_invalid"], dead
        logs = first_log + camel.log.read_text(errors="replace")
        assert password not in logs
    finally:
        if camel is not None:
            camel.stop()
        worker.stop()
    return secrets_used


def test_sftp_drop_lands_once_with_garbage_dead_lettered_across_restarts(fresh_kafka: tuple, vendor: VendorDrop,
                                                                        tmp_path: Path) -> None:
    _, bootstrap = fresh_kafka
    secrets_used = drop_lands_once_across_restart(bootstrap, vendor, vendor.password,
                                                  drop_flow(vendor, vendor.known_hosts), tmp_path)
    # a server whose host key is not the flow's known_hosts (a man in the middle, a re-keyed host):
    # the route refuses it before authenticating, so the password is never sent; the file waits
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong = camel_registry(tmp_path / "run-wrong-key", FLOW,
                           drop_flow(vendor, f"[127.0.0.1]:{vendor.port} {other_key}")).snapshot()
    logins = vendor.sshd.log.read_text(errors="replace").count("Accepted password")
    vendor.drop("day04.json", readings_file(4))
    camel = start_camel(tmp_path / "camel", routes_yaml(wrong, kafka_brokers=bootstrap,
                                                        max_payload_bytes=1024 * 1024), secrets_used)
    try:
        wait_until(lambda: log_contains(camel, "HostKey"), 60, "the host key refused", camel.proc, camel.log)
        assert vendor.waiting() == ["day04.json"]
        assert vendor.sshd.log.read_text(errors="replace").count("Accepted password") == logins
        assert len(flow_records(bootstrap, topics.RAW, FLOW)) == 4
    finally:
        camel.stop()


def test_a_missing_or_readable_secret_file_stops_the_local_run_with_the_fix(tmp_path: Path) -> None:
    flow = {"kind": "ftp-poll", "url": "sftp://127.0.0.1:2222/out", "period": 1000, "username": "lec",
            "password": f"{{{{{PASSWORD_PROPERTY}}}}}", "secret": SECRET, "known_hosts": "[127.0.0.1]:2222 ssh-ed25519 A"}
    snapshot = camel_registry(tmp_path / "run", FLOW, flow).snapshot()
    folder = tmp_path / "secrets"
    folder.mkdir()
    with pytest.raises(ServiceError, match=f"references the secret '{SECRET}'.*mode 0600"):
        secret_files(snapshot, folder)
    secret = folder / f"{SECRET}.properties"
    secret.write_text(f"{PASSWORD_PROPERTY}=x\n")
    secret.chmod(0o644)
    with pytest.raises(ServiceError, match="chmod 600"):
        secret_files(snapshot, folder)
    secret.chmod(0o600)
    assert secret_files(snapshot, folder) == [secret]
    # given to camel-main as a properties location: the value is in no file the run writes
    argv = prepare(tmp_path / "camel", "[]", secrets=[secret])
    props = (tmp_path / "camel" / "conf" / "application.properties").read_text()
    assert f"file:{secret}" in props and "=x\n" not in props and "autoConfigurationLogSummary=false" in props
    assert argv[-1] == "org.apache.camel.main.Main"
