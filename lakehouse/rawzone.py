"""The raw zone: every original file the SFTP area accepts, byte for byte, with its checksum.

Layout (the same on local disk and on HDFS), under ``<lake>/raw``::

    raw/{supplier}/{flow}/{yyyy}/{mm}/{dd}/{file name}          the original bytes
    raw/{supplier}/{flow}/{yyyy}/{mm}/{dd}/{file name}.sha256   "<hex>  <file name>\\n" (sha256sum format)
    raw/{supplier}/{flow}/_sha256/{hex}                         which path holds that content

The watcher archives a file before it sends it (and so before it is marked processed); if the
archive cannot be written (HDFS down, disk full) the file goes back to the inbox and is retried,
nothing is lost. The same content dropped again is recognised by the ``_sha256`` marker and not
archived twice. On ``hdfs://`` lakes the writes go through WebHDFS with the ``hdfs`` package
(HdfsCLI), the client made for this; the day is the UTC day of archiving.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from lec.errors import ConfigError, LecError

if TYPE_CHECKING:
    from lec.config import Settings

log = logging.getLogger(__name__)
CHUNK = 1 << 20
UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


class RawZoneError(LecError):
    """The raw zone could not be written or read (the file stays in the inbox to retry)."""


@dataclass(frozen=True)
class RawEntry:
    path: str        # relative to the raw root: supplier/flow/yyyy/mm/dd/name
    size: int
    sha256: str


def _part(value: str) -> str:
    """A path component from an id or a supplier's file name: other characters become '_' and no
    hidden or parent names (HDFS and disks take the same names)."""
    safe = UNSAFE.sub("_", value)[:200]
    return safe if safe and not safe.startswith(".") else f"_{safe}"


class _Local:
    """Raw zone on local disk: write to a temporary name, fsync, rename (atomic, no half files)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def write(self, rel: str, chunks: Iterator[bytes]) -> None:
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.partial")
        with open(tmp, "wb") as fh:
            fh.writelines(chunks)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)

    def read(self, rel: str) -> BinaryIO:
        return open(self.root / rel, "rb")

    def walk(self, rel: str) -> Iterator[str]:
        base = self.root / rel
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file():
                yield str(path.relative_to(self.root))

    def delete(self, rel: str) -> None:
        """A file, or a folder and everything under it."""
        import shutil

        path = self.root / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def prune(self, rel: str) -> None:
        """Remove the empty folders under ``rel`` (left by erased files)."""
        base = self.root / rel
        if not base.is_dir():
            return
        for path in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(path.iterdir()):
                path.rmdir()


class _WebHdfs:
    """Raw zone on HDFS through WebHDFS (HdfsCLI): write a temporary name, then rename."""

    def __init__(self, url: str, root: str, user: str) -> None:
        from hdfs import InsecureClient

        self.client = InsecureClient(url, user=user, timeout=30)
        self.root = root.rstrip("/")

    def _p(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def exists(self, rel: str) -> bool:
        return self.client.status(self._p(rel), strict=False) is not None

    def write(self, rel: str, chunks: Iterator[bytes]) -> None:
        dest = self._p(rel)
        parent, name = dest.rsplit("/", 1)
        tmp = f"{parent}/.{name}.partial"
        self.client.makedirs(parent)
        self.client.write(tmp, data=chunks, overwrite=True)
        self.client.delete(dest)  # rename does not replace: a leftover of an interrupted run goes
        self.client.rename(tmp, dest)

    def read(self, rel: str) -> BinaryIO:
        import io

        with self.client.read(self._p(rel)) as reader:
            return io.BytesIO(reader.read())

    def walk(self, rel: str) -> Iterator[str]:
        base = self._p(rel).rstrip("/")
        if self.client.status(base, strict=False) is None:
            return
        for folder, _dirs, files in self.client.walk(base):
            for name in sorted(files):
                yield f"{folder}/{name}"[len(self.root) + 1:]

    def delete(self, rel: str) -> None:
        self.client.delete(self._p(rel), recursive=True)

    def prune(self, rel: str) -> None:
        base = self._p(rel).rstrip("/")
        if self.client.status(base, strict=False) is None:
            return
        folders = [folder for folder, _dirs, _files in self.client.walk(base)]
        for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):
            if folder != base and not self.client.list(folder):
                self.client.delete(folder)


class RawZone:
    """Archive and list originals under ``<lake>/raw`` (a local path or an hdfs:// lake + WebHDFS URL)."""

    def __init__(self, lake_uri: str, webhdfs_url: str = "", user: str = "") -> None:
        root = f"{lake_uri.rstrip('/')}/raw"
        if lake_uri.startswith("hdfs://"):
            if not webhdfs_url:
                raise ConfigError("the lake is on hdfs:// but webhdfs_url is empty: set LEC_WEBHDFS_URL to the "
                                  "NameNode's HTTP address (e.g. http://namenode:9870)")
            from urllib.parse import urlparse

            self.store: Any = _WebHdfs(webhdfs_url, urlparse(root).path, user or os.environ.get("USER", "lec"))
        elif "://" in lake_uri and not lake_uri.startswith("file://"):
            raise ConfigError(f"the raw zone supports local paths and hdfs:// lakes, not {lake_uri!r}")
        else:
            self.store = _Local(root.removeprefix("file://"))
        self.uri = root

    @classmethod
    def from_settings(cls, settings: Settings) -> RawZone:
        return cls(settings.resolved_lake_uri(), settings.webhdfs_url)

    def archive_fd(self, supplier_id: str, flow_id: str, name: str, fd: int, sha256: str,
                   now: datetime | None = None) -> str:
        """Archive the file open on ``fd`` (read from offset 0, the descriptor's position untouched);
        returns its raw path, or the path of the copy already there. Raises RawZoneError."""
        sup, flow, fname = _part(supplier_id), _part(flow_id), _part(name)
        marker = f"{sup}/{flow}/_sha256/{sha256}"
        day = (now or datetime.now(UTC)).astimezone(UTC)
        rel = f"{sup}/{flow}/{day:%Y/%m/%d}/{fname}"
        try:
            if self.store.exists(marker):
                with self.store.read(marker) as fh:
                    return fh.read().decode().strip()  # the same content: archived once
            if self.store.exists(rel):  # another content under the same name the same day
                rel = f"{sup}/{flow}/{day:%Y/%m/%d}/{sha256[:12]}-{fname}"
            digest = hashlib.sha256()

            def chunks() -> Iterator[bytes]:
                offset = 0
                while True:
                    chunk = os.pread(fd, CHUNK, offset)
                    if not chunk:
                        return
                    digest.update(chunk)
                    offset += len(chunk)
                    yield chunk

            self.store.write(rel, chunks())
            if digest.hexdigest() != sha256:
                raise RawZoneError(f"{rel}: the bytes archived (sha256 {digest.hexdigest()}) are not the bytes "
                                   f"scanned ({sha256}); the file changed while being read")
            self.store.write(f"{rel}.sha256", iter([f"{sha256}  {rel.rsplit('/', 1)[1]}\n".encode()]))
            self.store.write(marker, iter([rel.encode()]))  # last: only a complete copy is known
        except RawZoneError:
            raise
        except Exception as exc:  # HdfsError, requests' ConnectionError, OSError
            raise RawZoneError(f"raw zone {self.uri}: archiving {sup}/{flow}/{name} failed "
                               f"({type(exc).__name__}: {str(exc)[:300]}); the file stays in the inbox") from exc
        return rel

    def archive(self, supplier_id: str, flow_id: str, name: str, fd: int, sha256: str) -> bool:
        """The SFTP watcher's hook: archive, or log why not and return False (file back to the inbox)."""
        try:
            self.archive_fd(supplier_id, flow_id, name, fd, sha256)
        except RawZoneError as exc:
            log.warning("%s", exc)
            return False
        return True

    def ls(self, prefix: str = "") -> list[RawEntry]:
        """Archived originals under a prefix (supplier, supplier/flow, .../yyyy/mm ...)."""
        out = []
        for rel in self.store.walk(prefix.strip("/")):
            parts = rel.split("/")
            if "_sha256" in parts or rel.endswith(".sha256") or parts[-1].startswith("."):
                continue
            with self.store.read(f"{rel}.sha256") as fh:
                sha = fh.read().decode().split()[0]
            with self.store.read(rel) as fh:
                size = len(fh.read()) if isinstance(self.store, _WebHdfs) else os.fstat(fh.fileno()).st_size
            out.append(RawEntry(rel, size, sha))
        return out

    def get(self, rel: str, dest: Path) -> str:
        """Copy one original to ``dest``, verifying its checksum; returns the sha256."""
        rel = rel.strip("/")
        if ".." in rel.split("/"):
            raise RawZoneError(f"raw path {rel!r} must not contain '..'")
        try:
            with self.store.read(f"{rel}.sha256") as fh:
                want = fh.read().decode().split()[0]
            with self.store.read(rel) as fh:
                data = fh.read()
        except Exception as exc:
            raise RawZoneError(f"{rel} is not in the raw zone {self.uri} ({type(exc).__name__}); "
                               "list it with `lec lake raw ls`") from exc
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise RawZoneError(f"{rel}: stored checksum {want} does not match its bytes ({got})")
        dest.write_bytes(data)
        return got


@dataclass
class _Original:
    rel: str                  # supplier/flow/yyyy/mm/dd/name
    sha256: str

    @property
    def flow_dir(self) -> str:
        return "/".join(self.rel.split("/")[:2])


def _originals(store: Any) -> list[_Original]:
    out = []
    for rel in store.walk(""):
        parts = rel.split("/")
        if len(parts) < 3 or "_sha256" in parts or rel.endswith(".sha256") or parts[-1].startswith("."):
            continue
        try:
            with store.read(f"{rel}.sha256") as fh:
                sha = fh.read().decode().split()[0]
        except Exception:  # noqa: BLE001 - an original without its sidecar (interrupted archive): no marker
            sha = ""
        out.append(_Original(rel, sha))
    return out


def erase_raw(zone: RawZone, flow_ids: list[str], pattern: re.Pattern[str],
              deleted: list[str] | None = None) -> dict[str, int]:
    """Erase a subject from the raw zone (GDPR, lakehouse.gdpr.erase): counts by kind.

    As in the SFTP areas (lakehouse.gdpr.files): an erased flow's originals go, except that a shared
    file (a utility's daily curve of all its PODs) keeps the other PODs' lines; any other original
    naming the subject loses the naming lines. A rewritten original gets its new ``.sha256`` and
    ``_sha256`` marker (the old marker goes, so the index only names what is there); kept files of an
    erased flow move to ``{supplier}/erased-flow-<random>/...`` so the flow id disappears from paths.
    Works on local disk and on HDFS through the same store API. ``deleted`` collects file names.
    """
    import uuid

    deleted = [] if deleted is None else deleted
    out = {"files": 0, "lines": 0, "kept_files": 0, "folders": 0}
    store = zone.store
    flows = {_part(f) for f in flow_ids}
    erased_dirs: dict[str, str] = {}  # erased flow dir -> its new name
    touched: set[str] = set()
    for orig in _originals(store):
        sup, flow = orig.rel.split("/")[:2]
        in_flow = flow in flows
        if in_flow:
            erased_dirs.setdefault(orig.flow_dir, f"{sup}/erased-flow-{uuid.uuid4().hex[:8]}")
        named = bool(pattern.search(orig.rel.split("/", 2)[2]))
        try:
            with store.read(orig.rel) as fh:
                data = fh.read()
        except Exception as exc:
            raise RawZoneError(f"raw zone {zone.uri}: reading {orig.rel} for erasure failed "
                               f"({type(exc).__name__}: {str(exc)[:300]})") from exc
        text = data.decode("utf-8", errors="surrogateescape")
        lines = text.splitlines(keepends=True)
        kept = [ln for ln in lines if not pattern.search(ln)]
        dropped = len(lines) - len(kept)
        if not in_flow and not named and not dropped:
            continue
        touched.add(sup)
        # drop the old copy and its index entries first: nothing of the subject's content stays indexed
        if orig.sha256:
            store.delete(f"{orig.flow_dir}/_sha256/{orig.sha256}")
        store.delete(f"{orig.rel}.sha256")
        store.delete(orig.rel)
        rest = [ln for ln in kept if ln.strip()]
        if named or not rest or (dropped and len(rest) <= 1):  # header only: nothing of anyone else
            out["files"] += 1
            deleted.append(orig.rel.rsplit("/", 1)[1])
            continue
        out["lines"] += dropped
        out["kept_files"] += 1
        new = "".join(kept).encode("utf-8", errors="surrogateescape")
        sha = hashlib.sha256(new).hexdigest()
        flow_dir = erased_dirs.get(orig.flow_dir, orig.flow_dir)
        rel = f"{flow_dir}/{orig.rel.split('/', 2)[2]}"
        name = rel.rsplit("/", 1)[1]
        store.write(rel, iter([new]))
        store.write(f"{rel}.sha256", iter([f"{sha}  {name}\n".encode()]))
        store.write(f"{flow_dir}/_sha256/{sha}", iter([rel.encode()]))
    for flow_dir in erased_dirs:
        store.delete(flow_dir)  # what is left: the markers of the erased originals
        out["folders"] += 1
    for sup in sorted(touched):
        store.prune(sup)  # day folders emptied by deleted originals
    return out
