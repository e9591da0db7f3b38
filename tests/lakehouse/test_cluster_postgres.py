"""Registry writes of analytics (clusters, derived time series) on a real PostgreSQL (FKs enforced)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select

from lakehouse.clustering import kmeans, store_clusters
from lakehouse.kpi.store import due, mark_refreshed, register_series
from lakehouse.spark.sessions import registry_pandas
from lec.registry import Registry, parse_community_text
from lec.registry import schema as t
from tests.support.kpi_sample import SampleFlow, community_yaml

CID = "cer-pg-analytics"
FLOWS = [SampleFlow("f-pga-1", "PGA-POD1", "pga-u1", "load", 1), SampleFlow("f-pga-2", "PGA-PV1", "pga-u1",
                                                                               "production", 2),
         SampleFlow("f-pga-3", "PGA-POD2", "pga-u2", "load", 1)]


@pytest.fixture()
def pg_registry(postgres_url: str) -> Registry:
    reg = Registry(postgres_url)
    reg.migrate()
    reg.load(parse_community_text(community_yaml(CID, FLOWS)))
    return reg


def test_clusters_and_series_on_postgres(pg_registry: Registry) -> None:
    result = kmeans(np.vstack([np.full(96, 1.0), np.full(96, 5.0)]), 2)  # two members' mean curves
    start = datetime(2024, 1, 1, tzinfo=UTC)
    gid = store_clusters(pg_registry, CID, "member", None, ["pga-u1", "pga-u2"], result, start,
                         start + timedelta(days=7), {"init": "percentile"})
    store_clusters(pg_registry, CID, "member", None, ["pga-u1", "pga-u2"], result, start,
                   start + timedelta(days=7), {"init": "percentile"})  # re-run replaces under FK constraints
    with pg_registry.engine.connect() as conn:
        users = conn.execute(select(t.clusters_users.c.user_id)).scalars().all()
        group = conn.execute(select(t.clustergroups).where(t.clustergroups.c.id == gid)).one()
    assert sorted(users) == ["pga-u1", "pga-u2"] and group.n_clusters == 2
    assert group.params["init"] == "percentile"
    now = datetime(2024, 2, 1, 0, 3, tzinfo=UTC)
    assert register_series(pg_registry, CID, "1d", now) == 3 * 10
    assert (CID, "1d") in due(pg_registry, now)
    mark_refreshed(pg_registry, CID, "1d", now)
    assert (CID, "1d") not in due(pg_registry, now)
    frames = registry_pandas(pg_registry, CID)
    assert set(frames["dim_flows"].flow_id) == {"f-pga-1", "f-pga-2", "f-pga-3"}

