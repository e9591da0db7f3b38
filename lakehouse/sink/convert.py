"""Kafka record values (JSON) -> one Arrow table per Delta table, plus rejects.

Fast path: the values of a batch are joined as JSON lines and parsed by Arrow's C++ JSON reader
against the table's schema (unknown fields are inferred, becoming new columns). If that fails
(one bad record spoils the block), each record is parsed alone so only bad ones are rejected.
A rejected record is kept whole (original bytes) in the `deadletter` table: nothing is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from lakehouse.tables import DEADLETTER_SCHEMA, KAFKA_COLUMNS, TableSpec
from lec.records import MAX_DEADLETTER_PAYLOAD

# Fields a row cannot be stored without (partition columns and the time axis).
REQUIRED: dict[str, tuple[str, ...]] = {
    "readings": ("community_id", "device_id", "message_id", "ts"),
    "deadletter": ("message_id",),
    "anomalies": ("anomaly_id", "device_id"),
}


@dataclass
class KafkaRecord:
    partition: int
    offset: int
    value: bytes | None


@dataclass
class Batch:
    """Records of one topic, column-wise (cheap to append to in the consume loop)."""

    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, partition: int, offset: int, value: bytes | None) -> None:
        self.partitions.append(partition)
        self.offsets.append(offset)
        self.values.append(value)

    def records(self) -> list[KafkaRecord]:
        return [KafkaRecord(p, o, v) for p, o, v in zip(self.partitions, self.offsets, self.values)]

    @classmethod
    def of(cls, records: list[KafkaRecord]) -> Batch:
        b = cls()
        for r in records:
            b.add(r.partition, r.offset, r.value)
        return b


@dataclass
class Reject:
    topic: str
    partition: int
    offset: int
    value: bytes
    reason: str


def convert(spec: TableSpec, batch: Batch | list[KafkaRecord]) -> tuple[pa.Table | None, list[Reject]]:
    """Parse the records of one topic into a table matching ``spec`` (plus inferred extra columns)."""
    if not isinstance(batch, Batch):
        batch = Batch.of(batch)
    if any(v is None for v in batch.values):  # tombstones carry nothing to store
        batch = Batch.of([r for r in batch.records() if r.value is not None])
    if not len(batch):
        return None, []
    data = b"\n".join(batch.values) + b"\n"  # type: ignore[arg-type]
    if data.count(b"\n") != len(batch) or b"\r" in data:  # pretty-printed JSON: one record per line
        try:
            data = b"\n".join(orjson.dumps(orjson.loads(v)) for v in batch.values) + b"\n"  # type: ignore[arg-type]
        except orjson.JSONDecodeError:
            return _convert_one_by_one(spec, batch.records())
    try:
        table = _parse_data(spec, data)
        if table.num_rows != len(batch):
            raise ValueError("record count mismatch")
        return _finish(spec, table, batch.partitions, batch.offsets, batch.values)
    except (ValueError, pa.ArrowInvalid):
        return _convert_one_by_one(spec, batch.records())


def _parse_data(spec: TableSpec, data: bytes) -> pa.Table:
    opts = pj.ParseOptions(explicit_schema=spec.record_schema, unexpected_field_behavior="infer")
    # 1 MiB blocks parsed on Arrow's thread pool: 2.2x faster than one block on one thread here (2 cores,
    # 50k readings; bench/lake_sink.py). Unknown fields are still inferred across blocks.
    read = pj.ReadOptions(block_size=1 << 20, use_threads=True)
    table = pj.read_json(io.BytesIO(data), read_options=read, parse_options=opts)
    if "schema" in table.column_names:
        table = table.drop_columns(["schema"])
    # A field null in the whole batch has no type yet: leave it out until a batch has a value.
    nulls = [f.name for f in table.schema if pa.types.is_null(f.type)]
    return table.drop_columns(nulls) if nulls else table


def _convert_one_by_one(spec: TableSpec, live: list[KafkaRecord]) -> tuple[pa.Table | None, list[Reject]]:
    parts: list[pa.Table] = []
    kept: list[KafkaRecord] = []
    rejects: list[Reject] = []
    declared = {f.name: f.type for f in spec.record_schema}
    for rec in live:
        try:
            obj = orjson.loads(rec.value)  # type: ignore[arg-type]
            if not isinstance(obj, dict):
                raise ValueError("the record is not a JSON object")  # noqa: TRY004 - caught as a bad record
            for key, val in obj.items():  # an object where text is declared: keep it as JSON text
                if isinstance(val, (dict, list)) and pa.types.is_string(declared.get(key, pa.null())):
                    obj[key] = orjson.dumps(val).decode()
            parts.append(_parse_data(spec, orjson.dumps(obj) + b"\n"))
            kept.append(rec)
        except (ValueError, pa.ArrowInvalid, orjson.JSONDecodeError) as exc:
            rejects.append(Reject(spec.topic, rec.partition, rec.offset, rec.value or b"",
                                  f"not a valid {spec.topic} record: {exc}"))
    if not parts:
        return None, rejects
    try:
        table = pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a field changing type between records
        table, kept, more = _keep_first_type(parts, kept, spec)
        rejects.extend(more)
    table, late = _finish(spec, table, [r.partition for r in kept], [r.offset for r in kept],
                          [r.value for r in kept])
    return table, rejects + late


def _keep_first_type(parts: list[pa.Table], kept: list[KafkaRecord], spec: TableSpec
                     ) -> tuple[pa.Table, list[KafkaRecord], list[Reject]]:
    good: list[pa.Table] = [parts[0]]
    good_recs = [kept[0]]
    rejects: list[Reject] = []
    for part, rec in zip(parts[1:], kept[1:]):
        try:
            pa.concat_tables([*good[-1:], part], promote_options="permissive")
            good.append(part)
            good_recs.append(rec)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            rejects.append(Reject(spec.topic, rec.partition, rec.offset, rec.value or b"",
                                  f"a field has another type than in earlier records: {exc}"))
    return pa.concat_tables(good, promote_options="permissive"), good_recs, rejects


def _finish(spec: TableSpec, table: pa.Table, partitions: list[int], offsets: list[int],
            values: list[bytes | None]) -> tuple[pa.Table | None, list[Reject]]:
    """Add derived and Kafka columns; move rows missing a required field to rejects."""
    table = table.append_column(KAFKA_COLUMNS[0], pa.array(partitions, pa.int32()))
    table = table.append_column(KAFKA_COLUMNS[1], pa.array(offsets, pa.int64()))
    if "date" in spec.derived:
        table = table.append_column("date", pc.cast(table.column("ts"), pa.date32()))
    rejects: list[Reject] = []
    required = [c for c in REQUIRED.get(spec.name, ()) if c in table.column_names]
    if required:
        ok = pc.is_valid(table.column(required[0]))
        for c in required[1:]:
            ok = pc.and_(ok, pc.is_valid(table.column(c)))
        if not pc.all(ok).as_py():
            for i in pc.indices_nonzero(pc.invert(ok)).to_pylist():
                rejects.append(Reject(spec.topic, partitions[i], offsets[i], values[i] or b"",
                                      f"a {spec.topic} record needs {', '.join(required)} (one is missing or null)"))
            table = table.filter(ok)
    return (table if table.num_rows else None), rejects


def rejects_table(rejects: list[Reject]) -> pa.Table:
    """Dead-letter rows for records the sink could not store, with their original bytes."""
    now = datetime.now(UTC)
    rows = []
    for r in rejects:
        payload = r.value[:MAX_DEADLETTER_PAYLOAD]
        rows.append({
            "community_id": None, "reason_code": "lake_unreadable_record",
            "message": f"{r.reason} (Kafka {r.topic} partition {r.partition} offset {r.offset})",
            "channel": None, "supplier_id": None, "device_id": None, "flow_id": None,
            "message_id": f"kafka:{r.topic}:{r.partition}:{r.offset}", "reading_index": None,
            "payload_b64": base64.b64encode(payload).decode(),
            "payload_sha256": hashlib.sha256(r.value).hexdigest(),
            "payload_truncated": len(r.value) > MAX_DEADLETTER_PAYLOAD, "source": None,
            "rejected_ts": now, "kafka_partition": r.partition, "kafka_offset": r.offset,
        })
    return pa.Table.from_pylist(rows, schema=DEADLETTER_SCHEMA)
