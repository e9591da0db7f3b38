"""Test support for SFTP: a two-supplier community with SSH keys, and a real OpenSSH sshd.

The real sshd runs inside ``unshare -m --propagation private`` with the SFTP root bind-mounted onto
a root-owned path under /run (environment.md: every ChrootDirectory component must be root-owned
and not group/world-writable, which a pytest tmp dir under /tmp is not).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from lec.procs import ManagedProcess, free_port, port_open

PASSWORDS = {"sup-a": "password-of-a", "sup-b": "password-of-b"}


@dataclass(frozen=True)
class SupplierKey:
    supplier_id: str
    private_file: Path
    public_line: str


def make_keys(folder: Path) -> dict[str, SupplierKey]:
    """One ed25519 key pair per test supplier, private keys in files with mode 0600 (ssh insists)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = {}
    for sup in PASSWORDS:
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{sup}@test")
        priv = folder / f"{sup}_ed25519"
        key.write_private_key(str(priv))
        os.chmod(priv, 0o600)
        keys[sup] = SupplierKey(sup, priv, key.export_public_key().decode().strip())
    return keys


def community_yaml(keys: dict[str, SupplierKey]) -> str:
    """Supplier sup-a owns SFTP flows f-a (CSV) and f-a-json (NDJSON); sup-b owns f-b; f-a-mqtt is not SFTP."""
    return textwrap.dedent(f"""\
        community: {{id: cer-sftp, name: CER SFTP test}}
        users:
          - {{id: u-1, name: One, wallet: "0x2000000000000000000000000000000000000001"}}
        suppliers:
          - id: sup-a
            name: Supplier A
            password: "{PASSWORDS['sup-a']}"
            ssh_public_keys: ["{keys['sup-a'].public_line}"]
          - id: sup-b
            name: Supplier B
            password: "{PASSWORDS['sup-b']}"
            ssh_public_keys: ["{keys['sup-b'].public_line}"]
        devices:
          - {{id: DEV-A1, user: u-1, supplier: sup-a}}
          - {{id: DEV-A2, user: u-1, supplier: sup-a}}
          - {{id: DEV-B1, user: u-1, supplier: sup-b}}
        flows:
          - {{id: f-a, device: DEV-A1, supplier: sup-a, channel: sftp, syntax: csv, measurement: load,
              mapping: {{ts: ts, energy: kwh}}, units: {{energy: kWh}}}}
          - {{id: f-a-json, device: DEV-A2, supplier: sup-a, channel: sftp, syntax: json, measurement: load,
              mapping: {{ts: ts, energy: e}}}}
          - {{id: f-a-mqtt, device: DEV-A2, supplier: sup-a, channel: mqtt, syntax: json, measurement: load}}
          - {{id: f-b, device: DEV-B1, supplier: sup-b, channel: sftp, syntax: csv, measurement: load,
              mapping: {{ts: ts, energy: kwh}}}}
          - id: f-b-camel
            device: DEV-B1
            supplier: sup-b
            channel: camel
            syntax: json
            measurement: load
            syntax_options:
              camel: {{kind: http-poll, url: "https://api.sup-b.example/readings", period: 60000}}
        """)


def load_community(run_dir: Path, keys: dict[str, SupplierKey]):
    """A fresh SQLite registry holding the test community."""
    from lec.registry import Registry, SecretStore

    run_dir.mkdir(parents=True, exist_ok=True)
    reg = Registry(f"sqlite:///{run_dir / 'registry.db'}", SecretStore(f"sqlite:///{run_dir / 'secrets.db'}"))
    reg.migrate()
    path = run_dir / "community.yaml"
    path.write_text(community_yaml(keys))
    reg.load_file(path)
    return reg


@dataclass
class RealSshd:
    port: int
    mount_point: Path        # the SFTP root as sshd sees it (root-owned, inside the private mount namespace)
    process: ManagedProcess


SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid_file}
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
Subsystem sftp internal-sftp
LogLevel VERBOSE
Include {include}
"""


@contextmanager
def real_sshd(work: Path, sftp_root: Path, include_conf: Path, mount_point: Path) -> Iterator[RealSshd]:
    """/usr/sbin/sshd on 127.0.0.1 with ``include_conf`` (the generated Match blocks) at the end of its config.

    ``sftp_root`` is bind-mounted onto ``mount_point`` (a fresh root-owned folder under /run) in a
    private mount namespace, so the generated ChrootDirectory paths, which name ``mount_point``, pass
    sshd's ownership checks while the files live in the test's tmp dir for the watcher.
    """
    work.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    host_key = work / "ssh_host_ed25519_key"
    if not host_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    port = free_port()
    config = work / "sshd_config"
    config.write_text(SSHD_CONFIG.format(port=port, host_key=host_key, pid_file=work / "sshd.pid",
                                         include=include_conf))
    subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(config)], check=True)
    mount_point.mkdir(mode=0o755, parents=True, exist_ok=True)
    script = (f"mount --bind {sftp_root} {mount_point} && exec /usr/sbin/sshd -D -e -f {config}")
    proc = ManagedProcess("sshd", ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          work / "sshd.log")
    try:
        proc.wait_ready(lambda: port_open(port), timeout=20)
        yield RealSshd(port, mount_point, proc)
    finally:
        proc.stop()
        try:
            mount_point.rmdir()  # empty outside the private namespace
        except OSError:
            pass


def run_with_mount(sftp_root: Path, mount_point: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``argv`` (e.g. the generated setup.sh) where ``mount_point`` shows ``sftp_root``."""
    mount_point.mkdir(mode=0o755, parents=True, exist_ok=True)
    script = f"mount --bind {sftp_root} {mount_point} && exec " + " ".join(argv)
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          check=False, capture_output=True, text=True, timeout=60)


def unique_prefix() -> str:
    """A Unix user prefix no real account uses, so the test's accounts can be removed safely."""
    return f"lt{secrets.token_hex(3)}-"


def remove_users(prefix: str) -> None:
    """Delete the Unix accounts a test created (only names starting with its unique prefix)."""
    with open("/etc/passwd") as fh:
        names = [line.split(":", 1)[0] for line in fh if line.startswith(prefix)]
    for name in names:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def sftp_batch(port: int, user: str, key: Path, commands: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the real OpenSSH ``sftp`` client in batch mode with key authentication.

    Each command may be prefixed with '-' so that its failure does not stop the batch.
    """
    batch = cwd / f"batch-{secrets.token_hex(4)}"
    batch.write_text(commands)
    return subprocess.run(
        ["sftp", "-b", str(batch), "-P", str(port), "-i", str(key), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
         "-o", "PasswordAuthentication=no", f"{user}@127.0.0.1"],
        cwd=cwd, check=False, capture_output=True, text=True, timeout=60)
