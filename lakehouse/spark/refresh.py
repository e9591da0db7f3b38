"""The periodic analytics worker behind `lec lake refresh` (processes 1 and 2, due KPI series)."""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.kpi.jobs import RESOLUTIONS

if TYPE_CHECKING:
    from lec.config import Settings

log = logging.getLogger(__name__)

INBOX_KEYS = {"readings": "message_id", "anomalies": "anomaly_id", "deadletter": "message_id"}


def one_pass(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Process 1, process 2 and due KPI series once; returns what was done."""
    from lakehouse.kpi.store import refresh_due, register_series
    from lakehouse.spark.sessions import (
        delta_exists,
        inbox_files,
        preprocess_files,
        refresh_dimensions,
        settings_session,
        table_uri,
    )
    from lec.registry import open_registry

    now = now or datetime.now(UTC)
    lake = settings.resolved_lake_uri()
    registry = open_registry(settings)
    report: dict[str, Any] = {"dimensions": refresh_dimensions(registry, lake), "files": {}, "kpis": []}
    spark = settings_session(settings)
    inbox = settings.resolved_run_dir() / "lake-inbox"
    for table, files in inbox_files(inbox).items():
        key = INBOX_KEYS.get(table, "id")
        added = preprocess_files(spark, files, "csv" if files[0].endswith(".csv") else "json", lake, table, key)
        done = inbox / table / "done"
        done.mkdir(exist_ok=True)
        for f in files:  # moved only after the append committed: a crash re-reads them (anti-join dedupes)
            shutil.move(f, done / Path(f).name)
        report["files"][table] = {"files": len(files), "rows": added}
    for cid in registry.community_ids():
        for res in RESOLUTIONS:
            register_series(registry, cid, res, now)
    if delta_exists(table_uri(lake, "readings")):
        report["kpis"] = refresh_due(spark, registry, lake, now)
    return report


def run_refresh(settings: Settings, interval: float = 60.0, once: bool = False) -> None:
    """Loop ``one_pass`` every ``interval`` seconds until SIGTERM/SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        try:
            log.info("refresh pass: %s", one_pass(settings))
        except Exception as exc:  # noqa: BLE001 - a failing pass is logged and retried next time, the worker keeps running
            log.error("refresh pass failed: %s", exc)
        if once:
            return
        stop.wait(interval)
    log.info("refresh worker stopped")
