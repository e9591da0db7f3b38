"""The platform's main job on the embedded default: stack up, demo community, traffic, summary."""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from lec import topics
from lec.config import Settings, load_settings
from lec.demo.community import COMMUNITY_ID, build_demo
from lec.demo.kafka_read import read_topic
from lec.demo.send import send_http, send_mqtt, send_sftp
from lec.demo.traffic import build_traffic
from lec.stack.supervisor import Stack

log = logging.getLogger("lec.demo")


def demo_settings(run_dir: Path) -> Settings:
    return load_settings().model_copy(update={"run_dir": run_dir})


def wait_quiet(bootstrap: str, topic: str, *, quiet_s: float, timeout_s: float, min_records: int = 0) -> list[dict]:
    """Records of a topic once no new record arrived for ``quiet_s`` seconds."""
    return read_topic(bootstrap, topic, idle_s=quiet_s, timeout_s=timeout_s, min_records=min_records)


def run_demo(run_dir: Path, start: datetime, days: int, households: int = 8,
             echo: Any = print) -> dict[str, Any]:
    """Run the whole demo and return its summary (also printed through ``echo``)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)  # Kafka is in memory: lake offsets and chain must start fresh too
    run_dir.mkdir(parents=True)
    settings = demo_settings(run_dir)
    doc, series = build_demo(start, days, households)
    traffic = build_traffic(series)
    community_file = run_dir / "demo-community.yaml"
    community_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    stack = Stack(settings)
    summary: dict[str, Any] = {"community": COMMUNITY_ID, "period": [start.isoformat(), (start + timedelta(days=days)).isoformat()]}
    t0 = time.monotonic()
    try:
        stack.start_servers()
        settings = load_settings()  # now with the stack's ports (LEC_* set by the stack)
        from lec.registry import open_registry

        open_registry(settings).load_file(community_file)
        echo(f"registry: loaded {community_file.name}: {len(doc['users'])} members, {len(doc['devices'])} devices, "
             f"{len(doc['flows'])} flows")
        prepare_workers(settings, echo)
        stack.start_workers()
        echo(f"stack up in {time.monotonic() - t0:.1f}s: {', '.join(s.spec.name for s in stack.services)}")

        sent = {"mqtt": send_mqtt(settings, traffic.mqtt), "sftp": send_sftp(settings, traffic.sftp),
                "http": dict(send_http(settings, traffic.http))}
        echo(f"sent: {sent['mqtt']} MQTT messages, {sent['sftp']} SFTP files, HTTP batches by status {sent['http']}")
        echo(f"faults injected: {traffic.faults}")
        summary["sent"] = sent
        summary["faults"] = traffic.faults
        summary.update(summarise_topics(settings))
        echo_summary(summary, echo)
        summary.update(finish_downstream(settings, run_dir, start, days, echo))
    finally:
        stack.stop()
    summary["seconds"] = round(time.monotonic() - t0, 1)
    echo(f"demo finished in {summary['seconds']}s; run dir {run_dir}")
    return summary


def prepare_workers(settings: Settings, echo: Any) -> None:
    """Steps the workers need before they start (filled in as parts land)."""


def finish_downstream(settings: Settings, run_dir: Path, start: datetime, days: int, echo: Any) -> dict[str, Any]:
    """Lake, KPIs, chain: filled in as parts land."""
    return {}


def summarise_topics(settings: Settings) -> dict[str, Any]:
    bootstrap = settings.kafka_bootstrap
    raw = wait_quiet(bootstrap, topics.RAW, quiet_s=5, timeout_s=120, min_records=1)
    feedback = wait_quiet(bootstrap, topics.FEEDBACK, quiet_s=10, timeout_s=300, min_records=1)
    readings = wait_quiet(bootstrap, topics.READINGS, quiet_s=5, timeout_s=120)
    dead = wait_quiet(bootstrap, topics.DEADLETTER, quiet_s=2, timeout_s=60)
    anomalies = wait_quiet(bootstrap, topics.ANOMALIES, quiet_s=2, timeout_s=60)
    return {
        "raw_envelopes": Counter(r["channel"] for r in raw),
        "raw_items": sum(len(r["items"]) for r in raw),
        "readings": len({r["message_id"] for r in readings}),
        "readings_by_channel": Counter(r["channel"] for r in readings),
        "deadletter_by_reason": Counter(d["reason_code"] for d in dead),
        "feedback_by_status": Counter(f["status"] for f in feedback),
        "anomalies_by_kind": Counter(a["kind"] for a in anomalies),
    }


def echo_summary(summary: dict[str, Any], echo: Any) -> None:
    echo("")
    echo(f"raw envelopes on {topics.RAW}: {dict(summary['raw_envelopes'])} ({summary['raw_items']} source messages)")
    echo(f"canonical readings on {topics.READINGS}: {summary['readings']} {dict(summary['readings_by_channel'])}")
    echo(f"dead letters by reason: {dict(summary['deadletter_by_reason'])}")
    echo(f"feedback by status: {dict(summary['feedback_by_status'])}")
    echo(f"anomalies by kind: {dict(summary['anomalies_by_kind'])}")


def default_start() -> datetime:
    # Two days around the 2016 spring DST change in Italy (27 March), in local midnight.
    return datetime(2016, 3, 26, tzinfo=timezone(timedelta(hours=1)))
