"""Synthetic canonical readings for tests, benchmarks and the notebook.

Writes the canonical reading columns (common record format ``lec.reading/1``) into a Delta table
``readings`` partitioned by community_id and date, the layout the lake sink produces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from lakehouse.tables import READINGS_SCHEMA as READING_SCHEMA  # the sink's layout


@dataclass(frozen=True)
class SampleFlow:
    """One accounting flow of a synthetic community."""

    flow_id: str
    device_id: str
    user_id: str
    measurement: str  # load | production
    account: int      # 1 consumption, 2 production


def readings_table(community_id: str, rows: list[tuple[SampleFlow, datetime, int | None]],
                   interpolated: list[bool] | None = None) -> pa.Table:
    """Canonical readings from (flow, interval start, energy_mwh as signed by Table 13)."""
    n = len(rows)
    ts = [r[1].astimezone(UTC) for r in rows]
    cols = {
        "community_id": [community_id] * n,
        "supplier_id": ["sup-sample"] * n, "device_id": [r[0].device_id for r in rows],
        "flow_id": [r[0].flow_id for r in rows], "channel": ["http"] * n,
        "message_id": [f"{r[0].flow_id}:{t.isoformat()}:{i}" for i, (r, t) in enumerate(zip(rows, ts))],
        "ts": ts, "interval_s": [900] * n, "ingest_ts": ts,
        "current_a": [None] * n, "voltage_v": [None] * n, "power_active_w": [None] * n,
        "power_reactive_var": [None] * n, "energy_mwh": [r[2] for r in rows], "charge_pct": [None] * n,
        "measurement": [r[0].measurement for r in rows], "account": [r[0].account for r in rows],
        "estimated": [False] * n, "interpolated": interpolated or [False] * n, "late": [False] * n,
        "conflict": [False] * n, "date": [t.date() for t in ts],
        "kafka_partition": [0] * n, "kafka_offset": list(range(n)),
    }
    return pa.table({f.name: cols[f.name] for f in READING_SCHEMA}, schema=READING_SCHEMA)


def write_readings(lake_uri: str, table: pa.Table, mode: str = "append") -> str:
    """Append canonical readings to ``<lake>/readings``; returns the table URI."""
    from deltalake import write_deltalake

    uri = f"{lake_uri.rstrip('/')}/readings"
    write_deltalake(uri, table, mode=mode, partition_by=["community_id", "date"])
    return uri


def synthetic_year(community_id: str, n_members: int, start: datetime, days: int,
                   seed: int = 7) -> tuple[list[SampleFlow], pa.Table]:
    """Quarter-hour readings of ``n_members`` loads plus one PV plant per 4 members (vectorised)."""
    rng = np.random.default_rng(seed)
    flows = [SampleFlow(f"f-load-{i:03d}", f"POD{i:05d}", f"u-{i:03d}", "load", 1) for i in range(n_members)]
    flows += [SampleFlow(f"f-pv-{i:03d}", f"PV{i:05d}", f"u-{i:03d}", "production", 2)
              for i in range(0, n_members, 4)]
    n_qh = days * 96
    base = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "us")
    ts = base + np.arange(n_qh) * np.timedelta64(900, "s")
    hour = (np.arange(n_qh) % 96) / 4.0
    parts = []
    for f in flows:
        if f.account == 1:
            shape = 60_000 + 50_000 * np.exp(-((hour - 19.5) ** 2) / 6) + 30_000 * np.exp(-((hour - 8) ** 2) / 3)
            energy = (shape * rng.uniform(0.7, 1.3, n_qh)).astype(np.int64)
        else:
            sun = np.clip(np.sin((hour - 6) / 13 * math.pi), 0, None)
            energy = -(sun * 400_000 * rng.uniform(0.5, 1.0, n_qh)).astype(np.int64)
        parts.append((f, energy))
    n = n_qh * len(parts)
    ts_all = np.tile(ts, len(parts))
    tsa = pa.array(ts_all, type=pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    cols = {
        "community_id": pa.array([community_id] * n),
        "supplier_id": pa.array(["sup-sample"] * n),
        "device_id": pa.array(np.repeat([f.device_id for f, _ in parts], n_qh)),
        "flow_id": pa.array(np.repeat([f.flow_id for f, _ in parts], n_qh)),
        "channel": pa.array(["http"] * n),
        "message_id": pa.array([f"m{i}" for i in range(n)]),
        "ts": tsa, "interval_s": pa.array(np.full(n, 900, dtype=np.int64)), "ingest_ts": tsa,
        "current_a": pa.nulls(n, pa.float64()), "voltage_v": pa.nulls(n, pa.float64()),
        "power_active_w": pa.nulls(n, pa.float64()), "power_reactive_var": pa.nulls(n, pa.float64()),
        "energy_mwh": pa.array(np.concatenate([e for _, e in parts])), "charge_pct": pa.nulls(n, pa.float64()),
        "measurement": pa.array(np.repeat([f.measurement for f, _ in parts], n_qh)),
        "account": pa.array(np.repeat([f.account for f, _ in parts], n_qh).astype(np.int64)),
        "estimated": pa.array(np.zeros(n, bool)), "interpolated": pa.array(np.zeros(n, bool)),
        "late": pa.array(np.zeros(n, bool)), "conflict": pa.array(np.zeros(n, bool)),
        "date": pa.array(ts_all.astype("datetime64[D]")),
        "kafka_partition": pa.array(np.zeros(n, dtype=np.int32)), "kafka_offset": pa.array(np.arange(n)),
    }
    return flows, pa.table({f.name: cols[f.name] for f in READING_SCHEMA}, schema=READING_SCHEMA)


def day_range(start: datetime, days: int) -> list[datetime]:
    """Quarter-hour instants of ``days`` days from ``start``."""
    return [start + timedelta(minutes=15 * i) for i in range(days * 96)]


def community_yaml(community_id: str, flows: list[SampleFlow]) -> str:
    """A registry community file (examples/community.yaml format) for synthetic flows."""
    users = sorted({f.user_id for f in flows})
    lines = [f"community: {{id: {community_id}, name: {community_id}, kind: CER, timezone: Europe/Rome}}",
             "users:"]
    lines += [f"  - {{id: {u}, name: {u}, wallet: \"0x{i + 1:040x}\"}}" for i, u in enumerate(users)]
    lines += ["suppliers:", "  - {id: sup-sample, name: Sample supplier, password: sample-secret}", "devices:"]
    lines += [f"  - {{id: {f.device_id}, user: {f.user_id}, supplier: sup-sample}}" for f in flows]
    lines += ["flows:"]
    for f in flows:
        account = "consumption" if f.account == 1 else "production"
        lines.append(f"  - {{id: {f.flow_id}, device: {f.device_id}, supplier: sup-sample, channel: http, "
                     f"syntax: json, measurement: {f.measurement}, account: {account}, units: {{energy: Wh}}, "
                     f"mapping: {{ts: t, energy: e}}}}")
    return "\n".join(lines) + "\n"
