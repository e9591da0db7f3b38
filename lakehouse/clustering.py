"""Clustering of daily quarter-hour load curves (seed §5.2.5, registry tables 22-26).

Two kinds:
- ``daytype``: the days of one member (or of the whole community) as 96-point curves of mean
  load power (kW) per local quarter-hour, clustered into N day types;
- ``member``: each member's mean daily curve over the period, clustered into N member groups.

k-means (Lloyd) minimises the within-cluster sum of squares. Initial centroids are
deterministic and percentile based (after Nepal et al.): centroid j is, point by point, the
(j + 0.5)/N percentile of the curves; a second run seeds with the curves at the (j + 0.5)/N
percentiles of daily energy, and the run with the smaller within-cluster variance is kept. The
same input always gives the same clusters.
DST days: the missing local hour (23 h day) is filled linearly from its neighbours, the repeated
one (25 h day) is averaged; days with fewer than ``min_points`` measured quarter-hours are left out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from lec.errors import LecError

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from lec.registry import Registry

POINTS = 96


class ClusteringError(LecError):
    """Not enough curves for the requested number of clusters, or a bad kind."""


@dataclass
class ClusterResult:
    labels: np.ndarray          # cluster index of each curve, in input order
    centroids: np.ndarray       # (k, 96) mean curves
    std: np.ndarray             # (k, 96) standard deviation per point
    cv: np.ndarray              # (k,) mean std / mean of the mean curve
    sizes: np.ndarray           # (k,)
    inertia: float              # within-cluster sum of squares
    iterations: int


def percentile_centroids(x: np.ndarray, k: int) -> np.ndarray:
    """Deterministic initial centroids: pointwise (j + 0.5)/k percentiles of the curves."""
    return np.stack([np.percentile(x, 100.0 * (j + 0.5) / k, axis=0) for j in range(k)])


def energy_percentile_centroids(x: np.ndarray, k: int) -> np.ndarray:
    """Second deterministic seeding: the curves at the (j + 0.5)/k percentiles of daily energy."""
    order = np.argsort(x.sum(axis=1), kind="stable")
    return np.stack([x[order[min(len(x) - 1, int((j + 0.5) / k * len(x)))]] for j in range(k)])


def kmeans(x: np.ndarray, k: int, max_iter: int = 300) -> ClusterResult:
    """k-means from both deterministic percentile seedings; the one with less within-cluster variance wins."""
    x = np.asarray(x, dtype="float64")
    if x.ndim != 2 or len(x) < k or k < 1:
        raise ClusteringError(f"need at least {k} curves to make {k} clusters, got {len(x)}")
    runs = [_lloyd(x, percentile_centroids(x, k), max_iter), _lloyd(x, energy_percentile_centroids(x, k), max_iter)]
    return min(runs, key=lambda r: r.inertia)


def _lloyd(x: np.ndarray, centroids: np.ndarray, max_iter: int) -> ClusterResult:
    """Lloyd iterations; an emptied cluster takes the worst-fitting curve."""
    k = len(centroids)
    labels = np.full(len(x), -1)
    it = 0
    for it in range(1, max_iter + 1):
        dist = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        new = dist.argmin(axis=1)
        for j in range(k):
            if not (new == j).any():  # keep k clusters: move the worst-fitting curve here
                worst = dist[np.arange(len(x)), new].argmax()
                new[worst] = j
        if (new == labels).all():
            break
        labels = new
        centroids = np.stack([x[labels == j].mean(axis=0) for j in range(k)])
    std = np.stack([x[labels == j].std(axis=0) for j in range(k)])
    means = centroids.mean(axis=1)
    cv = np.divide(std.mean(axis=1), means, out=np.zeros(k), where=means != 0)
    inertia = float(sum(((x[labels == j] - centroids[j]) ** 2).sum() for j in range(k)))
    return ClusterResult(labels, centroids, std, cv, np.bincount(labels, minlength=k), inertia, it)


# -- curves from the lake -------------------------------------------------------------------------

def daily_curves_frame(readings: DataFrame, dims: dict[str, DataFrame], community_id: str,
                       start: datetime, end: datetime, tz: str) -> DataFrame:
    """Spark: mean load kW per (member, local day, local quarter-hour slot) from consumption flows."""
    from pyspark.sql import functions as F

    devices = dims["dim_devices"].where(F.col("community_id") == community_id).select("device_id", "user_id")
    local = F.from_utc_timestamp(F.col("qh"), tz)
    r = (readings.where((F.col("community_id") == community_id) & (F.col("account") == 1)
                        & (F.col("ts") >= F.lit(start.astimezone(UTC)))
                        & (F.col("ts") < F.lit(end.astimezone(UTC))) & F.col("energy_mwh").isNotNull())
         .join(devices, "device_id", "left")
         .withColumn("member_id", F.coalesce(F.col("user_id"), F.concat(F.lit("device:"), F.col("device_id"))))
         .withColumn("qh", (F.floor(F.col("ts").cast("long") / 900) * 900).cast("timestamp")))
    per_qh = r.groupBy("member_id", "qh").agg((F.sum("energy_mwh") / 1e6 * 4).alias("kw"))
    return (per_qh.withColumn("day", F.date_format(local, "yyyy-MM-dd"))
            .withColumn("slot", (F.hour(local) * 4 + F.floor(F.minute(local) / 15)).cast("int"))
            .groupBy("member_id", "day", "slot").agg(F.avg("kw").alias("kw")))


def curves_matrix(pdf: pd.DataFrame, min_points: int = 88) -> tuple[list[str], np.ndarray]:
    """(days, matrix) from day/slot/kw rows: slot gaps filled linearly, short days dropped."""

    if pdf.empty:
        return [], np.empty((0, POINTS))
    wide = pdf.pivot_table(index="day", columns="slot", values="kw", aggfunc="mean").reindex(
        columns=range(POINTS))
    wide = wide[wide.notna().sum(axis=1) >= min_points]
    wide = wide.interpolate(axis=1, limit_direction="both")
    return [str(d) for d in wide.index], wide.to_numpy(dtype="float64") if len(wide) else np.empty((0, POINTS))


def community_curves(pdf: pd.DataFrame) -> pd.DataFrame:
    """Sum the members' curves into the community's (per day and slot)."""
    return pdf.groupby(["day", "slot"], as_index=False)["kw"].sum()


# -- storing -------------------------------------------------------------------------------------

def store_clusters(registry: Registry, community_id: str, kind: str, user_id: str | None, items: list[str],
                   result: ClusterResult, start: datetime, end: datetime, params: dict[str, Any]) -> str:
    """Write one clustering into clustergroups, clusters, clusters_days|clusters_users, clustergroups_idx."""
    from sqlalchemy import delete

    from lec.registry import schema as t

    key = f"{community_id}|{kind}|{user_id}|{start.isoformat()}|{end.isoformat()}|{len(result.sizes)}"
    gid = "cg-" + hashlib.sha256(key.encode()).hexdigest()[:24]
    with registry.engine.begin() as conn:
        old = [f"{gid}-{j}" for j in range(len(result.sizes))]  # a re-run replaces the same group
        conn.execute(delete(t.clustergroups_idx).where(t.clustergroups_idx.c.clustergroup_id == gid))
        conn.execute(delete(t.clusters_days).where(t.clusters_days.c.cluster_id.in_(old)))
        conn.execute(delete(t.clusters_users).where(t.clusters_users.c.cluster_id.in_(old)))
        conn.execute(delete(t.clusters).where(t.clusters.c.clustergroup_id == gid))
        conn.execute(delete(t.clustergroups).where(t.clustergroups.c.id == gid))
        conn.execute(t.clustergroups.insert().values(
            id=gid, community_id=community_id, user_id=user_id, kind=kind, n_clusters=len(result.sizes),
            period_start=start, period_end=end, created_at=datetime.now(UTC),
            params={**params, "inertia": result.inertia, "iterations": result.iterations}))
        for j in range(len(result.sizes)):
            cid = f"{gid}-{j}"
            conn.execute(t.clusters.insert().values(
                id=cid, clustergroup_id=gid, idx=j, mean_curve=[round(v, 6) for v in result.centroids[j]],
                std_curve=[round(v, 6) for v in result.std[j]], cv=float(result.cv[j]), size=int(result.sizes[j])))
        member_table = t.clusters_days if kind == "daytype" else t.clusters_users
        col = "day" if kind == "daytype" else "user_id"
        for pos, (item, label) in enumerate(zip(items, result.labels)):
            conn.execute(member_table.insert().values(cluster_id=f"{gid}-{int(label)}", **{col: item}))
            conn.execute(t.clustergroups_idx.insert().values(clustergroup_id=gid, position=pos, item=item,
                                                             cluster_idx=int(label)))
    return gid


def cluster_and_store(spark: SparkSession, readings: DataFrame, dims: dict[str, DataFrame],
                      registry: Registry, community_id: str, start: datetime, end: datetime, k: int,
                      kind: str = "daytype", member: str | None = None, tz: str = "Europe/Rome") -> dict[str, Any]:
    """Build curves with Spark, cluster them, store them; returns the group id and clusters."""
    if kind not in ("daytype", "member"):
        raise ClusteringError(f"kind must be daytype or member, got {kind!r}")
    members = {u for (c, u) in registry.snapshot().members if c == community_id}
    if member is not None and member not in members:
        raise ClusteringError(f"'{member}' is not a member of community '{community_id}'")
    pdf = daily_curves_frame(readings, dims, community_id, start, end, tz).toPandas()
    if kind == "daytype":
        rows = pdf[pdf.member_id == member] if member else community_curves(pdf)
        items, x = curves_matrix(rows)
    else:
        items, means = [], []
        for mid, rows in sorted(pdf.groupby("member_id"), key=lambda p: str(p[0])):
            if mid not in members:  # devices without an owner have no user to store (clusters_users FK)
                continue
            days, mx = curves_matrix(rows)
            if len(days):
                items.append(str(mid))
                means.append(mx.mean(axis=0))
        x = np.stack(means) if means else np.empty((0, POINTS))
    if len(items) < k:
        raise ClusteringError(f"only {len(items)} complete {'days' if kind == 'daytype' else 'members'} in the "
                              f"period: choose at most that many clusters or a longer period")
    result = kmeans(x, k)
    gid = store_clusters(registry, community_id, kind, member if kind == "daytype" else None, items, result,
                         start, end, {"init": "percentile", "points": POINTS})
    return {"clustergroup_id": gid, "kind": kind, "items": len(items), "inertia": result.inertia,
            "clusters": [{"idx": j, "size": int(result.sizes[j]), "cv": float(result.cv[j]),
                          "mean_kw": float(result.centroids[j].mean())} for j in range(k)],
            "idx": [int(v) for v in result.labels]}
