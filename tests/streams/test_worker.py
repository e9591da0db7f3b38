"""`lec streams worker` as a real subprocess against a real Tansu broker.

End-to-end rules (Table 13, DST days, rollover, hostile input), the registry on its compacted
topic, SIGKILL mid-batch with restart (no loss), and two workers sharing the partitions.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import orjson

from lec import topics
from lec.config import Settings
from lec.kafka import ensure_topics
from lec.procs import wait_until
from streams.app import READY_LINE
from tests.support.streams import (
    bulk_envelopes,
    cli,
    envelope,
    item,
    load_test_registry,
    log_contains,
    produce,
    read_topic,
    start_worker,
)

READY = READY_LINE


def raw_share(worker) -> str | None:
    """The lec.raw partitions of the worker's latest assignment, as the worker logs them (e.g. '0,1')."""
    lines = [ln for ln in worker.log.read_text(errors="replace").splitlines() if "assigned lec.raw partitions" in ln]
    return lines[-1].strip().rsplit(" ", 1)[-1] if lines else None


def processed(worker) -> int:
    """Raw records the worker says it processed (the sum of its periodic stats lines)."""
    return sum(int(m) for m in re.findall(r"processed (\d+) raw records", worker.log.read_text(errors="replace")))


def test_worker_applies_every_rule_end_to_end(fresh_kafka, settings: Settings) -> None:
    _, bootstrap = fresh_kafka
    ensure_topics(bootstrap)
    load_test_registry(settings)
    worker = start_worker(settings.resolved_run_dir(), bootstrap, "streams", "--silence-check-s", "2")
    try:
        worker.wait_ready(lambda: log_contains(worker, READY), timeout=90)
        ts = "2025-03-01T10:00:00Z"
        produce(bootstrap, topics.RAW, [(b"DEV-FAST", envelope([item({"ts": ts, "e": 1}, "fast", flow="f-fast")]))])
        fast_sent = time.monotonic()
        table13 = [item({"ts": ts, "e": v}, f"t13-{flow}-{v}", flow=flow) for flow, v in [
            ("f-load", 100), ("f-pv", 0.25), ("f-pv2", -250), ("f-grid", 40), ("f-grid2", 40), ("f-bat", 30),
            ("f-bat2", 30)]] + [item({"ts": ts, "e": 100}, "dup", flow="f-load")]
        fall = "\n".join(f"27/10/2024 {h:02d}:{m:02d};0,25" for h in [*range(3), *range(2, 24)]
                         for m in (0, 15, 30, 45)).encode()
        spring = "\n".join(f"31/03/2024 {h:02d}:{m:02d};0,25" for h in [*range(2), *range(3, 24)]
                           for m in (0, 15, 30, 45)).encode()
        csv_src = {"file": "day.csv", "header": "datetime;kwh", "line_start": 2}
        regs = [{"t": 1740823200 + 900 * i, "reg": r} for i, r in enumerate([99_990, 99_999, 4, 10])]
        records = [
            (b"DEV-LOAD", envelope(table13)),
            (b"DEV-ROME", envelope([item(fall, "fall", flow="f-rome", source=csv_src),
                                    item(spring, "spring", flow="f-rome", source=csv_src)], channel="sftp")),
            (b"DEV-CUM", envelope([item({"readings": regs}, "cum", flow="f-cum", source={"batch_id": "B"})],
                                  channel="http")),
            (b"sup-a", envelope([item(b"\x00\xff" * 1000, "garbage", flow="f-load"),
                                 item({"ts": ts, "e": 1}, "theirs", device="DEV-B")])),
            (b"junk", b"not an envelope at all"),
        ]
        produce(bootstrap, topics.RAW, records)
        readings = read_topic(bootstrap, topics.READINGS, lambda o: len(o) >= 1 + 7 + 100 + 92 + 4, timeout=90)
        feedback = read_topic(bootstrap, topics.FEEDBACK, lambda o: len(o) >= 15, timeout=30)
        dead = read_topic(bootstrap, topics.DEADLETTER, lambda o: len(o) >= 3, timeout=30)
        # f-fast sends every minute + 5 s derogation: the periodic check reports it silent, once
        silent = read_topic(bootstrap, topics.ANOMALIES, lambda o: any(a["kind"] == "silent_flow" for a in o),
                            timeout=120)
        silent_after = time.monotonic() - fast_sent
        time.sleep(3)
        anomalies = read_topic(bootstrap, topics.ANOMALIES, lambda o: False, timeout=3)
    finally:
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(timeout=30)
        worker.stop()
    assert code == 0 and log_contains(worker, "Closing event loop")     # SIGTERM: a clean stop
    assert [a["flow_id"] for a in silent if a["kind"] == "silent_flow"] == ["f-fast"] and silent_after > 60
    assert [a["flow_id"] for a in anomalies if a["kind"] == "silent_flow"] == ["f-fast"]
    assert sorted(a["kind"] for a in anomalies if a["kind"] != "silent_flow") == ["stuck_meter"]   # 0,25 kWh x 192
    by_item = collections.defaultdict(list)
    for r in readings:
        by_item[r["message_id"].rsplit(":", 1)[0]].append(r)
    assert sorted(r["energy_mwh"] for k, v in by_item.items() if k.startswith("t13") for r in v) == sorted(
        [100_000, -250_000, -250_000, 40_000, -40_000, 30_000, -30_000])
    assert len({r["ts"] for r in by_item["fall"]}) == 100 and len({r["ts"] for r in by_item["spring"]}) == 92
    assert [r["energy_mwh"] for r in by_item["cum"]] == [None, 9_000, 5_000, 6_000]
    assert len(readings) == 1 + 7 + 100 + 92 + 4
    assert len(feedback) == 15 and len({f["message_id"] for f in feedback}) == 15
    status = {f["message_id"]: f["status"] for f in feedback}
    assert status["dup"] == "duplicate" and status["garbage"] == "rejected" and status["fall"] == "accepted"
    assert sorted(d["reason_code"] for d in dead) == ["envelope_invalid", "json_invalid", "not_your_device"]
    from lec.schemas import errors
    for schema, records in (("reading", readings), ("feedback", feedback), ("deadletter", dead),
                            ("anomaly", anomalies)):
        assert [e for r in records for e in errors(schema, r)] == [], schema


def test_registry_reaches_workers_on_its_topic_and_refreshes(fresh_kafka, settings: Settings,
                                                            tmp_path: Path) -> None:
    _, bootstrap = fresh_kafka
    ensure_topics(bootstrap)
    reg = load_test_registry(settings)
    env = {**os.environ, "LEC_RUN_DIR": str(settings.resolved_run_dir()), "LEC_KAFKA_BOOTSTRAP": bootstrap}
    published = subprocess.run([*cli(), "publish-registry"], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stderr
    assert "published registry snapshot" in published.stdout
    # this worker has no registry database: it only knows what the topic tells it
    worker = start_worker(tmp_path / "w", bootstrap, "streams-topic",
                          env={"LEC_REGISTRY_URL": f"sqlite:///{tmp_path / 'nowhere' / 'none.db'}"})
    try:
        worker.wait_ready(lambda: log_contains(worker, READY) and log_contains(worker, "registry snapshot"), 90)
        produce(bootstrap, topics.RAW, [(b"DEV-LOAD", envelope([item({"ts": "2025-03-01T10:00:00Z", "e": 1}, "a",
                                                                     flow="f-load")]))])
        first = read_topic(bootstrap, topics.READINGS, lambda o: len(o) >= 1, timeout=60)
        assert [r["flow_id"] for r in first] == ["f-load"]
        # a new device and flow, loaded and published while the worker runs
        extra = (tmp_path / "more.yaml")
        from tests.support.streams import TEST_COMMUNITY
        extra.write_text((TEST_COMMUNITY + """  - {id: f-new, device: DEV-NEW, supplier: sup-a, channel: mqtt, syntax: json,
     measurement: load, units: {energy: Wh}, mapping: {ts: ts, energy: e}}
""").replace("devices:\n", "devices:\n  - {id: DEV-NEW, user: u-a, supplier: sup-a}\n"))
        reg.load_file(extra)
        assert subprocess.run([*cli(), "publish-registry"], check=False, env=env, capture_output=True, timeout=120).returncode == 0
        wait_until(lambda: log_contains(worker, "15 flows"), 30, "refresh")
        produce(bootstrap, topics.RAW, [(b"DEV-NEW", envelope([item({"ts": "2025-03-01T10:00:00Z", "e": 2}, "b",
                                                                    flow="f-new")]))])
        both = read_topic(bootstrap, topics.READINGS, lambda o: len(o) >= 2, timeout=60)
    finally:
        worker.stop()
    assert sorted(r["flow_id"] for r in both) == ["f-load", "f-new"]


def test_sigkill_mid_batch_then_restart_loses_nothing(fresh_kafka, settings: Settings) -> None:
    _, bootstrap = fresh_kafka
    ensure_topics(bootstrap)
    load_test_registry(settings)
    records, expected = bulk_envelopes(600, 100, prefix="kill")          # 60,000 readings
    produce(bootstrap, topics.RAW, records)
    run_dir = settings.resolved_run_dir()
    worker = start_worker(run_dir, bootstrap, "streams-1", "--batch-size", "20")
    try:
        worker.wait_ready(lambda: log_contains(worker, READY), timeout=90)
        seen = read_topic(bootstrap, topics.READINGS, lambda o: len(o) >= 4000, timeout=90, decode=False)
        os.killpg(worker.pid, signal.SIGKILL)                           # mid-run: no clean shutdown
        worker.proc.wait(timeout=10)
    finally:
        worker.stop()
    assert 4000 <= len(seen) < len(expected), "the kill must land mid-run"
    restarted = start_worker(run_dir, bootstrap, "streams-2", "--batch-size", "20")
    try:
        restarted.wait_ready(lambda: log_contains(restarted, READY), timeout=90)
        out = read_topic(bootstrap, topics.READINGS,
                         lambda o: len(o) >= len(expected) and {orjson.loads(v)["message_id"] for v in o} >= expected,
                         timeout=180, decode=False)
    finally:
        restarted.stop()
    ids = [orjson.loads(v)["message_id"] for v in out]
    assert set(ids) == expected                                         # nothing lost, nothing invented
    copies: dict[str, set[bytes]] = collections.defaultdict(set)
    for v in out:
        copies[orjson.loads(v)["message_id"]].add(v)
    assert all(len(c) == 1 for c in copies.values())                    # a redelivered reading is identical
    energies = {abs(orjson.loads(next(iter(c)))["energy_mwh"]) for c in copies.values()}
    assert energies == {e * 1000 for e in range(100, 107)}
    feedback = read_topic(bootstrap, topics.FEEDBACK, lambda o: {f["message_id"] for f in o} >= {
        m.rsplit(":", 1)[0] for m in expected}, timeout=60)
    assert {f["message_id"] for f in feedback} == {m.rsplit(":", 1)[0] for m in expected}


def test_two_workers_share_partitions_each_reading_once(fresh_kafka, settings: Settings, tmp_path: Path) -> None:
    _, bootstrap = fresh_kafka
    ensure_topics(bootstrap)
    load_test_registry(settings)
    run_dir = settings.resolved_run_dir()
    env = {"LEC_REGISTRY_URL": settings.resolved_registry_url()}
    w1 = start_worker(run_dir, bootstrap, "streams-a", env=env)
    w2 = start_worker(tmp_path / "b", bootstrap, "streams-b", env=env)
    try:
        for w in (w1, w2):
            w.wait_ready(lambda w=w: log_contains(w, READY), timeout=120)
        # the group has settled when each worker's latest assignment holds part of lec.raw, not all of it
        def split() -> bool:
            shares = [set((raw_share(w) or "none").split(",")) - {"none"} for w in (w1, w2)]
            return all(shares) and not shares[0] & shares[1]

        wait_until(split, 60, "rebalance")
        time.sleep(1)
        records, expected = bulk_envelopes(120, 50, prefix="two")
        produce(bootstrap, topics.RAW, records)
        out = read_topic(bootstrap, topics.READINGS, lambda o: len(o) >= len(expected), timeout=120)
        time.sleep(2)
        out += read_topic(bootstrap, topics.READINGS, lambda o: False, timeout=2)[len(out):]
        # the workers' own counts add up to every raw record once (which worker took which depends on
        # where the six device keys hash and how the group split the partitions, so not asserted)
        wait_until(lambda: processed(w1) + processed(w2) >= len(records), 60, "stats")
        assert processed(w1) + processed(w2) == len(records)
    finally:
        w1.stop()
        w2.stop()
    ids = [r["message_id"] for r in out]
    assert len(ids) == len(expected) and set(ids) == expected
