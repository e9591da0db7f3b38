"""Completeness of one flow's interval readings (seed §5.2.3.2).

Readings are put on the flow's regular UTC grid (interval starts):
- off-grid instants are snapped to the nearest grid instant (``snapped``);
- repeated instants (after snapping) keep the last reading by ingest time (``repeats`` counts
  the others);
- missing instants become rows with a NULL value (``missing``);
- gaps no longer than ``max_gap_s`` (default 6 h) with known values on both sides are filled by
  a cubic spline (scipy) through up to 4 known points on each side, rounded to whole mWh, and
  flagged ``interpolated=True``. Nothing filled is ever unflagged.
DST: the grid is in UTC, so a 23 h or 25 h local day simply has 92 or 100 quarter-hours; the
KPI job counts expected readings per local period from the same UTC grid.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

DEFAULT_MAX_GAP_S = 6 * 3600
SPLINE_SIDE_POINTS = 4

FILLED_COLUMNS = ["flow_id", "device_id", "account", "ts", "energy_mwh", "interpolated", "snapped",
                  "repeats", "missing"]
FILLED_SPARK_SCHEMA = ("flow_id string, device_id string, account long, ts timestamp, energy_mwh long, "
                       "interpolated boolean, snapped boolean, repeats long, missing boolean")


def _utc(ts: pd.Series) -> pd.Series:
    ts = pd.to_datetime(ts)
    return ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")


def regularise(pdf: pd.DataFrame, interval_s: int = 900, max_gap_s: int = DEFAULT_MAX_GAP_S,
               start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
    """One flow's readings on its grid, with missing rows, snapping, repeats and spline fills.

    ``pdf`` needs ts, energy_mwh and flow_id/device_id/account (constant within the flow);
    optional interpolated (already-filled input stays flagged) and ingest_ts (orders repeats).
    ``start``/``end`` (end exclusive) widen the grid so leading/trailing missing rows appear.
    """
    if pdf.empty:
        return pd.DataFrame(columns=FILLED_COLUMNS)
    step = pd.Timedelta(seconds=interval_s)
    ident = {c: pdf[c].iloc[0] for c in ("flow_id", "device_id", "account")}
    df = pd.DataFrame({"ts": _utc(pdf["ts"]), "energy_mwh": pdf["energy_mwh"].astype("float64"),
                       "interpolated": pdf["interpolated"].fillna(False).astype(bool)
                       if "interpolated" in pdf else False})
    df["order"] = _utc(pdf["ingest_ts"]).values if "ingest_ts" in pdf else np.arange(len(df))
    snapped_ts = df["ts"].dt.round(step)
    df["snapped"] = snapped_ts != df["ts"]
    df["ts"] = snapped_ts
    df = df.sort_values(["ts", "order"], kind="stable")
    repeats = df.groupby("ts").size() - 1
    df = df.drop_duplicates("ts", keep="last").set_index("ts")
    lo = min(df.index.min(), pd.Timestamp(start).tz_convert("UTC").ceil(step)) if start else df.index.min()
    hi = df.index.max()
    if end is not None:
        hi = max(hi, pd.Timestamp(end).tz_convert("UTC").ceil(step) - step)
    grid = pd.date_range(lo, hi, freq=step, tz="UTC")
    df = df.reindex(grid)
    df.index.name = "ts"
    df["snapped"] = df["snapped"].astype("boolean").fillna(False).astype(bool)
    df["interpolated"] = df["interpolated"].astype("boolean").fillna(False).astype(bool)
    df["repeats"] = repeats.reindex(grid).fillna(0).astype("int64").values
    _fill_short_gaps(df, interval_s, max_gap_s)
    out = df.reset_index()
    out["missing"] = out["energy_mwh"].isna()
    out["energy_mwh"] = out["energy_mwh"].round().astype("Int64")
    for c, v in ident.items():
        out[c] = v
    out["account"] = out["account"].astype("int64")
    return out[FILLED_COLUMNS]


def _fill_short_gaps(df: pd.DataFrame, interval_s: int, max_gap_s: int) -> None:
    """Spline-fill runs of NULL no longer than ``max_gap_s`` in place."""
    from scipy.interpolate import CubicSpline

    values = df["energy_mwh"].to_numpy(dtype="float64")
    known = ~np.isnan(values)
    if known.sum() < 2:
        return
    max_run = max_gap_s // interval_s
    x = np.arange(len(values), dtype="float64")
    i = 0
    while i < len(values):
        if known[i]:
            i += 1
            continue
        j = i
        while j < len(values) and not known[j]:
            j += 1
        if i > 0 and j < len(values) and (j - i) <= max_run:  # interior gap, short enough
            left = np.flatnonzero(known[:i])[-SPLINE_SIDE_POINTS:]
            right = j + np.flatnonzero(known[j:])[:SPLINE_SIDE_POINTS]
            pts = np.concatenate([left, right])
            spline = CubicSpline(x[pts], values[pts], bc_type="natural")
            values[i:j] = spline(x[i:j])
            df.iloc[i:j, df.columns.get_loc("interpolated")] = True
        i = j
    df["energy_mwh"] = values


def summary(filled: pd.DataFrame) -> dict[str, int]:
    """Counts of one regularised flow: grid slots, present, snapped, repeats, filled, still missing."""
    return {
        "slots": len(filled),
        "present": int((~filled["missing"] & ~filled["interpolated"]).sum()),
        "snapped": int(filled["snapped"].sum()),
        "repeats": int(filled["repeats"].sum()),
        "filled": int(filled["interpolated"].sum()),
        "missing": int(filled["missing"].sum()),
    }
