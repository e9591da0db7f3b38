"""Hostile SFTP sessions against the embedded server (issue 9, finding 13), driven by paramiko:
no mode or owner changes through any handle, masked modes at create, ids differing only in case
refused for OpenSSH, and login attempts that do not each rebuild the registry snapshot."""

from __future__ import annotations

import asyncio
import stat
import textwrap
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest

from connectors.sftp.area import SftpArea, SftpError
from connectors.sftp.openssh import write_openssh_config
from connectors.sftp.server import SupplierDirectory, start_server
from lec.procs import free_port
from tests.connectors.test_sftp_embedded import embedded  # noqa: F401 - the fixture
from tests.support.sshd import PASSWORDS, load_community, make_keys


@pytest.fixture(scope="module")
def server(embedded: dict[str, Any]) -> dict[str, Any]:  # noqa: F811 - the worker as `lec up` starts it
    archived = embedded["area"].folder("sup-a", "processed", "f-a") / "old.csv"
    archived.write_bytes(b"ts,kwh\n2024-01-01T00:00:00Z,1\n")
    archived.chmod(0o644)
    return {**embedded, "archived": archived}


def connect(port: int, user: str = "sup-a") -> paramiko.SFTPClient:
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.connect(username=user, password=PASSWORDS[user])
    return paramiko.SFTPClient.from_transport(transport)


def test_fsetstat_through_a_read_handle_cannot_change_an_archived_file(server: dict[str, Any]) -> None:
    sftp = connect(server["port"])
    try:
        with sftp.open("/processed/f-a/old.csv", "rb") as fh:
            with pytest.raises(PermissionError):
                fh.chmod(0o4755)  # SSH_FXP_FSETSTAT on the open handle
            with pytest.raises(PermissionError):
                fh.truncate(0)
        with pytest.raises(PermissionError):
            sftp.chmod("/processed/f-a/old.csv", 0o4755)  # SSH_FXP_SETSTAT by path
    finally:
        sftp.close()
    st = server["archived"].stat()
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_size > 0


def test_modes_of_uploads_are_masked_at_create_and_on_chmod(server: dict[str, Any]) -> None:
    inbox = server["area"].folder("sup-a", "inbox", "f-a")
    sftp = connect(server["port"])
    try:
        attrs = paramiko.SFTPAttributes()
        attrs.st_mode = 0o6777
        # a create that asks for setuid/setgid and world-writable bits (as `put -p` would)
        with sftp.open("/inbox/f-a/m.csv.part", "wb") as fh:
            fh.write(b"ts,kwh\n")
            fh.chmod(0o4777)  # fsetstat on its own upload: allowed, masked
        assert stat.S_IMODE((inbox / "m.csv.part").stat().st_mode) & 0o7133 == 0
        sftp.chmod("/inbox/f-a/m.csv.part", 0o2776)
        assert stat.S_IMODE((inbox / "m.csv.part").stat().st_mode) & 0o7133 == 0
        with pytest.raises(PermissionError):
            sftp.chown("/inbox/f-a/m.csv.part", 0, 0)
    finally:
        sftp.close()


def test_create_mode_requested_by_the_client_is_masked(server: dict[str, Any], tmp_path: Path) -> None:
    """asyncssh as the client, so the OPEN request itself carries the mode (paramiko sends none)."""
    inbox = server["area"].folder("sup-a", "inbox", "f-a")

    async def upload() -> None:
        async with asyncssh.connect("127.0.0.1", server["port"], username="sup-a", password=PASSWORDS["sup-a"],
                                    known_hosts=None) as conn, conn.start_sftp_client() as sftp, \
                sftp.open("/inbox/f-a/x.csv.part", "wb", asyncssh.SFTPAttrs(permissions=0o4777)) as fh:
            await fh.write(b"ts,kwh\n")

    asyncio.run(upload())
    assert stat.S_IMODE((inbox / "x.csv.part").stat().st_mode) & 0o7133 == 0


def test_supplier_ids_differing_only_in_case_do_not_share_an_openssh_account(tmp_path: Path) -> None:
    from lec.registry import Registry, SecretStore

    run = tmp_path / "run"
    run.mkdir()
    reg = Registry(f"sqlite:///{run / 'registry.db'}", SecretStore(f"sqlite:///{run / 'secrets.db'}"))
    reg.migrate()
    (run / "c.yaml").write_text(textwrap.dedent("""\
        community: {id: cer-case, name: Case}
        users: [{id: u-1, name: One, wallet: "0x2000000000000000000000000000000000000001"}]
        suppliers:
          - {id: Sup-A, name: Upper, password: "pw-upper-1234"}
          - {id: sup-a, name: Lower, password: "pw-lower-1234"}
        devices:
          - {id: D1, user: u-1, supplier: Sup-A}
          - {id: D2, user: u-1, supplier: sup-a}
        flows:
          - {id: f-up, device: D1, supplier: Sup-A, channel: sftp, syntax: csv, measurement: load,
             mapping: {ts: ts, energy: kwh}}
          - {id: f-low, device: D2, supplier: sup-a, channel: sftp, syntax: csv, measurement: load,
             mapping: {ts: ts, energy: kwh}}
        """))
    reg.load_file(run / "c.yaml")
    with pytest.raises(SftpError, match="differ only in case") as exc:
        write_openssh_config(reg, tmp_path / "out", root=Path("/srv/lec/sftp"))
    assert "'Sup-A'" in str(exc.value) and "'sup-a'" in str(exc.value) and "lec-sup-a" in str(exc.value)


def test_failed_logins_do_not_rebuild_the_registry_each_time(tmp_path: Path) -> None:
    reg = load_community(tmp_path / "run", make_keys(tmp_path / "keys"))
    area = SftpArea(tmp_path / "sftp")

    async def flood() -> int:
        port = free_port()
        directory = SupplierDirectory(reg, area, max_age_s=60.0)
        server = await start_server(reg, area, "127.0.0.1", port, asyncssh.generate_private_key("ssh-ed25519"),
                                    directory=directory)
        try:
            for n in range(15):
                with pytest.raises(asyncssh.PermissionDenied):
                    await asyncssh.connect("127.0.0.1", port, username="sup-a", password=f"wrong-{n}",
                                           known_hosts=None, preferred_auth="password")
            async with asyncssh.connect("127.0.0.1", port, username="sup-a", password=PASSWORDS["sup-a"],
                                        known_hosts=None, preferred_auth="password"):
                pass
        finally:
            server.close()
        return directory.reads

    assert asyncio.run(flood()) == 1


def test_the_cached_view_follows_registry_changes(tmp_path: Path) -> None:
    reg = load_community(tmp_path / "run", make_keys(tmp_path / "keys"))
    directory = SupplierDirectory(reg, SftpArea(tmp_path / "sftp"), max_age_s=0.2)
    assert directory.flows("sup-b") == {"f-b"}
    text = (tmp_path / "run" / "community.yaml").read_text()
    (tmp_path / "run" / "community.yaml").write_text(text.replace("id: f-b,", "id: f-b2,"))
    reg.load_file(tmp_path / "run" / "community.yaml")
    import time
    time.sleep(0.3)
    assert "f-b2" in directory.flows("sup-b")
    assert (tmp_path / "sftp" / "sup-b" / "inbox" / "f-b2").is_dir()


# -- least privilege and confinement of each supplier to its own space (against the real server) ----------
B_FILES = {("processed", "b-old.csv"): b"ts,kwh\n2024-01-01T00:00:00Z,7\n",
           ("inbox", "b-new.csv"): b"ts,kwh\n2024-01-01T00:15:00Z,8\n"}


def _b_files(server: dict[str, Any]) -> dict[Path, bytes]:
    files = {}
    for (section, name), body in B_FILES.items():
        path = server["area"].folder("sup-b", section, "f-b") / name
        if not path.exists():
            path.write_bytes(body)
        files[path] = body
    return files


@pytest.mark.parametrize("path", [
    "/../sup-b/processed/f-b/b-old.csv",            # climbing out of the space
    "../../sup-b/inbox/f-b/b-new.csv",              # relative
    "/inbox/f-a/../../../sup-b/inbox/f-b/b-new.csv",
    "/sup-b/processed/f-b/b-old.csv",               # B's space named as if it were inside A's
    "//sup-b/inbox/f-b/b-new.csv",
    "{root}/sup-b/inbox/f-b/b-new.csv",             # the absolute path on the server's disk
    "/inbox/rel/processed/f-b/b-old.csv",           # a link inside A's space pointing into B's
])
def test_a_supplier_cannot_read_or_write_another_suppliers_space(server: dict[str, Any], path: str) -> None:
    files = _b_files(server)
    path = path.format(root=server["area"].root)
    sftp = connect(server["port"], "sup-a")
    try:
        with pytest.raises(IOError), sftp.open(path, "rb") as fh:
            fh.read()
        with pytest.raises(IOError), sftp.open(path, "wb") as fh:
            fh.write(b"ts,kwh\n2024-01-01T00:00:00Z,999\n")
        with pytest.raises(IOError):
            sftp.remove(path)
        with pytest.raises(IOError):
            sftp.stat(path)
        with sftp.open("/inbox/f-a/mine.csv.part", "wb") as fh:
            fh.write(b"ts,kwh\n")
        with pytest.raises(IOError):
            sftp.posix_rename("/inbox/f-a/mine.csv.part", path)  # dropping a file into B's inbox
        sftp.remove("/inbox/f-a/mine.csv.part")
        # whatever '..' A climbs, it lists its own space
        assert sorted(sftp.listdir("/inbox/../../..")) == sorted(sftp.listdir("/"))
        assert "sup-b" not in sftp.listdir("/..")
    finally:
        sftp.close()
    for file, body in files.items():
        assert file.read_bytes() == body
    assert sorted(p.name for p in server["area"].space("sup-b").rglob("*") if p.is_file()) == ["b-new.csv", "b-old.csv"]


def test_spaces_folders_and_uploads_are_private_to_the_platform_account(server: dict[str, Any]) -> None:
    """Readings are personal data: no group or world access to the area the embedded server creates."""
    sftp = connect(server["port"], "sup-a")
    try:
        with sftp.open("/inbox/f-a/private.csv.part", "wb") as fh:
            fh.write(b"ts,kwh\n")
    finally:
        sftp.close()
    area = server["area"]
    folders = [area.root, area.space("sup-a"), area.space("sup-b"),
               *(area.folder(s, sec, f) for s, f in (("sup-a", "f-a"), ("sup-b", "f-b"))
                 for sec in ("inbox", "processed", "failed"))]
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((area.folder("sup-a", "inbox", "f-a") / "private.csv.part").stat().st_mode) == 0o600
    run_dir = server["base"] / "run"
    for secret in (run_dir / "registry.db", run_dir / "secrets.db",
                   run_dir / "sftp-host-key" / "ssh_host_ed25519_key"):
        assert stat.S_IMODE(secret.stat().st_mode) & 0o077 == 0, secret


def test_the_server_holds_no_capability(server: dict[str, Any]) -> None:
    """Run by root (as `lec up` is here), the server must not keep root's powers over the host's files."""
    pid = server["proc"].pid
    for task in Path(f"/proc/{pid}/task").iterdir():  # every thread: capabilities are per thread
        status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[field].strip(), 16) == 0, (task.name, field, status[field])
        assert status["NoNewPrivs"].strip() == "1"
