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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from connectors.sftp.area import SftpArea, SftpError, VirtualPath, sftp_flows
from lec.registry import Registry, RegistrySnapshot
from lec.registry.passwords import LoginCache

log = logging.getLogger("lec.connectors.sftp_server")

UPLOAD_MODE = 0o600  # the most an uploaded file may be: data, read and moved by the watcher (same account)
DENIED = "permission denied: suppliers may only upload files into inbox/<flow>/ of their own flows"


@dataclass(frozen=True)
class _DirectoryView:
    snapshot: RegistrySnapshot
    password_hashes: dict[str, str]
    ssh_keys: dict[str, list[str]]
    owned: dict[str, set[str]]


class SupplierDirectory:
    """Credentials and flows of suppliers from the registry, cached for ``max_age_s``.

    A login attempt used to rebuild the whole registry snapshot before authenticating: a flood of
    bad logins was a flood of full registry reads. Now at most one read per ``max_age_s`` (short, so
    a registry change still reaches logins within a second or two, without a restart).
    """

    def __init__(self, registry: Registry, area: SftpArea | None = None, max_age_s: float = 1.0) -> None:
        self.registry, self.area, self.max_age_s = registry, area, max_age_s
        self._view: _DirectoryView | None = None
        self._at = 0.0
        self._lock = threading.Lock()
        self.reads = 0  # registry reads so far (what the cache saves is visible in tests)

    def _current(self) -> _DirectoryView:
        with self._lock:
            if self._view is None or time.monotonic() - self._at > self.max_age_s:
                snap = self.registry.snapshot()
                owned = self.area.ensure(snap) if self.area is not None else sftp_flows(snap)
                self._view = _DirectoryView(snap, self.registry.supplier_password_hashes(),
                                            self.registry.supplier_ssh_keys(), owned)
                self._at = time.monotonic()
                self.reads += 1
            return self._view

    def password_hash(self, supplier_id: str) -> str | None:
        return self._current().password_hashes.get(supplier_id)

    def authorized_keys(self, supplier_id: str) -> list[str]:
        return self._current().ssh_keys.get(supplier_id, [])

    def flows(self, supplier_id: str) -> set[str]:
        """The supplier's SFTP flows (their folders are created when the view is refreshed)."""
        return self._current().owned.get(supplier_id, set())

    def is_active(self, supplier_id: str) -> bool:
        sup = self._current().snapshot.suppliers.get(supplier_id)
        return sup is not None and sup.active


_LOGINS: dict[int, LoginCache] = {}


def _logins(registry: Any) -> LoginCache:
    """One verified-login cache per registry (view) of this process."""
    cache = _LOGINS.get(id(registry))
    if cache is None:
        cache = _LOGINS[id(registry)] = LoginCache(on_rehash=registry.replace_password_hash)
    return cache


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
        # verified logins cached per process (a hash check costs ~0.2-1 s); legacy hashes upgraded on success
        logins = _logins(self.directory.registry)
        ok = self.directory.is_active(username) and logins.verify(username, password,
                                                                 self.directory.password_hash(username))
        log.info("sftp password login of %r %s", username, "accepted" if ok else "refused")
        return ok


class SupplierSFTPServer(asyncssh.SFTPServer):
    """SFTP operations confined to the supplier's space, symlinks refused, writes only to inbox/<flow>/."""

    def __init__(self, chan: asyncssh.SSHServerChannel, area: SftpArea, directory: SupplierDirectory) -> None:
        self.supplier_id = chan.get_extra_info("username")
        self.space = area.private_folder(area.space(self.supplier_id))
        self.own_flows = directory.flows(self.supplier_id)
        super().__init__(chan, chroot=os.fsencode(self.space))
        self._root = os.fsencode(os.path.realpath(self.space))
        self._write_handles: set[int] = set()  # ids of files this session opened for writing

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
        writing = bool(pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC))
        if writing:
            self._writable(path)
        attrs.permissions = upload_mode(attrs.permissions)
        return self._track(super().open(path, pflags, attrs), writing)

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs) -> object:
        writing = bool(desired_access & (asyncssh.ACE4_WRITE_DATA | asyncssh.ACE4_APPEND_DATA) or (
            flags & asyncssh.FXF_ACCESS_DISPOSITION) != asyncssh.FXF_OPEN_EXISTING)
        if writing:
            self._writable(path)
        attrs.permissions = upload_mode(attrs.permissions)
        return self._track(super().open56(path, desired_access, flags, attrs), writing)

    def _track(self, file_obj: object, writing: bool) -> object:
        if writing:
            self._write_handles.add(id(file_obj))
        return file_obj

    def close(self, file_obj: object) -> None:
        self._write_handles.discard(id(file_obj))
        return super().close(file_obj)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._writable(path)
        return super().setstat(path, safe_attrs(attrs))

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._writable(path)
        return super().lsetstat(path, safe_attrs(attrs))

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        """Only on a file this session opened for writing (an upload): a handle opened to read a file in
        processed/ once let a supplier set mode 04755 on it."""
        if id(file_obj) not in self._write_handles:
            raise asyncssh.SFTPPermissionDenied(DENIED)
        return super().fsetstat(file_obj, safe_attrs(attrs))

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


def upload_mode(requested: int | None) -> int:
    """The mode a supplier's file is created with: what it asks, masked (never setuid/setgid/sticky,
    executable, or writable by group or others)."""
    return (UPLOAD_MODE if requested is None else requested) & UPLOAD_MODE


def safe_attrs(attrs: asyncssh.SFTPAttrs) -> asyncssh.SFTPAttrs:
    """Attributes a supplier may set on its own upload: size, times, and a masked mode; never owners."""
    if attrs.uid is not None or attrs.gid is not None or attrs.owner is not None or attrs.group is not None:
        raise asyncssh.SFTPPermissionDenied("permission denied: file owners are managed by the platform")
    if attrs.permissions is not None:
        attrs.permissions = upload_mode(attrs.permissions)
    return attrs


_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
_CAP_VERSION_3 = 0x20080522


def drop_capabilities() -> None:
    """Give up every Linux capability for good (effective, permitted, inheritable, ambient, bounding)
    and forbid gaining any back (``no_new_privs``).

    Why: the embedded server needs none. Started by root (as ``lec up`` is on a bare host) it kept
    CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_FOWNER...: a hole in the path policy would have reached every
    file of the host. Without them a root-owned process can still use the files it owns (run dir,
    SFTP root), nothing else. Call it before any thread starts: capabilities are per thread.
    """
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SftpError(f"cannot set no_new_privs: {os.strerror(ctypes.get_errno())}")
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last_cap + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM for an unprivileged account: it has none to drop

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header, data = Header(_CAP_VERSION_3, 0), (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise SftpError(f"cannot drop the process's capabilities: {os.strerror(ctypes.get_errno())}")


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
                       host_key: asyncssh.SSHKey, directory: SupplierDirectory | None = None) -> asyncssh.SSHAcceptor:
    """Listen for suppliers; the spaces and flow folders are created from the registry first."""
    directory = directory or SupplierDirectory(registry, area)
    directory.flows("")  # first registry read: spaces and flow folders exist before the first login
    factory: Callable[[asyncssh.SSHServerChannel], Any] = lambda chan: SupplierSFTPServer(chan, area, directory)
    return await asyncssh.listen(
        host, port, server_host_keys=[host_key], server_factory=lambda: SupplierSSHServer(directory),
        sftp_factory=factory, allow_scp=False, agent_forwarding=False, x11_forwarding=False)


def serve_forever(registry: Registry, root: Path, host: str, port: int, host_key_file: Path) -> None:
    """Run the embedded server in the foreground until SIGTERM/SIGINT."""
    if port <= 0:
        raise SftpError("set LEC_SFTP_PORT to the port the SFTP server must listen on (e.g. 2222)")

    os.umask(0o077)  # whatever the server creates (spaces, host key) is the platform account's only

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
