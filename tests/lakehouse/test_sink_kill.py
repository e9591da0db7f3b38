"""`lec lake sink` as a real subprocess, SIGKILLed at random points of a 200k-reading ingest.

After several crashes and restarts every reading is in the table exactly once (count and the
set of message_ids), and a SIGTERM makes a final commit of what was buffered, exit code 0.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

from lakehouse.tables import open_table, query, table_uri
from lec.procs import ManagedProcess
from tests.support.sink_sample import produce, sample_readings

TOTAL = 200_000
SINK_ARGV = [str(Path(sys.executable).with_name("lec")), "lake", "sink"]


def _count(root: Path) -> int:
    dt = open_table(table_uri("readings", root=str(root)))
    return 0 if dt is None else query("SELECT count(*) n FROM t", {"t": dt}).column("n")[0].as_py()


def _wait_for_progress(root: Path, before: int, timeout: float = 60) -> None:
    """Until the sink has committed something new (startup time varies a lot on a busy machine)."""
    deadline = time.monotonic() + timeout
    while _count(root) <= before < TOTAL and time.monotonic() < deadline:
        time.sleep(0.1)


def _sink(tmp: Path, bootstrap: str, name: str, **env: str) -> ManagedProcess:
    base = {"LEC_KAFKA_BOOTSTRAP": bootstrap, "LEC_LAKE_URI": str(tmp / "lake"), "LEC_RUN_DIR": str(tmp / "run")}
    return ManagedProcess(name, SINK_ARGV, tmp / "logs" / f"{name}.log", env={**base, **env})


def test_sigkill_restarts_store_every_reading_exactly_once(fresh_kafka: tuple, tmp_path: Path) -> None:
    _, bootstrap = fresh_kafka
    produce(bootstrap, sample_readings(TOTAL // 2))
    late = threading.Thread(target=produce, args=(bootstrap, sample_readings(TOTAL // 2, start=TOTAL // 2)))
    rng = random.Random(20261125)
    seen_mid_ingest = []
    late.start()
    try:
        for i in range(6):
            proc = _sink(tmp_path, bootstrap, f"sink-{i}", LEC_LAKE_COMMIT_INTERVAL_S="0.3",
                         LEC_LAKE_COMMIT_ROWS="2500", LEC_LAKE_MAINTAIN_INTERVAL_S="0.5")
            _wait_for_progress(tmp_path / "lake", seen_mid_ingest[-1] if seen_mid_ingest else 0)
            time.sleep(rng.uniform(0.0, 1.0))  # somewhere between, or inside, the next commits
            proc.kill()  # SIGKILL: no final commit, no cleanup
            n = _count(tmp_path / "lake")
            seen_mid_ingest.append(n)
    finally:
        late.join()
    assert len({n for n in seen_mid_ingest if 0 < n < TOTAL}) >= 3, seen_mid_ingest
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("sink-*.log"))
    assert "maintained readings" in logs  # the periodic compaction ran (and was killed around) too

    # Last run: commits only on SIGTERM (interval and size out of reach), so what lands is the final commit.
    for i in range(8):
        proc = _sink(tmp_path, bootstrap, f"final-{i}", LEC_LAKE_COMMIT_INTERVAL_S="3600",
                     LEC_LAKE_COMMIT_ROWS="100000000", LEC_LAKE_MAINTAIN_INTERVAL_S="0")
        before = _count(tmp_path / "lake")
        time.sleep(8)
        assert proc.stop(timeout=60) == 0, (tmp_path / "logs" / f"final-{i}.log").read_text()[-2000:]
        after = _count(tmp_path / "lake")
        if before < TOTAL:
            assert after > before, "SIGTERM should commit what the sink had buffered"
        if after >= TOTAL:
            break

    dt = open_table(table_uri("readings", root=str(tmp_path / "lake")))
    ids = query("SELECT message_id FROM t", {"t": dt}).column("message_id").to_pylist()
    assert len(ids) == TOTAL
    assert set(ids) == {f"m{i:010d}:0" for i in range(TOTAL)}
