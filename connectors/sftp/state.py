"""Persistent memory of ingested files (SQLite in the run dir), so a file dropped twice is ingested once."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from lec.records import utc_now_iso


@dataclass(frozen=True)
class IngestedFile:
    supplier_id: str
    flow_id: str
    sha256: str
    path: str
    lines: int
    chunks: int
    ingested_ts: str


class IngestedFiles:
    """Checksums of files whose every chunk Kafka acknowledged, per supplier and flow."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS ingested_files (supplier_id TEXT NOT NULL, flow_id TEXT NOT NULL, "
            "sha256 TEXT NOT NULL, path TEXT NOT NULL, lines INTEGER NOT NULL, chunks INTEGER NOT NULL, "
            "ingested_ts TEXT NOT NULL, PRIMARY KEY (supplier_id, flow_id, sha256))")

    def find(self, supplier_id: str, flow_id: str, sha256: str) -> IngestedFile | None:
        row = self.db.execute(
            "SELECT supplier_id, flow_id, sha256, path, lines, chunks, ingested_ts FROM ingested_files "
            "WHERE supplier_id=? AND flow_id=? AND sha256=?", (supplier_id, flow_id, sha256)).fetchone()
        return IngestedFile(*row) if row else None

    def record(self, supplier_id: str, flow_id: str, sha256: str, path: str, lines: int, chunks: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO ingested_files VALUES (?,?,?,?,?,?,?)",
                        (supplier_id, flow_id, sha256, path, lines, chunks, utc_now_iso()))

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM ingested_files").fetchone()[0])

    def close(self) -> None:
        self.db.close()
