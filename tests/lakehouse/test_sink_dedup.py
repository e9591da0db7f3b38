"""The sink writes one canonical reading at most once, even when it arrives again at new offsets.

A stream worker SIGKILLed after producing to ``lec.readings`` but before committing its input
offsets reprocesses its input and emits the same readings (same ``message_id``) again at new
offsets. Offset transactions cannot see that; the sink dedups on ``message_id`` (found by
tests/adversarial/test_chaos.py: 508 lake rows for 383 readings).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

from lakehouse.sink.config import SinkConfig
from lakehouse.sink.worker import DeltaSink, app_id
from lakehouse.tables import ANOMALIES, DEADLETTER, READINGS, open_table, query, table_uri
from tests.support.sink_sample import produce, sample_readings

FAST = SinkConfig(commit_interval_s=0.3, commit_rows=5000, maintain_interval_s=0)


def _specs() -> tuple:
    tag = uuid.uuid4().hex[:8]
    return tuple(replace(s, topic=f"{s.topic}.{tag}") for s in (READINGS, DEADLETTER, ANOMALIES))


def _run(bootstrap: str, root: Path, specs: tuple):
    cfg = replace(FAST, group_id=f"g-{uuid.uuid4().hex[:6]}")
    return DeltaSink(bootstrap, str(root), cfg, tables=specs).run(max_idle_s=2.0)


def _rows(root: Path, sql: str) -> list[dict]:
    dt = open_table(table_uri("readings", root=str(root)))
    assert dt is not None
    return query(sql, {"t": dt}).to_pylist()


def test_reemitted_reading_is_stored_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    readings, *_ = specs = _specs()
    first = list(sample_readings(40, devices=4, days=1))
    # A worker re-emits its last outputs: the same readings again at new offsets of the same
    # partitions (keyed by device), in the same batch as the originals.
    produce(kafka_bootstrap, first + first[-10:], readings.topic)
    stats = _run(kafka_bootstrap, tmp_path, specs)
    assert _rows(tmp_path, "SELECT count(*) n, count(DISTINCT message_id) m FROM t") == [{"n": 40, "m": 40}]
    assert stats.duplicates == 10

    # ... and in a later batch, against what the table already holds (the sink restarted too).
    correction = dict(first[5], message_id="corr-1:0", energy_mwh=first[5]["energy_mwh"] + 7)
    newer = list(sample_readings(5, devices=4, days=1, start=40))
    produce(kafka_bootstrap, first[:20] + [correction] + newer + [correction], readings.topic)
    stats = _run(kafka_bootstrap, tmp_path, specs)
    assert stats.duplicates == 21
    rows = _rows(tmp_path, "SELECT count(*) n, count(DISTINCT message_id) m FROM t")
    assert rows == [{"n": 46, "m": 46}]
    # A correction of the same device, flow and instant with another message id and value is kept.
    same_instant = _rows(tmp_path, f"SELECT energy_mwh e FROM t WHERE device_id = '{first[5]['device_id']}' "
                         f"AND ts = TIMESTAMP '{first[5]['ts']}' ORDER BY e")
    assert [r["e"] for r in same_instant] == [first[5]["energy_mwh"], first[5]["energy_mwh"] + 7]

    # Offsets stay exactly-once: the txn versions moved past the dropped duplicates too.
    dt = open_table(table_uri("readings", root=str(tmp_path)))
    total = sum(dt.transaction_version(app_id(readings.topic, p)) + 1
                for p in range(64) if dt.transaction_version(app_id(readings.topic, p)) is not None)
    assert total == 40 + 10 + 20 + 1 + 5 + 1


def test_oracle_counts_a_reemitted_reading_once() -> None:
    """The oracle's quarter-hour windows (fed from lec.readings, or from the lake by `lec audit verify`)
    key each leaf's readings by message id: a re-emission changes neither the sum nor the revision."""
    from oracle.qh import QhWindows

    r, other = list(sample_readings(2, devices=1, days=1))
    windows = QhWindows()
    assert windows.add(dict(r)) is True
    before = {k: (b.revision, b.sums()) for k, b in windows.buckets.items()}
    assert windows.add(dict(r)) is False                       # the same reading, emitted again
    assert {k: (b.revision, b.sums()) for k, b in windows.buckets.items()} == before
    assert windows.duplicates == 1 and windows.counted == 1
    correction = dict(r, message_id="corr-1:0", energy_mwh=r["energy_mwh"] + 7)
    assert windows.add(correction) is True                     # a correction is another reading
    assert windows.add(dict(other)) is True and windows.counted == 3


def _batch_table(readings: list[dict]):
    import orjson

    from lakehouse.sink.convert import Batch, convert

    values = [orjson.dumps(r) for r in readings]
    table, rejects = convert(READINGS, Batch([0] * len(values), list(range(len(values))), values))
    assert not rejects
    return table


def test_a_batch_over_more_partitions_than_the_index_keeps() -> None:
    # A backfill batch touching more (community, date) partitions than the index keeps (64) crashed the
    # writer with a KeyError (found by bench/e2e.py: 10k quarter-hours of one flow span 104 days).
    from lakehouse.sink.worker import KeyIndex

    index = KeyIndex(READINGS, "message_id", max_partitions=8)
    first = list(sample_readings(2 * 96 * 20, devices=2, days=20))            # 2 communities x 20 dates
    table, dropped = index.fresh(_batch_table(first), None)
    assert (table.num_rows, dropped) == (len(first), 0)
    again = first[-50:] + list(sample_readings(30, devices=2, days=20, start=len(first)))
    table, dropped = index.fresh(_batch_table(again), None)
    assert dropped == 50 and table.num_rows == 30      # the touched partitions' keys were all kept
    assert len(index._known) <= max(8, 40)


def test_sink_stores_a_batch_spanning_many_dates(kafka_bootstrap: str, tmp_path: Path) -> None:
    readings, *_ = specs = _specs()
    rows = list(sample_readings(2 * 96 * 40, devices=2, days=40))               # 80 partitions in one commit
    produce(kafka_bootstrap, rows + rows[:100], readings.topic)
    cfg = replace(FAST, group_id=f"g-{uuid.uuid4().hex[:6]}", commit_rows=20_000, commit_interval_s=2.0)
    stats = DeltaSink(kafka_bootstrap, str(tmp_path), cfg, tables=specs).run(max_idle_s=2.0)
    assert _rows(tmp_path, "SELECT count(*) n, count(DISTINCT date) d FROM t") == [{"n": len(rows), "d": 40}]
    assert stats.duplicates == 100
