"""A readable PNG of load, production and self-consumption (matplotlib, Agg backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

UNITS = {"15m": "kWh per quarter-hour", "1h": "kWh per hour", "1d": "kWh per day", "1mo": "kWh per month"}


def plot_kpis(pdf: pd.DataFrame, path: str, title: str, timezone: str = "Europe/Rome") -> str:
    """Community rows of a KPI frame as three curves against local time; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = pdf[pdf["level"] == "community"] if "level" in pdf else pdf
    if rows.empty and len(pdf):  # member rows only: plot their sum
        rows = (pdf.groupby(["period_start", "period_end", "resolution"], as_index=False)
                [["consumption_kwh", "production_kwh", "selfconsumption_kwh"]].sum())
    rows = rows.sort_values("period_start")
    if len(rows):  # repeat the last value at the period's end so the last step is drawn
        last = rows.iloc[[-1]].copy()
        last["period_start"] = last["period_end"]
        rows = pd.concat([rows, last], ignore_index=True)
    x = pd.to_datetime(rows["period_start"])
    x = (x.dt.tz_localize("UTC") if x.dt.tz is None else x).dt.tz_convert(timezone).dt.tz_localize(None)
    resolution = str(rows["resolution"].iloc[0]) if len(rows) else "1h"
    fig, ax = plt.subplots(figsize=(11, 5), dpi=110)
    step = "post"
    ax.step(x, rows["consumption_kwh"], where=step, label="load (consumption)", color="#c0392b", linewidth=1.6)
    ax.step(x, rows["production_kwh"], where=step, label="production", color="#27ae60", linewidth=1.6)
    ax.fill_between(x, rows["selfconsumption_kwh"], step=step, alpha=0.35, color="#2980b9",
                    label="self-consumption min(L, P)")
    ax.set_ylabel(UNITS.get(resolution, "kWh"))
    ax.set_xlabel(f"local time ({timezone})")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    total_l, total_p, total_sc = (rows[c].iloc[:-1].sum() for c in ("consumption_kwh", "production_kwh", "selfconsumption_kwh"))
    ax.text(0.99, 0.97, f"L {total_l:,.1f} kWh   P {total_p:,.1f} kWh   self-consumed {total_sc:,.1f} kWh",
            transform=ax.transAxes, ha="right", va="top", fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "#999"})
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
