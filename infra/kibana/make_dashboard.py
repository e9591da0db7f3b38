"""Generates community-dashboard.ndjson (Kibana saved objects). Run: .venv/bin/python infra/kibana/make_dashboard.py"""

from __future__ import annotations

import json
from pathlib import Path

KPI_PATTERN, ANOM_PATTERN = "lec-kpi-pattern", "lec-anomalies-pattern"


def _vis(vid: str, title: str, vis_type: str, aggs: list[dict], params: dict, pattern: str, query: str) -> dict:
    return {
        "id": vid, "type": "visualization", "attributes": {
            "title": title, "description": "", "version": 1, "uiStateJSON": "{}",
            "visState": json.dumps({"title": title, "type": vis_type, "aggs": aggs, "params": params}),
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({
                "query": {"query": query, "language": "kuery"}, "filter": [],
                "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"})}},
        "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
                        "id": pattern}],
    }


def _sum(i: int, field: str, label: str) -> dict:
    return {"id": str(i), "enabled": True, "type": "sum", "schema": "metric", "params": {"field": field,
                                                                                         "customLabel": label}}


def _avg(i: int, field: str, label: str) -> dict:
    return {"id": str(i), "enabled": True, "type": "avg", "schema": "metric", "params": {"field": field,
                                                                                         "customLabel": label}}


def _time(i: int, field: str = "period_start") -> dict:
    return {"id": str(i), "enabled": True, "type": "date_histogram", "schema": "segment",
            "params": {"field": field, "interval": "auto", "min_doc_count": 0}}


def objects() -> list[dict]:
    community = "level : \"community\""
    curves = _vis("lec-vis-curves", "Load, production and self-consumption (kWh)", "line",
                  [_sum(1, "consumption_kwh", "load"), _sum(2, "production_kwh", "production"),
                   _sum(3, "selfconsumption_kwh", "self-consumption"), _time(4)],
                  {"addLegend": True, "legendPosition": "right", "addTooltip": True}, KPI_PATTERN, community)
    grid = _vis("lec-vis-grid", "Grid withdrawal and injection (kWh)", "area",
                [_sum(1, "withdrawal_kwh", "withdrawal"), _sum(2, "injection_kwh", "injection"), _time(3)],
                {"addLegend": True, "legendPosition": "right"}, KPI_PATTERN, community)
    ratios = _vis("lec-vis-ratios", "Self-consumption and self-sufficiency (%)", "metric",
                  [_avg(1, "selfconsumption_pct", "self-consumption %"),
                   _avg(2, "selfsufficiency_pct", "self-sufficiency %"),
                   _avg(3, "completeness_pct", "data completeness %")],
                  {"addLegend": False}, KPI_PATTERN, community)
    bands = _vis("lec-vis-bands", "Consumption by ARERA band (kWh)", "pie",
                 [_sum(1, "consumption_f1_kwh", "F1"), _sum(2, "consumption_f2_kwh", "F2"),
                  _sum(3, "consumption_f3_kwh", "F3")], {"isDonut": True}, KPI_PATTERN, community)
    ranking = _vis("lec-vis-ranking", "Members by self-sufficiency (%)", "table",
                   [_avg(1, "selfsufficiency_pct", "self-sufficiency %"),
                    {"id": "2", "enabled": True, "type": "terms", "schema": "bucket",
                     "params": {"field": "member_id", "size": 50, "order": "desc", "orderBy": "1"}}],
                   {"perPage": 20}, KPI_PATTERN, "level : \"member\"")
    anomalies = _vis("lec-vis-anomalies", "Anomalies by kind", "histogram",
                     [{"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}},
                      {"id": "2", "enabled": True, "type": "terms", "schema": "group",
                       "params": {"field": "kind", "size": 10, "order": "desc", "orderBy": "1"}},
                      _time(3, "detected_ts")], {"addLegend": True}, ANOM_PATTERN, "")
    vis = [curves, grid, ratios, bands, ranking, anomalies]
    panels, refs = [], []
    for i, v in enumerate(vis):
        panels.append({"panelIndex": str(i + 1), "gridData": {"x": (i % 2) * 24, "y": (i // 2) * 15, "w": 24,
                                                              "h": 15, "i": str(i + 1)},
                       "version": "8.15.0", "panelRefName": f"panel_{i}", "embeddableConfig": {}})
        refs.append({"name": f"panel_{i}", "type": "visualization", "id": v["id"]})
    dashboard = {"id": "lec-community-dashboard", "type": "dashboard", "attributes": {
        "title": "LEC community KPIs", "description": "Energy community KPIs and anomalies (lec lake index)",
        "panelsJSON": json.dumps(panels), "timeRestore": False, "version": 1,
        "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"},
                                                                  "filter": []})}},
        "references": refs}
    patterns = [
        {"id": KPI_PATTERN, "type": "index-pattern",
         "attributes": {"title": "lec-kpi-*", "timeFieldName": "period_start"}, "references": []},
        {"id": ANOM_PATTERN, "type": "index-pattern",
         "attributes": {"title": "lec-anomalies-*", "timeFieldName": "detected_ts"}, "references": []},
    ]
    return patterns + vis + [dashboard]


if __name__ == "__main__":
    out = Path(__file__).with_name("community-dashboard.ndjson")
    out.write_text("".join(json.dumps(o, sort_keys=True) + "\n" for o in objects()))
    print(f"wrote {out}")
