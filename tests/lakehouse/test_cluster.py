"""Clustering of daily load curves: k-means with percentile seeds, Spark curves, registry tables 22-26."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from lakehouse.clustering import (
    ClusteringError,
    cluster_and_store,
    curves_matrix,
    kmeans,
    percentile_centroids,
)
from lakehouse.spark.sessions import read_delta, registry_frames, session_for
from lec.registry import parse_community_text
from lec.registry import schema as t
from tests.support.kpi_sample import SampleFlow, community_yaml, readings_table, write_readings

ROME = ZoneInfo("Europe/Rome")
CID = "cer-clu"
FLOWS = [SampleFlow(f"f-{i}", f"POD{i}", f"u-{i}", "load", 1) for i in range(4)]
WEEKDAY = np.array([40_000 if 8 <= s // 4 < 18 else 10_000 for s in range(96)])  # mWh per QH
WEEKEND = np.array([30_000 if 10 <= s // 4 < 22 else 20_000 for s in range(96)])


def test_kmeans_separates_groups_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(1.0, 0.05, (10, 96))
    b = rng.normal(3.0, 0.05, (6, 96))
    x = np.vstack([a, b])
    r1, r2 = kmeans(x, 2), kmeans(x, 2)
    assert (r1.labels == r2.labels).all()
    assert set(r1.labels[:10]) == {0} and set(r1.labels[10:]) == {1}  # low percentile seed -> cluster 0
    assert np.allclose(r1.centroids[1], b.mean(axis=0)) and np.allclose(r1.std[0], a.std(axis=0))
    assert r1.cv[0] == pytest.approx(a.std(axis=0).mean() / a.mean())
    assert list(r1.sizes) == [10, 6]
    assert r1.inertia == pytest.approx(((a - a.mean(axis=0)) ** 2).sum() + ((b - b.mean(axis=0)) ** 2).sum())
    seeds = percentile_centroids(x, 4)
    assert np.allclose(seeds[0], np.percentile(x, 12.5, axis=0))
    with pytest.raises(ClusteringError, match="at least 3 curves"):
        kmeans(x[:2], 3)


def test_dst_days_fill_the_missing_hour_and_average_the_repeated_one() -> None:
    rows = [{"day": "2024-03-31", "slot": s, "kw": float(s)} for s in range(96) if s not in (8, 9, 10, 11)]
    days, x = curves_matrix(pd.DataFrame(rows))
    assert days == ["2024-03-31"] and x.shape == (1, 96)
    assert x[0, 9] == pytest.approx(9.0)  # linear between slot 7 and 12
    rows = [{"day": "2024-10-27", "slot": s, "kw": 1.0} for s in range(96)] + [
        {"day": "2024-10-27", "slot": 8, "kw": 3.0}]
    assert curves_matrix(pd.DataFrame(rows))[1][0, 8] == pytest.approx(2.0)
    short = [{"day": "2024-01-02", "slot": s, "kw": 1.0} for s in range(50)]
    assert curves_matrix(pd.DataFrame(short))[0] == []


@pytest.fixture()
def lake(registry, settings):
    registry.load(parse_community_text(community_yaml(CID, FLOWS)))
    rows = []
    start = datetime(2024, 6, 3, tzinfo=ROME)  # Monday; two weeks
    for d in range(14):
        day = start + timedelta(days=d)
        for f_i, flow in enumerate(FLOWS):
            # members 0-1 live a weekday/weekend pattern; members 2-3 always the weekend one
            shape = WEEKDAY if (day.weekday() < 5 and f_i < 2) else WEEKEND
            for s in range(96):
                rows.append((flow, day + timedelta(minutes=15 * s), int(shape[s] + 100 * d)))
    write_readings(settings.resolved_lake_uri(), readings_table(CID, rows))
    spark = session_for("")
    return spark, read_delta(spark, settings.resolved_lake_uri(), "readings"), registry_frames(spark, registry)


def test_day_types_of_one_member_stored_in_registry(lake, registry) -> None:
    spark, readings, dims = lake
    start, end = datetime(2024, 6, 3, tzinfo=ROME), datetime(2024, 6, 17, tzinfo=ROME)
    out = cluster_and_store(spark, readings, dims, registry, CID, start, end, 2, "daytype", "u-0")
    days = [(start + timedelta(days=d)).date() for d in range(14)]
    weekend = [d.isoformat() for d in days if d.weekday() >= 5]
    assert out["items"] == 14
    with registry.engine.connect() as conn:
        clusters = {r.idx: r for r in conn.execute(select(t.clusters).where(
            t.clusters.c.clustergroup_id == out["clustergroup_id"]))}
        cdays = conn.execute(select(t.clusters_days)).all()
        idx = conn.execute(select(t.clustergroups_idx).order_by(t.clustergroups_idx.c.position)).all()
        group = conn.execute(select(t.clustergroups)).one()
    in_cluster = {j: sorted(d.day for d in cdays if d.cluster_id == clusters[j].id) for j in clusters}
    weekend_cluster = next(j for j, ds in in_cluster.items() if ds == weekend)
    assert clusters[weekend_cluster].size == 4 and clusters[1 - weekend_cluster].size == 10
    # mean curve of the weekend cluster, computed here: kW = mWh * 4 / 1e6
    offs = [100 * i for i, d in enumerate(days) if d.weekday() >= 5]
    expected_mean = [(WEEKEND[s] + np.mean(offs)) * 4 / 1e6 for s in range(96)]
    assert clusters[weekend_cluster].mean_curve == pytest.approx(expected_mean, abs=1e-6)
    assert clusters[weekend_cluster].std_curve == pytest.approx([np.std(offs) * 4 / 1e6] * 96, abs=1e-6)
    assert [r.item for r in idx] == [d.isoformat() for d in days]
    assert [r.cluster_idx for r in idx] == out["idx"]
    assert group.kind == "daytype" and group.user_id == "u-0" and group.n_clusters == 2
    # a re-run replaces the group instead of adding a second one
    cluster_and_store(spark, readings, dims, registry, CID, start, end, 2, "daytype", "u-0")
    with registry.engine.connect() as conn:
        assert len(conn.execute(select(t.clustergroups)).all()) == 1
        assert len(conn.execute(select(t.clusters_days)).all()) == 14


def test_members_clustered_by_mean_daily_curve(lake, registry) -> None:
    spark, readings, dims = lake
    start, end = datetime(2024, 6, 3, tzinfo=ROME), datetime(2024, 6, 17, tzinfo=ROME)
    out = cluster_and_store(spark, readings, dims, registry, CID, start, end, 2, "member")
    with registry.engine.connect() as conn:
        users = conn.execute(select(t.clusters_users)).all()
    by_cluster: dict[str, set[str]] = {}
    for u in users:
        by_cluster.setdefault(u.cluster_id, set()).add(u.user_id)
    assert sorted(map(sorted, by_cluster.values())) == [["u-0", "u-1"], ["u-2", "u-3"]]
    assert out["items"] == 4
    with pytest.raises(ClusteringError, match="at most"):
        cluster_and_store(spark, readings, dims, registry, CID, start, end, 5, "member")


def test_lec_cluster_command(lake, registry, settings) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "LEC_RUN_DIR": str(settings.run_dir)}
    res = subprocess.run([sys.executable, "-m", "lec.cli", "cluster", "--community", CID, "--from", "2024-06-03",
                          "--to", "2024-06-17", "-k", "2", "--by", "daytype"], capture_output=True, text=True,
                         env=env, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["items"] == 14 and sorted(c["size"] for c in out["clusters"]) == [4, 10]
    with registry.engine.connect() as conn:
        assert conn.execute(select(t.clustergroups.c.user_id)).scalar_one() is None  # the whole community
