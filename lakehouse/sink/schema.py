"""Fitting a batch to a Delta table's current schema (schema evolution and type clashes)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.sink.convert import Batch, Reject
from lakehouse.tables import TableSpec


def order(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """Known columns in the schema's order first, extra (evolved) ones after."""
    known = [n for n in schema.names if n in data.column_names]
    extra = [n for n in data.column_names if n not in schema.names]
    return data.select(known + extra)


def align(data: pa.Table, target: pa.Schema) -> tuple[pa.Table, str | None]:
    """Match the batch to the table's current schema; new columns mean a schema merge."""
    cols: list[pa.Array | pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for f in target:
        if f.name in data.column_names:
            col = data.column(f.name)
            if not col.type.equals(f.type):
                col = col.cast(storage_type(f.type))
            cols.append(col)
        else:
            cols.append(pa.nulls(data.num_rows, storage_type(f.type)))
        fields.append(pa.field(f.name, storage_type(f.type)))
    extra = [n for n in data.column_names if n not in target.names]
    for n in extra:
        cols.append(data.column(n))
        fields.append(data.schema.field(n))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields)), ("merge" if extra else None)


def storage_type(t: pa.DataType) -> pa.DataType:
    """delta-rs reports strings as string_view etc.; write plain Arrow types."""
    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, storage_type(f.type)) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(storage_type(t.value_type))
    return t


def fit_to_schema(spec: TableSpec, table: pa.Table, batch: Batch, target: pa.Schema
                  ) -> tuple[pa.Table | None, list[Reject]]:
    """Rows whose value cannot take the table's column type (a field changed type) become rejects."""
    bad = None
    for name in table.column_names:
        if name not in target.names or table.schema.field(name).type.equals(target.field(name).type):
            continue
        want = storage_type(target.field(name).type)
        try:
            table.column(name).cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            valid = pc.is_valid(table.column(name))
            bad = valid if bad is None else pc.or_(bad, valid)
            table = table.set_column(table.column_names.index(name), name, pa.nulls(table.num_rows, want))
    if bad is None:
        return table, []
    where = {(p, o): v for p, o, v in zip(batch.partitions, batch.offsets, batch.values)}
    rows = table.filter(bad).select(["kafka_partition", "kafka_offset"]).to_pylist()
    rejects = [Reject(spec.topic, r["kafka_partition"], r["kafka_offset"],
                      where[(r["kafka_partition"], r["kafka_offset"])] or b"",
                      f"a field does not fit the type of its column in table {spec.name}") for r in rows]
    kept = table.filter(pc.invert(bad))
    return (kept if kept.num_rows else None), rejects
