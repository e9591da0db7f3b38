"""The data engineers' notebook is valid nbformat 4 JSON and its code runs against a small lake."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.kpi_sample import SampleFlow, readings_table, write_readings

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "community_kpis.ipynb"
ROME = ZoneInfo("Europe/Rome")


def test_notebook_is_valid_nbformat_4() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 4 and "kernelspec" in nb["metadata"]
    ids = set()
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["source"], list)
        assert cell["id"] not in ids
        ids.add(cell["id"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and "execution_count" in cell
            compile("".join(cell["source"]), cell["id"], "exec")


@pytest.mark.parametrize("engine", ["sail", pytest.param("jvm", marks=[pytest.mark.slow, pytest.mark.timeout(1800)])])
def test_notebook_code_runs_on_a_small_lake(registry, settings, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path, engine: str) -> None:
    """On Sail and on JVM Spark + delta-spark (LEC_SPARK_ENGINE, one JVM server per test process)."""
    anna = SampleFlow("f-anna-load", "IT001E00000001", "u-anna", "load", 1)
    pv = SampleFlow("f-bruno-pv", "PV-0001", "u-bruno", "production", 2)
    start = datetime(2024, 1, 2, 10, tzinfo=ROME)
    rows = [(anna, start + timedelta(minutes=15 * i), 50_000 + 1000 * i) for i in range(8)]
    rows += [(pv, start + timedelta(minutes=15 * i), -60_000) for i in range(8)]
    write_readings(settings.resolved_lake_uri(), readings_table("cer-example", rows))
    png = tmp_path / "nb.png"
    for key, value in {"LEC_RUN_DIR": str(settings.run_dir), "LEC_NB_COMMUNITY": "cer-example",
                       "LEC_NB_START": "2024-01-02", "LEC_NB_END": "2024-01-03", "LEC_NB_PLOT": str(png), "LEC_SPARK_ENGINE": engine}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DISPLAY", raising=False)
    nb = json.loads(NOTEBOOK.read_text())
    code = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    namespace: dict = {}
    exec(compile(code, str(NOTEBOOK), "exec"), namespace)
    hourly = namespace["hourly"]
    load_h1 = sum(50_000 + 1000 * i for i in range(4)) / 1e6  # 10:00-11:00 local
    load_h2 = sum(50_000 + 1000 * i for i in range(4, 8)) / 1e6
    assert list(hourly["load_kwh"]) == pytest.approx([load_h1, load_h2])
    assert list(hourly["production_kwh"]) == pytest.approx([0.24, 0.24])
    assert list(hourly["shared_kwh"]) == pytest.approx([min(load_h1, 0.24), min(load_h2, 0.24)])
    community = namespace["community"]
    assert community["selfconsumption_kwh"].sum() == pytest.approx(hourly["shared_kwh"].sum())
    assert png.read_bytes()[:4] == b"\x89PNG"
