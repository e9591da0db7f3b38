"""`lec lake sink`: Kafka topics -> Delta tables, exactly once.

Each Delta commit carries, per Kafka topic-partition it holds records of, a ``txn`` action
(app id ``lec-lake-sink:<topic>:<partition>``, version = last offset in the table). On start the
sink reads these versions back and seeks each partition just past them (partitions assigned
explicitly, no group rebalances), so a crash at any point neither loses nor repeats a record;
Kafka's committed offsets are only written for monitoring (kafka-delta-ingest's design).

Offsets alone cannot catch a record emitted again at a NEW offset (a stream worker SIGKILLed
after producing but before committing its input re-emits the same readings): tables with an
identity key (``readings``: ``message_id``, the idempotency key of one canonical reading) keep the
first row of each key, within a batch and against what the table already holds (see
:class:`KeyIndex`); a correction carries a new message id and is kept.

Records the sink cannot store go to the `deadletter` table under their own app ids
(``lec-lake-sink-rejects:<topic>:<partition>``), committed BEFORE the main commit so a crash
between the two cannot lose them, and skipped on replay if already there.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.sink.config import SinkConfig
from lakehouse.sink.convert import Batch, Reject, convert, rejects_table
from lakehouse.sink.schema import align, fit_to_schema, order, storage_type
from lakehouse.tables import (
    DEADLETTER,
    SINK_TABLES,
    TableSpec,
    arrow_schema,
    open_table,
    storage_options,
    table_uri,
)
from lec.errors import LecError
from lec.gctune import tune_for_throughput

log = logging.getLogger("lec.lake.sink")

APP_PREFIX = "lec-lake-sink"
REJECT_PREFIX = "lec-lake-sink-rejects"

# Table name -> the column identifying one record: a second record with the same key is a
# re-emission (streams are at-least-once) and is not stored. Message ids are globally unique
# (`<source message id>:<index>`), and a re-emitted reading has the same ts, hence the same
# (community_id, date) partition: looking up the touched partitions is enough.
IDENTITY: dict[str, str] = {"readings": "message_id"}


class SinkError(LecError):
    """The Delta sink cannot reach Kafka or write the lake."""


def app_id(topic: str, partition: int, prefix: str = APP_PREFIX) -> str:
    return f"{prefix}:{topic}:{partition}"


@dataclass
class CommitStats:
    commits: int = 0
    rows: int = 0
    rejects: int = 0
    duplicates: int = 0   # re-emitted records (same identity key) not stored again
    last_commit_s: float = 0.0
    per_table: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class KeyIndex:
    """Identity keys the table holds, per partition, loaded on first touch and kept in step.

    Only the writer thread uses it. Bounded to ``max_partitions``, or to the partitions of the batch at
    hand when it touches more (least recently touched dropped, reloaded from the table if touched
    again), so a long backfill over many dates stays small.
    Vectorised (Arrow hash kernels): a per-row Python loop cost 4x the Delta append itself.
    """

    def __init__(self, spec: TableSpec, key: str, max_partitions: int = 64) -> None:
        self.spec = spec
        self.key = key
        self.max_partitions = max_partitions
        self._known: OrderedDict[tuple[Any, ...], list[pa.Array]] = OrderedDict()

    def clear(self) -> None:
        self._known.clear()

    def fresh(self, table: pa.Table, dt: Any) -> tuple[pa.Table, int]:
        """``table`` without rows whose key is already stored or repeats an earlier row; and how many.

        The key column is required (records without it are rejected before), so it has no nulls.
        """
        rows = table.num_rows
        # within the batch: the first row of each key (the lowest offset)
        first = (table.select([self.key]).append_column("__i", pa.array(range(rows), pa.int64()))
                 .group_by(self.key, use_threads=False).aggregate([("__i", "min")]).column("__i_min"))
        if len(first) < rows:
            table = table.take(pc.take(first, pc.sort_indices(first)))  # kept rows in offset order
        # against the table: keys of the partitions this batch touches
        cols = list(self.spec.partition_by)
        parts = [tuple(r[c] for c in cols) for r in table.select(cols).group_by(cols).aggregate([]).to_pylist()]
        known = [chunk for part in parts for chunk in self._partition(part, dt)]
        if known:
            stored = pc.is_in(table.column(self.key), value_set=pa.concat_arrays(known))
            if pc.any(stored).as_py():
                table = table.filter(pc.invert(stored))
        for part in parts:  # what this commit adds (dropped again by clear() if the commit fails)
            mask = None
            for c, v in zip(cols, part):
                eq = pc.is_null(table.column(c)) if v is None else pc.equal(table.column(c), v)
                mask = eq if mask is None else pc.and_(mask, eq)
            keys = table.column(self.key) if mask is None else table.filter(mask).column(self.key)
            self._known[part].append(keys.combine_chunks())
        # Trimmed only now: a batch touching more partitions than the bound keeps them all until its
        # keys are in (trimming while loading dropped a touched one: KeyError, the writer stopped).
        while len(self._known) > max(self.max_partitions, len(parts)):
            self._known.popitem(last=False)
        return table, rows - table.num_rows

    def _partition(self, part: tuple[Any, ...], dt: Any) -> list[pa.Array]:
        known = self._known.get(part)
        if known is not None:
            self._known.move_to_end(part)
            return known
        known = self._load(part, dt)
        self._known[part] = known
        return known

    def _load(self, part: tuple[Any, ...], dt: Any) -> list[pa.Array]:
        if dt is None:
            return []
        # File-level partition pruning (add actions' partition values): only this partition's
        # files are opened, and only their key column is read.
        filters = [(c, "=", _partition_value(v)) for c, v in zip(self.spec.partition_by, part) if v is not None]
        data = dt.to_pyarrow_dataset(partitions=filters or None).to_table(columns=[self.key])
        return [data.column(self.key).combine_chunks()] if data.num_rows else []


def last_offsets(batch: Batch) -> dict[int, int]:
    """The highest offset of each partition in a batch (vectorised: no per-record Python)."""
    parts = np.asarray(batch.partitions, dtype=np.int64)
    offsets = np.asarray(batch.offsets, dtype=np.int64)
    return {int(p): int(offsets[parts == p].max()) for p in np.unique(parts)}


def _partition_value(v: Any) -> str | None:
    return None if v is None else v.isoformat() if hasattr(v, "isoformat") else str(v)


class DeltaSink:
    """Consumes ``tables``' topics into Delta tables under ``root``."""

    def __init__(self, bootstrap: str, root: str, config: SinkConfig | None = None,
                 tables: tuple[TableSpec, ...] = SINK_TABLES) -> None:
        self.bootstrap = bootstrap
        self.root = root.rstrip("/")
        self.config = config or SinkConfig()
        self.tables = tables
        self.by_topic = {t.topic: t for t in tables}
        self.stats = CommitStats()
        self._stop = False
        self._consumer: Any = None
        self._written: dict[tuple[str, int], int] = {}    # last offset in the table, per topic-partition
        self._rejected: dict[tuple[str, int], int] = {}   # last reject offset in `deadletter`
        self._assigned: set[tuple[str, int]] = set()
        self._seen: dict[tuple[str, int], int] = {}  # last offset consumed per partition (idle = caught up)
        self._tables: dict[str, Any] = {}
        self._identity = {t.name: KeyIndex(t, IDENTITY[t.name]) for t in tables if t.name in IDENTITY}
        self._buffer: dict[str, Batch] = defaultdict(Batch)
        self._buffered = 0
        self._first_buffered_at: float | None = None
        self._last_maintain = time.monotonic()
        self._last_refresh = 0.0
        # Commits run in a writer thread while the next batch is consumed (Arrow parsing and
        # delta-rs writes release the GIL); maxsize=1 bounds memory to two batches.
        self._work: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=1)
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._committed_offsets: list[dict[tuple[str, int], int]] = []  # from the writer, for Kafka

    # -- lifecycle -------------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self._stop = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self, max_idle_s: float | None = None) -> CommitStats:
        """Consume until stopped (or idle for ``max_idle_s``), then commit what is buffered."""
        from confluent_kafka import Consumer

        from lec.kafka import consumer_config, ensure_topics

        try:
            ensure_topics(self.bootstrap, tuple(t.topic for t in self.tables))
        except Exception as exc:  # librdkafka raises KafkaException with a readable text
            raise SinkError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        self._consumer = Consumer(consumer_config(self.bootstrap, self.config.group_id,
                                                  **{"enable.partition.eof": False}))
        last_msg = time.monotonic()
        self._writer = threading.Thread(target=self._writer_loop, name="lake-sink-writer", daemon=True)
        self._writer.start()
        try:
            self._refresh_assignment()
            while not self._stop and self._writer_error is None:
                msgs = self._consumer.consume(num_messages=self._room(), timeout=0.2)
                if msgs:
                    last_msg = time.monotonic()
                    self._take(msgs)
                if self._due():
                    self.flush()
                self._commit_kafka_offsets()
                now = time.monotonic()
                if now - self._last_refresh > 10:
                    self._refresh_assignment()
                if self.config.maintain_interval_s and now - self._last_maintain > self.config.maintain_interval_s:
                    self.flush()
                    self._last_maintain = now
                    self._work.put(("maintain", None))
                # idle means caught up: a slow first fetch (a busy machine) is not idleness
                idle = max_idle_s is not None and not msgs and not self._buffered and now - last_msg > max_idle_s
                if idle and (now - last_msg > max(30.0, 5 * max_idle_s) or self._caught_up()):
                    break
            self.flush()
        finally:
            self._work.put(None)
            self._writer.join()
            self._commit_kafka_offsets()
            self._consumer.close()
        if self._writer_error is not None:
            raise self._writer_error
        log.info("sink stopped: %d commits, %d rows, %d rejects", self.stats.commits, self.stats.rows,
                 self.stats.rejects)
        return self.stats

    # -- consuming -------------------------------------------------------------------------------
    def _refresh_assignment(self) -> None:
        """Assign every partition of our topics, starting after the offset the table holds."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self._last_refresh = time.monotonic()
        new: list[TopicPartition] = []
        meta = self._consumer.list_topics(timeout=10)
        for spec in self.tables:
            topic_meta = meta.topics.get(spec.topic)
            if topic_meta is None or topic_meta.error is not None:
                continue
            fresh = [p for p in sorted(topic_meta.partitions) if (spec.topic, p) not in self._assigned]
            if not fresh:
                continue
            # Own table objects: the cached ones belong to the writer thread.
            dt = open_table(table_uri(spec.name, root=self.root))
            dl = open_table(table_uri(DEADLETTER.name, root=self.root))
            for p in fresh:
                key = (spec.topic, p)
                done = dt.transaction_version(app_id(spec.topic, p)) if dt is not None else None
                rej = dl.transaction_version(app_id(spec.topic, p, REJECT_PREFIX)) if dl is not None else None
                self._written[key] = -1 if done is None else done
                self._rejected[key] = -1 if rej is None else rej
                start = OFFSET_BEGINNING if done is None else done + 1
                new.append(TopicPartition(spec.topic, p, start))
                self._assigned.add(key)
                log.info("%s[%d] -> %s from offset %s", spec.topic, p, spec.name,
                         "beginning" if done is None else done + 1)
        if new:
            self._consumer.incremental_assign(new)

    def _caught_up(self) -> bool:
        """Every assigned partition consumed up to its high watermark (or the table already holds it)."""
        from confluent_kafka import TopicPartition

        for topic, p in self._assigned:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)
            done = max(self._seen.get((topic, p), -1), self._written.get((topic, p), -1))
            if high > 0 and done < high - 1:
                return False
        return True

    def _take(self, msgs: list[Any]) -> None:
        written = self._written
        seen = self._seen
        buffer = self._buffer
        for m in msgs:
            err = m.error()
            if err is not None:
                log.warning("Kafka: %s", err)
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            seen[(topic, partition)] = offset
            if offset <= written.get((topic, partition), -1):
                continue  # already in the table (a seek answered with older records)
            batch = buffer[topic]
            batch.partitions.append(partition)
            batch.offsets.append(offset)
            batch.values.append(m.value())
        self._buffered = sum(len(b) for b in buffer.values())
        if self._buffered and self._first_buffered_at is None:
            self._first_buffered_at = time.monotonic()

    def _room(self) -> int:
        """How many records to ask for: never far beyond the commit size."""
        return max(1, min(20_000, self.config.commit_rows - self._buffered))

    def _due(self) -> bool:
        if not self._buffered:
            return False
        if self._buffered >= self.config.commit_rows:
            return True
        return time.monotonic() - (self._first_buffered_at or 0) >= self.config.commit_interval_s

    # -- committing ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand what is buffered to the writer thread (waits while it is busy with the previous batch)."""
        if not self._buffered:
            return
        # Decoded here, in the consume thread, while the writer appends the previous batch: Arrow's
        # JSON reader and delta-rs both release the GIL, so on two cores the decode (measured ~3x the
        # Delta append of the same rows) overlaps the append instead of adding to it.
        self._work.put(("write", {topic: (batch, *convert(self.by_topic[topic], batch))
                                  for topic, batch in self._buffer.items()}))
        self._buffer = defaultdict(Batch)
        self._buffered = 0
        self._first_buffered_at = None

    def _writer_loop(self) -> None:
        while True:
            task = self._work.get()
            if task is None:
                return
            if self._writer_error is not None:
                continue  # after a failure nothing more is committed: order is what makes restarts exact
            kind, payload = task
            try:
                if kind == "write":
                    self._write(payload)
                else:
                    self.maintain()
            except BaseException as exc:  # noqa: BLE001 - handed to the consume loop, which stops and raises it
                self._writer_error = exc

    def _write(self, buffer: dict[str, tuple[Batch, pa.Table | None, list[Reject]]]) -> None:
        """Write one batch (per topic: its records, converted by ``flush``): rejects first, then one
        commit per table."""
        started = time.monotonic()
        converted: list[tuple[TableSpec, pa.Table | None, dict[int, int]]] = []
        rejects: list[Reject] = []
        for topic, (batch, table, bad) in buffer.items():
            spec = self.by_topic[topic]
            table, clash = self._fit(spec, table, batch)
            table = self._drop_reemitted(spec, table)
            rejects.extend(bad + clash)
            converted.append((spec, table, last_offsets(batch)))
        self._write_rejects(rejects)
        for spec, table, last in converted:
            self._commit(spec, table, last)
        self._committed_offsets.append({(spec.topic, p): off for spec, _, last in converted for p, off in last.items()})
        self.stats.last_commit_s = time.monotonic() - started

    def _fit(self, spec: TableSpec, table: pa.Table | None, batch: Batch) -> tuple[pa.Table | None, list[Reject]]:
        dt = self._open(spec.name)
        if table is None or dt is None:
            return table, []
        return fit_to_schema(spec, table, batch, arrow_schema(dt))

    def _drop_reemitted(self, spec: TableSpec, table: pa.Table | None) -> pa.Table | None:
        index = self._identity.get(spec.name)
        if index is None or table is None or table.num_rows == 0:
            return table
        try:
            table, dropped = index.fresh(table, self._open(spec.name))
        except Exception:
            index.clear()   # half-updated: reload from the table next time
            raise
        if dropped:
            self.stats.duplicates += dropped
            log.info("%s: %d re-emitted records (same %s) not stored again", spec.name, dropped, index.key)
        return table if table.num_rows else None

    def _write_rejects(self, rejects: list[Reject]) -> None:
        fresh = [r for r in rejects if r.offset > self._rejected.get((r.topic, r.partition), -1)]
        if not fresh:
            return
        last: dict[tuple[str, int], int] = {}
        for r in fresh:
            last[(r.topic, r.partition)] = max(last.get((r.topic, r.partition), -1), r.offset)
            log.warning("rejected %s[%d]@%d: %s", r.topic, r.partition, r.offset, r.reason)
        txns = {app_id(t, p, REJECT_PREFIX): off for (t, p), off in last.items()}
        self._append(DEADLETTER, rejects_table(fresh), txns)
        self._rejected.update(last)
        self.stats.rejects += len(fresh)

    def _commit(self, spec: TableSpec, table: pa.Table | None, last: dict[int, int]) -> None:
        txns = {app_id(spec.topic, p): off for p, off in last.items()}
        data = table if table is not None else None
        self._append(spec, data, txns)
        for p, off in last.items():
            self._written[(spec.topic, p)] = off
        rows = 0 if table is None else table.num_rows
        self.stats.rows += rows
        self.stats.per_table[spec.name] += rows
        self.stats.commits += 1
        log.info("committed %d rows to %s (offsets %s)", rows, spec.name,
                 ", ".join(f"{spec.topic}[{p}]={o}" for p, o in sorted(last.items())))

    def _append(self, spec: TableSpec, data: pa.Table | None, txns: dict[str, int]) -> None:
        """One Delta commit: the rows (maybe none) and the txn versions, atomically."""
        from deltalake import CommitProperties, Transaction, write_deltalake

        uri = table_uri(spec.name, root=self.root)
        dt = self._open(spec.name)
        schema_mode = None
        if data is None:
            data = pa.schema([pa.field(f.name, storage_type(f.type)) for f in
                              (arrow_schema(dt) if dt is not None else spec.schema)]).empty_table()
        elif dt is not None:
            data, schema_mode = align(data, arrow_schema(dt))
        else:
            data = order(data, spec.schema)
        props = CommitProperties(app_transactions=[Transaction(a, v) for a, v in sorted(txns.items())])
        try:
            write_deltalake(dt if dt is not None else uri, data, mode="append",
                            partition_by=list(spec.partition_by), schema_mode=schema_mode,
                            storage_options=storage_options(uri), commit_properties=props)
        except Exception as exc:
            self._tables.pop(spec.name, None)  # reload from storage next time
            if spec.name in self._identity:
                self._identity[spec.name].clear()  # keys of this batch were noted but not stored
            raise SinkError(f"cannot write Delta table {uri}: {exc}") from exc
        if dt is None:
            self._open(spec.name)

    def _open(self, name: str) -> Any:
        """The table, kept open between commits (write_deltalake updates its state in place)."""
        dt = self._tables.get(name)
        if dt is None:
            dt = open_table(table_uri(name, root=self.root))
            if dt is not None:
                self._tables[name] = dt
        return dt

    def _commit_kafka_offsets(self) -> None:
        """Informative only (lag dashboards): the table's txn versions are the truth on restart.

        Called from the consume loop: confluent-kafka deadlocks if the writer thread commits
        while this thread is inside ``consume``.
        """
        from confluent_kafka import KafkaException, TopicPartition

        done: dict[tuple[str, int], int] = {}
        while self._committed_offsets:
            done.update(self._committed_offsets.pop(0))
        if not done:
            return
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, off + 1) for (t, p), off in done.items()],
                                  asynchronous=True)
        except KafkaException as exc:
            log.debug("Kafka offset commit failed (harmless): %s", exc)

    # -- maintenance -----------------------------------------------------------------------------
    def maintain(self) -> None:
        from lakehouse.maintenance import maintain_table

        for spec in self.tables:
            uri = table_uri(spec.name, root=self.root)
            self._tables.pop(spec.name, None)  # maintenance commits: reopen afterwards
            try:
                report = maintain_table(uri, retention_hours=self.config.vacuum_retention_h)
            except LecError as exc:
                log.error("maintenance of %s failed: %s", spec.name, exc)
                continue
            if report is not None:
                log.info("maintained %s: %s", spec.name, report)


def run_sink(settings: Any = None, config: SinkConfig | None = None) -> CommitStats:
    """The `lec lake sink` worker: Settings.kafka_bootstrap -> Settings.resolved_lake_uri()."""
    from lec.config import settings as current

    s = settings or current()
    if not s.kafka_bootstrap:
        raise SinkError("no Kafka to read from: set LEC_KAFKA_BOOTSTRAP (or start the stack with `lec up`)")
    sink = DeltaSink(s.kafka_bootstrap, s.resolved_lake_uri(), config or SinkConfig.from_env())
    sink.install_signal_handlers()
    tune_for_throughput()
    log.info("lake sink: %s -> %s (commit every %.1fs or %d rows)", s.kafka_bootstrap, sink.root,
             sink.config.commit_interval_s, sink.config.commit_rows)
    return sink.run()
