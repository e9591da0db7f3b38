"""Embedded SFTP server (asyncssh): one chrooted space per supplier, uploads only into its flows.

asyncssh's own chroot only translates paths: a symlink inside the root pointing outside would be
followed (environment.md). So every path is checked component by component and any symlink on
the way is refused; suppliers can neither create links nor folders, and may write only files
directly inside ``inbox/<flow>/`` of flows the registry says they own over SFTP.
No shell, exec, port or agent forwarding: only the ``sftp`` subsystem is served.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from connectors.sftp_area import SftpArea, SftpError, VirtualPath
from lec.registry import Registry
from lec.registry.passwords import verify_password

log = logging.getLogger("lec.connectors.sftp_server")

DENIED = "permission denied: suppliers may only upload files into inbox/<flow>/ of their own flows"


class SupplierDirectory:
    """Credentials and flows of suppliers, read from the registry at each login (no restart needed)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def password_hash(self, supplier_id: str) -> str | None:
        return self.registry.supplier_password_hashes().get(supplier_id)

    def authorized_keys(self, supplier_id: str) -> list[str]:
        return self.registry.supplier_ssh_keys().get(supplier_id, [])

    def flows(self, supplier_id: str, area: SftpArea) -> set[str]:
        """The supplier's SFTP flows; creates folders of flows added to the registry since start."""
        owned = area.ensure(self.registry.snapshot())
        return owned.get(supplier_id, set())

    def is_active(self, supplier_id: str) -> bool:
        sup = self.registry.snapshot().suppliers.get(supplier_id)
        return sup is not None and sup.active


class SupplierSSHServer(asyncssh.SSHServer):
    """Authentication: the supplier id is the user name; password ($7$ hash) or registry keys."""

    def __init__(self, directory: SupplierDirectory) -> None:
        self.directory = directory
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        keys = self.directory.authorized_keys(username) if self.directory.is_active(username) else []
        if keys and self.conn is not None:
            try:
                self.conn.set_authorized_keys(asyncssh.import_authorized_keys("\n".join(keys)))
            except (asyncssh.KeyImportError, ValueError) as exc:
                log.warning("supplier %s has an unreadable SSH key in the registry: %s", username, exc)
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        ok = self.directory.is_active(username) and verify_password(password, self.directory.password_hash(username))
        log.info("sftp password login of %r %s", username, "accepted" if ok else "refused")
        return ok


class SupplierSFTPServer(asyncssh.SFTPServer):
    """SFTP operations confined to the supplier's space, symlinks refused, writes only to inbox/<flow>/."""

    def __init__(self, chan: asyncssh.SSHServerChannel, area: SftpArea, directory: SupplierDirectory) -> None:
        self.supplier_id = chan.get_extra_info("username")
        self.space = area.space(self.supplier_id)
        self.space.mkdir(parents=True, exist_ok=True)
        self.own_flows = directory.flows(self.supplier_id, area)
        super().__init__(chan, chroot=os.fsencode(self.space))
        self._root = os.fsencode(os.path.realpath(self.space))

    # -- path policy ---------------------------------------------------------------------
    def map_path(self, path: bytes) -> bytes:
        """Map into the space, refusing any symlink on the way (asyncssh alone would follow it)."""
        vpath = VirtualPath.parse(os.fsdecode(path))
        local = self._root
        for part in vpath.parts:
            local = os.path.join(local, os.fsencode(part))
            try:
                st = os.lstat(local)
            except FileNotFoundError:
                break  # the rest does not exist yet (a new upload): nothing to follow
            if stat.S_ISLNK(st.st_mode):
                raise asyncssh.SFTPPermissionDenied("symbolic links are not allowed in the SFTP area")
        return os.path.join(self._root, *(os.fsencode(p) for p in vpath.parts)) if vpath.parts else self._root

    def _writable(self, path: bytes) -> None:
        if not VirtualPath.parse(os.fsdecode(path)).is_upload_target(self.own_flows):
            raise asyncssh.SFTPPermissionDenied(DENIED)

    # -- operations ----------------------------------------------------------------------
    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC):
            self._writable(path)
        return super().open(path, pflags, attrs)

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if desired_access & (asyncssh.ACE4_WRITE_DATA | asyncssh.ACE4_APPEND_DATA) or (
                flags & asyncssh.FXF_ACCESS_DISPOSITION) != asyncssh.FXF_OPEN_EXISTING:
            self._writable(path)
        return super().open56(path, desired_access, flags, attrs)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._writable(path)
        return super().setstat(path, attrs)

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._writable(path)
        return super().lsetstat(path, attrs)

    def remove(self, path: bytes) -> None:
        self._writable(path)
        return super().remove(path)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable(oldpath)
        self._writable(newpath)
        return super().rename(oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable(oldpath)
        self._writable(newpath)
        return super().posix_rename(oldpath, newpath)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        raise asyncssh.SFTPPermissionDenied("permission denied: folders are managed by the platform")

    def rmdir(self, path: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("permission denied: folders are managed by the platform")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("symbolic links are not allowed in the SFTP area")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("hard links are not allowed in the SFTP area")


def host_key_path(run_dir: Path) -> Path:
    return run_dir / "sftp-host-key" / "ssh_host_ed25519_key"


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """The server's host key, created once and kept (clients pin it)."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    os.chmod(path, 0o600)
    return key


async def start_server(registry: Registry, area: SftpArea, host: str, port: int,
                       host_key: asyncssh.SSHKey) -> asyncssh.SSHAcceptor:
    """Listen for suppliers; the spaces and flow folders are created from the registry first."""
    area.ensure(registry.snapshot())
    directory = SupplierDirectory(registry)
    factory: Callable[[asyncssh.SSHServerChannel], Any] = lambda chan: SupplierSFTPServer(chan, area, directory)
    return await asyncssh.listen(
        host, port, server_host_keys=[host_key], server_factory=lambda: SupplierSSHServer(directory),
        sftp_factory=factory, allow_scp=False, agent_forwarding=False, x11_forwarding=False)


def serve_forever(registry: Registry, root: Path, host: str, port: int, host_key_file: Path) -> None:
    """Run the embedded server in the foreground until SIGTERM/SIGINT."""
    if port <= 0:
        raise SftpError("set LEC_SFTP_PORT to the port the SFTP server must listen on (e.g. 2222)")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await start_server(registry, SftpArea(root), host, port, load_or_create_host_key(host_key_file))
        log.info("SFTP server listening on %s:%d, root %s", host, port, root)
        await stop.wait()
        server.close()
        await server.wait_closed()
        log.info("SFTP server stopped")

    asyncio.run(main())
