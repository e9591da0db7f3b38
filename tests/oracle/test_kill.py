"""`lec oracle run` against real Tansu and anvil, SIGKILLed mid-stream and restarted:
every QH is anchored exactly once per distinct content, records are not duplicated in the lake,
anchor records reach lec.oracle.anchors, and members receive their tokens without acting."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import pytest

from lec import topics
from lec.kafka import ensure_topics
from lec.procs import ManagedProcess, wait_until
from oracle.anchoring import AnchorJob, LeafBuilder, anchor_data, content_of
from oracle.chain.keys import dev_key
from oracle.qh import QhWindows
from oracle.store import OracleLake
from tests.support.oracle_env import ANNA, BRUNO, COMMUNITY, QH0, reading, setup_run

LEC = [sys.executable, "-c", "from lec.cli import main; main()"]
N_QH = 9


def phase1() -> list[dict]:
    """QH0..QH3 with all three flows, a watermark closing QH0..QH2, several readings per QH."""
    out = []
    for k in range(4):
        q = QH0 + 900 * k
        for half in (0, 450):
            out.append(reading("f-anna-load", q + half, 60_000 + 1000 * k, interval=450))
            out.append(reading("f-bruno-load", q + half, 150_000 + 7 * k, interval=450))
            out.append(reading("f-bruno-pv", q + half, -200_000 - 13 * k, interval=450))
    return out


def phase2() -> list[dict]:
    """QH4..QH7, a late reading for QH1 (version 2) and redeliveries of phase 1 (deduplicated)."""
    out = []
    for k in range(4, 8):
        q = QH0 + 900 * k
        for minute in range(0, 900, 60):
            out.append(reading("f-anna-load", q + minute, 4_000 + k, interval=60))
            out.append(reading("f-bruno-pv", q + minute, -9_000 - k, interval=60))
    out.append(reading("f-bruno-pv", QH0 + 900 + 450, -33_000, interval=450, msg="late-qh1"))
    out += phase1()[:6]
    out.append(reading("f-anna-load", QH0 + 900 * 10, 1, interval=900, msg="watermark-2"))
    return out


def phase3() -> list[dict]:
    """QH8, arriving after the second crash."""
    return [reading("f-anna-load", QH0 + 900 * 8, 77_000), reading("f-bruno-pv", QH0 + 900 * 8, -55_000),
            reading("f-bruno-load", QH0 + 900 * 12, 1, msg="watermark-3")]


def produce(bootstrap: str, records: list[dict]) -> None:
    from lec.io import Producer

    p = Producer(bootstrap)
    for r in records:
        p.produce(topics.READINGS, orjson.dumps(r), r["device_id"].encode())
    assert p.flush(30) == 0


def consume_all(bootstrap: str, topic: str) -> list[dict]:
    from oracle.agent import replay_readings

    got: list[bytes] = []
    replay_readings(bootstrap, topic, got.extend, idle_s=3.0)
    return [orjson.loads(v) for v in got]


@pytest.mark.timeout(600)
def test_sigkill_mid_stream_and_restart(fresh_kafka: tuple, anvil_rpc: str, tmp_path: Path) -> None:
    _, bootstrap = fresh_kafka
    run = tmp_path / "run"
    env, reg, secrets, _dep, client = setup_run(
        run, anvil_rpc, LEC_KAFKA_BOOTSTRAP=bootstrap, LEC_ORACLE_GRACE_S="300", LEC_ORACLE_CLAIM_INTERVAL_S="2",
        LEC_ORACLE_SILENCE_S="0",  # the example community's other flows send nothing here: close on event time
        LEC_ORACLE_KEY=dev_key(1), LEC_LOG_LEVEL="INFO")
    ensure_topics(bootstrap, (topics.READINGS, topics.ANCHORS))

    first = phase1() + [reading("f-anna-load", QH0 + 900 * 3 + 300, 5, interval=300, msg="watermark-1")]
    produce(bootstrap, first)
    proc = ManagedProcess("oracle", [*LEC, "oracle", "run"], run / "logs" / "oracle-1.log", env=env)
    try:
        wait_until(lambda: all(client.latest_version(COMMUNITY, QH0 + 900 * k) >= 1 for k in range(3)), 180,
                   "first anchors", proc.proc, proc.log)
        produce(bootstrap, phase2())
        time.sleep(0.5)
    finally:
        proc.kill()  # SIGKILL mid-stream: no clean shutdown, no final commit

    # second crash: SIGKILL as soon as the chain shows QH1's version 2, i.e. after the anchoring
    # transaction and (most likely) before its records reach the lake and Kafka
    proc = ManagedProcess("oracle", [*LEC, "oracle", "run"], run / "logs" / "oracle-2.log", env=env)
    try:
        wait_until(lambda: client.latest_version(COMMUNITY, QH0 + 900) == 2, 180, "version 2", proc.proc, proc.log)
    finally:
        proc.kill()
    produce(bootstrap, phase3())

    proc = ManagedProcess("oracle", [*LEC, "oracle", "run"], run / "logs" / "oracle-3.log", env=env)
    try:
        wait_until(lambda: all(client.latest_version(COMMUNITY, QH0 + 900 * k) >= 1 for k in range(N_QH)),
                   240, "all anchors", proc.proc, proc.log)
        expected_tokens = _expected(client, reg, secrets, first + phase2() + phase3())
        wait_until(lambda: {w: client.balance_of(COMMUNITY, w) for w in (ANNA, BRUNO)} == expected_tokens, 120,
                   "claims", proc.proc, proc.log)
    finally:
        code = proc.stop(timeout=30)
    assert code is not None and code >= 0, f"`lec oracle run` did not stop cleanly on SIGTERM (code {code})"

    # exactly once per distinct content: one version per QH, two for QH1 (the late reading)
    versions = [client.latest_version(COMMUNITY, QH0 + 900 * k) for k in range(13)]
    assert versions == [1, 2] + [1] * (N_QH - 2) + [0, 1, 0, 0]   # QH9, QH11 empty; QH12 still open
    lake = OracleLake(env["LEC_LAKE_URI"])
    recorded = [(r["qh"], r["version"]) for r in lake.anchors(COMMUNITY)]
    assert sorted(recorded) == sorted({(QH0 + 900 * k, v) for k in range(13) for v in range(1, versions[k] + 1)})
    published = {(r["qh"], r["version"]) for r in consume_all(bootstrap, topics.ANCHORS)}
    assert published == set(recorded)
    log = "".join((run / "logs" / f"oracle-{i}.log").read_text() for i in (1, 2, 3))
    assert "replayed" in log
    for secret_device in ("IT001E00000001", "PV-0001"):
        assert secrets.get(secret_device).hex() not in log   # salts' keys never logged


def _expected(client, reg, secrets, readings: list[dict]) -> dict[str, int]:
    """Every QH's latest content on chain equals an independent recomputation; returns the tokens due."""
    w = QhWindows(300)
    for r in readings:
        w.add(r)
    builder = LeafBuilder(client, secrets, reg.snapshot)
    tokens: dict[str, int] = {}
    for b in w.due():  # every closed QH (QH0..QH8, and QH10 of an aligned watermark reading)
        c = builder.build(AnchorJob(COMMUNITY, b.qh, b.revision, b.sums()))
        latest = client.latest_version(COMMUNITY, b.qh)
        assert content_of(client.get_anchor(COMMUNITY, b.qh, latest)) == content_of(anchor_data(c, latest))
        for wallet, amount in c.rewards.items():
            tokens[wallet.lower()] = tokens.get(wallet.lower(), 0) + amount
    return {ANNA: tokens.get(ANNA.lower(), 0), BRUNO: tokens.get(BRUNO.lower(), 0)}
