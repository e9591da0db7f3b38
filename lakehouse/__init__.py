"""Lakehouse: Delta sink, Spark KPIs, completeness, clustering, quality, search."""
