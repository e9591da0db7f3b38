"""The SFTP triage area: one space per supplier, one folder per flow (seed §4.3.7.1).

Layout under the SFTP root (``Settings.resolved_sftp_root()``)::

    <root>/<supplier_id>/                 the supplier's chroot: it sees this as "/"
        inbox/<flow_id>/                  uploads go here (the only writable folders)
        processed/<flow_id>/              files whose every chunk Kafka acknowledged
        failed/<flow_id>/                 rejected files, each with <name>.report.txt beside it

The same layout serves the embedded asyncssh server and production OpenSSH (``sftp-config``).
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path

from lec.errors import LecError
from lec.registry import RegistrySnapshot

log = logging.getLogger("lec.connectors.sftp_area")

INBOX, PROCESSED, FAILED = "inbox", "processed", "failed"
SECTIONS = (INBOX, PROCESSED, FAILED)
STAGING = ".staging"           # <root>/.staging/<supplier>/<flow>/: files being read, out of the suppliers' reach
PART_SUFFIX = ".part"          # uploads in progress: renamed to the final name when complete
REPORT_SUFFIX = ".report.txt"  # written beside a failed file
PRIVATE_DIR = 0o700            # folders the platform creates: only its own account enters them


class SftpError(LecError):
    """The SFTP area, server or watcher cannot do what was asked."""


def sftp_flows(snapshot: RegistrySnapshot) -> dict[str, set[str]]:
    """Supplier id -> ids of its active flows delivered over SFTP."""
    owned: dict[str, set[str]] = {}
    for flow in snapshot.flows.values():
        supplier = snapshot.suppliers.get(flow.supplier_id)
        if flow.channel == "sftp" and flow.active and supplier is not None and supplier.active:
            owned.setdefault(flow.supplier_id, set()).add(flow.id)
    return owned


@dataclass(frozen=True)
class VirtualPath:
    """A path as a supplier sees it inside its own space, split into section/flow/name."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, path: str) -> VirtualPath:
        """Normalise a client path: '..' cannot climb above the space's root, relative = from '/'."""
        norm = posixpath.normpath(posixpath.join("/", path))
        return cls(tuple(p for p in norm.split("/") if p))

    @property
    def text(self) -> str:
        return "/" + "/".join(self.parts)

    def is_upload_target(self, own_flows: set[str]) -> bool:
        """Writable: a file directly inside inbox/<flow>/ of a flow the supplier owns."""
        return (len(self.parts) == 3 and self.parts[0] == INBOX and self.parts[1] in own_flows
                and self.parts[2] not in (".", ".."))


class SftpArea:
    """Paths of the triage area on the local disk, and creation of its folder tree."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def space(self, supplier_id: str) -> Path:
        return self.root / supplier_id

    def folder(self, supplier_id: str, section: str, flow_id: str) -> Path:
        return self.root / supplier_id / section / flow_id

    def staging(self, supplier_id: str, flow_id: str) -> Path:
        """Where the watcher moves (renames, same filesystem) an upload before reading it, so that
        what it reads is what it archives: a supplier cannot replace or rewrite it there."""
        return self.root / STAGING / supplier_id / flow_id

    def private_folder(self, folder: Path) -> Path:
        """Create ``folder`` (under the root) and any missing folder between it and the root, mode 0700.

        Why: readings and uploads are personal data; with the embedded server and the watcher running
        as one account nobody else needs to enter them (existing folders keep their mode, so the
        OpenSSH layout made by its setup.sh is left alone).
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        current = self.root
        for part in folder.relative_to(self.root).parts:
            current = current / part
            current.mkdir(exist_ok=True, mode=PRIVATE_DIR)
        return folder

    def ensure(self, snapshot: RegistrySnapshot) -> dict[str, set[str]]:
        """Create every supplier's space and flow folders (idempotent); returns supplier -> flows."""
        owned = sftp_flows(snapshot)
        for supplier_id, flows in owned.items():
            for section in SECTIONS:
                for flow_id in flows:
                    folder = self.folder(supplier_id, section, flow_id)
                    try:
                        self.private_folder(folder)
                    except OSError as exc:  # one broken folder must not stop every other supplier
                        log.error("cannot create SFTP folder %s (%s): fix it by hand", folder, exc)
        return owned
