"""Production SFTP: the generated OpenSSH config and setup script, run by a real sshd with real Unix users.

`lec connectors sftp-config` output is used as is: setup.sh creates the accounts and the tree (in a
private mount namespace where the SFTP root sits on a root-owned path), sshd includes the generated
Match blocks, suppliers log in with the real `sftp` client and paramiko, and the watcher ingests.
"""

from __future__ import annotations

import base64
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from connectors.sftp.area import SftpArea
from connectors.sftp.state import IngestedFiles
from connectors.sftp.watch import SftpWatcher, WatchOptions, kafka_producer
from tests.connectors.test_sftp_watch import consume_all, lines_received
from tests.support.sshd import (
    PASSWORDS,
    load_community,
    make_keys,
    real_sshd,
    remove_users,
    run_with_mount,
    sftp_batch,
    unique_prefix,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def openssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("sftp-openssh")
    keys = make_keys(base / "keys")
    reg = load_community(base / "run", keys)
    sftp_root = base / "sftp"
    sftp_root.mkdir(mode=0o755)
    tag = secrets.token_hex(4)
    mount_point = Path(f"/run/lec-sftp-test-{tag}")
    keys_dir = Path(f"/run/lec-sftp-test-{tag}-keys")  # readable by the suppliers' accounts
    prefix = unique_prefix()
    out = base / "generated"
    try:
        run_dir = base / "run"
        env = {**os.environ, "LEC_RUN_DIR": str(run_dir), "LEC_REGISTRY_URL": f"sqlite:///{run_dir / 'registry.db'}",
               "LEC_SECRETS_URL": f"sqlite:///{run_dir / 'secrets.db'}"}
        generated = subprocess.run(
            [sys.executable, "-m", "connectors", "sftp-config", "--out", str(out), "--root",
             str(mount_point), "--user-prefix", prefix, "--watcher-user", prefix + "watch", "--keys-dir", str(keys_dir)],
            env=env, cwd=REPO, check=False, capture_output=True, text=True, timeout=120)
        assert generated.returncode == 0, generated.stderr[-2000:]
        setup = run_with_mount(sftp_root, mount_point, ["sh", str(out / "setup.sh")])
        assert setup.returncode == 0, setup.stderr
        secret = base / "secret.csv"
        secret.write_text("ts,kwh\nTOP-SECRET\n")
        (sftp_root / "sup-a" / "inbox" / "f-a" / "escape.csv").symlink_to(secret)
        (sftp_root / "sup-a" / "inbox" / "rel").symlink_to("../../sup-b")        # inside the root, to another space
        (sftp_root / "sup-a" / "inbox" / "abs").symlink_to(sftp_root / "sup-b")  # absolute host path
        with real_sshd(base / "sshd", sftp_root, out / "sshd_config.d" / "lec-sftp.conf", mount_point) as sshd:
            yield {"port": sshd.port, "keys": keys, "reg": reg, "root": sftp_root, "prefix": prefix, "out": out,
                   "base": base, "log": sshd.process.log}
    finally:
        remove_users(prefix)
        shutil.rmtree(keys_dir, ignore_errors=True)
        try:
            mount_point.rmdir()
        except OSError:
            pass


def user(env: dict[str, Any], supplier: str) -> str:
    return env["prefix"] + supplier


def connect(env: dict[str, Any], supplier: str, key_of: str | None = None,
            password: str | None = None) -> paramiko.SFTPClient:
    transport = paramiko.Transport(("127.0.0.1", env["port"]))
    if password is not None:
        transport.connect(username=user(env, supplier), password=password)
    else:
        key = env["keys"][key_of or supplier].private_file
        transport.connect(username=user(env, supplier), pkey=paramiko.Ed25519Key.from_private_key_file(str(key)))
    return paramiko.SFTPClient.from_transport(transport)


def test_generated_tree_has_the_ownership_chroot_needs(openssh: dict[str, Any]) -> None:
    space = openssh["root"] / "sup-a"
    for path in (space, space / "inbox", space / "processed"):
        st = path.stat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, path
    inbox = (space / "inbox" / "f-a").stat()
    assert pwd.getpwuid(inbox.st_uid).pw_name == user(openssh, "sup-a") and inbox.st_mode & stat.S_ISGID
    account = pwd.getpwnam(user(openssh, "sup-a"))
    assert account.pw_shell == "/usr/sbin/nologin" and account.pw_dir == "/"
    conf = (openssh["out"] / "sshd_config.d" / "lec-sftp.conf").read_text()
    assert f"Match User {user(openssh, 'sup-a')}" in conf and "ForceCommand internal-sftp" in conf
    assert "AllowTcpForwarding no" in conf and "PermitTTY no" in conf


def test_real_sftp_client_uploads_and_the_watcher_ingests(openssh: dict[str, Any], kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    lines = [f"2024-03-01T00:{m:02d}:00Z,{m}".encode() for m in range(0, 60, 15)]
    (tmp_path / "march.csv").write_bytes(b"ts,kwh\n" + b"\n".join(lines) + b"\n")
    result = sftp_batch(openssh["port"], user(openssh, "sup-a"), openssh["keys"]["sup-a"].private_file,
                        "pwd\nput march.csv f-a/march.csv.part\nrename f-a/march.csv.part f-a/march.csv\n"
                        "ln -s /etc/passwd f-a/passwd.csv\n", tmp_path)
    assert result.returncode == 0, result.stderr + openssh["log"].read_text()[-2000:]
    assert "Remote working directory: /inbox" in result.stdout
    uploaded = openssh["root"] / "sup-a" / "inbox" / "f-a" / "march.csv"
    assert pwd.getpwuid(uploaded.stat().st_uid).pw_name == user(openssh, "sup-a")
    topic, dl = f"raw-{secrets.token_hex(4)}", f"dl-{secrets.token_hex(4)}"
    state = IngestedFiles(tmp_path / "state.sqlite")
    watcher = SftpWatcher(openssh["reg"], SftpArea(openssh["root"]), state, kafka_producer(kafka_bootstrap),
                          WatchOptions(settle_s=0), raw_topic=topic, deadletter_topic=dl)
    outcomes = {o.file: o for o in watcher.scan_once()}
    state.close()
    assert outcomes["inbox/f-a/march.csv"].status == "processed"
    records = consume_all(kafka_bootstrap, topic, expect=1)
    assert [lines_received(records)[n] for n in range(2, 6)] == lines
    # symlinks (the supplier's own, and one left inside the tree) are refused, never followed by the watcher
    for name in ("passwd.csv", "escape.csv"):
        assert outcomes[f"inbox/f-a/{name}"].problem.reason_code == "not_a_regular_file"
    dead_letters = consume_all(kafka_bootstrap, dl, expect=2)
    assert len(dead_letters) == 2
    for _, dead in dead_letters:
        assert base64.b64decode(dead["payload_b64"]) == b""  # nothing of /etc/passwd or the secret
    # the supplier reads the outcome over SFTP
    sftp = connect(openssh, "sup-a")
    try:
        assert "march.csv" in sftp.listdir("/processed/f-a")
        assert "escape.csv.report.txt" in sftp.listdir("/failed/f-a")
    finally:
        sftp.close()


@pytest.mark.parametrize("target", [
    "/inbox/f-b/x.csv",              # another supplier's flow: does not exist in this space
    "../sup-b/inbox/f-b/x.csv",      # '..' stops at the chroot
    "/../../sup-b/inbox/f-b/x.csv",
    "/inbox/x.csv",                  # inbox itself is root's
    "/processed/f-a/x.csv",          # the watcher's folders are read-only for the supplier
    "/x.csv",
    "/etc/passwd",
])
def test_writes_outside_own_flow_folders_are_denied(openssh: dict[str, Any], target: str) -> None:
    sftp = connect(openssh, "sup-a")
    try:
        with pytest.raises(IOError), sftp.open(target, "wb") as fh:
            fh.write(b"ts,kwh\n")
        with pytest.raises(IOError):
            sftp.mkdir("/inbox/new-flow")
    finally:
        sftp.close()
    assert not list(openssh["root"].rglob("x.csv"))
    assert not (openssh["root"] / "sup-b" / "inbox" / "f-b" / "x.csv").exists()


def test_symlink_inside_root_pointing_outside_is_not_followed(openssh: dict[str, Any]) -> None:
    sftp = connect(openssh, "sup-a")
    try:
        with pytest.raises(IOError), sftp.open("/inbox/f-a/escape.csv", "rb") as fh:
            fh.read()
        assert sorted(sftp.listdir("/../..")) == ["failed", "inbox", "processed"]
        for folder in ("/inbox/rel/inbox/f-b", "/inbox/abs/inbox/f-b", "/inbox/rel", "/inbox/abs"):
            with pytest.raises(IOError):
                sftp.listdir(folder)
            with pytest.raises(IOError), sftp.open(folder + "/x.csv", "wb") as fh:
                fh.write(b"ts,kwh\n")
    finally:
        sftp.close()


def test_refused_logins_and_no_forwarding(openssh: dict[str, Any]) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        connect(openssh, "sup-a", key_of="sup-b")
    with pytest.raises(paramiko.AuthenticationException):
        connect(openssh, "sup-a", password=PASSWORDS["sup-a"])  # $7$ hashes are not sshd passwords: keys only
    sftp = connect(openssh, "sup-a")
    try:
        with pytest.raises(paramiko.ChannelException):
            sftp.get_channel().get_transport().open_channel("direct-tcpip", ("127.0.0.1", openssh["port"]),
                                                            ("127.0.0.1", 0))
    finally:
        sftp.close()
