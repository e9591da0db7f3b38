"""The SFTP watcher: completed uploads -> chunked raw records on ``lec.raw`` -> processed/ or failed/.

Completed uploads: files named ``*.part`` (or starting with '.') are uploads in progress and are
never read; any other file is taken once its size and modification time have not changed for
``settle_s`` seconds (so clients that cannot rename are covered too).

Nothing is lost: a file is moved out of ``inbox/`` only after Kafka acknowledged every chunk
(producer flush), and its SHA-256 is recorded first. Killed mid-file, the file is still in the
inbox at restart and is sent again with the same deterministic message ids (at-least-once with
identical ids; streams deduplicate on message_id). A file whose checksum was already ingested
for the flow is not sent again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from connectors.channel import RawSink
from connectors.sftp.area import (
    FAILED,
    INBOX,
    PART_SUFFIX,
    PROCESSED,
    REPORT_SUFFIX,
    STAGING,
    SftpArea,
    SftpError,
)
from connectors.sftp.chunks import FileScan, Problem, chunks, read_header, scan
from connectors.sftp.state import IngestedFiles
from lec import topics
from lec.io import DeliveryTracker, Producer
from lec.records import (
    MAX_DEADLETTER_PAYLOAD,
    deadletter_record,
    encode,
    message_id_for,
    raw_item,
    utc_now_iso,
)
from lec.registry import Flow, Registry, RegistrySnapshot

log = logging.getLogger("lec.connectors.sftp_watch")

CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "xml": "application/xml"}


@dataclass(frozen=True)
class WatchOptions:
    chunk_bytes: int = 256 * 1024     # bytes of one raw item (bounded by Settings.max_payload_bytes)
    chunk_lines: int = 10_000         # lines of one raw item
    max_line_bytes: int = 64 * 1024   # a longer line fails the file (a missing line end, usually)
    settle_s: float = 2.0             # unchanged for this long = upload complete
    poll_s: float = 1.0
    registry_refresh_s: float = 30.0


class Window:
    """When ingestion may run: 'immediate' (always) or an off-peak 'HH:MM-HH:MM' in local time."""

    def __init__(self, spec: str) -> None:
        self.spec = spec.strip()
        self.bounds: tuple[dtime, dtime] | None = None
        if self.spec.lower() in ("", "immediate"):
            return
        try:
            start, end = (dtime.fromisoformat(p.strip()) for p in self.spec.split("-"))
        except ValueError as exc:
            raise SftpError(f"LEC_SFTP_SCHEDULE must be 'immediate' or 'HH:MM-HH:MM', not {spec!r}") from exc
        self.bounds = (start, end)

    def is_open(self, now: datetime | None = None) -> bool:
        if self.bounds is None:
            return True
        t = (now or datetime.now()).time()
        start, end = self.bounds
        return start <= t < end if start <= end else (t >= start or t < end)  # may wrap midnight


@dataclass(frozen=True)
class Outcome:
    file: str            # path inside the supplier's space, as the supplier sees it
    status: str          # processed | duplicate | failed | interrupted
    chunks: int = 0
    lines: int = 0
    problem: Problem | None = None


class SftpWatcher:
    def __init__(self, registry: Registry, area: SftpArea, state: IngestedFiles, producer: Producer,
                 options: WatchOptions = WatchOptions(), *, max_payload_bytes: int = 1024 * 1024,
                 window: Window | None = None, raw_topic: str = topics.RAW,
                 deadletter_topic: str = topics.DEADLETTER, raw_zone: Any = None) -> None:
        if options.chunk_bytes > max_payload_bytes:
            raise SftpError(f"chunk size {options.chunk_bytes} exceeds LEC_MAX_PAYLOAD_BYTES {max_payload_bytes}")
        if options.max_line_bytes >= options.chunk_bytes:
            raise SftpError("the line bound must be smaller than the chunk size")
        self.registry, self.area, self.state, self.producer = registry, area, state, producer
        self.options, self.max_payload_bytes = options, max_payload_bytes
        self.window = window or Window("immediate")
        self.raw, self.deadletter_topic = RawSink("sftp", producer, raw_topic), deadletter_topic
        self.raw_zone = raw_zone  # lakehouse.rawzone.RawZone: originals archived before sending
        self.stop_requested = threading.Event()
        self._seen: dict[Path, tuple[int, int, float]] = {}
        self._snapshot: RegistrySnapshot | None = None
        self._snapshot_at = 0.0
        self._set_aside_failed: set[Path] = set()  # could not even be moved to failed/: not retried in a loop

    # -- registry ------------------------------------------------------------------------
    def snapshot(self) -> RegistrySnapshot:
        if self._snapshot is None or time.monotonic() - self._snapshot_at > self.options.registry_refresh_s:
            self._snapshot = self.registry.snapshot()
            self._snapshot_at = time.monotonic()
            self.area.ensure(self._snapshot)
        return self._snapshot

    # -- discovery -----------------------------------------------------------------------
    def ready_files(self) -> Iterator[tuple[str, str, Path]]:
        """(supplier, flow folder, path) of uploads that look complete, oldest first.

        Files left in the private staging folder (a watcher stopped or killed while reading them)
        come first and need no settling: nobody else can write there.
        """
        found: list[tuple[int, str, str, Path]] = []
        now = time.monotonic()
        current: set[Path] = set()
        if not self.area.root.is_dir():
            return iter(())
        staged = list(self._staged_files())
        for space in sorted(self.area.root.iterdir()):
            inbox = space / INBOX
            if space.name.startswith(".") or space.is_symlink() or not inbox.is_dir() or inbox.is_symlink():
                continue
            for folder in sorted(inbox.iterdir()):
                if folder.is_symlink() or not folder.is_dir() or file_name_problem(folder.name) is not None:
                    continue  # flow folders are made by the platform: an odd one is nobody's flow
                for entry in os.scandir(folder):
                    if entry.name.endswith(PART_SUFFIX) or entry.name.startswith("."):
                        continue
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        continue
                    path = Path(entry.path)
                    current.add(path)
                    key = (st.st_size, st.st_mtime_ns)
                    prev = self._seen.get(path)
                    if prev is None or prev[:2] != key:
                        self._seen[path] = (*key, now)
                        if self.options.settle_s > 0:
                            continue
                    elif now - prev[2] < self.options.settle_s:
                        continue
                    found.append((st.st_mtime_ns, space.name, folder.name, path))
        for gone in set(self._seen) - current:
            del self._seen[gone]
        return iter([*staged, *((s, f, p) for _, s, f, p in sorted(found))])

    def _staged_files(self) -> Iterator[tuple[str, str, Path]]:
        base = self.area.root / STAGING
        if not base.is_dir():
            return
        for space in sorted(base.iterdir()):
            for folder in sorted(space.iterdir()) if space.is_dir() else ():
                for entry in sorted(os.scandir(folder), key=lambda e: e.name) if folder.is_dir() else ():
                    yield space.name, folder.name, Path(entry.path)

    def scan_once(self) -> list[Outcome]:
        """Ingest every complete upload present now (if the schedule allows).

        One file's failure never stops the others: anything unexpected while handling a file is
        caught here, the file is set aside in failed/ with a report, and the scan goes on.
        """
        if not self.window.is_open():
            return []
        snap = self.snapshot()
        outcomes = []
        for supplier_id, flow_folder, path in list(self.ready_files()):
            if self.stop_requested.is_set():
                break
            if path in self._set_aside_failed:
                continue
            try:
                outcome = self.ingest(snap, supplier_id, flow_folder, path)
            except Exception as exc:  # noqa: BLE001 - one file must never stop every supplier's ingestion
                outcome = self._fail_unexpected(snap, supplier_id, flow_folder, path, exc)
            if outcome is not None:
                outcomes.append(outcome)
            self._seen.pop(path, None)
        return outcomes

    def run(self) -> None:
        log.info("SFTP watcher on %s (schedule %s)", self.area.root, self.window.spec or "immediate")
        while not self.stop_requested.is_set():
            try:
                self.scan_once()
            except Exception:
                log.exception("SFTP scan failed; retrying in %.1f s", self.options.poll_s)
            self.stop_requested.wait(self.options.poll_s)
        log.info("SFTP watcher stopped")

    # -- one file ------------------------------------------------------------------------
    def ingest(self, snap: RegistrySnapshot, supplier_id: str, flow_folder: str, path: Path) -> Outcome | None:
        """Stage, read, send and archive one upload; None when it must wait (its staging slot is busy)."""
        shown = f"{INBOX}/{flow_folder}/{printable(path.name)}"
        flow = snap.flows.get(flow_folder)
        staged = self._stage(supplier_id, flow_folder, path)
        if staged is None:
            return None
        bad_name = file_name_problem(path.name)
        if bad_name is not None:
            return self._fail(snap, supplier_id, flow_folder, staged, shown,
                              Problem("bad_file_name", None, f"{shown}: {bad_name}"), None, flow)
        try:
            fd = os.open(staged, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:  # a symlink (ELOOP) or something that is not a plain file
            problem = Problem("not_a_regular_file", None,
                              f"{shown} is not a regular file ({exc.strerror}); upload plain files only")
            return self._fail(snap, supplier_id, flow_folder, staged, shown, problem, None, flow)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                problem = Problem("not_a_regular_file", None, f"{shown} is not a regular file; upload plain files only")
                return self._fail(snap, supplier_id, flow_folder, staged, shown, problem, None, flow)
            if flow is None or flow.supplier_id != supplier_id or flow.channel != "sftp" or not flow.active:
                problem = Problem("flow_not_owned", None,
                                  f"flow '{flow_folder}' is not an active SFTP flow of supplier '{supplier_id}'; "
                                  f"upload into inbox/<flow>/ of one of your own flows")
                return self._fail(snap, supplier_id, flow_folder, staged, shown, problem, None, flow)
            outcome = self._ingest_fd(snap, supplier_id, flow, staged, shown, fd)
        finally:
            os.close(fd)
        if outcome.status == "interrupted":
            self._unstage(staged, self.area.folder(supplier_id, INBOX, flow_folder) / staged.name)
        return outcome

    def _stage(self, supplier_id: str, flow_folder: str, path: Path) -> Path | None:
        """Rename the upload into the private staging folder (same filesystem: atomic, no copy).

        From then on the supplier can neither replace nor rename it, so the bytes read are the bytes
        archived (a ``posix_rename`` over the inbox name now creates a new upload, read next time).
        """
        folder = self.area.staging(supplier_id, flow_folder)
        if path.parent == folder:
            return path  # left here by a stopped or killed watcher: resume it
        self.area.private_folder(folder)
        dest = folder / path.name
        if dest.exists() or dest.is_symlink():
            return None  # an earlier upload of the same name is still being handled: wait for it
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            return None  # renamed or deleted by the supplier since the scan
        return dest

    def _unstage(self, staged: Path, inbox_path: Path) -> None:
        """Put an interrupted file back in the inbox (where the supplier sees it waiting), never over
        a newer upload of the same name; if that is not possible it is resumed from staging."""
        try:
            os.link(staged, inbox_path)  # fails if the name is taken: never clobbers a new upload
        except OSError:
            return
        os.unlink(staged)

    def _fail_unexpected(self, snap: RegistrySnapshot, supplier_id: str, flow_folder: str, path: Path,
                         exc: Exception) -> Outcome | None:
        """A bug or an odd file: set the file aside in failed/ with a report instead of retrying forever."""
        shown = f"{INBOX}/{printable(flow_folder)}/{printable(path.name)}"
        log.exception("%s/%s could not be processed", supplier_id, logged(shown))
        staged = self.area.staging(supplier_id, flow_folder) / path.name
        where = staged if staged.exists() or staged.is_symlink() else path
        problem = Problem("internal_error", None,
                          f"{shown} could not be processed ({type(exc).__name__}: {printable(str(exc))[:300]}); "
                          f"it was set aside in failed/: tell the platform operator")
        try:
            return self._fail(snap, supplier_id, printable(flow_folder), where, shown, problem, None,
                              snap.flows.get(flow_folder))
        except Exception:
            log.exception("%s/%s could not be set aside in failed/ either; skipped until restart", supplier_id,
                          logged(shown))
            self._set_aside_failed.add(path)
            return Outcome(shown, "failed", problem=problem)

    def _ingest_fd(self, snap: RegistrySnapshot, supplier_id: str, flow: Flow, path: Path, shown: str,
                   fd: int) -> Outcome:
        before = os.fstat(fd)
        encoding = str(flow.syntax_options.get("encoding", "utf-8"))
        try:
            result = scan(fd, max_line_bytes=self.options.max_line_bytes, encoding=encoding)
        except LookupError:
            result = FileScan("", before.st_size, 0, Problem(
                "unknown_encoding", None, f"flow {flow.id} declares unknown encoding {encoding!r}"))
        if result.problem is not None:
            return self._fail(snap, supplier_id, flow.id, path, shown, result.problem, result, flow)
        has_header = flow.syntax == "csv" and bool(flow.syntax_options.get("has_header", True))
        if result.lines - (1 if has_header else 0) <= 0:  # else "processed" with no chunk and no feedback
            problem = Problem("no_readings", None, f"{shown} holds no data lines" +
                              (" after its header line" if has_header else "") + ": nothing to ingest")
            return self._fail(snap, supplier_id, flow.id, path, shown, problem, result, flow)
        done = self.state.find(supplier_id, flow.id, result.sha256)
        if done is not None:
            note = (f"identical content (sha256 {result.sha256}) was already ingested from {done.path} "
                    f"at {done.ingested_ts}; not sent again\n")
            dest = self._move(path, supplier_id, PROCESSED, flow.id)
            if done.path != shown or dest.name != path.name:
                (dest.parent / (dest.name + ".duplicate.txt")).write_text(note)
            log.info("%s/%s: duplicate of %s, not sent again", supplier_id, logged(shown), logged(done.path))
            return Outcome(shown, "duplicate", 0, result.lines)
        if sends_whole(flow) and result.size > self.max_payload_bytes:
            problem = Problem("file_too_large", None,
                              f"a {flow.syntax.upper()} file is sent whole and must be at most "
                              f"{self.max_payload_bytes} bytes; this one is {result.size}: split it into smaller "
                              f"documents" + (" or send JSON lines (flow option json_lines)" if flow.syntax == "json"
                                              else ""))
            return self._fail(snap, supplier_id, flow.id, path, shown, problem, result, flow)
        if self.raw_zone is not None and not self.raw_zone.archive(supplier_id, flow.id, path.name, fd, result.sha256):
            return Outcome(shown, "interrupted", 0, result.lines)  # raw zone down: back to the inbox, retried
        sent = self._send(snap, supplier_id, flow, shown, fd, result)
        if sent is None:
            return Outcome(shown, "interrupted", 0, result.lines)
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            log.warning("%s/%s changed while being read: it will be read again when stable", supplier_id,
                        logged(shown))
            return Outcome(shown, "interrupted", sent, result.lines)
        self._mark_processed(supplier_id, flow, path, shown, result, sent)
        log.info("%s/%s: %d lines in %d chunks acknowledged, moved to processed/", supplier_id, logged(shown),
                 result.lines, sent)
        return Outcome(shown, "processed", sent, result.lines)

    def _mark_processed(self, supplier_id: str, flow: Flow, staged: Path, shown: str, result: FileScan,
                        sent: int) -> Path:
        """Every chunk is acknowledged: remember the checksum, then archive the exact bytes read
        (``staged`` cannot have changed: it is out of the supplier's reach) into processed/."""
        self.state.record(supplier_id, flow.id, result.sha256, shown, result.lines, sent)
        return self._move(staged, supplier_id, PROCESSED, flow.id)

    def _send(self, snap: RegistrySnapshot, supplier_id: str, flow: Flow, shown: str, fd: int,
              result: FileScan) -> int | None:
        """Produce every chunk and wait for Kafka's acknowledgements; None if stopped or failed."""
        has_header = flow.syntax == "csv" and bool(flow.syntax_options.get("has_header", True))
        header = read_header(fd, self.options.max_line_bytes) if has_header else None
        whole = sends_whole(flow)
        limit = result.size + 1 if whole else self.options.chunk_bytes
        lines_limit = max(result.lines, 1) if whole else self.options.chunk_lines
        tracker = DeliveryTracker()
        sent = 0
        content_type = ("application/x-ndjson" if flow.syntax == "json" and not whole
                        else CONTENT_TYPES.get(flow.syntax, "application/octet-stream"))
        for chunk in chunks(fd, chunk_bytes=limit, chunk_lines=lines_limit, skip_header=has_header):
            if self.stop_requested.is_set():
                self.producer.flush(30)
                return None
            source: dict[str, Any] = {"file": shown, "line_start": chunk.line_start, "line_end": chunk.line_end,
                                      "file_sha256": result.sha256}
            if header is not None:
                source["header"] = header
            item = raw_item(chunk.payload, source=source,  # type: ignore[arg-type]
                            message_id=message_id_for("sftp", supplier_id, result.sha256, flow.id,
                                                      str(chunk.line_start)),
                            device_id=flow.device_id, flow_id=flow.id, content_type=content_type)
            self.raw.send(self.raw.record(flow.community_id, supplier_id, flow.device_id, [item]), tracker)
            self.producer.poll(0)
            sent += 1
        remaining = self.producer.flush(120)
        if remaining or tracker.error:
            log.error("%s/%s: Kafka did not acknowledge every chunk (%s); the file stays in the inbox and is "
                      "retried", supplier_id, logged(shown), tracker.error or f"{remaining} pending")
            return None
        return sent

    def _produce(self, topic: str, key: str, value: bytes, on_delivery: Callable[..., None]) -> None:
        self.producer.produce(topic, value, key.encode(), on_delivery)  # blocks while the local queue is full
        self.producer.poll(0)

    # -- failures ------------------------------------------------------------------------
    def _fail(self, snap: RegistrySnapshot, supplier_id: str, flow_folder: str, path: Path, shown: str,
              problem: Problem, result: FileScan | None, flow: Flow | None) -> Outcome:
        """Move to failed/ with a report beside it, and publish a dead letter with the file's first bytes."""
        dest = self._move(path, supplier_id, FAILED, flow_folder)
        report = [f"file: {shown}", f"reason: {problem.reason_code}"]
        if problem.line is not None:
            report.append(f"line: {problem.line}")
        if result is not None and result.sha256:
            report.append(f"sha256: {result.sha256}")
        report += [f"message: {problem.message}", f"rejected: {utc_now_iso()}"]
        (dest.parent / (dest.name + REPORT_SUFFIX)).write_text("\n".join(report) + "\n")
        self._deadletter(snap, supplier_id, flow_folder, dest, shown, problem, flow)
        log.warning("%s/%s rejected: %s", supplier_id, logged(shown), problem.message)
        return Outcome(shown, "failed", 0, result.lines if result else 0, problem)

    def _deadletter(self, snap: RegistrySnapshot, supplier_id: str, flow_folder: str, dest: Path, shown: str,
                    problem: Problem, flow: Flow | None) -> None:
        head, sha, size = b"", hashlib.sha256(), 0
        if dest.is_file() and not dest.is_symlink():
            with open(dest, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    if len(head) < MAX_DEADLETTER_PAYLOAD:
                        head += block[:MAX_DEADLETTER_PAYLOAD - len(head)]
                    sha.update(block)
                    size += len(block)
        supplier = snap.suppliers.get(supplier_id)
        community = flow.community_id if flow else (supplier.communities[0] if supplier and supplier.communities
                                                     else "")
        record = deadletter_record(
            reason_code=problem.reason_code, message=problem.message, channel="sftp", community_id=community,
            supplier_id=supplier_id, device_id=flow.device_id if flow else None, flow_id=flow_folder,
            message_id=message_id_for("sftp", supplier_id, sha.hexdigest(), flow_folder, "file"), payload=head,
            source={"file": shown, "file_sha256": sha.hexdigest(), **({"line_start": problem.line} if problem.line else {})},
            whole_sha256=sha.hexdigest(), whole_size=size)
        tracker = DeliveryTracker()
        self._produce(self.deadletter_topic, supplier_id, encode(record), tracker)
        self.producer.flush(30)

    def _move(self, path: Path, supplier_id: str, section: str, flow_folder: str) -> Path:
        folder = self.area.private_folder(self.area.folder(supplier_id, section, flow_folder))
        dest = folder / path.name
        if dest.exists() or dest.is_symlink():
            dest = folder / f"{path.name}.{datetime.now().strftime('%Y%m%dT%H%M%S%f')}"
        os.rename(path, dest)
        return dest


def file_name_problem(name: str) -> str | None:
    """Why a file name cannot be carried in records and reports, or None when it can.

    Names come from the file system as str with undecodable bytes as surrogates: such a name cannot
    be serialised (the cause of a crash loop once), and control characters would forge report lines.
    """
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return "the file name is not valid UTF-8; rename the file using UTF-8 text (e.g. letters, digits, '-', '_')"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "the file name contains control characters (such as a line break); rename the file"
    return None


def printable(name: str) -> str:
    """A file name safe for JSON records, logs and reports: bad bytes and control characters as escapes."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if 0x20 <= ord(c) != 0x7F else f"\\x{ord(c):02x}" for c in text)


def sends_whole(flow: Flow) -> bool:
    """XML documents and JSON documents cannot be cut at line ends: one item per file (bounded).
    JSON flows whose files hold one object per line opt in to chunking with ``json_lines: true``."""
    return flow.syntax in ("xml", "dso-curve-xml", "chain2") or (
        flow.syntax == "json" and not flow.syntax_options.get("json_lines", False))


def kafka_producer(bootstrap: str) -> Producer:
    """The kernel's producer with a small local queue (constant memory for any file size)."""
    return Producer(bootstrap, **{"queue.buffering.max.kbytes": 65536, "message.max.bytes": 4 * 1024 * 1024})


def logged(shown: str) -> str:
    """A file's path as log lines show it: section, then the flow and the file name as pseudonyms
    (docs/gdpr.md: flow ids and file names carry PODs; `lec gdpr pseudonym NAME` finds the lines)."""
    from lec.pseudonym import pseudonym

    parts = shown.strip("/").split("/")
    return "/".join(parts[:1] + [pseudonym(p) for p in parts[1:]])


def state_path(run_dir: Path) -> Path:
    return run_dir / "sftp-watch" / "ingested-files.sqlite"
