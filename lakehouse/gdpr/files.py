"""Erasure in the files and small databases the platform keeps under its run dir (docs/gdpr.md).

- SFTP areas: every file of an erased flow (inbox, processed, failed and their reports) and the
  flow's folders; any other file whose name or content names the subject (e.g. a utility's file
  carrying several PODs: the subject's lines are removed, the rest kept).
- The SFTP watcher's ingested-files database: rows of the erased flows or naming the subject.
- Take-out files written under the run dir: the subject's readings and rewards are dropped; every
  other reading keeps its proof, so the file still verifies against the chain.
- Logs under ``run_dir/logs``: the subject's ids, and their log pseudonyms, replaced by
  ``[erased]`` (rewritten in place: workers appending to them keep their file).
- Any other text file under the run dir (CSV/JSON/YAML outputs): lines naming the subject removed.

Identifiers match on their own, never inside a longer id (``PV-0001`` does not match ``PV-00011``),
so another member's or community's data is never touched.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ERASED = "[erased]"
# Binary stores handled elsewhere (Delta tables: row deletes + vacuum; registry and secrets: SQL).
SKIP_DIRS = ("lake", "gdpr")
SKIP_SUFFIXES = (".parquet", ".db", ".sqlite", ".db-wal", ".db-shm", ".sqlite-wal", ".sqlite-shm", ".png", ".key")
MAX_TEXT_BYTES = 256 * 1024 * 1024


@dataclass
class Subject:
    """What identifies the person or device being erased, gathered from the registry first."""

    user_id: str | None
    device_ids: list[str]
    flow_ids: list[str]
    names: list[str] = field(default_factory=list)  # user name/email, device names: redacted in text
    pseudonyms: list[str] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [i for i in ([self.user_id] if self.user_id else []) + self.device_ids + self.flow_ids if i]

    def tokens(self) -> list[str]:
        return sorted({t for t in self.ids() + self.names + self.pseudonyms if t and len(t) >= 3}, key=len,
                      reverse=True)

    def pattern(self) -> re.Pattern[str]:
        alternatives = "|".join(re.escape(t) for t in self.tokens())
        # an id is bounded by anything that cannot be part of an id (letters, digits, '_')
        return re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])")


def _is_sub_id(pattern: re.Pattern[str], text: str) -> bool:
    return bool(pattern.search(text))


def erase_sftp(root: Path, subject: Subject, deleted: list[str] | None = None) -> dict[str, int]:
    """Delete the subject's flow folders and files in every supplier's area; counts by kind.

    The names of files deleted or cleaned go to ``deleted``: log lines name files by pseudonym
    (connectors.sftp.watch.logged), which the log redaction must then also remove."""
    deleted = [] if deleted is None else deleted
    out = {"files": 0, "reports": 0, "folders": 0, "lines": 0}
    if not root.exists():
        return out
    flows = set(subject.flow_ids)
    pattern = subject.pattern()
    for supplier in sorted(p for p in root.iterdir() if p.is_dir()):
        for section in sorted(p for p in supplier.iterdir() if p.is_dir()):
            for folder in sorted(p for p in section.iterdir() if p.is_dir()):
                if folder.name in flows:
                    deleted += [f.name for f in folder.rglob("*") if f.is_file()]
                    _erase_flow_folder(folder, pattern, out)
                    continue
                for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                    if _is_sub_id(pattern, f.name):
                        out["reports" if f.name.endswith(".report.txt") else "files"] += 1
                        deleted.append(f.name)
                        f.unlink()
                    else:
                        out["lines"] += _drop_lines(f, pattern)
    return out


def _erase_flow_folder(folder: Path, pattern: re.Pattern[str], out: dict[str, int]) -> None:
    """An erased flow's folder. A file may also carry other PODs' rows (a utility's one daily file
    for all its PODs): those rows are other members' data and stay; only the subject's lines go, and
    a file left with no data line is deleted. A folder still holding such files is renamed so its
    name (the erased flow id) disappears."""
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        kind = "reports" if f.name.endswith(".report.txt") else "files"
        if pattern.search(f.name):
            f.unlink()
            out[kind] += 1
            continue
        dropped = _drop_lines(f, pattern)
        try:
            rest = [ln for ln in f.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            rest = []
        if dropped and len(rest) <= 1 or not rest:  # header only (or empty): nothing of anyone else
            f.unlink()
            out[kind] += 1
        elif dropped:
            out["lines"] += dropped
            out["kept_files"] = out.get("kept_files", 0) + 1
    if any(p.is_file() for p in folder.rglob("*")):
        import uuid

        folder.rename(folder.with_name(f"erased-flow-{uuid.uuid4().hex[:8]}"))
    else:
        shutil.rmtree(folder)
    out["folders"] += 1


def _drop_lines(path: Path, pattern: re.Pattern[str]) -> int:
    """Remove the lines naming the subject from a text file (in place); lines removed."""
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            return 0
        data = path.read_bytes()
    except OSError:
        return 0
    text = data.decode("utf-8", errors="surrogateescape")
    if not pattern.search(text):
        return 0
    lines = text.splitlines(keepends=True)
    kept = [ln for ln in lines if not pattern.search(ln)]
    _rewrite(path, "".join(kept))
    return len(lines) - len(kept)


def _rewrite(path: Path, text: str) -> None:
    """Same inode (a worker may hold the file open in append mode), new content."""
    with open(path, "r+b") as fh:
        fh.write(text.encode("utf-8", errors="surrogateescape"))
        fh.truncate()


def erase_ingested_files(db_path: Path, subject: Subject) -> int:
    """Delete the SFTP watcher's memory of the subject's files; rows deleted."""
    if not db_path.exists():
        return 0
    pattern = subject.pattern()
    db = sqlite3.connect(str(db_path), timeout=30)
    try:
        rows = db.execute("SELECT rowid, flow_id, path FROM ingested_files").fetchall()
        gone = [r[0] for r in rows if r[1] in subject.flow_ids or _is_sub_id(pattern, r[2])]
        db.executemany("DELETE FROM ingested_files WHERE rowid=?", [(g,) for g in gone])
        db.commit()
        db.execute("VACUUM")  # free pages keep deleted rows' bytes otherwise
    finally:
        db.close()
    return len(gone)


def is_takeout(doc: Any) -> bool:
    return isinstance(doc, dict) and "spec" in doc and isinstance(doc.get("anchors"), list) and "notary" in doc


def erase_takeout(doc: dict[str, Any], subject: Subject, wallets: Iterable[str] = ()) -> int:
    """Drop the subject's readings (and, for a user, their rewards) from a take-out; items dropped.

    Each remaining reading carries its own proof against the anchored root, so the file still
    verifies; an anchor that lost readings is no longer ``complete``.
    """
    devices, flows = set(subject.device_ids), set(subject.flow_ids)
    wallet_set = {w.lower() for w in wallets}
    dropped = 0
    for anchor in doc["anchors"]:
        keep = [r for r in anchor.get("readings", []) if r.get("device_id") not in devices
                and r.get("flow_id") not in flows and (r.get("wallet") or "").lower() not in wallet_set]
        kept_rewards = [r for r in anchor.get("rewards", []) if str(r["values"][0]).lower() not in wallet_set]
        n = len(anchor.get("readings", [])) - len(keep) + len(anchor.get("rewards", [])) - len(kept_rewards)
        if n:
            anchor["readings"], anchor["rewards"], anchor["complete"] = keep, kept_rewards, False
            dropped += n
    return dropped


def erase_takeouts(run_dir: Path, subject: Subject, wallets: Iterable[str] = ()) -> dict[str, int]:
    """Every take-out file under the run dir; file name -> items dropped."""
    out: dict[str, int] = {}
    wallets = list(wallets)
    pattern = subject.pattern()
    for path in _text_files(run_dir, suffixes=(".json",)):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if not is_takeout(doc):
            continue
        if _is_sub_id(pattern, path.name):  # the subject's own take-out
            path.unlink()
            out[str(path.relative_to(run_dir))] = -1
            continue
        n = erase_takeout(doc, subject, wallets)
        if n:
            _rewrite(path, json.dumps(doc, indent=2))
            out[str(path.relative_to(run_dir))] = n
    return out


def redact_logs(log_dir: Path, subject: Subject) -> dict[str, int]:
    """Replace the subject's ids and pseudonyms by ``[erased]`` in every log file; occurrences."""
    out: dict[str, int] = {}
    if not log_dir.exists():
        return out
    pattern = subject.pattern()
    for path in sorted(p for p in log_dir.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        new, n = pattern.subn(ERASED, text)
        if n:
            _rewrite(path, new)
            out[path.name] = n
    return out


def erase_other_files(run_dir: Path, subject: Subject, done: set[Path]) -> dict[str, int]:
    """Text files under the run dir not covered above (outputs, community files): naming lines go."""
    out: dict[str, int] = {}
    pattern = subject.pattern()
    for path in _text_files(run_dir):
        if path in done:
            continue
        if _is_sub_id(pattern, path.name):
            path.unlink()
            out[str(path.relative_to(run_dir))] = -1  # the whole file named the subject
            continue
        n = _scrub_structured(path, pattern) if path.suffix in (".json", ".yaml", ".yml") else None
        if n is None:
            n = _drop_lines(path, pattern)
        if n:
            out[str(path.relative_to(run_dir))] = n
    return out


def _scrub(value: Any, pattern: re.Pattern[str]) -> tuple[Any, int]:
    """List items and mapping entries naming the subject removed; other strings naming it blanked."""
    if isinstance(value, list):
        kept = [v for v in value if not pattern.search(json.dumps(v, default=str))]
        n = len(value) - len(kept)
        items = [_scrub(v, pattern) for v in kept]
        return [v for v, _ in items], n + sum(k for _, k in items)
    if isinstance(value, dict):
        out, n = {}, 0
        for k, v in value.items():
            if pattern.search(str(k)):
                n += 1
                continue
            out[k], m = _scrub(v, pattern)
            n += m
        return out, n
    if isinstance(value, str) and pattern.search(value):
        return ERASED, 1
    return value, 0


def _scrub_structured(path: Path, pattern: re.Pattern[str]) -> int | None:
    """JSON/YAML files keep their structure (a community file stays loadable); None if unparsable."""
    import yaml

    try:
        text = path.read_text()
        if not pattern.search(text):
            return 0
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError):
        return None
    new, n = _scrub(doc, pattern)
    _rewrite(path, json.dumps(new, indent=2) if path.suffix == ".json" else yaml.safe_dump(new, sort_keys=False))
    return n


def _text_files(run_dir: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    files = []
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir).parts
        if not path.is_file() or (rel and rel[0] in SKIP_DIRS) or path.suffix in SKIP_SUFFIXES \
                or path.name.endswith(SKIP_SUFFIXES):
            continue
        if suffixes is None or path.suffix in suffixes:
            files.append(path)
    return sorted(files)


def scan(run_dir: Path, needles: list[str]) -> list[str]:
    """Every file under ``run_dir`` whose path or bytes contain a needle (as a whole id); for checks."""
    hits = []
    pattern = re.compile(rb"(?<![A-Za-z0-9_])(?:" + b"|".join(re.escape(n.encode()) for n in needles)
                         + rb")(?![A-Za-z0-9_])")
    for path in sorted(run_dir.rglob("*")):
        if pattern.search(str(path.relative_to(run_dir)).encode()):
            hits.append(f"{path.relative_to(run_dir)}: in the name")
            continue
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            m = pattern.search(data)
            if m:
                hits.append(f"{path.relative_to(run_dir)}: {data[max(0, m.start() - 60):m.end() + 60]!r}")
    return hits
